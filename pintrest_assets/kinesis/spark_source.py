"""A Spark Structured Streaming source that reads a Kinesis data stream through boto3.

Built on pyspark 4's Python Data Source API, so it needs no JVM package: ``register(spark)``,
then ``spark.readStream.format("pintrest_kinesis").option("streamName", ...)``. Its options and
columns are those of Databricks' ``kinesis`` source, so code written for one reads on the other
by changing the format name::

    streamName         the stream (required)
    region             its region (default: the AWS_REGION/AWS_DEFAULT_REGION, else us-east-1)
    endpointUrl        a Kinesis API other than AWS's (kinesalite, moto, LocalStack)
    initialPosition    earliest | trim_horizon: every retained record; latest (the default, as
                       on Databricks): only records that arrive after the query starts
    awsAccessKey       with awsSecretKey; without them boto3 finds credentials itself
    awsSecretKey
    maxRecordsPerFetch records asked for by one GetRecords call (1-10,000; default 10,000)
    maxRecordsPerBatch records read into one micro-batch at most, spread over the shards
                       (default 100,000; this source's own option: the reader holds a batch in
                       the driver's memory)

    partitionKey string, data binary, stream string, shardId string, sequenceNumber string,
    approximateArrivalTimestamp timestamp

Decode a JSON payload with ``from_json(col("data").cast("string"), schema)``.

**Offsets** are ``{shardId: position}``, a position being the sequence number of the last record
read from the shard (reading resumes with a GetShardIterator AFTER_SEQUENCE_NUMBER), or
``TRIM_HORIZON`` (nothing read yet), ``AT_TIMESTAMP:<epoch ms>`` (nothing read yet, start at that
time: ``latest`` is the time the query started) or ``SHARD_END`` (a closed shard read to its end).
Sequence numbers are compared as integers (kinesalite's are 56-digit strings, moto's are small
integers). A shard that appears after a reshard starts at TRIM_HORIZON; a
child shard is read only once its parents are read to their end, so records of one partition key
keep their order across a reshard; a shard past retention drops out of the offset.

**Replay**: a batch Spark planned but did not commit is read again between its two offsets
(``readBetweenOffsets``), which yields the same records as long as Kinesis still retains them.
For the first batch Spark asks for the initial offset anew, which for ``latest`` would be a later
time: the offsets of such a query also hold ``"@startedAt": <epoch ms>``, the time it started.

**What a batch read**: besides the positions, a batch's end offset holds, for each shard it read
records from, ``"@read:<shardId>": "<records>,<last sequence number>,<newest arrival, epoch ms>"``,
and ``"@read:*"``, the records it read in all (a start offset's are ignored). The offset log of the checkpoint (``offsets/<batch id>``), written
before the batch runs, so tells its writer what the batch holds per shard without a Spark job.

**Trigger.AvailableNow**: the query reads every record that arrived before it started (by
``ApproximateArrivalTimestamp`` against this machine's clock), in batches of at most
``maxRecordsPerBatch``, then stops; records arriving meanwhile wait for the next run.

The reader runs on the driver (a "simple" stream reader): it fetches each batch while planning
it, which suits the pipeline's volume (tens of thousands of records a second on a laptop) and
keeps GetRecords calls to one pass per shard (Kinesis allows 5 a second per shard). A batch goes
to Spark as Arrow record batches, built from GetRecords' JSON answers as they come (the records'
base64 ``Data`` decoded, their arrival times kept as numbers), not through botocore's
per-record parsing and Python rows.

The Python workers must run an interpreter that has this project installed: set
``PYSPARK_PYTHON`` to it before the session starts (a session built in Python ignores
``spark.pyspark.python``); ``register`` sees to it on a local session that chose none.

kinesalite quirks handled here: a GetShardIterator AT_TIMESTAMP after the last record of a shard
never answers, so a call that times out makes the reader scan the shard from TRIM_HORIZON instead,
skipping records older than the timestamp (on AWS the call answers at once).
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader
from pyspark.sql.streaming.datasource import SupportsTriggerAvailableNow
import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql.types import StructType

FORMAT = "pintrest_kinesis"
SCHEMA = (
    "partitionKey string, data binary, stream string, shardId string, "
    "sequenceNumber string, approximateArrivalTimestamp timestamp"
)

TRIM_HORIZON = "TRIM_HORIZON"
SHARD_END = "SHARD_END"
AT_TIMESTAMP = "AT_TIMESTAMP:"
STARTED_AT = "@startedAt"  # in the offsets of a query started at "latest": when (epoch ms)
READ_PREFIX = "@read:"  # in a batch's end offset: what it read from a shard (see the module's doc)
READ_TOTAL = READ_PREFIX + "*"  # ... and the records it read in all

MAX_RECORDS_PER_FETCH = 10_000  # GetRecords' own limit
DEFAULT_MAX_RECORDS_PER_BATCH = 100_000
# GetRecords may answer an empty page although records lie further on (a sparse shard on AWS,
# where MillisBehindLatest is then > 0). The reader follows that many empty pages in one batch.
MAX_EMPTY_FETCHES = 20
# How long a GetShardIterator AT_TIMESTAMP may take before the reader scans the shard instead.
AT_TIMESTAMP_TIMEOUT_S = 2.0

# The columns as Arrow types, as Spark expects a Python data source's record batches.
ARROW_SCHEMA = pa.schema(
    [
        ("partitionKey", pa.string()),
        ("data", pa.binary()),
        ("stream", pa.string()),
        ("shardId", pa.string()),
        ("sequenceNumber", pa.string()),
        ("approximateArrivalTimestamp", pa.timestamp("us", tz="UTC")),
    ]
)
# A GetRecords answer's records, as Kinesis sent them (JSON: ``Data`` base64, the arrival time
# in epoch seconds), under this key instead of botocore's parsed ``Records``.
RAW_RECORDS = "RawRecords"


_builder: ThreadPoolExecutor | None = None


def _page_builder() -> ThreadPoolExecutor:
    """The thread that builds pages' Arrow batches (one: a reader's pages keep their order)."""
    global _builder
    if _builder is None:
        _builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kinesis-pages")
    return _builder


def _keep_records_raw(response_dict: dict, customized_response_dict: dict, **_) -> None:
    """botocore's ``before-parse`` hook for GetRecords: takes the records out of the JSON answer
    (one ``json.loads``), so botocore parses the few fields left, not every record's shape,
    blob and timestamp (most of a page's cost)."""
    if response_dict.get("status_code") != 200 or not response_dict.get("body"):
        return
    answer = json.loads(response_dict["body"])
    customized_response_dict[RAW_RECORDS] = answer.pop("Records", None) or []
    response_dict["body"] = json.dumps(answer).encode()


class ShardRead:
    """What a reader read from one shard: Arrow batches, a page at a time, and where it stopped.

    A page's Arrow batch is built in a thread of its own (``_page_builder``) while the reader
    asks for the next page: Kinesis composes that page meanwhile (kinesalite took about three
    quarters of a 100,000-record read, this process the rest, one after the other)."""

    def __init__(self, stream: str, shard_id: str, position: str):
        self.stream = stream
        self.shard_id = shard_id
        self.position = position
        self.records = 0
        self._pages: list[Future] = []

    def add(self, records: list[dict]) -> None:
        if records:
            self.records += len(records)
            self._pages.append(_page_builder().submit(self._batch, records))

    @property
    def batches(self) -> list[pa.RecordBatch]:
        """The pages' Arrow batches, in the order read (once they are built)."""
        return [page.result() for page in self._pages]

    @property
    def last_arrival_ms(self) -> int:
        """The newest ``ApproximateArrivalTimestamp`` read, epoch ms (0: nothing read)."""
        newest = [pc.max(b.column("approximateArrivalTimestamp")).value for b in self.batches]
        return max(newest, default=0) // 1000

    def _batch(self, records: list[dict]) -> pa.RecordBatch:
        n = len(records)
        return pa.RecordBatch.from_arrays(
            [
                pa.array([r["PartitionKey"] for r in records], pa.string()),
                pa.array([base64.b64decode(r["Data"]) for r in records], pa.binary()),
                pa.array([self.stream] * n, pa.string()),
                pa.array([self.shard_id] * n, pa.string()),
                pa.array([r["SequenceNumber"] for r in records], pa.string()),
                pa.array(
                    [round(float(r["ApproximateArrivalTimestamp"]) * 1_000_000) for r in records],
                    pa.timestamp("us", tz="UTC"),
                ),
            ],
            schema=ARROW_SCHEMA,
        )

    def summary(self) -> str:
        """``"<records>,<last sequence number read>,<newest arrival, epoch ms>"``."""
        last = self.batches[-1].column("sequenceNumber")[-1].as_py() if self.batches else ""
        return f"{self.records},{last},{self.last_arrival_ms}"


def read_summaries(offset: dict) -> dict[str, dict] | None:
    """What a batch read per shard, from its end offset: ``{shard: {records, last, arrived}}``
    (``arrived`` in epoch seconds); None for an offset that does not say (an earlier reader's)."""
    if READ_TOTAL not in offset:
        return None
    found = {}
    for key, value in offset.items():
        if key.startswith(READ_PREFIX) and key != READ_TOTAL:
            records, last, arrived = str(value).split(",")
            found[key[len(READ_PREFIX) :]] = {"records": int(records), "last": last, "arrived": int(arrived) / 1000}
    return found


_POSITIONS = {"earliest": TRIM_HORIZON, "trim_horizon": TRIM_HORIZON, "latest": "latest"}


def register(spark) -> None:
    """Make ``spark.readStream.format("pintrest_kinesis")`` available on ``spark``.

    The source's code runs in Python workers, which must import this project. pyspark starts
    them with ``PYSPARK_PYTHON`` as it was when the session started, else ``python3``, and
    ignores ``spark.pyspark.python`` in a session built in Python. So when the environment chose
    none, the workers of the functions registered from now on run ``spark.pyspark.python`` if set,
    else, on a local session, this interpreter.
    """
    _choose_worker_python(spark)
    spark.dataSource.register(KinesisDataSource)


def _choose_worker_python(spark) -> None:
    try:
        sc = spark.sparkContext
    except AttributeError:  # Spark Connect has none: the server's settings decide
        return
    if os.environ.get("PYSPARK_PYTHON") or sc.pythonExec != "python3":
        return  # chosen already
    configured = sc.getConf().get("spark.pyspark.python")
    if configured:
        sc.pythonExec = configured
    elif str(sc.master).startswith("local"):
        sc.pythonExec = sys.executable


class KinesisOptions:
    """The source's options, read case-insensitively (Spark hands them over lower-cased)."""

    def __init__(self, options: Any):
        opts = {str(k).lower(): v for k, v in dict(options).items()}
        self.stream_name: str = opts.get("streamname") or ""
        if not self.stream_name:
            raise ValueError(f'the {FORMAT} source needs option("streamName", <the Kinesis stream>)')
        self.region: str = (
            opts.get("region") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        )
        self.endpoint_url: str | None = opts.get("endpointurl") or None
        position = (opts.get("initialposition") or "latest").strip().lower()
        if position not in _POSITIONS:
            raise ValueError(
                f"initialPosition {opts.get('initialposition')!r} is not supported: "
                "use earliest (or trim_horizon) or latest"
            )
        self.initial_position: str = _POSITIONS[position]
        self.access_key: str | None = opts.get("awsaccesskey") or None
        self.secret_key: str | None = opts.get("awssecretkey") or None
        if (self.access_key is None) != (self.secret_key is None):
            raise ValueError("awsAccessKey and awsSecretKey go together: set both or neither")
        self.max_records_per_fetch = _int_option(
            opts, "maxrecordsperfetch", MAX_RECORDS_PER_FETCH, 1, MAX_RECORDS_PER_FETCH
        )
        self.max_records_per_batch = _int_option(opts, "maxrecordsperbatch", DEFAULT_MAX_RECORDS_PER_BATCH, 1, None)


def _int_option(opts: dict, key: str, default: int, low: int, high: int | None) -> int:
    if opts.get(key) in (None, ""):
        return default
    try:
        value = int(opts[key])
    except ValueError:
        raise ValueError(f"option {key} must be an integer, got {opts[key]!r}") from None
    if value < low or (high is not None and value > high):
        raise ValueError(f"option {key} must be between {low} and {high if high is not None else 'any'}, got {value}")
    return value


class KinesisDataSource(DataSource):
    """``spark.readStream.format("pintrest_kinesis")``: see the module's documentation."""

    @classmethod
    def name(cls) -> str:
        return FORMAT

    def schema(self) -> str:
        return SCHEMA

    def simpleStreamReader(self, schema: StructType) -> KinesisStreamReader:
        return KinesisStreamReader(KinesisOptions(self.options))


class KinesisStreamReader(SimpleDataSourceStreamReader, SupportsTriggerAvailableNow):
    """Reads the stream's shards on the driver, a batch at a time; offsets as the module says."""

    def __init__(self, options: KinesisOptions):
        self.options = options
        self._client = None
        self._at_timestamp_client = None
        self._scan_for_timestamps = False  # set once the server failed to answer an AT_TIMESTAMP
        self._cutoff: float | None = None  # availableNow: no record that arrived after this
        self._initial: dict | None = None

    # The reader is pickled to the Python workers that replay a batch: without its clients.
    def __getstate__(self) -> dict:
        return {**self.__dict__, "_client": None, "_at_timestamp_client": None}

    @property
    def client(self):
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self, **kwargs):
        from pintrest_assets.kinesis.streams import kinesis_client

        o = self.options
        client = kinesis_client(o.endpoint_url, o.region, o.access_key, o.secret_key, **kwargs)
        client.meta.events.register("before-parse.kinesis.GetRecords", _keep_records_raw)
        return client

    # --- SimpleDataSourceStreamReader ------------------------------------------------------------

    def initialOffset(self) -> dict:
        # Spark asks again when it plans the first batch: the same answer lets it use the
        # records read meanwhile instead of reading them again.
        if self._initial is None:
            shards = self.list_shards()
            if self.options.initial_position == TRIM_HORIZON:
                self._initial = {s["ShardId"]: TRIM_HORIZON for s in shards}
            else:
                millis = int(time.time() * 1000)
                started = AT_TIMESTAMP + str(millis)
                self._initial = {s["ShardId"]: SHARD_END if _is_closed(s) else started for s in shards}
                self._initial[STARTED_AT] = millis
        return dict(self._initial)

    def prepareForTriggerAvailableNow(self) -> None:
        self._cutoff = time.time()

    def read(self, start: dict) -> tuple[Iterator[pa.RecordBatch], dict]:
        shards = self.list_shards()
        by_id = {s["ShardId"]: s for s in shards}
        positions = {shard_id: start.get(shard_id, TRIM_HORIZON) for shard_id in by_id}
        pending = [shard_id for shard_id in by_id if positions[shard_id] != SHARD_END]
        budget = max(1, math.ceil(self.options.max_records_per_batch / max(1, len(pending))))
        batches: list[pa.RecordBatch] = []
        read: dict[str, str] = {}
        progress = True
        while pending and progress:
            progress = False
            for shard_id in list(pending):
                parents = [by_id[p] for p in _parents(by_id[shard_id]) if p in by_id]
                if any(positions[p["ShardId"]] != SHARD_END for p in parents):
                    continue  # a child waits until its parents are read to their end
                pending.remove(shard_id)
                progress = True
                shard_read = self.read_shard(
                    shard_id,
                    positions[shard_id],
                    closed=_is_closed(by_id[shard_id]),
                    budget=budget,
                    cutoff=self._cutoff,
                )
                positions[shard_id] = shard_read.position
                if shard_read.records:
                    batches.extend(shard_read.batches)
                    read[READ_PREFIX + shard_id] = shard_read.summary()
        end = dict(sorted(positions.items()))
        if STARTED_AT in start:
            end[STARTED_AT] = start[STARTED_AT]
        if end == {k: v for k, v in start.items() if not k.startswith(READ_PREFIX)} and not read:
            # Nothing new: the same offset, so Spark runs no batch. Spark runs a query's first
            # batch whatever its offset says, so the initial offset (which says nothing of what
            # was read) comes back saying "nothing": that batch's writer knows it is empty
            # without a Spark job.
            return iter([]), start if READ_TOTAL in start else {**start, READ_TOTAL: 0}
        end.update(sorted(read.items()))
        end[READ_TOTAL] = sum(int(v.split(",")[0]) for v in read.values())
        return iter(batches), end

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[pa.RecordBatch]:
        batches: list[pa.RecordBatch] = []
        # Replaying the first batch after a restart, Spark passes a new initial offset: a
        # query started at "latest" starts where the batch's end offset says it did.
        started = AT_TIMESTAMP + str(end[STARTED_AT]) if STARTED_AT in end else None
        for shard_id, until in end.items():
            if shard_id.startswith("@"):
                continue
            since = start.get(shard_id, TRIM_HORIZON)
            if started is not None and since.startswith(AT_TIMESTAMP):
                since = started
            if until == since or not (until == SHARD_END or until.isdigit()):
                continue  # nothing of this shard in the batch
            batches.extend(self.read_shard(shard_id, since, until=until).batches)
        return iter(batches)

    def commit(self, end: dict) -> None:
        pass

    # --- Kinesis -----------------------------------------------------------------------------------

    def list_shards(self) -> list[dict]:
        """Every shard the stream retains, open and closed (ListShards, every page)."""
        client = self.client
        try:
            page = client.list_shards(StreamName=self.options.stream_name)
        except client.exceptions.ResourceNotFoundException:
            where = self.options.endpoint_url or f"region {self.options.region}"
            raise ValueError(f"Kinesis stream {self.options.stream_name!r} does not exist ({where})") from None
        shards = list(page["Shards"])
        while page.get("NextToken"):
            page = client.list_shards(NextToken=page["NextToken"])
            shards.extend(page["Shards"])
        return shards

    def read_shard(
        self,
        shard_id: str,
        position: str,
        *,
        closed: bool = False,
        budget: int | None = None,
        cutoff: float | None = None,
        until: str | None = None,
    ) -> ShardRead:
        """The records of one shard after ``position`` (as Arrow batches) and the position they
        lead to.

        Reads up to the shard's tip (or its end, for a ``closed`` shard), at most ``budget``
        records, and no record that arrived after ``cutoff`` (epoch seconds); or, replaying,
        exactly up to ``until`` (a sequence number or ``SHARD_END``).
        """
        done = ShardRead(self.options.stream_name, shard_id, position)
        if position == SHARD_END:
            return done
        until_seq = int(until) if until is not None and until != SHARD_END else None
        iterator, skip_before = self._shard_iterator(shard_id, position)
        if iterator is None:
            return done
        empty = 0
        while True:
            limit = self.options.max_records_per_fetch
            if budget is not None and until is None:
                limit = max(1, min(limit, budget - done.records))
            page = self.client.get_records(ShardIterator=iterator, Limit=limit)
            records = page.get(RAW_RECORDS, [])
            stop = False
            take = len(records)
            first = 0
            for i, record in enumerate(records):
                if until_seq is not None and int(record["SequenceNumber"]) > until_seq:
                    take, stop = i, True
                    break
                if cutoff is not None and until is None and float(record["ApproximateArrivalTimestamp"]) > cutoff:
                    take, stop = i, True
                    break
                if skip_before is not None:
                    if float(record["ApproximateArrivalTimestamp"]) * 1000 < skip_before:
                        first = i + 1
                        continue
                    skip_before = None
                if until_seq is not None and int(record["SequenceNumber"]) == until_seq:
                    take, stop = i + 1, True
                    break
            if take:
                done.position = records[take - 1]["SequenceNumber"]
                done.add(records[first:take])
            if stop:
                return done
            iterator = page.get("NextShardIterator")
            if iterator is None:  # a closed shard, read to its end
                done.position = SHARD_END
                return done
            at_tip = page.get("MillisBehindLatest", 0) == 0 and not closed
            if until is not None:
                # Replaying: on to the batch's end, however many pages that takes; a tip reached
                # first means the rest of the batch is no longer retained.
                if not records and at_tip:
                    return done
                continue
            if budget is not None and done.records >= budget:
                return done
            if not records:
                empty += 1
                if at_tip or empty > MAX_EMPTY_FETCHES:
                    return done
            elif at_tip and len(records) < limit:
                return done  # at the tip: another page would be empty

    def _shard_iterator(self, shard_id: str, position: str) -> tuple[str | None, float | None]:
        """A shard iterator at ``position``, and the epoch ms before which records are skipped
        (when an AT_TIMESTAMP position is read by scanning from TRIM_HORIZON)."""
        stream = self.options.stream_name
        if position == TRIM_HORIZON:
            return self.client.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"], None
        if position.startswith(AT_TIMESTAMP):
            millis = int(position[len(AT_TIMESTAMP) :])
            if not self._scan_for_timestamps:
                iterator = self._at_timestamp_iterator(shard_id, millis)
                if iterator is not False:
                    return iterator, None
                self._scan_for_timestamps = True
            return self.client.get_shard_iterator(
                StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"], millis
        return self.client.get_shard_iterator(
            StreamName=stream,
            ShardId=shard_id,
            ShardIteratorType="AFTER_SEQUENCE_NUMBER",
            StartingSequenceNumber=position,
        )["ShardIterator"], None

    def _at_timestamp_iterator(self, shard_id: str, millis: int):
        """An AT_TIMESTAMP iterator; None if the timestamp lies ahead of the server's clock
        (nothing to read yet); False if the server did not answer in time."""
        from botocore.exceptions import ClientError, ReadTimeoutError

        if self._at_timestamp_client is None:
            self._at_timestamp_client = self._make_client(max_attempts=1, read_timeout=AT_TIMESTAMP_TIMEOUT_S)
        try:
            return self._at_timestamp_client.get_shard_iterator(
                StreamName=self.options.stream_name,
                ShardId=shard_id,
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=millis / 1000,
            )["ShardIterator"]
        except ReadTimeoutError:
            return False
        except ClientError as exc:
            if (
                exc.response.get("Error", {}).get("Code") == "InvalidArgumentException"
                and "timestamp" in str(exc).lower()
            ):
                return None
            raise


def _parents(shard: dict) -> list[str]:
    return [p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p]


def _is_closed(shard: dict) -> bool:
    return shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber") is not None
