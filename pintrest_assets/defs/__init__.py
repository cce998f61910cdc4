"""What the Dagster UI shows, one folder per stage, loaded by ``dg.load_from_defs_folder``:

- ``sources/``: the three tables of the posts database the emulation draws from;
- ``ingest/``: the topic streams (Kafka) the emulation sends through the REST proxy, and its schedule;
- ``lake/``: the raw JSON mounted from the bucket, the DataFrames, the sensor on new objects and
  the reconciliation;
- ``transform/``: the cleaned tables, the answers, their checks and their automation;
- ``stream/``: the Kinesis streams, the stream tables, their checks and the streaming service's
  reporting;

and ``resources.py``: the resources every stage uses, chosen by the settings, and the executor.
"""
