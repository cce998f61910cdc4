"""When the cleaned tables and the answers refresh: daily, and on new DataFrames if turned on.

Two triggers, each with its own switch in the UI:

- ``transform_daily_schedule`` (on by default): the original's daily Airflow run with
  ``catchup=False``. At midnight UTC it refreshes the whole transform group (assets and their
  checks) in one run. A tick whose next tick has already passed (the daemon was down) is skipped
  instead of run late, so a daemon back after a week runs at most the latest day, not a flood of
  seven; and nothing runs before the three DataFrames exist.
- ``transform_on_new_dataframes`` (off by default): an automation sensor evaluating each
  transform asset's ``eager()``-like condition (``ON_NEW_DATA``), which requests it right after any
  of its upstream tables is updated (once all exist and none is being updated, and once its own
  run in progress has finished: an update during that run requests another). Turned on, a new df_pin refreshes
  pin_clean and the answers that read it within a tick, in one run. It is off by default because
  each refresh of a DataFrame (every few new objects) would also rebuild the answers.

A schedule and not ``AutomationCondition.on_cron`` does the daily run: an asset has one
automation condition, and both triggers would then share the automation sensor's single switch.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from pintrest_assets.topics import TOPICS

TRANSFORM_GROUP = "transform"
DAILY_CRON = "0 0 * * *"
DAILY_TIMEZONE = "UTC"
_DAY = dt.timedelta(days=1)

# Every transform asset's condition, evaluated only while ``transform_on_new_dataframes`` runs:
# ``eager()``, except for what makes it forget an upstream update. ``eager()`` forgets it once the
# asset is requested or updated; so a DataFrame refreshed while a transform run was in progress
# (after that run had read it) was forgotten when the run finished, and its rows reached no answer
# until the next DataFrame refresh. Here only a request forgets, and not on a tick that sees
# another upstream update (the tick after a request is the first to see what happened during it).
_AC = dg.AutomationCondition
ON_NEW_DATA = (
    _AC.in_latest_time_window()
    & (_AC.newly_missing() | _AC.any_deps_updated()).since(
        ((_AC.newly_requested() & ~_AC.any_deps_updated()) | _AC.initial_evaluation()).with_label(
            "requested, nothing new since"
        )
    )
    & ~_AC.any_deps_missing()
    & ~_AC.any_deps_in_progress()
    & ~_AC.in_progress()
).with_label("eager, until requested")


@dg.schedule(
    name="transform_daily_schedule",
    cron_schedule=DAILY_CRON,
    execution_timezone=DAILY_TIMEZONE,
    target=dg.AssetSelection.groups(TRANSFORM_GROUP),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Refreshes the cleaned tables and the answers at midnight UTC; a missed day is not caught up.",
)
def transform_daily_schedule(context: dg.ScheduleEvaluationContext):
    """Requests the day's refresh, unless the tick is stale or there is nothing to read yet."""
    scheduled = context.scheduled_execution_time
    if scheduled is not None and dt.datetime.now(dt.timezone.utc) - scheduled >= _DAY:
        # Catch-up off: a later tick has passed already and stands for this one.
        return dg.SkipReason(f"the tick of {scheduled.isoformat()} is more than a day late; not catching up")
    missing = [
        spec.dataframe
        for spec in TOPICS
        if context.instance.get_latest_materialization_event(dg.AssetKey(spec.dataframe)) is None
    ]
    if missing:
        return dg.SkipReason(f"nothing to clean yet: {', '.join(missing)} never materialised")
    day = (scheduled or dt.datetime.now(dt.timezone.utc)).date().isoformat()
    return dg.RunRequest(run_key=f"transform-{day}", tags={"pintrest/refresh": "daily", "pintrest/day": day})


transform_on_new_dataframes = dg.AutomationConditionSensorDefinition(
    "transform_on_new_dataframes",
    target=dg.AssetSelection.groups(TRANSFORM_GROUP),
    default_status=dg.DefaultSensorStatus.STOPPED,
    minimum_interval_seconds=30,
    description="When turned on, refreshes the cleaned tables and answers right after new DataFrame "
    "materialisations (each transform asset's eager() condition).",
)
