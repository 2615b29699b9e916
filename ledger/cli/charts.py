"""Pictures of ``llmring usage report``: the rollup's rows as stacked cost bars, drawn on
the terminal (``--chart``, with rich) or written to a PNG or SVG file (``--format png|svg``,
with matplotlib), the same chart in both (docs/cli.md).

The bars are the values of the report's first time dimension (``day``, ``week``,
``month``), or of its first dimension when it has none; each bar is stacked by the
other dimensions (joined with " · "), or is one series, "cost", when there are none.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.lazy import lazy

if TYPE_CHECKING:
    from rich.console import Console

rich_text = lazy("rich.text")

TIME_DIMENSIONS = ("day", "week", "month")
# Colour-blind-safe (Okabe-Ito and Tableau) colours, with a glyph each, so that the
# series stay apart on a terminal without colours too.
COLOURS = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac")
GLYPHS = ("█", "▓", "▒", "░", "▚", "▞", "▙", "▟", "▛", "▜")
FILE_FORMATS = ("png", "svg")
MAX_BAR = 80  # columns of the longest bar on a wide terminal


@dataclass(frozen=True)
class Chart:
    """Stacked bars: ``bars`` (x labels, in order), ``series`` (name → cost in nano-USD per
    bar, largest series first), and what they are."""

    title: str
    x: str
    stack: str
    bars: tuple[str, ...]
    series: dict[str, list[int]]

    def totals(self) -> list[int]:
        return [sum(values[i] for values in self.series.values())
                for i in range(len(self.bars))]


def _label(value: Any) -> str:
    return "(none)" if value is None else str(value)


def chart_of(rows: Sequence[dict[str, Any]], by: Sequence[str], title: str) -> Chart:
    """The chart of rollup ``rows`` grouped ``by``."""
    x = next((d for d in by if d in TIME_DIMENSIONS), by[0])
    others = [d for d in by if d != x]
    bars = sorted({_label(r[x]) for r in rows})
    index = {b: i for i, b in enumerate(bars)}
    series: dict[str, list[int]] = {}
    for r in rows:
        name = " · ".join(_label(r[d]) for d in others) if others else "cost"
        series.setdefault(name, [0] * len(bars))[index[_label(r[x])]] += r["cost_nanos"]
    ordered = dict(sorted(series.items(), key=lambda kv: (-sum(kv[1]), kv[0])))
    return Chart(title, x, " · ".join(others) or "cost", tuple(bars), ordered)


def _usd(nanos: int) -> str:
    value = nanos / 1e9
    return f"${value:,.6f}" if 0 < abs(value) < 0.01 else f"${value:,.2f}"


def terminal_chart(chart: Chart, console: Console) -> None:
    """Horizontal stacked bars, one line per bar, with its total and a legend."""
    names = list(chart.series)
    totals = chart.totals()
    label_width = max(len(b) for b in chart.bars)
    money = [_usd(t) for t in totals]
    money_width = max(len(m) for m in money)
    width = max(10, min(MAX_BAR, console.width - label_width - money_width - 4))
    top = max(totals) or 1
    console.print(rich_text.Text(chart.title, style="bold"))
    for i, bar in enumerate(chart.bars):
        line = rich_text.Text(bar.ljust(label_width) + " ")
        done, position = 0, 0
        for n, name in enumerate(names):
            done += chart.series[name][i]
            end = round(done * width / top)  # cumulative: rounding never drifts
            if end > position:
                line.append(GLYPHS[n % len(GLYPHS)] * (end - position),
                            style=COLOURS[n % len(COLOURS)])
                position = end
        line.append(" " * (width - position) + " " + money[i].rjust(money_width))
        console.print(line, no_wrap=True, overflow="crop")
    legend = rich_text.Text(f"{chart.stack}: ", style="dim")
    for n, name in enumerate(names):
        legend.append(GLYPHS[n % len(GLYPHS)] * 2, style=COLOURS[n % len(COLOURS)])
        legend.append(f" {name}  ")
    console.print(legend)


def file_chart(chart: Chart, fmt: str) -> bytes:
    """The chart as PNG or SVG bytes (matplotlib, no display needed); the same input
    gives the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.4, 0.45 * len(chart.bars) + 3), 4.8), dpi=100,
                    layout="constrained")
    axes = figure.subplots()
    bottoms = [0.0] * len(chart.bars)
    for n, (name, values) in enumerate(chart.series.items()):
        usd = [v / 1e9 for v in values]
        axes.bar(chart.bars, usd, bottom=bottoms, label=name, color=COLOURS[n % len(COLOURS)])
        bottoms = [b + v for b, v in zip(bottoms, usd, strict=True)]
    axes.set_title(chart.title)
    axes.set_xlabel(chart.x)
    axes.set_ylabel("cost (USD)")
    axes.yaxis.set_major_formatter("${x:,.2f}")
    axes.tick_params(axis="x", labelrotation=45 if len(chart.bars) > 6 else 0)
    if len(chart.series) > 1 or chart.stack != "cost":
        axes.legend(title=chart.stack, fontsize="small", loc="upper left",
                    bbox_to_anchor=(1.01, 1), frameon=False)
    axes.set_ylim(0, max(max(chart.totals()) / 1e9 * 1.08, 1e-9))
    out = io.BytesIO()
    metadata = {"Date": None} if fmt == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "llmring", "svg.fonttype": "none"}):
        figure.savefig(out, format=fmt, metadata=metadata)
    return out.getvalue()


def write_chart(chart: Chart, fmt: str, path: Path) -> None:
    """Write the chart to ``path``, replaced only once it is whole."""
    data = file_chart(chart, fmt)
    part = path.with_name(path.name + ".part")
    try:
        part.write_bytes(data)
        part.replace(path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


__all__ = ["FILE_FORMATS", "Chart", "chart_of", "file_chart", "terminal_chart",
           "write_chart"]
