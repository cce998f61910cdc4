"""The local stand-in for API Gateway + Kafka REST Proxy v2 + Kafka + the S3 sink connector.

``Gateway`` serves the v2 produce API, keeps every acknowledged record in a write-ahead log, and
lands the records in a bucket exactly as the S3 sink connector lays them out.
"""

from pintrest_assets.gateway.server import Gateway

__all__ = ["Gateway"]
