"""The commands as a user runs them: separate processes, configured by the environment."""

import os
import re
import signal
import subprocess
import sys
import time

import dagster as dg
import pytest

from pintrest_assets.ingest.landing import LandingWatcher


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
    match = re.search(r"interrupted after (\d+) posts .* tester\.pin: (\d+) sent, tester\.geo: (\d+) sent, tester\.user: (\d+) sent", out)
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
    out, err = pintrest("emulate", "--posts", "5", env=env).communicate(timeout=60)
    assert "PINTREST_REST_PROXY_URL: cannot reach http://127.0.0.1:9" in err
    assert "Traceback" not in err


def test_emulate_names_a_missing_database(env, tmp_path):
    env["PINTREST_DB_URL"] = f"sqlite:///{tmp_path / 'nothing.db'}"
    process = pintrest("emulate", "--posts", "5", env=env)
    out, err = process.communicate(timeout=60)
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
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sent 20 posts" in done.stdout and "tester.pin: 20 sent" in done.stdout
    assert "heavy [] defs []" in done.stdout
    assert done.stderr == ""  # no progress bar off a terminal, no warnings
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("user_topic"))
        assert event.asset_materialization.metadata["records_sent"].value == 20


def test_emulate_takes_posts_or_forever_not_both(env):
    process = pintrest("emulate", "--posts", "5", "--forever", env=env)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "--posts and --forever exclude each other" in err and "Traceback" not in err
