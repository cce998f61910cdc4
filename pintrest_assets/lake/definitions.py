import dagster as dg

from pintrest_assets.lake.dataframes import dataframe_assets
from pintrest_assets.lake.raw_json import raw_json_assets
from pintrest_assets.lake.reconciliation import reconciliation_checks
from pintrest_assets.lake.sensors import sensors

defs = dg.Definitions(
    assets=[*raw_json_assets, *dataframe_assets], asset_checks=reconciliation_checks, sensors=sensors
)
