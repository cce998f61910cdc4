"""The commands as a user runs them: separate processes, configured by the environment."""

import os
import re
import signal
import subprocess
import sys
import time
import uuid

import dagster as dg
import pytest

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.commands.emulate import FOREVER_RATE
from pintrest_assets.defs.lake.reconciliation import (
    CHECK_NAME,
    TopicCounts,
    bring_up_to_date,
    materialisation_metadata,
    mismatches,
)
from pintrest_assets.defs.stream.checks import check_key, stream_mismatches
from pintrest_assets.gateway import Gateway
from pintrest_assets.emulation.landing import LandingWatcher
from pintrest_assets.kinesis.streams import ensure_streams, kinesis_client
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.helpers import read_stream


def pintrest(*args, env, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "pintrest_assets.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


@pytest.fixture
def env(tmp_path, seeded_db_url, gateway):
    return {
        **os.environ,
        "PINTREST_HOME": str(tmp_path / "home"),
        "PINTREST_DB_URL": seeded_db_url,
        "PINTREST_REST_PROXY_URL": gateway.url,
        "PINTREST_USER_ID": "tester",
    }


def test_emulate_forever_sends_a_steady_stream_unless_told_a_rate(env, gateway):
    def acknowledged() -> int:
        return gateway.status()["topics"].get("tester.pin", {}).get("next_offset", 0)

    process = pintrest("emulate", "--forever", env=env)
    deadline = time.monotonic() + 60
    while acknowledged() < 1:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    # The rate while it runs, as the gateway counts it: its start and its shutdown are not counted.
    first, started = acknowledged(), time.monotonic()
    time.sleep(5)
    assert process.poll() is None, process.communicate()
    sent, seconds = acknowledged() - first, time.monotonic() - started
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "Traceback" not in err, err
    posts = int(re.search(r"interrupted after (\d+) posts", out).group(1))
    assert posts >= sent
    # FOREVER_RATE posts a second, not as many as the gateway takes (thousands a second); the
    # lower bound only says it keeps sending, even on a busy machine.
    assert FOREVER_RATE * seconds / 4 <= sent <= FOREVER_RATE * (seconds + 2), (sent, seconds)


def test_emulate_forever_stops_cleanly_on_ctrl_c_and_reports_what_was_sent(env, gateway, tmp_path):
    process = pintrest("emulate", "--forever", "--rate", "400", env=env)
    deadline = time.monotonic() + 60
    while gateway.status()["topics"].get("tester.pin", {}).get("next_offset", 0) < 300:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    match = re.search(
        r"interrupted after (\d+) posts .* tester\.pin: (\d+) sent, tester\.geo: (\d+) sent, tester\.user: (\d+) sent",
        out,
    )
    assert match, out
    posts, *sent = map(int, match.groups())
    assert sent == [posts] * 3 and posts >= 300

    gateway.shutdown()
    for topic, n in zip(("tester.pin", "tester.geo", "tester.user"), sent):
        assert LandingWatcher(gateway.bucket, topic).landed(0, 10**9) == n  # acknowledged = landed

    # The batch is in the project's Dagster instance, as a materialisation of each stream.
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("pin_topic"))
        assert event.asset_materialization.metadata["records_sent"].value == posts


def test_emulate_names_an_unreachable_setting(env):
    env["PINTREST_REST_PROXY_URL"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    _, err = pintrest("emulate", "--posts", "5", env=env).communicate(timeout=60)
    assert "PINTREST_REST_PROXY_URL: cannot reach http://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_emulate_names_a_missing_database(env, tmp_path):
    env["PINTREST_DB_URL"] = f"sqlite:///{tmp_path / 'nothing.db'}"
    process = pintrest("emulate", "--posts", "5", env=env)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert err.startswith("pintrest emulate: PINTREST_DB_URL: ") and "pintrest seed" in err


def test_emulate_sends_and_records_the_batch_without_loading_spark(env, gateway, tmp_path):
    # In one process, as the console script runs it: what the command imports is what it costs.
    script = (
        "import sys\n"
        "from pintrest_assets.cli import main\n"
        "code = main(['emulate', '--posts', '20'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'pyspark', 'dagster_aws', 'dagster_pyspark', 'boto3'})\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pintrest_assets.defs'))\n"
        "print('heavy', heavy, 'defs', loaded)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "sent 20 posts" in done.stdout and "tester.pin: 20 sent" in done.stdout
    assert "heavy [] defs []" in done.stdout
    assert done.stderr == ""  # no progress bar off a terminal, no warnings
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("user_topic"))
        assert event.asset_materialization.metadata["records_sent"].value == 20


def test_emulate_takes_posts_or_forever_not_both(env):
    process = pintrest("emulate", "--posts", "5", "--forever", env=env)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--posts and --forever exclude each other" in err and "Traceback" not in err


# -- what is recorded while the emulator runs ------------------------------------------------------

SUMMARY = re.compile(r"(sent|interrupted after) (\d+) posts .*\. (.*)$", re.MULTILINE)


def summary(out: str) -> tuple[int, dict[str, int]]:
    """The posts and each topic's (or stream's) records sent, as the summary line says."""
    match = SUMMARY.search(out)
    assert match, out
    sent = {name: int(n) for name, n in re.findall(r"([\w.-]+): (\d+) sent", match.group(3))}
    return int(match.group(2)), sent


def recorded(home, asset: str) -> list[dg.EventLogRecord]:
    """Every materialisation of ``asset`` in the project's instance, oldest first."""
    if not (home / "dagster" / "dagster.yaml").exists():
        return []  # no instance yet
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return list(instance.fetch_materializations(dg.AssetKey(asset), limit=1000, ascending=True).records)


def recorded_batches(home, asset: str) -> list[dict]:
    return [materialisation_metadata(record) for record in recorded(home, asset)]


def tally(home, asset: str, check: dg.AssetCheckKey, destination: str, kind: str = "topic"):
    """What the reconciliation counts as acknowledged for ``destination``."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return bring_up_to_date(instance, asset, check, destination, kind=kind)[0]


def wait_for_records(home, assets: list[str], count: int, process, timeout: float = 60) -> None:
    """Waits until each of ``assets`` has ``count`` materialisations, ``process`` still running."""
    deadline = time.monotonic() + timeout
    while not all(len(recorded(home, asset)) >= count for asset in assets):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the emulator recorded nothing while it ran"
        time.sleep(0.2)


def wait_until_sending(gateway, process, topic: str = "tester.pin", timeout: float = 60) -> None:
    """Waits until the gateway has acknowledged records (the emulator has opened its instance by then)."""
    deadline = time.monotonic() + timeout
    while gateway.status()["topics"].get(topic, {}).get("next_offset", 0) == 0:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)


def assert_consecutive_offsets(batches: list[dict]) -> None:
    """Each Kafka batch's offset range is its own records' (offsets of one partition are
    consecutive), and each batch starts where the one before ended."""
    last = {}
    for batch in batches:
        ranges = batch["offset_ranges"]
        assert sum(high - low + 1 for low, high in ranges.values()) == batch["records_sent"], batches
        for partition, (low, high) in ranges.items():
            assert low == last.get(partition, low - 1) + 1, batches
            last[partition] = high


def test_emulate_records_what_was_acknowledged_as_it_goes(env, gateway, tmp_path):
    home = tmp_path / "home"
    process = pintrest("emulate", "--forever", "--rate", "1000", "--record-every", "0.3", env=env)
    wait_until_sending(gateway, process)
    # Several records of each stream while it runs, not one at the end.
    wait_for_records(home, [spec.topic_asset for spec in TOPICS], 2, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    posts, sent = summary(out)
    gateway.shutdown()  # lands the partial last objects

    for spec in TOPICS:
        topic = f"tester.{spec.name}"
        batches = recorded_batches(home, spec.topic_asset)
        assert len(batches) >= 2  # those seen while it ran, and any left at Ctrl-C
        assert sum(b["records_sent"] for b in batches) == sent[topic] == posts
        assert sum(b["posts_drawn"] for b in batches) == posts
        assert all(b["topic"] == topic and b["records_sent"] > 0 for b in batches)
        assert_consecutive_offsets(batches)

        # The reconciliation counts each record once, and finds every one of them landed.
        acknowledged = tally(home, spec.topic_asset, dg.AssetCheckKey(dg.AssetKey(spec.dataframe), CHECK_NAME), topic)
        assert (acknowledged.acknowledged, acknowledged.batches) == (posts, len(batches))
        assert acknowledged.offset_ranges == {"0": [0, posts - 1]}
        landed = LandingWatcher(gateway.bucket, topic).landed(0, 10**9)
        counts = TopicCounts(tally=acknowledged, settled=acknowledged, landed=landed, rows=landed, quarantined=0)
        assert mismatches(counts, spec) == []


def test_emulate_stopped_by_an_error_records_what_was_acknowledged(env, gateway, tmp_path):
    home = tmp_path / "home"
    process = pintrest("emulate", "--forever", "--rate", "1000", "--record-every", "0.3", env=env)
    wait_until_sending(gateway, process)
    wait_for_records(home, [spec.topic_asset for spec in TOPICS], 1, process)
    gateway.shutdown()  # the next requests fail until the retries run out
    out, err = process.communicate(timeout=120)
    assert process.returncode == 1, err
    assert "pintrest emulate: stopped early: " in err and "Traceback" not in err
    _, sent = summary(out)
    for spec in TOPICS:
        batches = recorded_batches(home, spec.topic_asset)
        assert len(batches) >= 2
        assert sum(b["records_sent"] for b in batches) == sent[f"tester.{spec.name}"] > 0
        assert_consecutive_offsets(batches)


def test_a_killed_emulator_leaves_what_it_recorded_before(env, gateway, tmp_path):
    home = tmp_path / "home"
    process = pintrest("emulate", "--forever", "--rate", "1000", "--record-every", "0.3", env=env)
    wait_until_sending(gateway, process)
    wait_for_records(home, [spec.topic_asset for spec in TOPICS], 2, process)
    process.kill()  # SIGKILL: nothing runs after it
    process.communicate(timeout=30)
    for spec in TOPICS:
        batches = recorded_batches(home, spec.topic_asset)
        assert len(batches) >= 2
        recorded_sent = sum(b["records_sent"] for b in batches)
        acknowledged = gateway.status()["topics"][f"tester.{spec.name}"]["next_offset"]
        # Every record counted was acknowledged; those of the last moments before the kill are not counted.
        assert 0 < recorded_sent <= acknowledged
        assert_consecutive_offsets(batches)


@pytest.fixture
def stream_user(kinesis) -> str:
    """A user id of its own, with its three streams (two shards each) on the session's kinesalite."""
    user = f"t{uuid.uuid4().hex[:10]}"
    ensure_streams(kinesis, user, shard_count=2, timeout=60)
    return user


@pytest.fixture
def kinesis_gateway(tmp_path, kinesalite):
    """The local gateway with its Kinesis-proxy routes in front of the session's kinesalite."""
    client = kinesis_client(kinesalite.endpoint_url, "us-east-1", max_attempts=1, read_timeout=29)
    with Gateway(LocalBucket(tmp_path / "kbucket"), tmp_path / "kstate", port=0, fsync=False, kinesis=client) as gw:
        yield gw


@pytest.mark.kinesis
def test_emulate_stream_records_what_was_acknowledged_as_it_goes(
    env,
    kinesis_gateway,
    stream_user,
    kinesis,
    tmp_path,
):
    home = tmp_path / "home"
    env = {**env, "PINTREST_KINESIS_PROXY_URL": kinesis_gateway.url, "PINTREST_USER_ID": stream_user}
    started = time.time()
    process = pintrest("emulate", "--stream", "--posts", "2000", "--rate", "1000", "--record-every", "0.3", env=env)
    out, err = process.communicate(timeout=120)
    ended = time.time()
    assert process.returncode == 0, err
    posts, sent = summary(out)
    assert posts == 2000

    for spec in TOPICS:
        stream = spec.kinesis_stream(stream_user)
        records = recorded(home, spec.kinesis_asset)
        batches = [materialisation_metadata(record) for record in records]
        assert len(batches) > 1 and records[0].timestamp < ended - 0.5  # recorded while it ran
        assert all(started <= record.timestamp <= ended for record in records)
        assert sum(b["records_sent"] for b in batches) == sent[stream] == posts
        assert all(b["stream"] == stream for b in batches)
        assert recorded_batches(home, spec.topic_asset) == []  # the Kinesis streams', not the topics'

        # Each batch's shard ranges hold its own records, no other batch's.
        in_stream = [(r["ShardId"], int(r["SequenceNumber"])) for r in read_stream(kinesis, stream)]
        assert len(in_stream) == posts
        for batch in batches:
            ranges = {shard: (int(low), int(high)) for shard, (low, high) in batch["offset_ranges"].items()}
            inside = [
                (shard, seq)
                for shard, seq in in_stream
                if shard in ranges and ranges[shard][0] <= seq <= ranges[shard][1]
            ]
            assert len(inside) == batch["records_sent"]

        acknowledged = tally(home, spec.kinesis_asset, check_key(spec), stream, kind="stream")
        assert (acknowledged.acknowledged, acknowledged.batches) == (posts, len(batches))
        assert stream_mismatches(acknowledged, read=len(in_stream), rows=len(in_stream), quarantined=0, spec=spec) == []
