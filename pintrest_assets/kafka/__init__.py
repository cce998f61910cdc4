"""The Kafka side of the pipeline: what the emulator produces to and what the S3 sink lands.

- ``rest_proxy_v2``: the Kafka REST Proxy API v2 produce contract (media types, error codes),
  shared by the client and the local stand-in;
- ``client``: ``RestProxyResource``, the emulator's client of a REST proxy (the local gateway,
  or the original's API Gateway in front of a REST proxy on EC2);
- ``sink_layout``: the S3 sink connector's object keys, shared by the sink that writes them and
  the lake that reads them;
- the local stand-in for a Kafka cluster and its S3 sink connector, which the gateway
  (``pintrest_assets.gateway``) serves: ``protocol`` (parsing produce requests), ``broker``
  (topics, one partition each), ``log`` (each partition's write-ahead log) and ``sink``.
"""
