"""The end-to-end reconciliation check, on materialisations recorded in a Dagster instance."""

import time

import dagster as dg
import pytest

from pintrest_assets.defs.lake import reconciliation
from pintrest_assets.defs.lake.reconciliation import (
    CHECK_NAME,
    count_topic,
    reconciliation_result,
)
from pintrest_assets_tests.lake.helpers import PIN, batch, evaluate, landed, read

@pytest.fixture
def instance():
    return dg.DagsterInstance.ephemeral()


@pytest.fixture
def settle_at_once(monkeypatch):
    """Batches settle as soon as they are recorded, as if every commit were instant."""
    monkeypatch.setattr(reconciliation, "SETTLE_SECONDS", 0.0)


def later(monkeypatch, seconds):
    """The check's clock moved ``seconds`` ahead."""
    now = time.time() + seconds
    monkeypatch.setattr(reconciliation.time, "time", lambda: now)


def check(instance):
    return reconciliation_result(count_topic(instance, PIN), PIN)


def test_every_acknowledged_record_landed_and_was_read(instance):
    batch(instance, 30, {"0": [0, 29]})
    batch(instance, 20, {"0": [30, 49]}, failed=3)
    batch(instance, 100, {"0": [0, 99]}, topic="other.pin")  # another user id's topic: not this bucket's
    landed(instance, 50)
    read(instance, rows=48, quarantined=2)
    result = check(instance)
    assert result.passed, result.description
    metadata = {k: v.value for k, v in result.metadata.items()}
    assert {k: metadata[k] for k in ("topic", "acknowledged", "landed", "rows", "quarantined", "failed_at_proxy")} == {
        "topic": "u.pin",
        "acknowledged": 50,
        "landed": 50,
        "rows": 48,
        "quarantined": 2,
        "failed_at_proxy": 3,
    }
    assert metadata["acknowledged_offsets"] == {"0": [0, 49]}


def test_records_not_landed_fail_with_how_many_and_where(instance):
    batch(instance, 30, {"0": [0, 29]})
    landed(instance, 30, newest_key="topics/u.pin/partition=0/u.pin+0+0000000029.json")
    read(instance, rows=30, quarantined=0)
    batch(instance, 20, {"0": [30, 39], "1": [0, 9]})  # sent after the bucket was last mounted
    result = check(instance)
    assert not result.passed
    assert result.severity == dg.AssetCheckSeverity.ERROR
    assert result.description.splitlines() == [
        "REST proxy -> bucket (topic u.pin): 50 records acknowledged, 30 landed in pin_raw_json: 20 not landed "
        "(acknowledged offsets partition 0: 0-39, partition 1: 0-9; "
        "newest object topics/u.pin/partition=0/u.pin+0+0000000029.json)",
        "pin_raw_json was not refreshed since the last batch sent to the topic "
        "(a mismatch may be transient: refresh and check again)",
    ]
    assert result.metadata["not_landed"].value == 20


def test_more_landed_than_acknowledged_fails(instance):
    batch(instance, 50, {"0": [0, 50]})  # a resent request: offset 17 and 18 hold the same record
    landed(instance, 51)
    read(instance, rows=51, quarantined=0)
    result = check(instance)
    assert not result.passed
    assert "50 records acknowledged, 51 landed in pin_raw_json: 1 more than acknowledged" in result.description


def test_landed_records_not_read_fail_and_a_stale_dataframe_is_pointed_out(instance):
    batch(instance, 50, {"0": [0, 49]})
    read(instance, rows=40, quarantined=2)
    landed(instance, 50)
    result = check(instance)
    assert not result.passed
    assert result.description.splitlines() == [
        "bucket -> DataFrame (topic u.pin): 50 records landed, df_pin holds 40 rows + 2 quarantined = 42: 8 not read",
        "df_pin was not refreshed since pin_raw_json was (a mismatch may be transient: refresh and check again)",
    ]
    assert result.metadata["not_read"].value == 8


def test_nothing_sent_nothing_landed_passes(instance):
    assert check(instance).passed


def test_the_check_reads_the_run_instance(instance):
    batch(instance, 10, {"0": [0, 9]})
    landed(instance, 10)
    read(instance, rows=9, quarantined=0)
    evaluation, _ = evaluate(instance)
    assert (evaluation.asset_key, evaluation.check_name, evaluation.passed) == (
        dg.AssetKey(PIN.dataframe),
        CHECK_NAME,
        False,
    )
    assert "1 not read" in evaluation.description


def test_each_evaluation_reads_only_the_batches_since_the_last(instance, settle_at_once):
    for first in range(0, 50, 10):
        batch(instance, 10, {"0": [first, first + 9]})
    landed(instance, 50)
    read(instance, rows=50, quarantined=0)
    evaluation, metadata = evaluate(instance)
    assert evaluation.passed
    assert (metadata["acknowledged"], metadata["batches_counted"], metadata["batches_read"]) == (50, 5, 5)

    batch(instance, 10, {"0": [50, 59]}, failed=1)
    batch(instance, 7, {"0": [0, 6]}, topic="other.pin")  # read, not counted
    landed(instance, 60)
    read(instance, rows=59, quarantined=1)
    evaluation, metadata = evaluate(instance)
    assert evaluation.passed, evaluation.description
    assert (metadata["acknowledged"], metadata["batches_counted"], metadata["batches_read"]) == (60, 6, 2)
    assert (metadata["failed_at_proxy"], metadata["acknowledged_offsets"]) == (1, {"0": [0, 59]})

    evaluation, metadata = evaluate(instance)  # nothing new: nothing read, the same answer
    assert (evaluation.passed, metadata["acknowledged"], metadata["batches_read"]) == (True, 60, 0)

    batch(instance, 5, {"0": [60, 64]})  # sent, not yet landed: the tally still says so
    evaluation, metadata = evaluate(instance)
    assert not evaluation.passed
    assert "65 records acknowledged, 60 landed" in evaluation.description
    assert "pin_raw_json was not refreshed since the last batch" in evaluation.description


def test_a_new_topic_is_counted_afresh(instance, settle_at_once):
    batch(instance, 10, {"0": [0, 9]})
    landed(instance, 10)
    read(instance, rows=10, quarantined=0)
    assert evaluate(instance)[0].passed

    batch(instance, 4, {"0": [0, 3]}, topic="v.pin")  # the user id changed; the bucket now holds v.pin
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PIN.raw_asset, metadata={"topic": "v.pin", "records": 4, "newest_key": "k"})
    )
    read(instance, rows=4, quarantined=0)
    evaluation, metadata = evaluate(instance)
    assert evaluation.passed, evaluation.description
    assert (metadata["topic"], metadata["acknowledged"], metadata["batches_counted"], metadata["batches_read"]) == (
        "v.pin",
        4,
        1,
        2,
    )


def test_recent_batches_are_read_again_until_they_settle_and_counted_once(instance, monkeypatch):
    batch(instance, 10, {"0": [0, 9]})
    landed(instance, 10)
    read(instance, rows=10, quarantined=0)
    for _ in range(2):  # within the settle window: read again, counted once
        evaluation, metadata = evaluate(instance)
        assert evaluation.passed, evaluation.description
        assert (metadata["acknowledged"], metadata["batches_read"], metadata["settled"]["batches"]) == (10, 1, 0)

    later(monkeypatch, 3 * reconciliation.SETTLE_SECONDS)
    evaluation, metadata = evaluate(instance)  # settles now
    assert (metadata["acknowledged"], metadata["batches_read"], metadata["settled"]["batches"]) == (10, 1, 1)
    batch(instance, 5, {"0": [10, 14]})
    landed(instance, 15)
    read(instance, rows=15, quarantined=0)
    evaluation, metadata = evaluate(instance)  # only the new batch is read
    assert evaluation.passed, evaluation.description
    assert (metadata["acknowledged"], metadata["batches_read"], metadata["batches_counted"]) == (15, 1, 2)


def test_wiping_the_stream_resets_what_the_check_expects(instance, settle_at_once):
    batch(instance, 10, {"0": [0, 9]})
    landed(instance, 10)
    read(instance, rows=10, quarantined=0)
    assert evaluate(instance)[1]["settled"]["acknowledged"] == 10

    instance.wipe_assets([dg.AssetKey(PIN.topic_asset)])
    batch(instance, 3, {"0": [10, 12]})
    evaluation, metadata = evaluate(instance)
    assert (metadata["acknowledged"], metadata["batches_counted"]) == (3, 1)
    # The bucket still holds the records sent before the wipe: the check says so.
    assert "10 landed in pin_raw_json: 7 more than acknowledged" in evaluation.description
