"""The warehouse's tables read outside the project, exactly as the README shows: pandas (through
deltalake), DuckDB and Spark, for df_pin and one answer."""

import re
from pathlib import Path

import dagster as dg
import pytest

from pintrest_assets.defs.transform.answers import answer_assets
from pintrest_assets.defs.transform.clean_tables import clean_table_assets

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_blocks(section: str) -> list[str]:
    """The python code blocks of a README section, as written."""
    text = README.read_text().split(f"### {section}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# The README's blocks, run as written from a directory whose .pintrest is the project's home.
PANDAS, DUCKDB, SPARK = readme_blocks("Reading the tables")

ANSWER = "most_popular_category_by_country"


@pytest.fixture
def home(tmp_path, spark_lake_factory, spark_resource, bucket_land, monkeypatch):
    """A project home after a refresh of the lake and the answer: .pintrest/warehouse in the cwd."""
    lake = spark_lake_factory(tmp_path / ".pintrest", spark_resource)
    for name, records in (("pin", 7), ("geo", 7), ("user", 7)):
        bucket_land(lake.bucket, lake.topic(name), 0, records=records)
    assert lake.refresh().success
    wanted = {dg.AssetKey(k) for k in ("pin_clean", "geo_clean", ANSWER)}
    transform = [a for a in [*clean_table_assets, *answer_assets] if a.keys & wanted]
    from pintrest_assets.defs.lake.dataframes import dataframe_assets

    result = dg.materialize(
        [*dataframe_assets, *transform], selection=list(wanted), resources=lake.resources(), instance=lake.instance
    )
    assert result.success
    monkeypatch.chdir(tmp_path)
    return lake


def test_pandas(home):
    names = {}
    exec(PANDAS, names)  # noqa: S102 - the README's lines, run as written
    assert sorted(names["pins"]["index"]) == list(range(7))
    assert list(names["answer"].columns) == ["country", "category", "category_count"]
    assert names["answer"].to_dict("records") == [
        {"country": "Cote d'Ivoire", "category": "home-decor", "category_count": 7}
    ]


def test_duckdb(home):
    names = {}
    exec(DUCKDB, names)  # noqa: S102 - the README's lines, run as written
    assert names["pins_per_category"] == [("home-decor", 7)]
    assert names["answer_rows"] == [("Cote d'Ivoire", "home-decor", 7)]


def test_spark(home, spark_resource):
    names = {"spark": spark_resource.spark_session}
    exec(SPARK, names)  # noqa: S102 - the README's lines, run as written
    assert sorted(r["index"] for r in names["pins"].collect()) == list(range(7))
    assert [tuple(r) for r in names["answer"].collect()] == [("Cote d'Ivoire", "home-decor", 7)]
