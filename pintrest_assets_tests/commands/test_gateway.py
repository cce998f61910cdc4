"""``pintrest gateway`` as an operator runs it: banner, signals, clear failures."""

import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys

import boto3
import pytest

from pintrest_assets.bucket import LocalBucket, S3Bucket
from pintrest_assets_tests.gateway.helpers import REPO, landed_objects, produce

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[platform.machine()]


def run_gateway(tmp_path, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pintrest_assets.cli", "gateway", "--no-kinesis", *args],
        cwd=REPO,
        env=dict(os.environ, PINTREST_HOME=str(tmp_path / "home"), **(env or {})),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lands_pending_records_and_exits_0(gateway_process, tmp_path, sig):
    gateway = gateway_process("--rotate-interval-ms", "60000")
    assert gateway.url in gateway.banner and str(tmp_path / "home" / "bucket") in gateway.banner
    assert produce(gateway.url, "u.pin", [{"index": 1}, {"index": 2}]).status_code == 200
    gateway.proc.send_signal(sig)
    out, err = gateway.proc.communicate(timeout=20)
    assert gateway.proc.returncode == 0, err
    assert "every acknowledged record has landed" in out
    assert landed_objects(LocalBucket(tmp_path / "home" / "bucket"), "u.pin") == [(0, [{"index": 1}, {"index": 2}])]


def _signal_thread(pid: int, tid: int, sig: int) -> None:
    """tgkill(2): the signal to one thread of another process, as the kernel may route a kill."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_it(gateway_process, tmp_path):
    # A process-directed signal goes to any thread that does not block it; Python runs the
    # handler in the main thread only, which must then still wake up.
    gateway = gateway_process("--rotate-interval-ms", "60000")
    assert produce(gateway.url, "u.pin", [{"index": 1}]).status_code == 200
    pid = gateway.proc.pid
    others = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
    assert others, "the gateway serves from threads of its own"
    _signal_thread(pid, others[0], signal.SIGTERM)
    out, err = gateway.proc.communicate(timeout=20)
    assert gateway.proc.returncode == 0, err
    assert "every acknowledged record has landed" in out
    assert landed_objects(LocalBucket(tmp_path / "home" / "bucket"), "u.pin") == [(0, [{"index": 1}])]


def test_a_port_in_use_is_a_one_line_error_naming_it(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_gateway(tmp_path, "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    assert f"port {port}" in result.stderr and "already in use" in result.stderr


def test_a_second_gateway_on_the_same_state_is_refused(gateway_process, tmp_path):
    gateway_process()
    result = run_gateway(tmp_path, "--port", "0")
    assert result.returncode == 1
    assert "another gateway is using the state directory" in result.stderr and "Traceback" not in result.stderr


def test_no_auto_create_accepts_only_the_named_topics(gateway_process):
    gateway = gateway_process("--no-auto-create", "--topic", "u.pin")
    assert produce(gateway.url, "u.pin", [1]).status_code == 200
    assert produce(gateway.url, "u.geo", [1]).json() == {"error_code": 40401, "message": "Topic not found."}
    assert gateway.stop()[0] == 0


def test_lands_in_s3_through_an_endpoint_url(gateway_process, moto_endpoint_url, s3_bucket_name):
    env = {"PINTREST_BUCKET": f"s3://{s3_bucket_name}/lake", "PINTREST_S3_ENDPOINT_URL": moto_endpoint_url}
    gateway = gateway_process("--flush-size", "2", env=env)
    assert f"s3://{s3_bucket_name}/lake/" in gateway.banner
    assert produce(gateway.url, "u.geo", [{"ind": i} for i in range(5)]).status_code == 200
    returncode, out, err = gateway.stop()
    assert returncode == 0, err
    bucket = S3Bucket(boto3.client("s3", endpoint_url=moto_endpoint_url), s3_bucket_name, "lake")
    assert landed_objects(bucket, "u.geo") == [
        (0, [{"ind": 0}, {"ind": 1}]),
        (2, [{"ind": 2}, {"ind": 3}]),
        (4, [{"ind": 4}]),
    ]
    assert [o.key for o in bucket.list("topics/")][0] == "topics/u.geo/partition=0/u.geo+0+0000000000.json"


def test_an_unreachable_bucket_names_the_setting(tmp_path, moto_endpoint_url, aws_env):
    env = {"PINTREST_BUCKET": "s3://no-such-bucket-here", "PINTREST_S3_ENDPOINT_URL": moto_endpoint_url}
    result = run_gateway(tmp_path, "--port", "0", env=env)
    assert result.returncode == 1
    assert result.stderr.startswith("pintrest gateway: PINTREST_BUCKET: cannot reach s3://no-such-bucket-here")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, problem",
    [
        (["--port", "70000"], "'--port': 70000 is not in the range 0<=x<=65535"),
        (["--flush-size", "0"], "'--flush-size': 0 is not in the range x>=1"),
        (["--topic", "no spaces"], "'no spaces' is not a valid Kafka topic name"),
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(tmp_path, args, problem):
    result = run_gateway(tmp_path, *args)
    assert result.returncode == 2
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "home").exists()  # refused before anything started
