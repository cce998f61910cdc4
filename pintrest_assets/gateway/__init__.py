"""The local gateway: one HTTP server standing in for API Gateway in front of both proxies.

``Gateway`` (``server``) serves the Kafka REST Proxy v2 produce API in front of the local broker
and its S3 sinks (``pintrest_assets.kafka``), and, with ``KinesisStack`` (``kinesis``), the
Kinesis-proxy routes (``kinesis_routes``) in front of kinesalite or a real Kinesis. ``http``
holds the routes-as-data HTTP plumbing; ``process`` runs the gateway for the commands.
"""

from pintrest_assets.gateway.server import Gateway

__all__ = ["Gateway"]
