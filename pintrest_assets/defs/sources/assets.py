"""The source tables of the posts database, as external assets: the emulator reads them, Dagster does not build them."""

import dagster as dg

from pintrest_assets.topics import TOPICS

source_tables = [
    dg.AssetSpec(
        spec.table,
        group_name="sources",
        kinds={"mysql"},
        description=f"Source table of the {spec.name} topic. {spec.description}",
        metadata={"index_column": spec.index_column},
    )
    for spec in TOPICS
]
