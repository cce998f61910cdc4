"""`pintrest dev --host`: a UI served beyond loopback is warned about, once, naming the README's advice."""

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


@pytest.mark.parametrize("host, warned", [("0.0.0.0", 1), ("127.0.0.1", 0)])
def test_pintrest_dev_warns_once_before_serving(monkeypatch, tmp_path, capsys, host, warned):
    monkeypatch.setenv("PINTREST_HOME", str(tmp_path))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.setattr("pintrest_assets.gateway.process.local_gateway", lambda *a, **k: contextlib.nullcontext(False))
    started = []
    monkeypatch.setattr("subprocess.Popen", lambda args, **kwargs: started.append(args) or _FakeUI(args))
    assert main(["dev", "--host", host, "--no-stream"]) == 0  # the UI alone: its Popen is the fake
    [args] = started
    assert args[args.index("-h") + 1] == host
    assert capsys.readouterr().err.count("no authentication") == warned
