"""Drill-down from a chart: click a point or bar and see the records behind it.

``PageReport.chart(fig, data, title, drill=...)`` draws the chart with point selection
(``st.plotly_chart(on_select="rerun", selection_mode=("points",))``), a caption "Click a
point to see the records behind it", and, once a point is selected, the records under it:
``drill(point)`` gets a :class:`Point` — the clicked trace and position, the period it
stands for (a chart on a period axis) and which series of the KPI frame it draws
(``ui.report.match_series``: the column and the key values, e.g. a touchpoint) — and
returns a :class:`Drill` (a title and the ``kpis.records.Records``, usually from
:func:`records`), or None when there is nothing to list for that point.

The records go through ``PageReport.table(..., records=True)``: sortable columns, CSV and
XLSX downloads written to the audit log, and only analysts and admins see them (a viewer
gets the note and no query runs for them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charts import figures
from charts.theme import readable
from kpis import records as kpi_records
from kpis.records import Records

#: Record columns holding stored codes, shown as words ("website_visit" -> "Website visit").
CODE_COLUMNS = (
    "status", "category", "touchpoint", "channel", "priority", "lead_source", "lost_reason", "end_reason",
)  # fmt: skip
#: Rows of a drill-down table (and its downloads) at most; the caption says when there are more.
LIMIT = 1000
HINT = "Click a point to see the records behind it"


@dataclass(frozen=True)
class Point:
    """One selected point of a chart."""

    x: Any
    y: Any
    curve: int
    index: int
    #: the trace's name (its legend entry)
    trace: str | None = None
    #: the period the point stands for (a chart on a period axis), else None
    period: pd.Timestamp | None = None
    #: the column of the chart's KPI frame the trace draws, and the key values of its series
    column: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    #: the trace's ``meta`` when it is a dict (pages put the series' key there, e.g. a touchpoint)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def category(self) -> Any:
        """The category of a bar (``x``; ``y`` for a horizontal bar, set by the page)."""
        return self.x


@dataclass(frozen=True)
class Drill:
    """What a chart's ``drill`` callable returns: the table's title and the records."""

    title: str
    records: Records
    #: what the rows are (shown under the title), e.g. "won and lost deals by close date"
    caption: str | None = None


DrillFunction = Callable[[Point], Drill | None]


def records(
    kind: str,
    view: Any,
    period: object | None = None,
    group: object | None = None,
    *,
    filters: Any = None,
    freq: str | None = None,
) -> Records:
    """``kpis.records.records_for(kind, ...)`` for the page's filters and period length
    (or ``filters`` / ``freq`` when a chart uses others), cached like every KPI
    (``ui.data.kpi``), at most :data:`LIMIT` rows."""
    from ui.data import kpi

    if period is not None:
        period = pd.Timestamp(period).to_pydatetime()
    return kpi(
        kpi_records.drill,
        filters if filters is not None else view.filters,
        kind=kind,
        freq=freq or view.freq,
        period=period,
        group=group,
        limit=LIMIT,
    )


def selected_points(event: Any) -> list[dict[str, Any]]:
    """The points of a ``st.plotly_chart`` selection event (empty when none)."""
    if not event:
        return []
    selection = event.get("selection") if hasattr(event, "get") else getattr(event, "selection", None)
    if not selection:
        return []
    points = selection.get("points") if hasattr(selection, "get") else getattr(selection, "points", None)
    return list(points or [])


def _number(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def point_of(fig: go.Figure, data: pd.DataFrame | None, raw: dict[str, Any], freq: str | None) -> Point:
    """The :class:`Point` of a selected point ``raw`` of ``fig`` drawn from ``data``."""
    from ui.report import match_series

    curve = _number(raw.get("curve_number"))
    index = _number(raw.get("point_index", raw.get("point_number")))
    trace = fig.data[curve] if 0 <= curve < len(fig.data) else None
    period = None
    column, where = None, {}
    axis_freq = figures.period_freq(fig)
    if trace is not None and axis_freq is not None:
        x = figures.period_x(trace, axis_freq)
        if x is not None and 0 <= index < len(x):
            period = x[index]
            found = match_series(
                data, x, trace.y, (trace.meta or {}).get("column") if isinstance(trace.meta, dict) else None
            )
            if found is not None:
                column, where = found
    if period is None and axis_freq is not None and raw.get("x") is not None:
        try:
            period = pd.Timestamp(raw["x"]).tz_localize(None).normalize()
        except (TypeError, ValueError):
            period = None
    return Point(
        x=raw.get("x"),
        y=raw.get("y"),
        curve=curve,
        index=index,
        trace=getattr(trace, "name", None),
        period=period,
        column=column,
        where=dict(where),
        meta=dict(trace.meta) if trace is not None and isinstance(trace.meta, dict) else {},
    )


def show(
    report: Any, fig: go.Figure, data: pd.DataFrame | None, event: Any, drill: DrillFunction, key: str
) -> None:
    """The hint under a chart and, for a selected point, the records ``drill`` gives."""
    st.caption(f":material/ads_click: {HINT}.")
    points = selected_points(event)
    if not points:
        return
    point = point_of(fig, data, points[0], getattr(report.view, "freq", None))
    if not report.may_see_records():  # no query for a viewer: the table shows the note
        report.table(pd.DataFrame(), "Records behind the selected point", records=True)
        return
    found = drill(point)
    if found is None:
        st.caption("No records behind this point.")
        return
    frame, total = found.records.frame, found.records.total
    shown = f"{total:,} record{'s' if total != 1 else ''}"
    if len(frame) < total:
        shown = f"the first {len(frame):,} of {total:,} records (the downloads hold these rows)"
    caption = f"{found.caption + ' · ' if found.caption else ''}{shown}. Click a column header to sort."
    if frame.empty:
        st.markdown(f"**{found.title}**")
        st.caption(caption)
        return
    report.table(readable_records(frame), found.title, caption=caption, records=True, xlsx=True)


def readable_records(frame: pd.DataFrame) -> pd.DataFrame:
    """The records as shown and downloaded: codes as words (:data:`CODE_COLUMNS`), hours
    to one decimal; the numbers behind them unchanged."""
    out = frame.copy()
    for column in CODE_COLUMNS:
        if column in out and not pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].map(lambda v: readable(v) if isinstance(v, str) else v)
    for column in out.columns:
        if "hours" in str(column) and pd.api.types.is_float_dtype(out[column]):
            out[column] = out[column].round(1)
    return out


def clickable_cells(fig: go.Figure) -> go.Figure:
    """Make the cells of ``fig``'s heatmap clickable: Plotly selects no heatmap cell, so an
    invisible marker sits on each cell (its hover is the cell's, the heatmap's own hover is
    turned off) and a click selects it — ``Point.x`` / ``Point.y`` are the cell's column and row."""
    heatmaps = [trace for trace in fig.data if isinstance(trace, go.Heatmap)]
    if not heatmaps:
        return fig
    heat = heatmaps[0]
    xs, ys, texts = [], [], []
    text = heat.text if heat.text is not None else None
    for row, label in enumerate(heat.y):
        for column, value in enumerate(heat.x):
            cell = heat.z[row][column]
            if cell is None or pd.isna(cell):
                continue
            xs.append(value)
            ys.append(label)
            texts.append(text[row][column] if text is not None else f"{cell:.3g}")
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="markers",
            marker={"size": 14, "opacity": 0, "color": "#000000"},
            text=texts,
            hovertemplate=heat.hovertemplate or "%{y}, %{x}: %{text}<extra></extra>",
            showlegend=False,
            name="cells",
            selected={"marker": {"opacity": 0}},
            unselected={"marker": {"opacity": 0}},
        )
    )
    heat.hoverinfo = "skip"
    heat.hovertemplate = None
    return fig


def period_title(view: Any, period: object) -> str:
    """The clicked period as a table title says it: "Oct 2026", or "Dec 2026 (to 5 Dec)" for
    a period the view holds only part of (its records are those up to that day)."""
    if view.is_partial(period):
        return figures.partial_label(period, view.freq, view.cut)
    return view.period_label(period)
