"""The lake: the bucket mounted for Spark, the DataFrames read from it, and their Delta tables.

- ``mount``: the S3 mount (``dbutils.fs.mount`` of the original): listing new sink objects,
  gathering them into parquet batch files, the ledger that releases them once committed, and
  the ``s3_mount`` resource;
- ``spark``: the Spark session of a run (local, a cluster master or Spark Connect);
- ``schemas``, ``columns``: the topics' explicit schemas and a line on each column;
- ``parsing``: batch files read by Spark, malformed lines quarantined;
- ``statistics``: running ``describe()`` statistics;
- ``warehouse``: the Delta tables and the IO manager that stores each asset's DataFrame in one.
"""
