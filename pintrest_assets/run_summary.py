"""The summary of a `pintrest run`: what it holds, how it reads on the terminal, and its verdict.

Pure functions over plain data: the command gathers the materialisations' metadata, these
shape it, render it and judge it. The summary is what ``$PINTREST_HOME/run_summary.json`` holds::

    {"topics": {"pin": {"topic", "sent", "failed", "offset_ranges", "landed", "objects_read",
                        "records_read", "rows_read", "quarantined", "records_in_bucket",
                        "rows_total", "quarantined_total"}, ...},
     "checks": {"df_pin/records_reconciled": "passed" | "failed (ERROR)" | "failed (WARN)", ...},
     "answers": {"<asset>": {"number", "question", "rows", "preview": [row, ...]}, ...}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

TABLE_COLUMNS = ("sent", "failed", "landed", "rows_read", "quarantined", "rows_total")
PASSED = "passed"


def stream_summary(stream: Mapping) -> dict:
    """A topic's entry from its stream materialisation's metadata."""
    return {
        "topic": stream["topic"],
        "sent": stream["records_sent"],
        "failed": stream["records_failed"],
        "offset_ranges": stream["offset_ranges"],
    }


def lake_summary(raw: Mapping, dataframe: Mapping) -> dict:
    """What a topic's raw JSON and DataFrame materialisations add to its entry."""
    return {
        "objects_read": dataframe["objects_read"],
        "records_read": dataframe["records_in_objects"],
        "rows_read": dataframe["rows_read"],
        "quarantined": dataframe["quarantined"],
        "records_in_bucket": raw["records"],
        "rows_total": dataframe["dagster/row_count"],
        "quarantined_total": dataframe["quarantined_total"],
    }


def check_result(passed: bool, severity: str) -> str:
    return PASSED if passed else f"failed ({severity})"


def render_checks(checks: Mapping[str, str]) -> str:
    """``checks: 24 passed, 0 failed``, naming the ones that failed."""
    failed = [f"{name} {state}" for name, state in checks.items() if state != PASSED]
    line = f"checks: {len(checks) - len(failed)} passed, {len(failed)} failed"
    return line + (": " + ", ".join(failed) if failed else "")


def render_table(topics: Iterable[Mapping]) -> str:
    """One line per topic: sent, failed, landed, rows read, quarantined, rows in all."""
    lines = [f"{'topic':<24}" + "".join(f"{c:>13}" for c in TABLE_COLUMNS)]
    for topic in topics:
        lines.append(f"{topic['topic']:<24}" + "".join(f"{topic[c]:>13,}" for c in TABLE_COLUMNS))
    return "\n".join(lines)


def render_answers(answers: Mapping[str, Mapping]) -> str:
    """Each question with its row count and first rows."""
    lines = []
    for answer in answers.values():
        rows = f"{answer['rows']:,} row" + ("" if answer["rows"] == 1 else "s")
        lines.append(f"\n{answer['number']}. {answer['question']} ({rows})")
        if answer["preview"]:
            columns = list(answer["preview"][0])
            lines.append("   " + " | ".join(columns))
            lines += ["   " + " | ".join(str(row[c]) for c in columns) for row in answer["preview"]]
    return "\n".join(lines)


def problems(summary: Mapping) -> list[str]:
    """Why the run failed: nothing if every record sent landed, every record landed became a row
    or a quarantined line, and no error-severity check failed."""
    found = []
    for name, t in summary["topics"].items():
        if t["landed"] < t["sent"] or t["failed"]:
            found.append(f"{name}: {t['sent']} sent, {t['failed']} failed, {t['landed']} landed")
        if t["rows_read"] + t["quarantined"] != t["records_read"]:
            found.append(
                f"{name}: {t['records_read']} records read from new objects, "
                f"but {t['rows_read']} rows + {t['quarantined']} quarantined"
            )
        if t["rows_total"] + t["quarantined_total"] != t["records_in_bucket"]:
            found.append(
                f"{name}: {t['records_in_bucket']} records in the bucket, "
                f"but {t['rows_total']} rows + {t['quarantined_total']} quarantined in {name}'s DataFrame"
            )
    found += [f"check {name} {state}" for name, state in summary["checks"].items() if state == "failed (ERROR)"]
    return found
