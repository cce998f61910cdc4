"""The reconciliation check on a PostgreSQL-backed instance, where storage ids commit out of order.

A trigger holds back the insert of one stream batch after PostgreSQL gave it its id, while a later
batch (a higher id) commits: the case the settle window is for.
"""

import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from pintrest_assets.defs.lake import reconciliation
from pintrest_assets_tests.lake.helpers import PIN, batch, evaluate, landed, read

HELD_BACK = "held-back"
_LOCK = 4242

_TRIGGER = f"""
CREATE FUNCTION hold_back() RETURNS trigger AS $$
BEGIN
    IF NEW.event LIKE '%{HELD_BACK}%' THEN
        PERFORM pg_advisory_xact_lock({_LOCK});
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER hold_back BEFORE INSERT ON event_logs FOR EACH ROW EXECUTE FUNCTION hold_back();
"""


@pytest.fixture
def pg_instance(postgres_url, tmp_path):
    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": postgres_url}}, "telemetry": {"enabled": False}})
    )
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text(_TRIGGER))
        yield instance, engine
        engine.dispose()


def late_batch(instance, engine, sent, offsets):
    """Records a stream batch whose id is taken now and whose commit waits until ``release()``."""
    holder = engine.connect()
    holder.execute(sa.text(f"SELECT pg_advisory_lock({_LOCK})"))
    writer = threading.Thread(
        target=lambda: instance.report_runless_asset_event(
            dg.AssetMaterialization(
                PIN.topic_asset,
                description=HELD_BACK,
                metadata={"topic": "u.pin", "records_sent": sent, "records_failed": 0, "offset_ranges": offsets},
            )
        )
    )
    writer.start()
    # Wait until the insert has its id and waits on the lock.
    with engine.connect() as conn:
        deadline = time.monotonic() + 30
        while not conn.execute(
            sa.text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        ).scalar():
            assert time.monotonic() < deadline, "the held-back insert never waited"
            time.sleep(0.05)

    def release():
        holder.execute(sa.text(f"SELECT pg_advisory_unlock({_LOCK})"))
        holder.close()
        writer.join(30)

    return release


def ids(instance):
    records = instance.fetch_materializations(dg.AssetKey(PIN.topic_asset), limit=10, ascending=True).records
    return [(r.storage_id, r.asset_materialization.description) for r in records]


def test_a_batch_committed_after_a_later_one_is_counted_once(pg_instance):
    instance, engine = pg_instance
    release = late_batch(instance, engine, 10, {"0": [0, 9]})
    batch(instance, 20, {"0": [10, 29]})  # a higher id, committed first
    landed(instance, 30)
    read(instance, rows=30, quarantined=0)
    evaluation, metadata = evaluate(instance)
    assert metadata["acknowledged"] == 20 and not evaluation.passed  # the late batch is not visible yet

    release()
    [(late_id, late), (early_id, _)] = ids(instance)
    assert late == HELD_BACK and late_id < early_id  # out of order: the lower id committed last
    evaluation, metadata = evaluate(instance)
    assert evaluation.passed, evaluation.description
    assert (metadata["acknowledged"], metadata["batches_counted"]) == (30, 2)


def test_without_the_settle_window_the_late_batch_would_be_missed(pg_instance, monkeypatch):
    """The same sequence with batches settling at once: the tally moves past the late batch's id."""
    monkeypatch.setattr(reconciliation, "SETTLE_SECONDS", 0.0)
    instance, engine = pg_instance
    release = late_batch(instance, engine, 10, {"0": [0, 9]})
    batch(instance, 20, {"0": [10, 29]})
    landed(instance, 30)
    read(instance, rows=30, quarantined=0)
    evaluate(instance)
    release()
    evaluation, metadata = evaluate(instance)
    assert metadata["acknowledged"] == 20 and not evaluation.passed
