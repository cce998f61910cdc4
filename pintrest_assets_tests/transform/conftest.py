"""One local Spark session for every transform test, and small DataFrames of raw rows."""

import os

import pytest
from pyspark.sql import SparkSession

from pintrest_assets.lake.schemas import SCHEMAS
from pintrest_assets.transform.cleaning import CLEANERS


@pytest.fixture(scope="session")
def spark_session_for_transform():
    """A local Spark session shared by the whole test session (a JVM takes seconds to start).

    The ``spark`` resource's ``getOrCreate`` finds this same session, so assets materialised in
    tests run on it too.
    """
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("pintrest-transform-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
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
    """``raw(topic, rows)``: a DataFrame of ``rows`` (dicts, missing keys null) with the read
    schema of ``topic`` ("pin", "geo" or "user"), as df_pin/df_geo/df_user hold them."""

    def make(topic: str, rows: list[dict]):
        schema = SCHEMAS[topic]
        return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)

    return make


@pytest.fixture
def cleaned(spark):
    """``cleaned(topic, rows)``: a DataFrame of ``rows`` (dicts, missing keys null) with the
    schema of the topic's cleaned table, as pin_clean/geo_clean/user_clean hold them."""

    def make(topic: str, rows: list[dict]):
        schema = CLEANERS[topic](spark.createDataFrame([], SCHEMAS[topic])).schema
        return spark.createDataFrame([tuple(row.get(f.name) for f in schema.fields) for row in rows], schema)

    return make
