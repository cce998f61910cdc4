"""End-to-end reconciliation of each topic, from the REST proxy to the DataFrame.

Three counts should agree for a topic:

1. acknowledged: the records the REST proxy acknowledged, summed over every materialisation of
   the topic stream asset (``pin_topic``: ``records_sent``) for this topic name;
2. landed: the records in the topic's objects in the bucket (``pin_raw_json``: ``records``);
3. read: the rows of the DataFrame plus the lines it quarantined (``df_pin``:
   ``dagster/row_count`` + ``quarantined_total``).

The counts come from the assets' materialisation metadata in the Dagster instance, so the check
reads no data. Its cost grows with the batches sent since it last ran, not with all of them: each
evaluation records the running tally (and the storage id it counted through), and the next one adds
only the stream materialisations after it. A change of topic (another user id) counts afresh.
"""

from dataclasses import dataclass, field, replace

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from pintrest_assets.topics import TOPICS, TopicSpec

CHECK_NAME = "records_reconciled"
_PAGE = 1000

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
    """What the REST proxy acknowledged for one Kafka topic, summed over the topic stream's
    materialisations up to storage id ``through``."""

    topic: str | None  # None: every topic (nothing has landed yet, so no topic to pick)
    through: int = 0  # storage id of the last stream materialisation counted
    last_batch: int | None = None  # storage id of the last batch sent to the topic
    acknowledged: int = 0
    failed: int = 0  # records the proxy refused (not expected anywhere downstream)
    batches: int = 0  # topic stream materialisations counted
    offset_ranges: dict[str, list[int]] = field(default_factory=dict)  # partition -> [first, last] acknowledged
    batches_read: int = 0  # stream materialisations read by this evaluation to bring the tally up to date

    def add(self, record: dg.EventLogRecord) -> "Tally":
        meta = _metadata(record)
        if self.topic is not None and meta.get("topic") != self.topic:
            return replace(self, through=record.storage_id, batches_read=self.batches_read + 1)
        ranges = dict(self.offset_ranges)
        for partition, (first, last) in (meta.get("offset_ranges") or {}).items():
            low, high = ranges.get(partition, (first, last))
            ranges[partition] = [min(low, first), max(high, last)]
        return replace(
            self,
            through=record.storage_id,
            last_batch=record.storage_id,
            acknowledged=self.acknowledged + int(meta.get("records_sent", 0)),
            failed=self.failed + int(meta.get("records_failed", 0)),
            batches=self.batches + 1,
            offset_ranges=dict(sorted(ranges.items(), key=lambda item: int(item[0]))),
            batches_read=self.batches_read + 1,
        )

    def metadata(self) -> dict:
        """The tally as check metadata: shown in the UI, and where the next evaluation starts."""
        return {
            "topic": self.topic or "",
            "acknowledged": self.acknowledged,
            "failed_at_proxy": self.failed,
            "batches_counted": self.batches,
            "batches_read": self.batches_read,
            "acknowledged_offsets": dg.MetadataValue.json(self.offset_ranges),
            "counted_through_storage_id": self.through,
            "last_batch_storage_id": self.last_batch or 0,
        }

    @classmethod
    def from_metadata(cls, meta: dict) -> "Tally | None":
        """The tally ``metadata`` recorded (plain values); None for an evaluation without one."""
        if "counted_through_storage_id" not in meta:
            return None
        return cls(
            topic=meta["topic"] or None,
            through=int(meta["counted_through_storage_id"]),
            last_batch=int(meta["last_batch_storage_id"]) or None,
            acknowledged=int(meta["acknowledged"]),
            failed=int(meta["failed_at_proxy"]),
            batches=int(meta["batches_counted"]),
            offset_ranges=dict(meta["acknowledged_offsets"]),
        )


@dataclass(frozen=True)
class TopicCounts:
    """One topic's counts at each step, from the latest materialisations."""

    tally: Tally  # for the Kafka topic the bucket holds
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
            **counts.tally.metadata(),
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
    raw = _latest(instance, spec.raw_asset)
    frame = _latest(instance, spec.dataframe)
    raw_meta = _metadata(raw)
    frame_meta = _metadata(frame)
    # The topic the bucket holds now: batches sent to another topic (another user id) are not
    # expected there.
    topic = raw_meta.get("topic")

    tally = _previous_tally(instance, spec)
    if tally is None or tally.topic != topic:
        tally = Tally(topic)
    for record in _materialisations_after(instance, spec.stream_asset, tally.through):
        tally = tally.add(record)

    stale = []
    if tally.last_batch is not None and (raw is None or raw.storage_id < tally.last_batch):
        stale.append(f"{spec.raw_asset} was not refreshed since the last batch sent to the topic")
    if raw is not None and (frame is None or frame.storage_id < raw.storage_id):
        stale.append(f"{spec.dataframe} was not refreshed since {spec.raw_asset} was")
    return TopicCounts(
        tally=tally,
        landed=int(raw_meta["records"]) if "records" in raw_meta else None,
        newest_key=raw_meta.get("newest_key") or None,
        rows=int(frame_meta["dagster/row_count"]) if "dagster/row_count" in frame_meta else None,
        quarantined=int(frame_meta.get("quarantined_total", 0)) if frame is not None else None,
        stale=tuple(stale),
    )


def _previous_tally(instance: dg.DagsterInstance, spec: TopicSpec) -> Tally | None:
    """The tally the check's last completed evaluation recorded, if any."""
    key = dg.AssetCheckKey(dg.AssetKey(spec.dataframe), CHECK_NAME)
    history = instance.event_log_storage.get_asset_check_execution_history(
        key, limit=1, status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    )
    if not history or history[0].event is None or history[0].event.dagster_event is None:
        return None
    evaluation = history[0].event.dagster_event.event_specific_data
    metadata = getattr(evaluation, "metadata", None) or {}
    return Tally.from_metadata({key: value.value for key, value in metadata.items()})


def _latest(instance: dg.DagsterInstance, asset: str) -> dg.EventLogRecord | None:
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


def _metadata(record: dg.EventLogRecord | None) -> dict:
    if record is None or record.asset_materialization is None:
        return {}
    return {key: value.value for key, value in record.asset_materialization.metadata.items()}


def build_reconciliation_check(spec: TopicSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=spec.dataframe, name=CHECK_NAME, description=_HOW_TO_READ)
    def records_reconciled(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return reconciliation_result(count_topic(context.instance, spec), spec)

    return records_reconciled


reconciliation_checks: list[dg.AssetChecksDefinition] = [build_reconciliation_check(spec) for spec in TOPICS]
