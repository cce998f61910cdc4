"""One line on each column of every table, shown in the UI's Columns table of each asset.

A name means one thing wherever it appears, so one entry serves every table that has the column:
the DataFrames (``df_pin``, ``df_geo``, ``df_user``, the source tables' columns), the cleaned
tables and the stream tables (the cleaning's columns), and the answers. Where the cleaning
changes a column's form, its line says both.
"""

from __future__ import annotations

COLUMN_DESCRIPTIONS: dict[str, str] = {
    # Posts: pinterest_data, df_pin, pin_clean, <user_id>_pin_table
    "index": "The post's number, which ties its pin, geo and user records together (ind once cleaned).",
    "ind": "The post's number, which ties its pin, geo and user rows together.",
    "unique_id": "The post's UUID.",
    "title": "The post's title.",
    "description": "The post's text.",
    "poster_name": "The name of the account that posted it.",
    "follower_count": 'The poster\'s followers: as displayed ("26k", "1M") until cleaned, then a number.',
    "tag_list": "The post's tags, comma-separated.",
    "is_image_or_video": 'What the post is: "image" or "multi-video(story page format)".',
    "image_src": "The URL of the post's image.",
    "downloaded": "1 if the post's image was downloaded, else 0 (left out of pin_clean).",
    "save_location": 'Where the post is saved: "Local save in /data/..." until cleaned, then the path alone.',
    "category": "The post's category, as art or travel.",
    # Where and when: geolocation_data, df_geo, geo_clean, <user_id>_geo_table
    "timestamp": "When the post was made: ISO-8601 text until cleaned, then a timestamp.",
    "latitude": "Where the post was made: latitude in degrees.",
    "longitude": "Where the post was made: longitude in degrees.",
    "coordinates": "Where the post was made: [latitude, longitude] in degrees.",
    "country": "The country the post was made in.",
    # Who: user_data, df_user, user_clean, <user_id>_user_table
    "first_name": "The user's first name.",
    "last_name": "The user's last name.",
    "user_name": 'The user\'s first and last names, "<first> <last>".',
    "age": "The user's age in years.",
    "date_joined": "When the user joined: ISO-8601 text until cleaned, then a timestamp.",
    # The answers
    "category_count": "How many posts of the category the group has.",
    "post_year": "The year: the posts' year (question 2) or the year the users joined (questions 6 to 8).",
    "age_group": "The users' age group: 18-24, 25-35, 36-50 or 50+.",
    "median_follower_count": "The median follower count of the group's posts.",
    "number_users_joined": "How many users joined that year.",
}
