"""The Kinesis endpoint the stream tables read and the sensor probes, as a Dagster resource.

The producers go through the Kinesis proxy (``KinesisProxyResource``); the consumers read
Kinesis itself, as Databricks' ``kinesis`` source does: the embedded kinesalite, a configured
endpoint, or AWS (``endpoint_url`` None: boto3 finds the region and the credentials).
"""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from pintrest_assets.settings import DEFAULT_USER_ID
from pintrest_assets.topics import TopicSpec


class KinesisResource(dg.ConfigurableResource):
    """The Kinesis API the stream tables' queries read (``PINTREST_KINESIS_ENDPOINT_URL``)."""

    endpoint_url: str | None = Field(
        default=None,
        description="A Kinesis API other than AWS's (the embedded kinesalite, LocalStack); None: AWS's own.",
    )
    region: str | None = Field(default=None, description="The streams' region; None: boto3's (else us-east-1).")
    user_id: str = Field(
        default=DEFAULT_USER_ID,
        description="Streams are streaming-<user_id>-<topic>; their tables <user_id>_<topic>_table.",
    )
    max_records_per_batch: int = Field(
        default=100_000,
        gt=0,
        description="Records in one micro-batch at most (held in the driver's memory while it is read).",
    )

    # The client of ``client()``: one per resource instance, so a run's probes and checks share it
    # (a new client loads botocore's service model again, about 0.2 CPU s; clients are thread-safe).
    _client: Any = PrivateAttr(default=None)

    def stream_for(self, spec: TopicSpec) -> str:
        """``streaming-<user_id>-<topic>``."""
        return spec.kinesis_stream(self.user_id)

    def client(self):
        """The resource's boto3 Kinesis client (throttling retried with back-off), made on first use."""
        from pintrest_assets.kinesis.streams import kinesis_client

        if self._client is None:
            self._client = kinesis_client(self.endpoint_url, self.region, max_attempts=3, read_timeout=30)
        return self._client

    def source_options(self, spec: TopicSpec) -> dict[str, str]:
        """The Kinesis source's options for the topic's stream."""
        from pintrest_assets.stream.query import source_options

        return source_options(
            self.stream_for(spec), self.endpoint_url, self.region, max_records_per_batch=self.max_records_per_batch
        )

    def where(self) -> str:
        """Where the streams are, for messages."""
        return self.endpoint_url or f"AWS Kinesis ({self.region or 'boto3 region'})"
