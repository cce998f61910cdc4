"""`pintrest run --stream` end to end on the embedded default: the gateway and its kinesalite,
posts through the Kinesis proxy, the stream tables by Spark Structured Streaming, the checks."""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys

import pytest
from deltalake import DeltaTable

from pintrest_assets.database.resource import PostsDatabase
from pintrest_assets.topics import TOPICS
from pintrest_assets_tests.net import free_port, is_listening

pytestmark = [pytest.mark.slow, pytest.mark.kinesis]  # kinesalite: Node.js and npm

POSTS, SEED = 200, 11


def test_run_stream_holds_exactly_the_records_the_proxy_acknowledged(tmp_path):
    home = tmp_path / "home"
    proxy = f"http://127.0.0.1:{free_port()}"
    kinesis_port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},
        "PINTREST_HOME": str(home),
        "PINTREST_REST_PROXY_URL": proxy,
        "PINTREST_KINESIS_PROXY_URL": proxy,
        "PINTREST_KINESIS_LOCAL_PORT": str(kinesis_port),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "run", "--stream", "--posts", str(POSTS), "--seed", str(SEED)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"gateway started on {proxy}" in done.stdout
    assert f"emulated {POSTS} posts through the Kinesis proxy: {3 * POSTS} records acknowledged" in done.stdout
    assert "checks: 6 passed, 0 failed" in done.stdout
    assert not is_listening(kinesis_port), "the embedded kinesalite outlived the gateway"

    summary = json.loads((home / "stream_run_summary.json").read_text())
    assert set(summary["checks"]) == {
        f"{spec.stream_table_asset}/{check}" for spec in TOPICS for check in ("records_reconciled", "fresh")
    }
    assert set(summary["checks"].values()) == {"passed"}
    # The posts the run drew (one chunk, the emulation's own draw): each is one row of each
    # stream table, a post drawn twice two rows.
    drawn = PostsDatabase(url=f"sqlite:///{home / 'pintrest.db'}").draw_posts(POSTS, random.Random(SEED)).posts
    for spec in TOPICS:
        stream = summary["streams"][spec.name]
        assert stream["stream"] == f"streaming-pintrest-{spec.name}"
        assert stream["sent"] == stream["records_read"] == stream["rows_read"] == stream["rows_total"] == len(drawn)
        assert (stream["failed"], stream["quarantined"]) == (0, 0)
        table = home / "warehouse" / f"pintrest_{spec.name}_table"
        stored = collections.Counter(DeltaTable(str(table)).to_pandas(columns=["ind"])["ind"])
        assert stored == collections.Counter(post[spec.name][spec.index_column] for post in drawn)
        assert (home / "warehouse" / "_checkpoints" / table.name / "commits").is_dir()
