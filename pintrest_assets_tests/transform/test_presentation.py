"""Metadata tables and charts for the metadata shown in the UI."""

import base64
import datetime as dt

from pintrest_assets.transform.charts import bar_chart, markdown_image, posts_per_category_chart
from pintrest_assets.transform.metadata_table import metadata_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_metadata_table_types_its_columns_and_keeps_the_values():
    table = metadata_table(
        ["name", "count", "median", "when"],
        [("a|b", 26000, 275.0, dt.datetime(2020, 1, 2, 3, 4, 5)), (None, 3, 10.25, None)],
    )
    assert [(c.name, c.type) for c in table.schema.columns] == [
        ("name", "string"),
        ("count", "integer"),
        ("median", "float"),
        ("when", "timestamp"),
    ]
    assert [r.data for r in table.records] == [
        {"name": "a|b", "count": 26000, "median": 275.0, "when": "2020-01-02 03:04:05"},
        {"name": None, "count": 3, "median": 10.25, "when": None},
    ]


def test_metadata_table_shows_the_first_rows():
    table = metadata_table(["n"], [(i,) for i in range(5)], max_rows=2)
    assert [r.data["n"] for r in table.records] == [0, 1]


def test_metadata_table_of_no_rows_is_empty_with_its_columns():
    table = metadata_table(["n"], [])
    assert table.records == [] and [c.name for c in table.schema.columns] == ["n"]


def _png(markdown: str) -> bytes:
    return base64.b64decode(markdown.split("](data:image/png;base64,", 1)[1].rstrip(")"))


def test_charts_are_png_images_embedded_in_markdown():
    lines = posts_per_category_chart([(2018, "art", 2), (2019, "art", 1), (2019, "travel", 4)])
    bars = bar_chart([("18-24", 100.0), ("50+", 510.0)], title="t", xlabel="x", ylabel="y")
    for png in (lines, bars):
        assert png.startswith(PNG_SIGNATURE)
        assert _png(markdown_image(png, "a chart")) == png
    assert markdown_image(bars, "Median followers").startswith("![Median followers](data:image/png;base64,")
