"""The transform stage's definitions: cleaned tables, answers, their checks and their automation."""

import dagster as dg

from pintrest_assets.transform.answers import answer_assets
from pintrest_assets.transform.automation import transform_daily_schedule, transform_on_new_dataframes
from pintrest_assets.transform.checks import clean_table_checks
from pintrest_assets.transform.clean_tables import clean_table_assets

defs = dg.Definitions(
    assets=[*clean_table_assets, *answer_assets],
    asset_checks=clean_table_checks,
    schedules=[transform_daily_schedule],
    sensors=[transform_on_new_dataframes],
)
