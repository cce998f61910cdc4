"""What both halves of ``pintrest run`` share: the posts database made ready, and ``Stages``, the
project's assets materialised from this process into the project's instance, one Dagster run per
stage.

``commands/run.py`` (the batch half) and ``commands/run_stream.py`` (``--stream``) each subclass
``Stages`` with their own stages; the emulation stage, one batch of posts through a proxy, is
common to both. A stage whose run fails raises ``StageFailed``, which the command prints in one line.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pintrest_assets.commands import seconds

if TYPE_CHECKING:
    from pathlib import Path

    import dagster as dg

    from pintrest_assets.settings import Settings
    from pintrest_assets.topics import TopicSpec


def prepare_database(settings: Settings) -> None:
    """Seeds the sample database if it is empty; a database the user pointed at is only checked."""
    from pintrest_assets.settings import redact_url

    if settings.db_url_is_secret:
        from pintrest_assets.resources import database_for

        database_for(settings, resolve_secrets=True).check()  # never write sample data into it
        print(f"posts database: {redact_url(settings.db_url)}", flush=True)
        return
    from pintrest_assets.database.seed import seed_if_empty

    started = time.perf_counter()
    inserted = seed_if_empty(settings.db_url)
    if inserted is None:
        print(f"posts database: {redact_url(settings.db_url)}", flush=True)
    else:
        posts = max(inserted.values(), default=0)
        print(f"seeded the sample database: {posts:,} posts ({seconds(time.perf_counter() - started)})", flush=True)


class StageFailed(Exception):
    """A stage's Dagster run failed; its events are in the instance."""


class Stages:
    """The project's assets materialised from this process, into the project's instance.

    Each stage is one Dagster run; its events are stored in the instance and reach the terminal
    only with ``--verbose``. Check results gather in ``checks``.
    """

    def __init__(self, settings: Settings, verbose: bool):
        from pintrest_assets.definitions import defs
        from pintrest_assets.instance import project_instance

        self.settings = settings
        self.instance = project_instance(settings)
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.verbose = verbose
        self.checks: dict[str, str] = {}

    def _emulation(
        self, op: str, asset_of: Callable[[TopicSpec], str], posts: int, seed: int | None, via: str
    ) -> dict[str, dict]:
        """Materialises one emulation batch (``op``) and prints what it sent; each stream's metadata."""
        from pintrest_assets.topics import TOPICS

        started = time.perf_counter()
        result = self._materialize(
            "emulation", [asset_of(spec) for spec in TOPICS], {"ops": {op: {"config": {"posts": posts, "seed": seed}}}}
        )
        sent = {spec.name: metadata(result, asset_of(spec)) for spec in TOPICS}
        acknowledged = sum(s["records_sent"] for s in sent.values())
        failed = sum(s["records_failed"] for s in sent.values())
        drawn = max(s["posts_drawn"] for s in sent.values())
        print(
            f"emulated {drawn:,} posts{via}: {acknowledged:,} records acknowledged"
            + (f", {failed:,} failed" if failed else "")
            + f" ({seconds(time.perf_counter() - started)})",
            flush=True,
        )
        return sent

    def _materialize(self, stage: str, asset_names: Iterable[str], run_config: dict | None = None):
        """Runs ``stage``: the assets named, in process, with a progress bar of its steps; gathers
        its checks' results. Raises ``StageFailed`` if the run fails."""
        import dagster as dg
        from tqdm import tqdm

        from pintrest_assets import run_summary
        from pintrest_assets.settings import ConfigError

        run_id = str(uuid.uuid4())
        selection = [dg.AssetKey(name) for name in asset_names]
        steps = len(self.job.get_subset(asset_selection=set(selection)).graph.node_dict)
        # Every event is stored in the instance whatever the console shows: DEBUG with
        # --verbose, otherwise nothing (a failure is reported below, in one line) but a
        # progress bar of the steps done, on a terminal.
        loggers = {"console": {"config": {"log_level": "DEBUG" if self.verbose else "CRITICAL"}}}
        bar = tqdm(total=steps, unit="step", desc=stage, file=sys.stderr, leave=False, disable=self.verbose or None)
        self.instance.add_event_listener(run_id, lambda event: _advance(bar, event))
        try:
            result = self.job.execute_in_process(
                run_config={**(run_config or {}), "loggers": loggers},
                instance=self.instance,
                asset_selection=selection,
                run_id=run_id,
                tags={"pintrest/launched_by": "pintrest run", "pintrest/stage": stage},
            )
        except ConfigError:
            raise  # a setting: named in one line by the command
        except Exception as exc:
            raise StageFailed(
                f"the {stage} run failed: {type(exc).__name__}: {exc}\n"
                f"(run {run_id}: its events are in the Dagster instance; `pintrest dev` shows them, "
                f"--verbose prints them)"
            ) from exc
        finally:
            bar.close()
        for evaluation in result.get_asset_check_evaluations():
            name = f"{evaluation.asset_key.to_user_string()}/{evaluation.check_name}"
            self.checks[name] = run_summary.check_result(evaluation.passed, evaluation.severity.value)
        return result


def _advance(bar, event) -> None:
    """Moves a stage's progress bar on as its run's steps start and finish."""
    import dagster as dg

    if event.dagster_event is None:
        return
    if event.dagster_event.event_type == dg.DagsterEventType.STEP_START:
        bar.set_postfix_str(event.step_key, refresh=True)
    elif event.dagster_event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_SKIPPED):
        bar.update(1)


def metadata(result: dg.ExecuteInProcessResult, asset_name: str) -> dict:
    """The metadata of the asset's materialisation in ``result``, as plain values."""
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key.to_user_string() == asset_name:
            return {k: v.value for k, v in materialization.metadata.items()}
    raise KeyError(asset_name)


def write_summary(settings: Settings, name: str, summary: dict) -> Path:
    """Writes ``summary`` as JSON to ``$PINTREST_HOME/<name>``; returns the path."""
    import json

    path = settings.home / name
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def report_problems(problems: list[str]) -> int:
    """Prints each problem on stderr, ``pintrest run: ...``; the exit code: 1 if any."""
    for problem in problems:
        print(f"pintrest run: {problem}", file=sys.stderr)
    return 1 if problems else 0
