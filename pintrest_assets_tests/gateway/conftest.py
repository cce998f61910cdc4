"""Fixtures for the gateway tests: gateways on free ports, buckets, and an S3 HTTP API (moto)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

from pintrest_assets.bucket import LocalBucket, S3Bucket
from pintrest_assets.gateway import Gateway
from pintrest_assets_tests.gateway.helpers import REPO

@pytest.fixture
def bucket(tmp_path) -> LocalBucket:
    return LocalBucket(tmp_path / "bucket")


@pytest.fixture
def start_gateway(tmp_path, bucket):
    """Start gateways on free ports (same state dir unless told otherwise); all shut down at the end."""
    started = []

    def start(**kwargs) -> Gateway:
        kwargs.setdefault("bucket", bucket)
        kwargs.setdefault("state_dir", tmp_path / "state")
        kwargs.setdefault("port", 0)
        kwargs.setdefault("fsync", False)  # the crash tests run with fsync on; here it only costs time
        gateway = Gateway(**kwargs).start()
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.shutdown()


@pytest.fixture
def gateway(start_gateway) -> Gateway:
    return start_gateway()


@pytest.fixture
def s3_bucket(moto_endpoint_url, s3_bucket_name) -> S3Bucket:
    return S3Bucket(boto3.client("s3", endpoint_url=moto_endpoint_url), s3_bucket_name, "landing")


class GatewayProcess:
    """``pintrest gateway`` as a subprocess, as ``make run`` starts it."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None):
        self.env = dict(os.environ, PINTREST_HOME=str(home), **(env or {}))
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
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def gateway_process(tmp_path):
    """Start gateway subprocesses; any still running at the end is killed."""
    processes = []

    def start(*args: str, home: Path | None = None, env: dict[str, str] | None = None) -> GatewayProcess:
        process = GatewayProcess(home or tmp_path / "home", *args, env=env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.proc.poll() is None:
            process.kill()
