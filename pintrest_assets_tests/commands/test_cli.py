"""The `pintrest` command line: help without loading the pipeline, typed options, one-line errors."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from pintrest_assets.cli import COMMANDS, main

HEAVY = ("dagster", "pyspark", "sqlalchemy", "requests", "boto3", "faker", "pandas")


def _pintrest_in_a_fresh_process(*args: str, env: dict | None = None) -> tuple[int, str, str, list[str]]:
    """Runs ``pintrest ARGS`` in a new interpreter; returns the exit code, stdout, stderr and the heavy modules loaded."""
    script = (
        "import json, sys\n"
        "from pintrest_assets.cli import main\n"
        f"code = main({list(args)!r})\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})\n"
        "print(json.dumps(heavy), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env or dict(os.environ)
    )
    *err, heavy = done.stderr.rstrip("\n").split("\n")
    return done.returncode, done.stdout, "\n".join(err), json.loads(heavy)


def test_help_lists_every_command_with_its_own_short_help_without_loading_dagster(capsys):
    assert main(["--help"]) == 0
    listing = " ".join(capsys.readouterr().out.split("Commands:")[1].split())
    for name, module in COMMANDS.items():
        short_help = importlib.import_module(module).command.short_help
        assert short_help and f"{name} {short_help}" in listing, (name, listing)
    code, out, err, heavy = _pintrest_in_a_fresh_process("--help")
    assert code == 0 and heavy == []


@pytest.mark.parametrize("name", list(COMMANDS))
def test_a_commands_help_loads_neither_dagster_nor_spark(name):
    code, out, err, heavy = _pintrest_in_a_fresh_process(name, "--help")
    assert code == 0, err
    assert out.startswith(f"Usage: pintrest {name} [OPTIONS]") and "--verbose" in out
    assert heavy == []


def test_an_unknown_command_or_option_is_a_usage_error(capsys):
    assert main(["nonsense"]) == 2
    assert "No such command 'nonsense'" in capsys.readouterr().err
    assert main(["run", "--posts", "none"]) == 2
    assert "'--posts': 'none' is not a valid integer" in capsys.readouterr().err


def test_a_bad_setting_is_one_line_naming_it_and_exit_2(tmp_path):
    env = {**os.environ, "PINTREST_HOME": str(tmp_path), "PINTREST_REST_PROXY_URL": "ftp://nowhere"}
    code, out, err, heavy = _pintrest_in_a_fresh_process("emulate", "--posts", "5", env=env)
    assert code == 2
    assert err == "pintrest emulate: PINTREST_REST_PROXY_URL: expected http(s)://host[:port][/stage], got 'ftp://nowhere'"
    assert heavy == []  # the settings are read before anything is loaded


def test_verbose_comes_from_the_flag_or_the_environment(tmp_path, monkeypatch):
    from pintrest_assets.commands import pintrest_command
    from pintrest_assets.verbosity import is_verbose

    seen = []

    @pintrest_command("probe", help="probe")
    def probe(settings, verbose):
        seen.append((verbose, is_verbose()))
        return 0

    monkeypatch.setenv("PINTREST_HOME", str(tmp_path))
    monkeypatch.delenv("PINTREST_VERBOSE", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)  # the quiet command sets both for its children
    assert probe.main([], standalone_mode=False) == 0
    assert probe.main(["--verbose"], standalone_mode=False) == 0
    monkeypatch.setenv("PINTREST_VERBOSE", "1")
    assert probe.main([], standalone_mode=False) == 0
    assert seen == [(False, False), (True, True), (True, True)]
