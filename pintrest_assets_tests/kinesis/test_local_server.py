"""The local Kinesis server: kinesalite on LevelDB, installed with npm on first use."""

from __future__ import annotations

import shutil
import socket
import time

import pytest

from pintrest_assets.kinesis import local_server
from pintrest_assets.kinesis.local_server import KinesaliteUnavailable, LocalKinesis
from pintrest_assets.kinesis.streams import create_stream, kinesis_client, wait_until_active
from pintrest_assets_tests.kinesis.helpers import put_posts
from pintrest_assets_tests.net import free_port, is_listening

# Tests marked kinesis run kinesalite (Node.js and npm); the others need neither.


def _all_records(client, stream: str) -> list[tuple[str, str, bytes]]:
    """(shard, sequence number, data) of every record of the stream, from TRIM_HORIZON."""
    records = []
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        iterator = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = client.get_records(ShardIterator=iterator)
            records += [(shard["ShardId"], r["SequenceNumber"], r["Data"]) for r in page["Records"]]
            iterator = page["NextShardIterator"]
            if not page["Records"]:
                break
    return records


@pytest.mark.kinesis
def test_records_survive_a_sigkill_and_a_restart(tmp_path):
    port = free_port()
    server = LocalKinesis(tmp_path / "data", port).start()
    try:
        client = kinesis_client(server.endpoint_url, "us-east-1")
        create_stream(client, "survivor", 2)
        wait_until_active(client, ["survivor"], timeout=30)
        put_posts(client, "survivor", 0, 700)
        before = _all_records(client, "survivor")
        assert len(before) == 700

        server.kill()  # SIGKILL: no chance to flush anything
        assert not server.running and not is_listening(port)

        server.start()
        assert server.running and is_listening(port)
        assert sorted(_all_records(client, "survivor")) == sorted(before)
        # It goes on accepting records after the restart, in sequence after the old ones.
        put_posts(client, "survivor", 700, 10)
        assert len(_all_records(client, "survivor")) == 710
    finally:
        server.stop()
    assert not server.running and not is_listening(port)
    assert (tmp_path / "data.log").exists()


@pytest.mark.kinesis
def test_a_taken_port_is_reported(kinesalite, tmp_path):
    with pytest.raises(KinesaliteUnavailable, match="already taken"):
        LocalKinesis(tmp_path / "data", kinesalite.port).start()


def test_missing_npm_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(KinesaliteUnavailable, match="npm"):
        local_server.install_kinesalite(tmp_path / "tools")


@pytest.mark.kinesis
def test_an_installed_copy_needs_no_npm(kinesalite, monkeypatch):
    cli = local_server.install_kinesalite()  # installed already for the session's server
    assert cli.name == "cli.js" and cli.exists()
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert local_server.install_kinesalite() == cli


@pytest.mark.kinesis
def test_a_client_gone_mid_request_does_not_end_the_server(kinesalite, kinesis):
    """A consumer stopped in the middle of a call (its connection closed before the body ends)
    costs that request alone: the server goes on answering, every stream still there."""
    create_stream(kinesis, "abandoned", 1)
    wait_until_active(kinesis, ["abandoned"], timeout=30)
    host, port = kinesalite.endpoint_url.removeprefix("http://").split(":")
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST / HTTP/1.1\r\nHost: kinesis\r\nContent-Type: application/x-amz-json-1.1\r\n"
                b"X-Amz-Target: Kinesis_20131202.ListStreams\r\nContent-Length: 1000\r\n\r\n{\"Lim"
            )
            time.sleep(0.2)
    time.sleep(0.5)
    assert kinesalite.process.poll() is None
    assert "abandoned" in kinesis.list_streams()["StreamNames"]
