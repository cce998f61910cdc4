"""pyproject.toml declares every package the code imports: the package's imports in
``dependencies``, the tests' and benchmarks' in ``dependencies`` or the ``test`` extra, and uv.lock
pins them all."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OWN = {"pintrest_assets", "pintrest_assets_tests", "__future__"}


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", requirement).group()).lower()


def _third_party_imports(*folders: str) -> dict[str, str]:
    """Top-level module -> one file importing it, for every import that is neither stdlib nor the
    project's own (nor a sibling script, as benchmarks/ports.py)."""
    found: dict[str, str] = {}
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            siblings = {p.stem for p in path.parent.glob("*.py")}
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in OWN or top in siblings:
                        continue
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def _undeclared(imports: dict[str, str], declared: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    return [
        f"{module} (imported by {where}; from {distributions.get(module)})"
        for module, where in sorted(imports.items())
        if not {_name(d) for d in distributions.get(module, [module])} & declared
    ]


RUNTIME = {_name(r) for r in PROJECT["dependencies"]}
TEST = RUNTIME | {_name(r) for r in PROJECT["optional-dependencies"]["test"]}


def test_the_package_imports_only_declared_dependencies():
    assert _undeclared(_third_party_imports("pintrest_assets"), RUNTIME) == []


def test_the_tests_and_benchmarks_import_only_dependencies_or_the_test_extra():
    assert _undeclared(_third_party_imports("pintrest_assets_tests", "benchmarks"), TEST) == []


def test_test_tooling_stays_out_of_the_runtime_dependencies():
    assert RUNTIME & {"pytest", "moto", "duckdb", "playwright"} == set()


def test_the_lockfile_pins_every_declared_dependency():
    lock = ROOT / "uv.lock"
    if not lock.exists():
        pytest.fail("uv.lock is missing: run `make lock`")
    locked = {_name(p["name"]) for p in tomllib.loads(lock.read_text())["package"]}
    assert TEST - locked == set(), "run `make lock`"
