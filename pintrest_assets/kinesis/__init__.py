"""Kinesis for the streaming half of the pipeline, as plain machinery (no Dagster definitions).

- ``local_server``: ``LocalKinesis``, the embedded default's Kinesis API (kinesalite on LevelDB).
- ``streams``: the streams ``streaming-<user_id>-<topic>`` of the three topics, created if missing.
- ``spark_source``: ``spark.readStream.format("pintrest_kinesis")``, a Structured Streaming source
  with the options and columns of Databricks' ``kinesis`` source (``register(spark)`` first).

Importing this package imports none of them: each is imported where it is needed (only
``spark_source`` needs pyspark).
"""
