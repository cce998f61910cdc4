"""The local Spark JVM's class archive (``make`` builds it before the tests)."""

import subprocess
import sys

import pytest

from pintrest_assets.lake import jvm_archive

# A local session started with the project's settings: does its JVM map the archive?
_MAPS_ARCHIVE = """
import sys
from pathlib import Path
from pintrest_assets.lake.spark import SparkResource, spark_config
session = SparkResource(spark_config=spark_config("local[1]")).spark_session
session.range(10).count()
pid = session.sparkContext._jvm.ProcessHandle.current().pid()
print(sys.argv[1] in Path(f"/proc/{pid}/maps").read_text())
"""


def test_a_local_session_maps_the_machine_class_archive():
    path = jvm_archive.archive_path()
    if path is None or not path.is_file():
        pytest.skip("no class archive on this machine: `make jvm-archive` builds it")
    assert f"-XX:SharedArchiveFile={path}" in jvm_archive.java_options()

    done = subprocess.run(
        [sys.executable, "-c", _MAPS_ARCHIVE, str(path)], capture_output=True, text=True, timeout=300
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
    assert "cds" not in done.stderr  # the JVM says nothing of the archive


def test_without_an_archive_a_session_starts_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jvm_archive.java_options() == ""
    assert jvm_archive.archive_path().parent == tmp_path / "pintrest"


def test_archives_of_environments_since_deleted_or_replaced_are_deleted(tmp_path):
    live, other, gone = tmp_path / "live-venv-jars", tmp_path / "other-venv-jars", tmp_path / "deleted-venv-jars"
    live.mkdir()
    other.mkdir()
    cache = tmp_path / "cache"
    cache.mkdir()
    # aaa: just built; old: the same environment's archive of before (an older workload); bbb:
    # another environment that still exists; ccc: one whose environment is gone.
    for name, jars in (("spark-4-aaa", live), ("spark-4-old", live), ("spark-4-bbb", other), ("spark-4-ccc", gone)):
        (cache / f"{name}.jsa").write_bytes(b"archive")
        (cache / f"{name}{jvm_archive.JARS_SUFFIX}").write_text(str(jars))
    (cache / "spark-4-ddd.jsa").write_bytes(b"an archive that says nothing of its jars")

    jvm_archive._forget_gone_environments(cache / "spark-4-aaa.jsa")

    assert sorted(p.name for p in cache.iterdir()) == [
        "spark-4-aaa.jars",
        "spark-4-aaa.jsa",
        "spark-4-bbb.jars",
        "spark-4-bbb.jsa",
    ]
