"""Helpers for the gateway tests: media types, producing through the v2 API, reading what landed,
and waiting for a condition."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from pintrest_assets.bucket import Bucket
from pintrest_assets.kafka.sink_layout import parse_object_key, partition_prefix

JSON_V2 = "application/vnd.kafka.json.v2+json"
BINARY_V2 = "application/vnd.kafka.binary.v2+json"
REPO = Path(__file__).resolve().parents[2]


def produce(url: str, topic: str, values: list, content_type: str = JSON_V2, session=None) -> requests.Response:
    """POST the values as one v2 produce request."""
    body = json.dumps({"records": [{"value": v} for v in values]})
    return (session or requests).post(f"{url}/topics/{topic}", data=body, headers={"Content-Type": content_type})


def landed_objects(bucket: Bucket, topic: str) -> list[tuple[int, list]]:
    """The topic's objects in key order: (start offset, the JSON values of its lines)."""
    objects = []
    for info in bucket.list(partition_prefix(topic, 0)):
        key = parse_object_key(info.key)
        assert key is not None and key.topic == topic, info.key
        data = bucket.get(info.key)
        assert data.endswith(b"\n"), info.key
        objects.append((key.start_offset, [json.loads(line) for line in data.decode().splitlines()]))
    return objects


def wait_until(condition, timeout: float = 10.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {condition}")
        time.sleep(interval)
    return result


class GatewayProcess:
    """``pintrest gateway`` as a subprocess, as ``make run`` starts it."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None):
        self.env = dict(os.environ, PINTREST_HOME=str(home), PYTHONFAULTHANDLER="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pintrest_assets.cli", "gateway", "--port", "0", "--no-kinesis", *args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.banner = self.proc.stdout.readline()
        if not self.banner.startswith("gateway listening on "):
            self.proc.kill()
            raise AssertionError(f"gateway did not start: {self.banner}{self.proc.stderr.read()}")
        self.url = self.banner.split()[3].rstrip(",")

    def stop(self, timeout: float = 90) -> tuple[int, str, str]:
        """SIGTERM, then the exit code and the rest of stdout and stderr."""
        self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # its faulthandler prints every thread's stack
            out, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"the gateway did not stop within {timeout}s of SIGTERM:\n{err}") from None
        return self.proc.returncode, out, err

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)
