"""Charts of the answers: PNG images drawn with matplotlib's Agg canvas, embedded in markdown.

Figures are drawn on their own ``FigureCanvasAgg``, never through ``pyplot``: no global figure
state, no GUI backend, safe in a run's worker thread. matplotlib is imported when a chart is
drawn: every run process loads the definitions, and a lake refresh draws none.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def markdown_image(png: bytes, title: str) -> str:
    """A PNG as a markdown image that carries its data (the UI shows it inline)."""
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _png(figure: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    return buffer.getvalue()


def posts_per_category_chart(rows: Sequence[Sequence]) -> bytes:
    """Rows of (post_year, category, category_count) as one line per category over the years."""
    from matplotlib.figure import Figure

    years = sorted({year for year, _, _ in rows})
    counts = {(year, category): count for year, category, count in rows}
    figure = Figure(figsize=(8, 4.5))
    axes = figure.add_subplot()
    colours = _colours(len({category for _, category, _ in rows}))
    for colour, category in zip(colours, sorted({category for _, category, _ in rows})):
        # A category without posts in a year had none: zero, not a gap.
        axes.plot(years, [counts.get((year, category), 0) for year in years], marker="o", label=category, color=colour)
    axes.set_xticks(years)
    axes.set(title="Posts per category per year", xlabel="year", ylabel="posts")
    axes.grid(alpha=0.3)
    if rows:
        axes.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    return _png(figure)


def bar_chart(rows: Sequence[Sequence], *, title: str, xlabel: str, ylabel: str) -> bytes:
    """Rows of (label, value) as bars, each labelled with its value."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    bars = axes.bar([str(label) for label, _ in rows], [value for _, value in rows], color="#4c72b0")
    axes.bar_label(bars, labels=[f"{value:,.0f}" for _, value in rows], fontsize="small")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _colours(n: int) -> list:
    from matplotlib import colormaps

    palette = colormaps["tab20"]
    return [palette(i % palette.N) for i in range(n)]
