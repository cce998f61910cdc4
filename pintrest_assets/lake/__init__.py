"""The lake: the bucket mounted for Spark, the DataFrames read from it, and their Delta tables.

- ``mount``: the S3 mount (``dbutils.fs.mount`` of the original): listing new sink objects,
  gathering them into parquet batch files, the ledger that releases them once committed, and
  the ``s3_mount`` resource;
- ``spark``: the Spark session of a run (local, a cluster master or Spark Connect), and
  ``worker_python``, the launcher its local Python workers start through, and ``spark_server``,
  the Spark Connect server ``pintrest dev`` keeps warm for its runs;
- ``schemas``, ``columns``: the topics' explicit schemas and a line on each column;
- ``parsing``: batch files read by Spark, malformed lines quarantined;
- ``statistics``: running ``describe()`` statistics;
- ``delta``: the Delta table layer (commits with an app transaction and state, the quarantine
  table beside a table, retry on concurrent commits, compaction and vacuum), which the
  warehouse and the stream tables share;
- ``warehouse``: the IO manager that stores each asset's DataFrame in a Delta table.
"""
