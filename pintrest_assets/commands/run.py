"""``pintrest run``: the whole pipeline end to end, on the embedded default or on real infrastructure.

Seeds the sample database if it is empty, starts the local gateway when the REST proxy URL is
local and nothing listens there, materialises the topic streams through Dagster (so the run is in
the instance the UI shows), waits until every acknowledged record has landed in the bucket, then
materialises the raw JSON and the DataFrames, and writes a summary to
``$PINTREST_HOME/run_summary.json``. Exits non-zero if anything sent did not land, or if the
records read differ from the rows plus the quarantined lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import time
from urllib.parse import urlparse

import dagster as dg

from pintrest_assets.bucket import open_bucket
from pintrest_assets.defs.transform.answers import ANSWERS, answer_assets
from pintrest_assets.defs.transform.clean_tables import clean_table_assets
from pintrest_assets.ingest.landing import LandingWatcher
from pintrest_assets.instance import project_instance
from pintrest_assets.settings import ConfigError, Settings
from pintrest_assets.topics import TOPICS


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--posts", type=int, default=1000, help="posts to emulate (default 1000)")
    parser.add_argument("--seed", type=int, default=None, help="fix which posts are drawn")
    parser.add_argument(
        "--land-timeout", type=float, default=120.0, help="seconds to wait for records to land (default 120)"
    )


def run(args, settings: Settings) -> int:
    instance = project_instance(settings)
    from pintrest_assets.definitions import defs

    _seed_if_empty(settings)
    with local_gateway(settings):
        result = _materialize(
            defs,
            instance,
            [spec.stream_asset for spec in TOPICS],
            run_config={"ops": {"topic_streams": {"config": {"posts": args.posts, "seed": args.seed}}}},
        )
        summary = {"topics": {}}
        for spec in TOPICS:
            metadata = _metadata(result, spec.stream_asset)
            summary["topics"][spec.name] = {
                "topic": metadata["topic"],
                "sent": metadata["records_sent"],
                "failed": metadata["records_failed"],
                "offset_ranges": metadata["offset_ranges"],
            }
        _wait_until_landed(settings, summary, args.land_timeout)

    # The lake and the transform: mount the landed objects, read the new ones into the
    # DataFrames, clean them and answer the nine questions, with every check.
    result = _materialize(
        defs,
        instance,
        [name for spec in TOPICS for name in (spec.raw_asset, spec.dataframe)]
        + [asset.key.path[-1] for asset in (*clean_table_assets, *answer_assets)],
        run_config={},
    )
    for spec in TOPICS:
        raw, df = _metadata(result, spec.raw_asset), _metadata(result, spec.dataframe)
        summary["topics"][spec.name].update(
            {
                "objects_read": df["objects_read"],
                "records_read": df["records_in_objects"],
                "rows_read": df["rows_read"],
                "quarantined": df["quarantined"],
                "records_in_bucket": raw["records"],
                "rows_total": df["dagster/row_count"],
                "quarantined_total": df["quarantined_total"],
            }
        )
    summary["checks"] = {
        f"{e.asset_key.to_user_string()}/{e.check_name}": "passed" if e.passed else f"failed ({e.severity.value})"
        for e in result.get_asset_check_evaluations()
    }
    summary["answers"] = _answers(settings)

    path = settings.home / "run_summary.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(_render(summary))
    print(_render_answers(summary["answers"]))
    print(f"summary written to {path}")
    return _verdict(summary)


def _verdict(summary: dict) -> int:
    """0 if every record sent landed and every record landed became a row or a quarantined line."""
    problems = []
    for name, t in summary["topics"].items():
        if t["landed"] < t["sent"] or t["failed"]:
            problems.append(f"{name}: {t['sent']} sent, {t['failed']} failed, {t['landed']} landed")
        if t["rows_read"] + t["quarantined"] != t["records_read"]:
            problems.append(
                f"{name}: {t['records_read']} records read from new objects, "
                f"but {t['rows_read']} rows + {t['quarantined']} quarantined"
            )
        if t["rows_total"] + t["quarantined_total"] != t["records_in_bucket"]:
            problems.append(
                f"{name}: {t['records_in_bucket']} records in the bucket, "
                f"but {t['rows_total']} rows + {t['quarantined_total']} quarantined in {name}'s DataFrame"
            )
    problems += [f"check {name} {state}" for name, state in summary["checks"].items() if state == "failed (ERROR)"]
    for problem in problems:
        print(f"pintrest run: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _seed_if_empty(settings: Settings) -> None:
    from pintrest_assets.resources.by_settings import resources_for
    from pintrest_assets.sample_data.seed import seed

    database = resources_for(settings, resolve_secrets=True)["database"]
    try:
        database.check()
        return
    except ConfigError:
        if settings.db_url_is_secret:
            raise  # a real database the user pointed at: never write sample data into it
    print("seeding the sample database ...")
    seed(settings.db_url)


@contextlib.contextmanager
def local_gateway(settings: Settings):
    """Starts ``pintrest gateway`` for a local REST proxy URL nobody serves; stops it after."""
    url = urlparse(settings.rest_proxy_url)
    host, port = url.hostname, url.port or 80
    if host not in {"127.0.0.1", "localhost"} or _listening(host, port):
        yield
        return
    process = subprocess.Popen(
        [sys.executable, "-m", "pintrest_assets.gateway", "--host", host, "--port", str(port)],
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _listening(host, port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ConfigError("PINTREST_REST_PROXY_URL", f"the local gateway did not start on {host}:{port}")
            time.sleep(0.1)
        yield
    finally:
        process.terminate()  # the gateway lands what is pending before it exits
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, asset_names: list[str], run_config: dict):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(
        run_config=run_config,
        instance=instance,
        asset_selection=[dg.AssetKey(name) for name in asset_names],
        tags={"pintrest/launched_by": "pintrest run"},
    )


def _metadata(result, asset_name: str) -> dict:
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == dg.AssetKey(asset_name):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise KeyError(asset_name)


def _wait_until_landed(settings: Settings, summary: dict, timeout: float) -> None:
    bucket = open_bucket(settings.bucket, endpoint_url=settings.s3_endpoint_url)
    watchers = {
        (topic["topic"], partition): LandingWatcher(bucket, topic["topic"], int(partition))
        for topic in summary["topics"].values()
        for partition in topic["offset_ranges"]
    }
    deadline = time.monotonic() + timeout
    while True:
        for topic in summary["topics"].values():
            topic["landed"] = sum(
                watchers[topic["topic"], partition].landed(first, last)
                for partition, (first, last) in topic["offset_ranges"].items()
            )
        if all(t["landed"] >= t["sent"] for t in summary["topics"].values()) or time.monotonic() > deadline:
            return
        time.sleep(0.5)


_COLUMNS = ("sent", "failed", "landed", "rows_read", "quarantined", "rows_total")


def _answers(settings: Settings, preview_rows: int = 5) -> dict:
    """Each answer's question, row count and first rows, read back from the warehouse."""
    from pintrest_assets.resources.by_settings import resources_for

    warehouse = resources_for(settings, resolve_secrets=True)["warehouse_io_manager"]
    answers = {}
    for answer in ANSWERS:
        table = warehouse.table(answer.name).read(warehouse.spark.spark_session)
        answers[answer.name] = {
            "number": answer.number,
            "question": answer.question,
            "rows": table.count(),
            "preview": [
                {k: v if isinstance(v, (int, float, str, type(None))) else str(v) for k, v in row.asDict().items()}
                for row in table.orderBy(*table.columns).limit(preview_rows).collect()
            ],
        }
    return answers


def _render_answers(answers: dict) -> str:
    lines = []
    for answer in answers.values():
        lines.append(f"\n{answer['number']}. {answer['question']} ({answer['rows']} rows)")
        if answer["preview"]:
            columns = list(answer["preview"][0])
            lines.append("   " + " | ".join(columns))
            lines += ["   " + " | ".join(str(row[c]) for c in columns) for row in answer["preview"]]
    return "\n".join(lines)


def _render(summary: dict) -> str:
    lines = [f"{'topic':<24}" + "".join(f"{c:>13}" for c in _COLUMNS)]
    for topic in summary["topics"].values():
        lines.append(f"{topic['topic']:<24}" + "".join(f"{topic[c]:>13,}" for c in _COLUMNS))
    return "\n".join(lines)
