"""Recording what the reconciliation check reads (emulation batches, mounts, DataFrame refreshes)
in a Dagster instance, and evaluating the check in a run."""

import dagster as dg

from pintrest_assets.defs.lake.reconciliation import build_reconciliation_check
from pintrest_assets.topics import TOPICS_BY_NAME

PIN = TOPICS_BY_NAME["pin"]


def batch(instance, sent, offsets, failed=0, topic="u.pin"):
    """A topic stream materialisation, with the metadata the emulation batch records."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            PIN.topic_asset,
            metadata={
                "topic": topic,
                "records_sent": sent,
                "records_failed": failed,
                "offset_ranges": dg.MetadataValue.json(offsets),
            },
        )
    )


def landed(instance, records, newest_key="topics/u.pin/partition=0/u.pin+0+0000000049.json"):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            PIN.raw_asset,
            metadata={"topic": "u.pin", "records": records, "newest_key": newest_key},
        )
    )


def read(instance, rows, quarantined):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(PIN.dataframe, metadata={"dagster/row_count": rows, "quarantined_total": quarantined})
    )


def evaluate(instance):
    """One evaluation of the check in a run, as the UI or a schedule runs it."""
    result = dg.materialize(
        [dg.AssetSpec(PIN.dataframe), build_reconciliation_check(PIN)],
        instance=instance,
        selection=dg.AssetSelection.checks_for_assets(PIN.dataframe),
        raise_on_error=False,
    )
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation, {key: value.value for key, value in evaluation.metadata.items()}
