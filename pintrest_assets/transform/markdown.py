"""Small markdown tables for the metadata shown in the UI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

# More rows than this make a metadata table hard to read; the table itself holds them all.
MAX_ROWS = 100


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence], max_rows: int = MAX_ROWS) -> str:
    """``rows`` under ``columns`` as a markdown table, the first ``max_rows`` of them."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows[:max_rows]]
    if len(rows) > max_rows:
        lines.append(f"\n{len(rows) - max_rows:,} more rows not shown ({len(rows):,} in all).")
    if not rows:
        lines.append("\n(no rows)")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        text = str(int(value)) if value.is_integer() else f"{value:.1f}"
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")
