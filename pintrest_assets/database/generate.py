"""Deterministic sample posts that look like the original database, quirks included.

A post is three rows sharing one index: ``{"pin": {...}, "geo": {...}, "user": {...}}`` (keys
are the topic names of ``TOPICS``; each row's keys are its table's columns, in order). The same
seed gives the same posts on any machine: every choice comes from one ``random.Random``, and
names and countries from a Faker instance seeded alike with a fixed locale (so they can change
only with the Faker release). Post ``i`` does not depend on how many posts are asked for.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

from faker import Faker

from pintrest_assets import domain

DEFAULT_ROWS = 11_153
DEFAULT_SEED = 20180101

# How often the scraper behind the original failed, per field (facts: one batch of ~1,000 posts).
QUIRK_RATES: dict[str, float] = {
    "description": 0.16,
    "image_src": 0.045,
    "tag_list": 0.027,
    "title": 0.016,
    "user_info": 0.015,  # poster_name and follower_count fail together
}
# Part of those failures: rows where every text field is a placeholder at once.
BROKEN_ROW_RATE = 0.01
# The rest of each field's rate, spread over the rows that are not broken.
_EXTRA_RATES = {field: (rate - BROKEN_ROW_RATE) / (1 - BROKEN_ROW_RATE) for field, rate in QUIRK_RATES.items()}

TRUNCATED_DESCRIPTION_RATE = 0.3
TIMESTAMPS = (datetime(2017, 12, 1), datetime(2022, 7, 31, 23, 59, 59))
DATES_JOINED = (datetime(2015, 10, 1), datetime(2017, 10, 31, 23, 59, 59))
AGES = (20, 59)
MAX_FOLLOWERS = 8_999_999  # displayed as "8M", the largest count seen

# Per category: subjects for titles and tags, and extra keywords for tags.
THEMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "art": (
        ("Watercolor Landscapes", "Abstract Acrylic Painting", "Pencil Portraits", "Ink Illustrations",
         "Oil Painting Techniques", "Street Art", "Sketchbook Pages", "Digital Art"),
        ("Art", "Painting", "Drawing Ideas", "Art Inspiration", "Canvas Art", "Art Tutorials"),
    ),
    "beauty": (
        ("Natural Makeup Looks", "Skincare Routines", "Braided Hairstyles", "Nail Art Designs",
         "Smoky Eye Tutorials", "Curly Hair Care", "Bold Lip Colours", "Eyebrow Shaping"),
        ("Beauty", "Makeup", "Hair Ideas", "Skin Care Tips", "Beauty Hacks", "Nails"),
    ),
    "christmas": (
        ("Christmas Tree Decorations", "DIY Ornaments", "Advent Calendars", "Christmas Cookies",
         "Holiday Table Settings", "Christmas Wreaths", "Stocking Stuffers", "Gingerbread Houses"),
        ("Christmas", "Xmas", "Holiday Decor", "Christmas Crafts", "Christmas Gifts", "Winter"),
    ),
    "diy-and-crafts": (
        ("Paper Crafts", "Mason Jar Crafts", "Kids Crafts", "Upcycled Furniture",
         "Macrame Wall Hangings", "Felt Animals", "Scrapbook Layouts", "Crochet Patterns"),
        ("Diy", "Crafts", "Easy Crafts", "Crafts For Kids", "Diy Home Decor", "Handmade"),
    ),
    "education": (
        ("Classroom Organisation", "Math Games", "Reading Comprehension Activities",
         "Science Experiments for Kids", "Homeschool Schedules", "Study Tips", "Phonics Worksheets",
         "Bulletin Boards"),
        ("Teaching", "Education", "Classroom", "Teacher Resources", "Kindergarten", "Learning"),
    ),
    "event-planning": (
        ("Wedding Centrepieces", "Birthday Party Themes", "Baby Shower Games", "Balloon Garlands",
         "Dessert Tables", "Bridal Shower Decorations", "Graduation Party Ideas", "Outdoor Wedding Venues"),
        ("Party Ideas", "Wedding", "Event Planning", "Party Decorations", "Celebration", "Party Planning"),
    ),
    "finance": (
        ("Budgeting Tips", "Ways to Save Money", "Debt Payoff Plans", "Side Hustles",
         "Investing for Beginners", "Printable Budget Planners", "Frugal Living Hacks", "Retirement Savings"),
        ("Personal Finance", "Money Saving Tips", "Budget", "Make Money Online", "Financial Freedom", "Saving"),
    ),
    "home-decor": (
        ("Living Room Makeovers", "Scandinavian Bedrooms", "Gallery Walls", "Farmhouse Kitchens",
         "Small Apartment Storage", "Boho Decor", "Bathroom Renovations", "Indoor Plants"),
        ("Home Decor", "Interior Design", "Home Ideas", "Decor", "Cozy Home", "Room Inspiration"),
    ),
    "mens-fashion": (
        ("Casual Outfits for Men", "Men's Suits", "Streetwear Looks", "Minimalist Wardrobes",
         "Men's Haircuts", "Leather Boots", "Summer Outfits for Men", "Watches"),
        ("Mens Fashion", "Mens Style", "Menswear", "Outfits", "Style Guide", "Gentleman"),
    ),
    "quotes": (
        ("Motivational Quotes", "Life Quotes", "Love Quotes", "Inspirational Sayings",
         "Funny Quotes", "Friendship Quotes", "Positive Affirmations", "Self Care Quotes"),
        ("Quotes", "Words", "Inspiration", "Motivation", "Wisdom", "Quotes To Live By"),
    ),
    "tattoos": (
        ("Small Tattoos", "Minimalist Tattoos", "Sleeve Tattoos", "Floral Tattoo Designs",
         "Fine Line Tattoos", "Couple Tattoos", "Script Tattoos", "Geometric Tattoos"),
        ("Tattoos", "Tattoo Ideas", "Tattoo Designs", "Ink", "Body Art", "Tattoos For Women"),
    ),
    "travel": (
        ("Hidden Gems in Europe", "Road Trip Itineraries", "Packing Lists", "Beach Destinations",
         "Travel Photography Spots", "Backpacking Routes", "Weekend Getaways", "Things to Do in Iceland"),
        ("Travel", "Travel Tips", "Wanderlust", "Places To Visit", "Bucket List", "Vacation"),
    ),
    "vehicles": (
        ("Classic Cars", "Camper Van Conversions", "Motorcycles", "Off-Road Trucks",
         "Car Interior Ideas", "Vintage Vespas", "Electric Cars", "Muscle Cars"),
        ("Cars", "Vehicles", "Dream Cars", "Car Accessories", "Trucks", "Vintage Cars"),
    ),
}

_TITLES = (
    "{n} {subject} Ideas",
    "{n} Easy {subject} You Need to Try",
    "The Ultimate Guide to {subject}",
    "{subject}",
    "{subject} for Beginners",
    "Our Favourite {subject} of {year}",
    "{subject} {emoji}",
    "{lower} inspo",
)
_DESCRIPTIONS = (
    "Looking for {lower}? Here are our favourites.",
    "{n} {lower} ideas to save for later.",
    "The best {lower} we found this year.",
    "Everything you need to know about {lower}.",
    "Step by step: {lower} made simple.",
)
_EMOJI = ("🌸", "✨", "🎄", "💕", "🌿", "🏡", "📚", "✈️", "🎨", "💄", "🔥", "😍")
_BRAND_WORDS = ("Studio", "Designs", "Home", "Co.", "Travels", "Creative", "Blog", "Daily", "Collective")
# Names from other alphabets and accents, as Pinterest's international posters write them.
_UNICODE_NAMES = (
    "Zoë Ålund", "José Muñoz", "Łucja Wiśniewska", "Ólafur Þórsson", "Jürgen Weiß", "Ngọc Trâm",
    "Σοφία Παπαδοπούλου", "Анна Смирнова", "山田 花子", "김민지", "Aïsha Benali", "François Lefèvre",
)


def generate_posts(rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> Iterator[dict[str, dict]]:
    """Posts with indexes ``0 .. rows - 1``, in index order."""
    if rows < 0:
        raise ValueError(f"rows must be at least 0, got {rows}")
    maker = _PostMaker(seed)
    for index in range(rows):
        yield maker.post(index)


class _PostMaker:
    """Draws posts one after another from one seeded random stream."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        # Unweighted: three times faster, and the names stay realistic.
        self.fake = Faker("en_US", use_weighting=False)
        self.fake.seed_instance(seed)

    def post(self, index: int) -> dict[str, dict]:
        return {"pin": self.pin(index), "geo": self.geo(index), "user": self.user(index)}

    def pin(self, index: int) -> dict:
        rng = self.rng
        category = rng.choice(domain.CATEGORIES)
        subjects, keywords = THEMES[category]
        subject = rng.choice(subjects)
        broken = rng.random() < BROKEN_ROW_RATE
        # Draw every field's chance even for broken rows: the stream then stays aligned.
        failed = {field: rng.random() < rate or broken for field, rate in _EXTRA_RATES.items()}

        title = domain.NO_TITLE if failed["title"] else self.title(subject)
        if failed["description"]:
            # Mostly the story-page wording; broken rows always have it.
            other = rng.random() < 0.1 and not broken
            description = rng.choice(domain.OTHER_NO_DESCRIPTIONS) if other else domain.NO_DESCRIPTION
        else:
            description = self.description(subject)
        if failed["user_info"]:
            poster_name = follower_count = domain.USER_INFO_ERROR
        else:
            poster_name = self.poster_name()
            followers = int(10 ** rng.uniform(0, math.log10(MAX_FOLLOWERS + 1)))
            follower_count = domain.format_follower_count(followers)
        if failed["tag_list"]:
            tag_list = domain.NO_TAGS
        else:
            tag_list = ",".join(rng.sample(subjects + keywords, rng.randint(3, 10)))
        image_src = domain.IMAGE_SRC_ERROR if failed["image_src"] else self.image_src()
        # A story page has no description of its own: the placeholder says so.
        story = description == domain.NO_DESCRIPTION or rng.random() < 0.03
        return {
            "index": index,
            "unique_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "title": title,
            "description": description,
            "poster_name": poster_name,
            "follower_count": follower_count,
            "tag_list": tag_list,
            "is_image_or_video": domain.STORY if story else domain.IMAGE,
            "image_src": image_src,
            "downloaded": 0 if image_src == domain.IMAGE_SRC_ERROR or rng.random() < 0.02 else 1,
            "save_location": domain.save_location(category),
            "category": category,
        }

    def geo(self, index: int) -> dict:
        rng = self.rng
        return {
            "ind": index,
            "timestamp": _moment(rng, *TIMESTAMPS),
            # Random, unrelated to the country: as in the original.
            "latitude": round(rng.uniform(-90, 90), 4),
            "longitude": round(rng.uniform(-180, 180), 4),
            "country": self.fake.country(),
        }

    def user(self, index: int) -> dict:
        return {
            "ind": index,
            "first_name": self.fake.first_name(),
            "last_name": self.fake.last_name(),
            # Mostly young adults, as on Pinterest.
            "age": min(AGES[1], int(self.rng.triangular(AGES[0], AGES[1] + 1, 25))),
            "date_joined": _moment(self.rng, *DATES_JOINED),
        }

    def title(self, subject: str) -> str:
        rng = self.rng
        template = rng.choice(_TITLES)
        return template.format(
            subject=subject,
            lower=subject.lower(),
            n=rng.randint(5, 60),
            year=rng.randint(2018, 2022),
            emoji=rng.choice(_EMOJI),
        )

    def description(self, subject: str) -> str:
        rng = self.rng
        lead = rng.choice(_DESCRIPTIONS).format(lower=subject.lower(), n=rng.randint(5, 60))
        text = f"{lead} {self.fake.paragraph(nb_sentences=rng.randint(1, 5))}"
        truncate, cut_at = rng.random() < TRUNCATED_DESCRIPTION_RATE, rng.random()
        if truncate and len(text) > 80:
            # Pinterest cuts long descriptions mid-sentence, at a word boundary, with an ellipsis.
            cut = text[: 60 + int(cut_at * (len(text) - 60))].rsplit(" ", 1)[0]
            text = f"{cut.rstrip(',.;:')}…"
        return text

    def poster_name(self) -> str:
        rng, fake = self.rng, self.fake
        style = rng.random()
        if style < 0.60:
            name = f"{fake.first_name()} {fake.last_name()}"
        elif style < 0.75:
            name = f"{fake.last_name()} {rng.choice(_BRAND_WORDS)}"
        elif style < 0.85:
            name = f"{fake.first_name().lower()}{rng.choice(('_', '.', ''))}{rng.randint(1, 99)}"
        elif style < 0.93:
            name = f"{fake.first_name()} {fake.last_name()} {rng.choice(_EMOJI)}"
        else:
            name = rng.choice(_UNICODE_NAMES)
        # Some posters' names keep the trailing spaces they typed.
        return name + " " * rng.choice((0,) * 19 + (1, 2))

    def image_src(self) -> str:
        digest = f"{self.rng.getrandbits(128):032x}"
        return f"https://i.pinimg.com/originals/{digest[:2]}/{digest[2:4]}/{digest[4:6]}/{digest}.jpg"


def _moment(rng: random.Random, start: datetime, end: datetime) -> datetime:
    """A whole second between ``start`` and ``end`` inclusive."""
    return start + timedelta(seconds=rng.randint(0, int((end - start).total_seconds())))
