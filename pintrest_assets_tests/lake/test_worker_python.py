"""The launcher of a local Spark session's Python workers: Spark's pyspark and py4j zips left
out of PYTHONPATH, the rest kept, this interpreter run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark

from pintrest_assets.lake.worker_python import worker_python


def test_the_workers_import_the_installed_pyspark_and_keep_the_rest_of_their_path(tmp_path):
    lib = Path(pyspark.__file__).parent / "python" / "lib"
    zips = [str(lib / "pyspark.zip"), *map(str, sorted(lib.glob("py4j-*-src.zip")))]
    launcher = worker_python()
    assert launcher != sys.executable and os.access(launcher, os.X_OK)
    out = subprocess.run(
        [launcher, "-c", "import json, sys, pyspark; print(json.dumps([sys.prefix, pyspark.__file__, sys.path]))"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([*zips, str(tmp_path)])},
        capture_output=True,
        text=True,
        check=True,
    )
    prefix, imported, path = json.loads(out.stdout)
    assert prefix == sys.prefix
    assert imported == pyspark.__file__  # the installed package, not the zip
    assert str(tmp_path) in path and not set(zips) & set(path)
    assert worker_python() == launcher  # made once


def test_another_spark_home_keeps_its_own_path(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARK_HOME", str(tmp_path))
    assert worker_python() == sys.executable
