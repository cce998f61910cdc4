"""One local Spark session for every transform test, and DataFrames of hand-written rows."""

import os

import pytest
from pyspark.sql import SparkSession

from pintrest_assets_tests.transform.frames import clean_frame, raw_frame


@pytest.fixture(scope="session")
def spark_session_for_transform():
    """A local Spark session shared by the whole test session (a JVM takes seconds to start).

    The ``spark`` resource's ``getOrCreate`` finds this same session, so assets materialised in
    tests run on it too.

    Tests run many tiny queries in a short-lived JVM on a couple of shared cores, where compiling
    costs more than it saves: the JVM stops at the quick C1 compiler with a serial collector,
    and Spark neither generates code per query nor re-plans at run time. That halves the CPU the
    tests take; query results are the same.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("pintrest-transform-tests")
        .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.codegen.wholeStage", "false")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    yield spark
    spark.stop()


@pytest.fixture
def spark(spark_session_for_transform):
    return spark_session_for_transform


@pytest.fixture
def raw(spark):
    """``raw(topic, rows)``: a DataFrame as df_pin/df_geo/df_user hold it (see ``frames.raw_frame``)."""
    return lambda topic, rows: raw_frame(spark, topic, rows)


@pytest.fixture
def cleaned(spark):
    """``cleaned(topic, rows)``: a DataFrame as the cleaned tables hold it (see ``frames.clean_frame``)."""
    return lambda topic, rows: clean_frame(spark, topic, rows)
