"""The project's Dagster instance: files by default, PostgreSQL when PINTREST_DAGSTER_PG_URL is set."""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from pintrest_assets.bucket import LocalBucket
from pintrest_assets.defs.lake.sensors import new_objects_sensor
from pintrest_assets.instance import MARK, instance_config, use_project_instance
from pintrest_assets.lake.mount.resource import S3MountResource
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets.kafka.sink_layout import object_key
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.net import free_port


def test_the_instance_is_files_unless_a_postgres_url_is_set(tmp_path):
    assert "postgres" not in instance_config(Settings.from_env({"PINTREST_HOME": str(tmp_path)}))
    settings = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_DAGSTER_PG_URL": "postgresql://u:s3cret@h/db"})
    assert settings.dagster_pg_url == "postgresql+psycopg2://u:s3cret@h/db"  # dagster-postgres's driver
    config = instance_config(settings)
    assert "env: PINTREST_DAGSTER_PG_URL" in config and "s3cret" not in config


def test_a_url_that_is_not_postgres_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="PINTREST_DAGSTER_PG_URL"):
        Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_DAGSTER_PG_URL": "mysql://u:p@h/db"})


def test_the_project_rewrites_its_own_dagster_yaml_only(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    use_project_instance(Settings.from_env({"PINTREST_HOME": str(tmp_path)}))
    config = tmp_path / "dagster" / "dagster.yaml"
    assert config.read_text().startswith(MARK)
    with_pg = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_DAGSTER_PG_URL": "postgresql://u:p@h/db"})
    use_project_instance(with_pg)
    assert "postgres" in config.read_text()

    config.write_text("telemetry:\n  enabled: false\n")  # the user's own file
    use_project_instance(with_pg)
    assert config.read_text() == "telemetry:\n  enabled: false\n"


def test_runs_go_two_at_a_time_when_they_share_a_spark(tmp_path, monkeypatch):
    local = Settings.from_env({"PINTREST_HOME": str(tmp_path)})
    assert "max_concurrent_runs: 1\n" in instance_config(local)  # each run starts a JVM of its own
    remote = Settings.from_env({"PINTREST_HOME": str(tmp_path), "PINTREST_SPARK_REMOTE": "sc://h:15002"})
    assert "max_concurrent_runs: 2\n" in instance_config(remote)

    # pintrest dev chooses (two: its runs share its Spark Connect server); a command started
    # beside it, with the local settings, keeps that choice.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    config = tmp_path / "dagster" / "dagster.yaml"
    use_project_instance(local, concurrent_runs=2)
    assert "max_concurrent_runs: 2\n" in config.read_text()
    use_project_instance(local)
    assert "max_concurrent_runs: 2\n" in config.read_text()
    use_project_instance(local, concurrent_runs=1)
    assert "max_concurrent_runs: 1\n" in config.read_text()


@pytest.mark.slow
def test_the_pipeline_the_checks_and_the_sensor_on_a_postgres_instance(tmp_path, postgres_url):
    bare = make_url(postgres_url).set(drivername="postgresql").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env |= {
        "PINTREST_HOME": str(tmp_path / "home"),
        "PINTREST_REST_PROXY_URL": f"http://127.0.0.1:{free_port()}",
        "PINTREST_DAGSTER_PG_URL": bare,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "run", "--posts", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "home" / "run_summary.json").read_text())
    assert all(state == "passed" for state in summary["checks"].values()), summary["checks"]

    # Everything is in PostgreSQL, nothing in SQLite files beside the instance.
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")).scalar()
        checks = conn.execute(sa.text("SELECT count(*) FROM asset_check_executions")).scalar()
    engine.dispose()
    assert runs >= 3 and checks >= len(summary["checks"])
    assert not list((tmp_path / "home" / "dagster").rglob("*.db"))

    # The sensor, on that instance, sees what landed after the run's refresh.
    os.environ["PINTREST_DAGSTER_PG_URL"] = postgres_url
    try:
        with dg.DagsterInstance.from_config(str(tmp_path / "home" / "dagster")) as instance:
            assert instance.get_latest_materialization_event(dg.AssetKey("df_pin")) is not None
            bucket = LocalBucket(tmp_path / "home" / "bucket")
            mount = S3MountResource(
                bucket_url=str(bucket.root), mount_dir=str(tmp_path / "home" / "mnt"), user_id="pintrest"
            )

            def tick(cursor):
                with dg.build_sensor_context(cursor=cursor, instance=instance, resources={"s3_mount": mount}) as ctx:
                    return new_objects_sensor(ctx)

            seen = tick(None).cursor  # every object landed so far
            pin = TOPICS[0].topic("pintrest")
            bucket.put(object_key(pin, 0, 10_000), b'{"index": 1}\n')
            assert [r.tags["pintrest/topic"] for r in tick(seen).run_requests] == [pin]
    finally:
        del os.environ["PINTREST_DAGSTER_PG_URL"]
