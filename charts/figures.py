"""Figure builders for the dashboard pages: plain Plotly from small KPI frames (no
Streamlit, no statistics — the numbers come from ``kpis`` as they are).

Every builder takes the frame a ``kpis`` function returned and the registry unit of the
plotted value, so axes and hover texts are formatted the same way everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from charts.theme import BAD, GOOD, NEUTRAL, PALETTE, SEQUENTIAL, axis_format, fmt_value

PERIOD_HOVER = {"month": "%b %Y", "quarter": "Q%q %Y", "year": "%Y"}


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


#: Most ticks a period axis shows before it labels every second (third, …) period.
MAX_PERIOD_TICKS = 12


def period_axis(fig: go.Figure, freq: str) -> None:
    """Ticks on period starts, labelled like the periods ("Nov 2025", "Q1 2026", "2026"):
    one per period, or every k-th when there are more than ``MAX_PERIOD_TICKS`` (Plotly's
    automatic ticks fall between quarters and repeat their labels)."""
    months = {"month": 1, "quarter": 3, "year": 12}[freq]
    periods = {pd.Timestamp(x) for trace in fig.data if trace.x is not None for x in trace.x}
    step = months * max(1, math.ceil(len(periods) / MAX_PERIOD_TICKS))
    fig.update_xaxes(
        tick0="2000-01-01", dtick=f"M{step}", tickformat=PERIOD_HOVER[freq], hoverformat=PERIOD_HOVER[freq]
    )


def trend(
    frame: pd.DataFrame,
    columns: Sequence[str],
    unit: str,
    freq: str,
    *,
    names: Sequence[str] | None = None,
    interval: tuple[str, str] | None = None,
    y_title: str | None = None,
    kind: str = "line",
) -> go.Figure:
    """One line (or bar) per column over ``period``; ``interval`` = (low, high) columns
    drawn as a shaded 95 % band around the first column."""
    fig = go.Figure()
    labels = list(names or columns)
    if interval and interval[0] in frame and interval[1] in frame:
        low, high = interval
        fig.add_trace(
            go.Scatter(
                x=frame["period"],
                y=frame[high],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=frame["period"],
                y=frame[low],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor=_rgba(PALETTE[0], 0.18),
                name="95 % interval",
                hoverinfo="skip",
            )
        )
    for i, (column, label) in enumerate(zip(columns, labels, strict=True)):
        colour = PALETTE[i % len(PALETTE)]
        if kind == "bar":
            fig.add_trace(go.Bar(x=frame["period"], y=frame[column], name=label, marker_color=colour))
        else:
            fig.add_trace(
                go.Scatter(
                    x=frame["period"],
                    y=frame[column],
                    name=label,
                    mode="lines+markers",
                    line={"color": colour, "width": 2},
                )
            )
    fig.update_yaxes(title_text=y_title, **axis_format(unit))
    if unit == "ratio":
        fig.update_yaxes(rangemode="tozero")
    period_axis(fig, freq)
    fig.update_layout(showlegend=len(columns) > 1 or interval is not None, barmode="group")
    return fig


def bars(
    frame: pd.DataFrame,
    category: str,
    columns: Sequence[str],
    unit: str,
    *,
    names: Sequence[str] | None = None,
    errors: tuple[str, str] | None = None,
    horizontal: bool = False,
    y_title: str | None = None,
    category_labels: dict[str, str] | None = None,
) -> go.Figure:
    """Grouped bars per ``category``; ``errors`` = (low, high) columns drawn as 95 %
    error bars on the first column."""
    fig = go.Figure()
    categories = frame[category].astype(str)
    if category_labels:
        categories = categories.map(lambda v: category_labels.get(v, v))
    for i, (column, label) in enumerate(zip(columns, names or columns, strict=True)):
        error = None
        if i == 0 and errors and errors[0] in frame and errors[1] in frame:
            error = {
                "type": "data",
                "symmetric": False,
                "array": (frame[errors[1]] - frame[column]).tolist(),
                "arrayminus": (frame[column] - frame[errors[0]]).tolist(),
                "color": NEUTRAL,
                "thickness": 1.2,
            }
        bar = {"name": label, "marker_color": PALETTE[i % len(PALETTE)]}
        if horizontal:
            fig.add_trace(go.Bar(y=categories, x=frame[column], orientation="h", error_x=error, **bar))
        else:
            fig.add_trace(go.Bar(x=categories, y=frame[column], error_y=error, **bar))
    value_axis = fig.update_xaxes if horizontal else fig.update_yaxes
    value_axis(title_text=y_title, **axis_format(unit))
    fig.update_layout(barmode="group", showlegend=len(columns) > 1, hovermode="closest")
    if horizontal:
        # tall enough for one label per bar: Plotly skips every other category label when
        # they do not fit (owners, countries)
        fig.update_yaxes(autorange="reversed")
        fig.update_layout(height=horizontal_height(len(frame), len(columns)))
    return fig


def horizontal_height(categories: int, series: int = 1) -> int:
    """Pixels for a horizontal bar chart: ~22 px per category label (more for grouped bars),
    plus room for the title, legend and value axis; never below the usual 360 px."""
    per_category = 22 + 8 * max(series - 1, 0)
    return max(360, per_category * categories + 170)


def funnel(frame: pd.DataFrame, reached: str, step: str, cumulative: str) -> go.Figure:
    """Pipeline funnel: deals reaching each stage, with step and cumulative conversion."""
    text = [
        f"{fmt_value(n, 'count')} · step {fmt_value(s, 'ratio')} · from top {fmt_value(c, 'ratio')}"
        for n, s, c in zip(frame[reached], frame[step], frame[cumulative], strict=True)
    ]
    fig = go.Figure(
        go.Funnel(
            y=frame["stage"].astype(str),
            x=frame[reached],
            text=text,
            textinfo="text",
            marker={"color": [PALETTE[i % len(PALETTE)] for i in range(len(frame))]},
            connector={"line": {"color": NEUTRAL, "width": 1}},
            hovertemplate="%{y}: %{x:,} deals<extra></extra>",
        )
    )
    fig.update_yaxes(automargin=True)
    fig.update_layout(hovermode="closest", margin={"l": 110})
    return fig


def histogram_bins(
    frame: pd.DataFrame, start: str, end: str, count: str, unit_label: str = "days"
) -> go.Figure:
    """Pre-binned counts (``kpis`` returns the bins) drawn as a histogram."""
    labels = [f"{a:,.0f}–{b:,.0f}" for a, b in zip(frame[start], frame[end], strict=True)]
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=frame[count],
            marker_color=PALETTE[0],
            hovertemplate=f"%{{x}} {unit_label}: %{{y:,}}<extra></extra>",
        )
    )
    fig.update_xaxes(title_text=unit_label, type="category")
    fig.update_yaxes(title_text="deals", **axis_format("count"))
    fig.update_layout(bargap=0.05, hovermode="closest")
    return fig


def heatmap(
    frame: pd.DataFrame,
    row: str,
    column: str,
    value: str,
    unit: str,
    *,
    row_format: str = "%b %Y",
    x_title: str = "",
) -> go.Figure:
    """A grid of ``value`` by ``row`` × ``column`` (e.g. cohort × months since start)."""
    grid = frame.pivot_table(
        index=row, columns=column, values=value, aggfunc="first", dropna=False
    ).sort_index()
    rows = [pd.Timestamp(r).strftime(row_format) if row_format else str(r) for r in grid.index]
    text = [[fmt_value(v, unit) if pd.notna(v) else "" for v in line] for line in grid.to_numpy()]
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[str(c) for c in grid.columns],
            y=rows,
            text=text,
            texttemplate="%{text}",
            textfont={"size": 9},
            colorscale=[[i / (len(SEQUENTIAL) - 1), c] for i, c in enumerate(SEQUENTIAL)],
            zmin=0,
            zmax=1 if unit == "ratio" else None,
            colorbar={"tickformat": axis_format(unit)["tickformat"]},
            hovertemplate="%{y}, +%{x}: %{text}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title_text=x_title, type="category")
    fig.update_layout(hovermode="closest", height=max(360, 22 * len(rows) + 120))
    return fig


def good_bad_bars(
    frame: pd.DataFrame, category: str, good: str, bad: str, names: tuple[str, str]
) -> go.Figure:
    """Two bars per category in the good / bad colours (e.g. new vs churned customers)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=frame[category], y=frame[good], name=names[0], marker_color=GOOD))
    fig.add_trace(go.Bar(x=frame[category], y=frame[bad], name=names[1], marker_color=BAD))
    fig.update_yaxes(**axis_format("count"))
    fig.update_layout(barmode="group")
    return fig
