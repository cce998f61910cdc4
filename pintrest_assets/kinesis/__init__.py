"""The Kinesis side of the pipeline, as plain machinery (no Dagster definitions).

- ``proxy_contract``: API Gateway's Kinesis-proxy contract, shared by the client and the gateway;
- ``proxy_client``: ``KinesisProxyResource``, the streaming emulator's client of that proxy;
- ``streams``: the streams ``streaming-<user_id>-<topic>`` of the three topics, created if missing;
- ``local_server``: ``LocalKinesis``, the embedded default's Kinesis API (kinesalite on LevelDB);
- ``positions``: where each shard stands against what a stream table has read;
- ``spark_source``: ``spark.readStream.format("pintrest_kinesis")``, a Structured Streaming source
  with the options and columns of Databricks' ``kinesis`` source (``register(spark)`` first).

Importing this package imports none of them: each is imported where it is needed (only
``spark_source`` needs pyspark).
"""
