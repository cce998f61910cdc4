"""`pintrest run` end to end, as `make run` runs it: on the embedded default, and on MySQL + S3."""

import json
import os
import subprocess
import sys

import boto3
import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from pintrest_assets.defs.transform.answers import ANSWERS
from pintrest_assets.kafka.sink_layout import parse_object_key
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.net import free_port

pytestmark = pytest.mark.slow


def _run(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "run", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((open(os.path.join(env["PINTREST_HOME"], "run_summary.json"))).read())
    return done, summary


def _env(home, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    # A free port: `pintrest run` starts its own gateway there.
    return {**env, "PINTREST_HOME": str(home), "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{free_port()}", **extra}


# What Dagster's console logger and Spark's start-up print; the terminal sees them only with --verbose.
NOISE = (" - DEBUG - ", " - INFO - ", "log4j", "Setting default log level", "WARN NativeCodeLoader", "incubator modules")


def test_run_on_the_embedded_default_lands_and_reads_everything_it_sends(tmp_path):
    env = _env(tmp_path / "home")
    done, summary = _run(env, "--posts", "150")
    # One line per stage, then the table, the checks and the answers; no event stream, no banner.
    assert "seeded the sample database: 11,153 posts" in done.stdout
    assert f"gateway started on {env['PINTREST_REST_PROXY_URL']}" in done.stdout
    assert "emulated 150 posts: 450 records acknowledged" in done.stdout
    assert "landed 450 records in the bucket" in done.stdout
    assert "read 450 rows into df_pin, df_geo, df_user, 0 quarantined" in done.stdout
    assert f"checks: {len(summary['checks'])} passed, 0 failed" in done.stdout
    assert not [noise for noise in NOISE if noise in done.stdout + done.stderr], done.stdout + done.stderr
    # The full event stream is in the instance all the same.
    with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
        runs = instance.get_runs()
        assert {run.tags["pintrest/stage"] for run in runs} == {"emulation", "lake", "transform"}
        events = [e.dagster_event for run in runs for e in instance.all_logs(run.run_id) if e.dagster_event]
        assert [e.event_type for e in events].count(dg.DagsterEventType.RUN_SUCCESS) == 3
        # Every asset of the batch half, from the topics to the nine answers, was materialised.
        materialised = {
            e.asset_key.path[-1] for e in events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        per_topic = {name for s in TOPICS for name in (s.topic_asset, s.raw_asset, s.dataframe, s.clean_asset)}
        assert materialised == per_topic | {answer.name for answer in ANSWERS}
    for spec in TOPICS:
        topic = summary["topics"][spec.name]
        assert topic["topic"] == f"pintrest.{spec.name}"
        assert topic["sent"] == topic["landed"] == topic["records_read"] == 150
        assert topic["rows_read"] + topic["quarantined"] == 150
        assert topic["rows_total"] == topic["rows_read"]
        assert (tmp_path / "home" / "warehouse" / spec.dataframe).is_dir()
    assert "pintrest.pin" in done.stdout and "rows_read" in done.stdout
    # All the way to the nine answers, every check passing.
    assert len(summary["answers"]) == 9
    assert all(a["rows"] > 0 and a["preview"] for a in summary["answers"].values())
    assert set(summary["answers"]["most_popular_category_by_age_group"]["preview"][0]) == {
        "age_group", "category", "category_count"
    }
    assert "4. What is the most popular category in each age group?" in done.stdout
    assert summary["checks"] and set(summary["checks"].values()) == {"passed"}
    assert {"df_pin/records_reconciled", "pin_clean/no_placeholders", "pin_clean/join_coverage"} <= set(summary["checks"])

    # A second run reads only what is new and appends it; --verbose prints Dagster's events too.
    done, summary = _run(env, "--posts", "50", "--verbose")
    assert "seeded" not in done.stdout
    assert " - DEBUG - " in done.stderr and "RUN_SUCCESS" in done.stderr
    for spec in TOPICS:
        topic = summary["topics"][spec.name]
        assert topic["sent"] == topic["landed"] == topic["records_read"] == 50
        assert topic["rows_total"] + topic["quarantined_total"] == topic["records_in_bucket"] == 200


@pytest.mark.mysql
def test_run_on_mysql_and_s3_by_configuration_alone(tmp_path, mysql_url, moto_endpoint_url, s3_bucket_name):
    env = _env(
        tmp_path / "home",
        PINTREST_DB_URL=mysql_url,
        PINTREST_BUCKET=f"s3://{s3_bucket_name}/landing",
        PINTREST_S3_ENDPOINT_URL=moto_endpoint_url,
        PINTREST_USER_ID="0e95b18877fd",
    )
    seeded = subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "seed", "--rows", "800"], env=env, capture_output=True, text=True
    )
    assert seeded.returncode == 0, seeded.stderr
    # A real database is never seeded behind the user's back: this one was seeded above.
    done, summary = _run(env, "--posts", "120")
    assert "seeded the sample database" not in done.stdout
    # The server's password (random per test server) is never printed, by seed or run.
    password = make_url(mysql_url).password
    assert password
    for output in (seeded.stdout, seeded.stderr, done.stdout, done.stderr):
        assert password not in output

    client = boto3.client("s3", endpoint_url=moto_endpoint_url)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket_name, Prefix="landing/topics/")["Contents"]]
    for spec in TOPICS:
        topic = summary["topics"][spec.name]
        assert topic["sent"] == topic["landed"] == topic["rows_read"] + topic["quarantined"] == 120
        landed = [parse_object_key(k.removeprefix("landing/")) for k in keys if f"/0e95b18877fd.{spec.name}/" in k]
        assert landed and all(k is not None and k.topic == f"0e95b18877fd.{spec.name}" for k in landed)
    # The S3 objects were synced into the local mount for Spark.
    assert (tmp_path / "home" / "mnt").is_dir()


def test_run_refuses_to_seed_a_database_the_user_pointed_at(tmp_path):
    env = _env(tmp_path / "home", PINTREST_DB_URL=f"sqlite:///{tmp_path / 'theirs.db'}")
    done = subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "run", "--posts", "5"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.startswith("pintrest run: PINTREST_DB_URL: ")
    assert not (tmp_path / "theirs.db").exists()
