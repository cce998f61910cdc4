"""Facts about the Pinterest posts themselves, shared by the sample data that imitates them and
the cleaning that undoes their quirks.

The scraper behind the original database wrote a fixed placeholder string wherever it could not
read a field; ``PLACEHOLDERS`` lists them per ``pinterest_data`` column, exactly as stored
(note the period in "Image src error." and the spelled-out tag list).
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "art",
    "beauty",
    "christmas",
    "diy-and-crafts",
    "education",
    "event-planning",
    "finance",
    "home-decor",
    "mens-fashion",
    "quotes",
    "tattoos",
    "travel",
    "vehicles",
)

NO_TITLE = "No Title Data Available"
NO_DESCRIPTION = "No description available Story format"
USER_INFO_ERROR = "User Info Error"
NO_TAGS = "N,o, ,T,a,g,s, ,A,v,a,i,l,a,b,l,e"
IMAGE_SRC_ERROR = "Image src error."

# Rarer spellings of a missing description, seen beside the usual one.
OTHER_NO_DESCRIPTIONS: tuple[str, ...] = ("No description available", "Untitled")

PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "title": (NO_TITLE,),
    "description": (NO_DESCRIPTION, *OTHER_NO_DESCRIPTIONS),
    "poster_name": (USER_INFO_ERROR,),
    "follower_count": (USER_INFO_ERROR,),
    "tag_list": (NO_TAGS,),
    "image_src": (IMAGE_SRC_ERROR,),
}

IMAGE = "image"
STORY = "multi-video(story page format)"
POST_KINDS: tuple[str, ...] = (IMAGE, STORY)  # the values of is_image_or_video

# save_location is "Local save in /data/<category>"; mind the space before the path.
SAVE_LOCATION_PREFIX = "Local save in "


def save_location(category: str) -> str:
    return f"{SAVE_LOCATION_PREFIX}/data/{category}"


def format_follower_count(followers: int) -> str:
    """A follower count as Pinterest displays it: "437", "1.2k", "26k", "892k", "1M", "6M"."""
    if followers < 0:
        raise ValueError(f"a follower count cannot be negative: {followers}")
    if followers < 1_000:
        return str(followers)
    if followers < 10_000:
        # One decimal below ten thousand, without a trailing ".0": "1.2k", "3k".
        return f"{followers // 100 / 10:g}k"
    if followers < 1_000_000:
        return f"{followers // 1_000}k"
    return f"{followers // 1_000_000}M"
