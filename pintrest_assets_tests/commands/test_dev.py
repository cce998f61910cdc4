"""`pintrest dev --host`: a UI served beyond loopback is warned about, once, naming the README's advice;
and the Spark Connect server `pintrest dev` starts is handed to the UI, unless Spark is configured."""

import contextlib
import re
from pathlib import Path

import pytest

from pintrest_assets.cli import main
from pintrest_assets.commands.dev import exposure_warning

README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_is_not_warned_about(host):
    assert exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "ui.example.com"])
def test_any_other_host_is_warned_about_with_the_readme_section(host):
    warning = exposure_warning(host)
    assert warning is not None and host in warning
    assert "no authentication" in warning and "launch runs" in warning
    section = re.search(r'README: "([^"]+)"', warning).group(1)
    assert f"\n## {section}\n" in README.read_text()


class _FakeUI:
    """The UI's process, exiting at once: the test sees what the command printed before it."""

    def __init__(self, args, **kwargs):
        self.args = args

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return 0


class _FakeSparkServer:
    url = "sc://127.0.0.1:15999"


@pytest.fixture
def dev_started(monkeypatch, tmp_path):
    """``pintrest dev`` with the gateway and the Spark Connect server faked; the processes it
    starts are recorded as (args, kwargs) and exit at once."""
    monkeypatch.setenv("PINTREST_HOME", str(tmp_path))
    # Set here, so that it is undone after the test: the command would set it for good.
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    for variable in ("PINTREST_SPARK_MASTER", "PINTREST_SPARK_REMOTE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr("pintrest_assets.gateway.process.local_gateway", lambda *a, **k: contextlib.nullcontext(False))
    monkeypatch.setattr(
        "pintrest_assets.lake.spark_server.local_spark_connect",
        lambda *a, **k: contextlib.nullcontext(_FakeSparkServer()),
    )
    started = []
    monkeypatch.setattr("subprocess.Popen", lambda args, **kwargs: started.append((args, kwargs)) or _FakeUI(args))
    return started


@pytest.mark.parametrize("host, warned", [("0.0.0.0", 1), ("127.0.0.1", 0)])
def test_pintrest_dev_warns_once_before_serving(dev_started, capsys, host, warned):
    assert main(["dev", "--host", host, "--no-stream"]) == 0  # the UI alone: its Popen is the fake
    [(args, _)] = dev_started
    assert args[args.index("-h") + 1] == host
    assert capsys.readouterr().err.count("no authentication") == warned


def _concurrent_runs(home) -> str:
    return re.search(r"max_concurrent_runs: (\d+)", (home / "dagster" / "dagster.yaml").read_text()).group(1)


def test_pintrest_dev_hands_its_spark_connect_server_to_the_ui(dev_started, capsys, tmp_path):
    assert main(["dev", "--no-stream"]) == 0
    [(args, kwargs)] = dev_started
    # The UI, its daemon and the runs they launch inherit the server's URL.
    assert kwargs["env"]["PINTREST_SPARK_REMOTE"] == _FakeSparkServer.url
    assert _FakeSparkServer.url in capsys.readouterr().out
    assert _concurrent_runs(tmp_path) == "2"  # the runs share its JVM: one starts while another works


@pytest.mark.parametrize(
    "variable, value, concurrent_runs",
    [("PINTREST_SPARK_MASTER", "local[2]", "1"), ("PINTREST_SPARK_REMOTE", "sc://h:1", "2")],
)
def test_pintrest_dev_starts_no_spark_server_when_one_is_configured(
    dev_started, monkeypatch, capsys, tmp_path, variable, value, concurrent_runs
):
    monkeypatch.setattr(
        "pintrest_assets.lake.spark_server.local_spark_connect",
        lambda *a, **k: pytest.fail("a Spark Connect server was started"),
    )
    monkeypatch.setenv(variable, value)
    assert main(["dev", "--no-stream"]) == 0
    [(args, kwargs)] = dev_started
    assert (kwargs.get("env") or {}).get("PINTREST_SPARK_REMOTE") in (None, value)
    assert "Spark Connect server" not in capsys.readouterr().out
    assert _concurrent_runs(tmp_path) == concurrent_runs
