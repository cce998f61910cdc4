"""Reconciliation cost: a check evaluation after a few new batches, with a short and a long history.

The records_reconciled check sums the records the REST proxy acknowledged over the topic stream's
materialisations. Each evaluation keeps a running tally, so the next one reads only the batches
sent since. Here a file-backed Dagster instance (SQLite, as the project's own) holds H emulation
batches of the pin topic; the check is evaluated once (the first evaluation reads them all), then
10 new batches are recorded and the check is evaluated again. The time of that second evaluation
should be about the same with H = 1,000 and H = 5,000; the first evaluation is the cost of
counting the whole history, which every evaluation paid before the tally.

Recording the history takes most of the time (about 25 ms per batch). The history is recorded
seconds before it is counted, so every batch would still be within the check's settle window (the
batches of the last two minutes, read again by each evaluation in case one committed late); the
benchmark sets the window to 0 to measure the tally itself.

Usage: python benchmarks/reconciliation.py [--histories 1000,5000] [--new 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import dagster as dg

from pintrest_assets.defs.lake import reconciliation
from pintrest_assets.defs.lake.reconciliation import build_reconciliation_check
from pintrest_assets.topics import TOPICS_BY_NAME

PIN = TOPICS_BY_NAME["pin"]
TOPIC = "bench.pin"
reconciliation.SETTLE_SECONDS = 0.0


def record_batches(instance: dg.DagsterInstance, first_offset: int, batches: int, size: int = 100) -> int:
    for _ in range(batches):
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                PIN.topic_asset,
                metadata={
                    "topic": TOPIC,
                    "records_sent": size,
                    "records_failed": 0,
                    "offset_ranges": dg.MetadataValue.json({"0": [first_offset, first_offset + size - 1]}),
                },
            )
        )
        first_offset += size
    return first_offset


def downstream_counts(instance: dg.DagsterInstance, records: int) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PIN.raw_asset, metadata={"topic": TOPIC, "records": records, "newest_key": ""})
    )
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PIN.dataframe, metadata={"dagster/row_count": records, "quarantined_total": 0})
    )


def evaluate(instance: dg.DagsterInstance) -> tuple[float, dict]:
    started = time.perf_counter()
    result = dg.materialize(
        [dg.AssetSpec(PIN.dataframe), build_reconciliation_check(PIN)],
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(PIN.dataframe),
    )
    seconds = time.perf_counter() - started
    [evaluation] = result.get_asset_check_evaluations()
    assert evaluation.passed, evaluation.description
    return seconds, {key: value.value for key, value in evaluation.metadata.items()}


def measure(history: int, new: int, repeats: int) -> dict:
    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        offset = record_batches(instance, 0, history)
        downstream_counts(instance, offset)
        first, meta = evaluate(instance)
        assert meta["batches_read"] == history
        later = []
        for _ in range(repeats):
            offset = record_batches(instance, offset, new)
            downstream_counts(instance, offset)
            seconds, meta = evaluate(instance)
            assert (meta["batches_read"], meta["acknowledged"]) == (new, offset)
            later.append(seconds)
        return {"history": history, "first": first, "after_new": statistics.median(later)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--histories", default="1000,5000")
    parser.add_argument("--new", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    measure(10, 1, 1)  # warm-up: imports and the executor's first run
    rows = [measure(int(h), args.new, args.repeats) for h in args.histories.split(",")]

    print(f"records_reconciled, {args.new} new batches per evaluation (median of {args.repeats})")
    print(f"{'batches in history':>20} {'first evaluation (all)':>24} {'after new batches':>19} {'first / after':>14}")
    for row in rows:
        print(
            f"{row['history']:>20,} {row['first']:>23.2f}s {row['after_new']:>18.2f}s "
            f"{row['first'] / row['after_new']:>13.1f}x"
        )
    if len(rows) > 1:
        print(f"after new batches, longest / shortest history: {rows[-1]['after_new'] / rows[0]['after_new']:.2f}x")


if __name__ == "__main__":
    main()
