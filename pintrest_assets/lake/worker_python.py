"""The interpreter a local Spark session starts its Python workers with.

Spark puts its own copy of pyspark (``<SPARK_HOME>/python/lib/pyspark.zip``, and py4j's zip)
first on a Python worker's PYTHONPATH. Python keeps no bytecode for what it imports from a zip,
so every worker compiles the pyspark modules it imports: about a second of CPU at each start,
three times what the same imports cost from an installed package. A streaming query's source
runs in a worker of its own, started with the query; on a loaded machine a worker that takes
more than Spark's 10 s to connect back fails its query ("Python worker failed to connect back").

Where pyspark is an installed package (pip: its ``python/lib/pyspark.zip`` is a copy of the
package itself), the workers run through a launcher that leaves those two zips out of PYTHONPATH
and runs this interpreter, which imports the same pyspark with its bytecode cached. Elsewhere
(another SPARK_HOME, not POSIX) the workers run this interpreter as they are.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import tempfile
from pathlib import Path

_LAUNCHER = """#!/bin/sh
# Made by pintrest_assets.lake.worker_python: Spark's Python workers, without Spark's
# pyspark and py4j zips on PYTHONPATH ({python} has the same pyspark installed).
set -f
kept=
IFS=:
for entry in $PYTHONPATH; do
    case $entry in
        {zips}) ;;
        *) kept=${{kept:+$kept:}}$entry ;;
    esac
done
unset IFS
PYTHONPATH=$kept
export PYTHONPATH
exec {python} "$@"
"""


def worker_python() -> str:
    """The executable for ``PYSPARK_PYTHON``: the launcher, or this interpreter."""
    python = sys.executable
    if os.name != "posix":
        return python
    try:
        import pyspark
    except ImportError:
        return python
    home = Path(pyspark.__file__).parent
    spark_home = os.environ.get("SPARK_HOME")
    if spark_home and Path(spark_home).resolve() != home.resolve():
        return python
    zips = []
    for lib in dict.fromkeys([home / "python" / "lib", home.resolve() / "python" / "lib"]):
        zips += [lib / "pyspark.zip", *sorted(lib.glob("py4j-*-src.zip"))]
    if not zips[0].exists():
        return python
    text = _LAUNCHER.format(python=shlex.quote(python), zips="|".join(shlex.quote(str(z)) for z in zips))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    launcher = Path(tempfile.gettempdir()) / f"pintrest-spark-python-{os.getuid()}-{digest}"
    try:
        if not launcher.exists() or launcher.read_text() != text:
            partial = launcher.with_name(f"{launcher.name}.{os.getpid()}.tmp")
            partial.write_text(text)
            partial.chmod(0o755)
            partial.replace(launcher)
    except OSError:
        return python
    return str(launcher)
