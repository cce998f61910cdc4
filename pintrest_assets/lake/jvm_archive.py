"""A class-data-sharing archive of the local Spark JVM: a cold Spark starts on a third less CPU.

A local Spark session starts a JVM that loads and verifies some 15,000 classes before its first
job: about 20 CPU seconds on a 2-core laptop, paid by every run's process, every test's and the
streaming service's. Java's class-data sharing (AppCDS) keeps those classes, parsed and
verified, in an archive that a later JVM maps instead: measured here, a session and its first
parquet job took 13 CPU seconds of the JVM with the archive against 19-23 without.

``python -m pintrest_assets.lake.jvm_archive`` (``make`` runs it before ``run``, ``dev`` and
``test``) builds the archive once per machine: a JVM started with ``-XX:ArchiveClassesAtExit``
runs the kind of work the project asks of Spark and writes the archive when it exits. It goes to
the user's cache (``~/.cache/pintrest``, or under ``$XDG_CACHE_HOME``), under a name that
changes with the Java binary and the pyspark installation (its jars and where they are: a JVM
maps an archive only for the class path it was written with), so an upgrade or another
environment builds its own instead of meeting an archive the JVM would refuse. ``java_options()`` gives a local session the
option that maps it, once it exists; without it a JVM starts as before.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# Said by the JVM when it maps an archive that no longer fits, or when it writes one (classes it
# cannot archive): nothing a user acts on.
_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"
# Beside each archive: the jars' directory it archives, so that an archive of an environment
# since deleted is deleted too.
JARS_SUFFIX = ".jars"
# The version of ``_workload``: raised when it changes, so that each environment archives anew.
WORKLOAD = "2"


def cache_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "pintrest"


def _java() -> Path | None:
    java_home = os.environ.get("JAVA_HOME")
    java = Path(java_home) / "bin" / "java" if java_home else shutil.which("java")
    return Path(os.path.realpath(java)) if java and Path(java).exists() else None


def _jars() -> Path | None:
    spec = importlib.util.find_spec("pyspark")  # without importing pyspark
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "jars"


def archive_path() -> Path | None:
    """Where this machine's archive is (or goes): named after the Java binary and the pyspark
    jars it archives; None without Java."""
    java = _java()
    if java is None:
        return None
    jars = _jars()
    if jars is None:
        return None
    version = importlib.metadata.version("pyspark")
    stat = java.stat()
    # The JVM maps an archive only for the class path it was written with: the jars' directory.
    # And a changed workload archives other classes.
    key = "\n".join(
        [str(java), str(stat.st_size), str(stat.st_mtime_ns), version, str(jars), *sorted(os.listdir(jars)), WORKLOAD]
    )
    return cache_dir() / f"spark-{version}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsa"


def java_options() -> str:
    """The JVM options that map the archive, if it exists; "" if not."""
    path = archive_path()
    if path is None or not path.is_file():
        return ""
    return f"-XX:SharedArchiveFile={path} {_QUIET}"


def build(log=print) -> Path | None:
    """Builds the archive unless it exists; returns its path (None without Java, or if the JVM
    did not write it: Spark then starts without one)."""
    path = archive_path()
    if path is None or path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"archiving the Spark JVM's classes into {path} (once per machine, about a minute)")
    # Written under a name of its own, then renamed: two builds at once never mix their files.
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".partial")
    os.close(fd)
    os.unlink(partial)
    try:
        subprocess.run(
            [sys.executable, "-m", __spec__.name, "--workload", partial],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=600,
            check=True,
        )
        if not Path(partial).is_file():
            return None
        path.with_suffix(JARS_SUFFIX).write_text(str(_jars()))
        os.replace(partial, path)
    except (subprocess.SubprocessError, OSError) as exc:
        log(f"the Spark JVM's class archive was not built ({exc}); Spark starts without it")
        return None
    finally:
        Path(partial).unlink(missing_ok=True)
    _forget_gone_environments(path)
    return path


def _forget_gone_environments(built: Path) -> None:
    """Deletes the archives of environments whose jars are gone (a deleted checkout or virtual
    environment) and those the archive just ``built`` replaces (the same jars, an older Java,
    pyspark or workload): the cache holds one archive per environment that still exists."""
    current = built.with_suffix(JARS_SUFFIX).read_text().strip()
    for archive in built.parent.glob("spark-*.jsa"):
        if archive == built:
            continue
        jars = archive.with_suffix(JARS_SUFFIX)
        try:
            named = jars.read_text().strip()
            gone = named == current or not Path(named).is_dir()
        except OSError:
            gone = True
        if gone:
            archive.unlink(missing_ok=True)
            jars.unlink(missing_ok=True)


def _workload(archive: str) -> None:
    """In the archiving JVM's Python: what the project asks of a local Spark (parquet written
    and read, JSON parsed with a schema, regular expressions, an aggregation, rows collected as
    Arrow), so that the classes of those jobs are archived too."""
    import pyarrow as pa
    from pyspark.sql import SparkSession, Window
    from pyspark.sql import functions as F

    from pintrest_assets.lake import spark as lake_spark

    config = lake_spark.spark_config("local[*]", verbose=False)
    config["spark.driver.extraJavaOptions"] = (
        f"{lake_spark.LOCAL_DRIVER_JAVA_OPTIONS} -XX:ArchiveClassesAtExit={archive} {_QUIET}"
    )
    builder = SparkSession.builder
    for key, value in config.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    with lake_spark.small_queries(spark):  # the transform's queries: rows from Arrow, joins, windows
        rows = pa.table({"k": list(range(50)), "v": [f"{i % 7}k" for i in range(50)]})
        tables = {name: spark.createDataFrame(rows).coalesce(1) for name in ("a", "b")}
        ranked = tables["a"].join(tables["b"].withColumnRenamed("v", "w"), "k").groupBy("v").agg(
            F.count(F.lit(1)).alias("n"), F.median("k").alias("m")
        )
        rank = F.rank().over(Window.partitionBy("v").orderBy(F.col("n").desc()))
        ranked.withColumn("r", rank).where(F.col("r") == 1).orderBy("v").toArrow()
        tables["a"].select(F.regexp_extract("v", r"^([0-9]+)([kKmM]?)$", 1).try_cast("decimal(38,18)")).collect()
    with tempfile.TemporaryDirectory(prefix="pintrest-jvm-archive-") as directory:
        rows = spark.range(2000).selectExpr("id", "cast(id AS string) AS s", "cast(id AS double) AS d")
        rows.write.parquet(f"{directory}/rows")
        back = spark.read.parquet(f"{directory}/rows")
        lines = back.select(F.to_json(F.struct("id", "s", "d")).alias("line"))
        parsed = lines.select(F.from_json("line", "id BIGINT, s STRING, d DOUBLE").alias("r")).select("r.*")
        parsed.where(F.col("s").rlike(r"^[0-9]+$")).groupBy(F.col("id") % 7).agg(F.count(F.lit(1))).collect()
        parsed.select(F.regexp_extract("s", r"([0-9]+)", 1).alias("n")).toArrow()
    jvm = spark.sparkContext._gateway.proc
    spark.stop()
    jvm.stdin.close()  # the JVM exits when this pipe closes, and writes the archive as it does
    jvm.wait(timeout=300)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--workload"] and len(sys.argv) == 3:
        _workload(sys.argv[2])
    else:
        build()
