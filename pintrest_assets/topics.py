"""The three topics of the pipeline, as one spec table.

Everything that exists once per topic (source table, Kafka topic, bucket prefix, assets) is
derived from a row of ``TOPICS``; nothing else in the project lists the three topics by hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Kafka's own rule for topic names.
_KAFKA_TOPIC_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")


@dataclass(frozen=True)
class TopicSpec:
    name: str  # the topic suffix: "<user_id>.<name>"
    table: str  # the source table in the posts database
    index_column: str  # the column that ties one post's three rows together
    dataframe: str  # the Spark DataFrame asset read from the topic's objects
    description: str

    @property
    def topic_asset(self) -> str:
        """The asset of the topic the emulation produces to, e.g. ``pin_topic``."""
        return f"{self.name}_topic"

    @property
    def raw_asset(self) -> str:
        """The asset of the topic's raw JSON objects in the bucket, e.g. ``pin_raw_json``."""
        return f"{self.name}_raw_json"

    @property
    def clean_asset(self) -> str:
        """The asset of the topic's cleaned table, e.g. ``pin_clean``."""
        return f"{self.name}_clean"

    @property
    def kinesis_asset(self) -> str:
        """The asset of the topic's Kinesis stream (the streaming half), e.g. ``pin_kinesis_stream``."""
        return f"{self.name}_kinesis_stream"

    @property
    def stream_table_asset(self) -> str:
        """The asset of the Delta table the Kinesis stream is appended to, e.g. ``pin_stream_table``."""
        return f"{self.name}_stream_table"

    def topic(self, user_id: str) -> str:
        """The Kafka topic name, ``<user_id>.<name>``."""
        return f"{user_id}.{self.name}"

    def kinesis_stream(self, user_id: str) -> str:
        """The Kinesis stream name, ``streaming-<user_id>-<name>``."""
        return f"streaming-{user_id}-{self.name}"

    def stream_table(self, user_id: str) -> str:
        """The stream table's name in the warehouse, ``<user_id>_<name>_table``."""
        return f"{user_id}_{self.name}_table"


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        name="pin",
        table="pinterest_data",
        index_column="index",
        dataframe="df_pin",
        description="Posts: title, description, poster, follower count, tags, image and category.",
    ),
    TopicSpec(
        name="geo",
        table="geolocation_data",
        index_column="ind",
        dataframe="df_geo",
        description="Where and when each post was made: country, latitude, longitude, timestamp.",
    ),
    TopicSpec(
        name="user",
        table="user_data",
        index_column="ind",
        dataframe="df_user",
        description="Who made each post: first and last name, age and the date they joined.",
    ),
)

TOPICS_BY_NAME: dict[str, TopicSpec] = {spec.name: spec for spec in TOPICS}


def is_valid_topic_name(name: str) -> bool:
    """Kafka accepts 1-249 characters of ``[a-zA-Z0-9._-]``, but not ``.`` or ``..`` alone."""
    return bool(_KAFKA_TOPIC_NAME.match(name)) and name not in {".", ".."}
