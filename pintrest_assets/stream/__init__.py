"""The streaming half's machinery: the three Kinesis streams read by Spark Structured Streaming
into Delta stream tables, with no Dagster definitions (those are in ``defs/stream``).

- ``tables``: a stream table (``<user_id>_<topic>_table`` in the warehouse), its quarantine
  table and checkpoint, and the micro-batch writer that appends to it exactly once;
- ``query``: the Structured Streaming query, one per stream table, run to what is available;
- ``positions``: where each shard stands against what the table has read (the sensor's probe,
  and the lag a materialisation reports);
- ``resource``: the Kinesis endpoint the queries and the sensor read, as a Dagster resource.
"""
