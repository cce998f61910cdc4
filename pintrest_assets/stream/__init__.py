"""The stream tables: the three Kinesis streams read by Spark Structured Streaming into Delta
tables, with no Dagster definitions (those are in ``defs/stream``).

- ``tables``: a stream table (``<user_id>_<topic>_table`` in the warehouse), its quarantine
  table and checkpoint, and the micro-batch writer that appends to it exactly once;
- ``query``: the Structured Streaming query of a stream table;
- ``refresh``: one refresh as a click runs it (availableNow), or a wait for the service;
- ``service``: the streaming service (``pintrest stream``) and the writer lock;
- ``resource``: ``KinesisResource``, the Kinesis endpoint the stream tables read, as a resource.
"""
