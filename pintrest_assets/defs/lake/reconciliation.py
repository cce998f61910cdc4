"""End-to-end reconciliation of each topic, from the REST proxy to the DataFrame.

Three counts should agree for a topic:

1. acknowledged: the records the REST proxy acknowledged, summed over every materialisation of
   the topic stream asset (``pin_topic``: ``records_sent``) for this topic name;
2. landed: the records in the topic's objects in the bucket (``pin_raw_json``: ``records``);
3. read: the rows of the DataFrame plus the lines it quarantined (``df_pin``:
   ``dagster/row_count`` + ``quarantined_total``).

The counts come from the assets' materialisation metadata in the Dagster instance, so the check
reads no data. Its cost grows with the batches sent recently, not with all of them: each evaluation
records a settled tally, the sum of the stream materialisations up to a storage id, and the next
evaluation adds the ones after it. The tally (``Tally``, ``bring_up_to_date``) also serves the
streaming half's check (``defs/stream/checks.py``), which sums the Kinesis stream
materialisations the same way: ``kind`` says whether a batch's destination is a Kafka ``topic``
or a Kinesis ``stream``.

Storage ids are not committed in order on every storage: on PostgreSQL a batch that took id 100
may become visible after id 101. So a batch settles only once it is older than ``SETTLE_SECONDS``
twice over (the time any commit is assumed to take, at most): every id below it was then
committed. Batches newer than that are read again by each evaluation and counted on top of the
settled tally, never into it, so a late commit is counted once, when it appears. A change of
topic (another user id) counts afresh, and so does a wipe of the stream's materialisations.
"""

import time
from dataclasses import dataclass, field, replace

import dagster as dg

from pintrest_assets.topics import TOPICS, TopicSpec

CHECK_NAME = "records_reconciled"
# The longest a materialisation may take from its timestamp to its commit (a single insert:
# milliseconds in practice). Batches settle once twice this old.
SETTLE_SECONDS = 60.0
_PAGE = 1000
_RECENT_EXECUTIONS = 10

_HOW_TO_READ = """\
Every record the REST proxy acknowledged for the topic (summed over all topic stream \
materialisations) must have landed in the bucket (records in the raw JSON objects), and every \
landed record must be a row of the DataFrame or a quarantined line. A mismatch fails with ERROR \
and says at which step and by how much.

How to read a failure: records acknowledged but not landed are normal for a moment, while the \
sink flushes and until the raw JSON asset and the DataFrame are refreshed (the check says when \
one of them is older than the step before it): refresh them and run the check again. A gap that \
stays means lost records. More landed than acknowledged means a request was sent again after \
its answer was lost (delivery is at least once), or the bucket holds objects sent outside this \
Dagster instance's history (for example after the instance was reset but the bucket was not)."""


@dataclass(frozen=True)
class Tally:
    """What the proxy acknowledged for one destination, a Kafka topic or a Kinesis stream (``kind``
    names the metadata entry that holds it: "topic" or "stream"), summed over the emulation
    batches' materialisations up to storage id ``through`` (the settled tally), or over all of them.

    ``offset_ranges`` maps a partition (or shard id) to the first and last offset (or sequence
    number) acknowledged; Kinesis's sequence numbers stay decimal strings, compared as integers.
    """

    topic: str | None  # None: every destination (nothing has been read yet, so none to pick)
    through: int = 0  # storage id of the last stream materialisation counted
    last_batch: int | None = None  # storage id of the last batch sent to the topic
    acknowledged: int = 0
    failed: int = 0  # records the proxy refused (not expected anywhere downstream)
    batches: int = 0  # topic stream materialisations counted
    offset_ranges: dict[str, list[int]] = field(default_factory=dict)  # partition -> [first, last] acknowledged
    batches_read: int = 0  # stream materialisations read by this evaluation to bring the tally up to date
    kind: str = "topic"  # the metadata entry naming a batch's destination: "topic" or "stream"

    def add(self, record: dg.EventLogRecord) -> "Tally":
        meta = materialisation_metadata(record)
        if self.topic is not None and meta.get(self.kind) != self.topic:
            return replace(self, through=record.storage_id, batches_read=self.batches_read + 1)
        ranges = dict(self.offset_ranges)
        for partition, (first, last) in (meta.get("offset_ranges") or {}).items():
            low, high = ranges.get(partition, (first, last))
            ranges[partition] = [min(low, first, key=int), max(high, last, key=int)]
        return replace(
            self,
            through=record.storage_id,
            last_batch=record.storage_id,
            acknowledged=self.acknowledged + int(meta.get("records_sent", 0)),
            failed=self.failed + int(meta.get("records_failed", 0)),
            batches=self.batches + 1,
            offset_ranges=dict(sorted(ranges.items(), key=lambda item: _position_order(item[0]))),
            batches_read=self.batches_read + 1,
        )

    def metadata(self, settled: "Tally") -> dict:
        """The tally as check metadata, shown in the UI, with the ``settled`` tally the next
        evaluation starts from."""
        return {
            self.kind: self.topic or "",
            "acknowledged": self.acknowledged,
            "failed_at_proxy": self.failed,
            "batches_counted": self.batches,
            "batches_read": self.batches_read,
            "acknowledged_offsets": dg.MetadataValue.json(self.offset_ranges),
            "last_batch_storage_id": self.last_batch or 0,
            "settled": dg.MetadataValue.json(
                {
                    "through_storage_id": settled.through,
                    "last_batch_storage_id": settled.last_batch or 0,
                    "acknowledged": settled.acknowledged,
                    "failed": settled.failed,
                    "batches": settled.batches,
                    "offset_ranges": settled.offset_ranges,
                }
            ),
        }

    @classmethod
    def from_metadata(cls, meta: dict, kind: str = "topic") -> "Tally | None":
        """The settled tally ``metadata`` recorded (plain values); None for an evaluation without one."""
        settled = meta.get("settled")
        if not isinstance(settled, dict) or kind not in meta:
            return None
        return cls(
            kind=kind,
            topic=meta[kind] or None,
            through=int(settled["through_storage_id"]),
            last_batch=int(settled["last_batch_storage_id"]) or None,
            acknowledged=int(settled["acknowledged"]),
            failed=int(settled["failed"]),
            batches=int(settled["batches"]),
            offset_ranges=dict(settled["offset_ranges"]),
        )


@dataclass(frozen=True)
class TopicCounts:
    """One topic's counts at each step, from the latest materialisations."""

    tally: Tally  # for the Kafka topic the bucket holds
    settled: Tally  # the part of ``tally`` the next evaluation starts from
    landed: int | None = None  # None: the raw JSON asset was never materialised
    newest_key: str | None = None
    rows: int | None = None  # None: the DataFrame was never materialised
    quarantined: int | None = None
    stale: tuple[str, ...] = ()  # steps older than the step before them

    @property
    def topic(self) -> str | None:
        """The Kafka topic the bucket holds, e.g. "u.pin" (None: nothing landed yet)."""
        return self.tally.topic

    @property
    def acknowledged(self) -> int:
        return self.tally.acknowledged

    @property
    def read(self) -> int | None:
        return None if self.rows is None else self.rows + (self.quarantined or 0)


def mismatches(counts: TopicCounts, spec: TopicSpec) -> list[str]:
    """Each step where the counts disagree, saying by how much and where."""
    where = f"topic {counts.topic or spec.name}"
    landed, read = counts.landed or 0, counts.read or 0
    problems = []
    if counts.acknowledged != landed:
        problems.append(
            f"REST proxy -> bucket ({where}): {counts.acknowledged} records acknowledged, {landed} landed in "
            f"{spec.raw_asset}: {_gap(counts.acknowledged - landed, 'not landed', 'more than acknowledged')} "
            f"({_positions(counts)})"
        )
    if landed != read:
        problems.append(
            f"bucket -> DataFrame ({where}): {landed} records landed, {spec.dataframe} holds {counts.rows or 0} rows "
            f"+ {counts.quarantined or 0} quarantined = {read}: {_gap(landed - read, 'not read', 'more than landed')}"
        )
    return problems


def _gap(gap: int, short: str, surplus: str) -> str:
    return f"{gap} {short}" if gap > 0 else f"{-gap} {surplus}"


def _positions(counts: TopicCounts) -> str:
    """Where in the topic the acknowledged records are, and how far the bucket's objects go."""
    ranges = ", ".join(f"partition {p}: {first}-{last}" for p, (first, last) in counts.tally.offset_ranges.items())
    text = f"acknowledged offsets {ranges}" if ranges else "no offsets acknowledged"
    return text + (f"; newest object {counts.newest_key}" if counts.newest_key else "")


def reconciliation_result(counts: TopicCounts, spec: TopicSpec) -> dg.AssetCheckResult:
    problems = mismatches(counts, spec)
    notes = [f"{step} (a mismatch may be transient: refresh and check again)" for step in counts.stale]
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="\n".join(problems + notes) or None,
        metadata={
            **counts.tally.metadata(counts.settled),
            "landed": counts.landed if counts.landed is not None else 0,
            "rows": counts.rows if counts.rows is not None else 0,
            "quarantined": counts.quarantined or 0,
            "not_landed": counts.acknowledged - (counts.landed or 0),
            "not_read": (counts.landed or 0) - (counts.read or 0),
        },
    )


def count_topic(instance: dg.DagsterInstance, spec: TopicSpec) -> TopicCounts:
    """The topic's counts from the latest raw JSON and DataFrame materialisations, and the stream's
    materialisations for the same Kafka topic (those after the last evaluation's tally)."""
    raw = latest_materialisation(instance, spec.raw_asset)
    frame = latest_materialisation(instance, spec.dataframe)
    raw_meta = materialisation_metadata(raw)
    frame_meta = materialisation_metadata(frame)
    # The topic the bucket holds now: batches sent to another topic (another user id) are not
    # expected there.
    topic = raw_meta.get("topic")

    check = dg.AssetCheckKey(dg.AssetKey(spec.dataframe), CHECK_NAME)
    tally, settled = bring_up_to_date(instance, spec.topic_asset, check, topic)

    stale = []
    if tally.last_batch is not None and (raw is None or raw.storage_id < tally.last_batch):
        stale.append(f"{spec.raw_asset} was not refreshed since the last batch sent to the topic")
    if raw is not None and (frame is None or frame.storage_id < raw.storage_id):
        stale.append(f"{spec.dataframe} was not refreshed since {spec.raw_asset} was")
    return TopicCounts(
        tally=tally,
        settled=settled,
        landed=int(raw_meta["records"]) if "records" in raw_meta else None,
        newest_key=raw_meta.get("newest_key") or None,
        rows=int(frame_meta["dagster/row_count"]) if "dagster/row_count" in frame_meta else None,
        quarantined=int(frame_meta.get("quarantined_total", 0)) if frame is not None else None,
        stale=tuple(stale),
    )


def bring_up_to_date(
    instance: dg.DagsterInstance,
    topic_asset: str,
    check: dg.AssetCheckKey,
    topic: str | None,
    kind: str = "topic",
) -> tuple[Tally, Tally]:
    """What the proxy acknowledged for ``topic`` (a Kafka topic, or a Kinesis stream with
    ``kind="stream"``) over every materialisation of ``topic_asset``, and the settled part of it
    for ``check``'s next evaluation to start from.

    Starts from the settled tally ``check``'s last evaluation recorded, unless the destination
    changed or the stream's materialisations were wiped since, and reads only the
    materialisations after it; those older than twice ``SETTLE_SECONDS`` settle.
    """
    settled = _previous_tally(instance, check, kind)
    if settled is None or settled.topic != topic or _wiped(instance, topic_asset, settled.through):
        settled = Tally(topic, kind=kind)
    records = list(_materialisations_after(instance, topic_asset, settled.through))
    cutoff = time.time() - 2 * SETTLE_SECONDS
    settle_through = max((r.storage_id for r in records if r.timestamp <= cutoff), default=settled.through)
    tally = settled
    for record in records:
        tally = tally.add(record)
        if record.storage_id <= settle_through:
            settled = settled.add(record)
    return tally, replace(settled, batches_read=0)


def _previous_tally(instance: dg.DagsterInstance, check: dg.AssetCheckKey, kind: str) -> Tally | None:
    """The settled tally the check's last completed evaluation recorded, if any."""
    # The newest executions may still be running (planned, without an evaluation): this one's own,
    # at least. The instance's public get_latest_asset_check_evaluation_record returns only the
    # newest, so the history comes from its event log storage.
    for execution in instance.event_log_storage.get_asset_check_execution_history(check, limit=_RECENT_EXECUTIONS):
        evaluation = execution.event.dagster_event.event_specific_data if execution.event else None
        if isinstance(evaluation, dg.AssetCheckEvaluation):
            return Tally.from_metadata({name: value.value for name, value in evaluation.metadata.items()}, kind)
    return None


def _position_order(partition: str) -> tuple[int, str]:
    """Kafka partitions ("0", "1", ..., "10") in numeric order, Kinesis shard ids in theirs."""
    return len(partition), partition


def _wiped(instance: dg.DagsterInstance, asset: str, storage_id: int) -> bool:
    """Whether the materialisation a settled tally counted through is gone (the asset was wiped)."""
    if not storage_id:
        return False
    records_filter = dg.AssetRecordsFilter(dg.AssetKey(asset), storage_ids=[storage_id])
    return not instance.fetch_materializations(records_filter, limit=1).records


def latest_materialisation(instance: dg.DagsterInstance, asset: str) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
    return records[0] if records else None


def _materialisations_after(instance: dg.DagsterInstance, asset: str, storage_id: int):
    records_filter = dg.AssetRecordsFilter(dg.AssetKey(asset), after_storage_id=storage_id or None)
    cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=_PAGE, cursor=cursor, ascending=True)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def materialisation_metadata(record: dg.EventLogRecord | None) -> dict:
    if record is None or record.asset_materialization is None:
        return {}
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def build_reconciliation_check(spec: TopicSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=spec.dataframe, name=CHECK_NAME, description=_HOW_TO_READ)
    def records_reconciled(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return reconciliation_result(count_topic(context.instance, spec), spec)

    return records_reconciled


reconciliation_checks: list[dg.AssetChecksDefinition] = [build_reconciliation_check(spec) for spec in TOPICS]
