"""Figure builders for the dashboard pages: plain Plotly from small KPI frames (no
Streamlit, no statistics — the numbers come from ``kpis`` as they are).

Every builder takes the frame a ``kpis`` function returned and the registry unit of the
plotted value, so axes and hover texts are formatted the same way everywhere.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from charts.theme import (
    BAD,
    CODE,
    GOOD,
    NEUTRAL,
    NOT_FROM_ZERO,
    PALETTE,
    SEQUENTIAL,
    WORD_CODE,
    axis_format,
    fmt_money,
    fmt_value,
    is_code_column,
)
from charts.theme import label as code_label
from kpis.core import is_partial

PERIOD_HOVER = {"month": "%b %Y", "quarter": "Q%q %Y", "year": "%Y"}
PERIOD_MONTHS = {"month": 1, "quarter": 3, "year": 12}
#: ``fig.layout.meta`` keys: the period length of a period axis (set by :func:`period_axis`)
#: and the partial periods :func:`mark_periods` marked (ISO dates).
PERIOD_META, PARTIAL_META = "period_freq", "partial_periods"
#: A partial bar: lighter, hatched; a partial point: an open marker at the end of a dotted line.
PARTIAL_OPACITY = 0.45
PARTIAL_PATTERN = "/"
PARTIAL_DASH = "dot"


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
    months = PERIOD_MONTHS[freq]
    periods = {pd.Timestamp(x) for trace in fig.data if trace.x is not None for x in trace.x}
    step = months * max(1, math.ceil(len(periods) / MAX_PERIOD_TICKS))
    fig.update_xaxes(
        tick0="2000-01-01", dtick=f"M{step}", tickformat=PERIOD_HOVER[freq], hoverformat=PERIOD_HOVER[freq]
    )
    fig.update_layout(meta={**_layout_meta(fig), PERIOD_META: freq})


def _layout_meta(fig: go.Figure) -> dict:
    meta = fig.layout.meta
    return dict(meta) if isinstance(meta, dict) else {}


def period_freq(fig: go.Figure) -> str | None:
    """The period length of ``fig``'s period axis (:func:`period_axis`), else None."""
    return _layout_meta(fig).get(PERIOD_META)


def period_text(period: object, freq: str) -> str:
    """A period start as the user says it: "Apr 2026", "Q2 2026" or "2026"."""
    stamp = pd.Timestamp(period)
    if freq == "year":
        return f"{stamp.year}"
    if freq == "quarter":
        return f"Q{stamp.quarter} {stamp.year}"
    return stamp.strftime("%b %Y")


def partial_note(period: object, cut: dt.date) -> str:
    """How far a partial period goes: "to 6 Dec" (its last day with data, ``cut`` being the
    first day without), or "no data yet" for a period that starts at or after ``cut``."""
    last = pd.Timestamp(cut) - pd.Timedelta(days=1)
    if last < pd.Timestamp(period):
        return "no data yet"
    return f"to {last.day} {last:%b}"


def partial_label(period: object, freq: str, cut: dt.date, separator: str = " ") -> str:
    """ "Dec 2026 (to 6 Dec)": the period and how far it goes."""
    return f"{period_text(period, freq)}{separator}({partial_note(period, cut)})"


def period_x(trace: object, freq: str) -> list[pd.Timestamp] | None:
    """The trace's x as period starts, or None when it is not a series over periods (an
    interval band, a helper line, categories, weeks)."""
    x = getattr(trace, "x", None)
    if x is None or len(x) == 0 or getattr(trace, "hoverinfo", None) == "skip":
        return None
    if isinstance(trace.meta, dict) and trace.meta.get("partial_helper"):
        return None
    try:
        stamps = [pd.Timestamp(v) for v in x]
    except (TypeError, ValueError):
        return None
    months = PERIOD_MONTHS[freq]
    if any(pd.isna(s) or s != s.normalize() or s.day != 1 or (s.month - 1) % months for s in stamps):
        return None
    return [s.tz_localize(None) if s.tzinfo is not None else s for s in stamps]


def numbers(values: object, n: int) -> np.ndarray:
    if values is None:
        return np.full(n, np.nan)
    return pd.to_numeric(pd.Series(list(values)), errors="coerce").to_numpy(dtype=float)


def _delta_text(change: float, reference: float, value_format: tuple[str, str]) -> str:
    """A change formatted like the axis it is read on: rates in percentage points, money
    with the currency, other numbers with the axis's decimals and suffix; the relative
    change beside amounts and counts (not beside rates or a signed scale such as NPS)."""
    spec, suffix = value_format
    sign = "+" if change >= 0 else "−"
    if "%" in spec:
        return _unsigned_if_zero(f"{sign}{abs(100 * change):,.1f} pp")
    if "$" in spec:
        text = sign + fmt_money(abs(change))
    else:
        decimals = next((int(c) for c in spec.split(".")[-1] if c.isdigit()), 0) if "." in spec else 0
        text = f"{sign}{abs(change):,.{decimals}f}{suffix}"
    if reference and "+" not in spec:  # not beside a signed scale (NPS): its ratio means nothing
        relative = change / abs(reference)
        text += f" ({'+' if relative >= 0 else '−'}{abs(100 * relative):,.1f} %)"
    return _unsigned_if_zero(text)


def _unsigned_if_zero(text: str) -> str:
    """ "+0.0 pp" -> "0.0 pp": a change that reads as zero has no direction."""
    head = text.split(" (")[0]
    if text[:1] in "+−" and not any(ch in "123456789" for ch in head):
        text = text[1:].replace("(+0.0 %)", "(0.0 %)").replace("(−0.0 %)", "(0.0 %)")
    return text


def _open_symbol(symbol: object) -> str:
    name = str(symbol or "circle")
    return name if name.endswith("-open") or "-open-" in name else f"{name}-open"


def _trace_colour(fig: go.Figure, index: int, trace: object) -> str:
    for colour in (
        getattr(trace.line, "color", None) if hasattr(trace, "line") else None,
        trace.marker.color,
    ):
        if isinstance(colour, str):
            return colour
    colorway = fig.layout.colorway or PALETTE
    return colorway[index % len(colorway)]


def mark_periods(
    fig: go.Figure,
    cut: dt.date,
    last_year: Mapping[int, Mapping[pd.Timestamp, float]] | None = None,
) -> list[pd.Timestamp]:
    """Mark the partial periods of a figure with a period axis (:func:`period_axis`) and
    put the changes on the previous period and on the same period last year in its hover.

    ``cut`` is the first day without data (``View.cut``): a period ending after it is
    partial (``kpis.core.is_partial``). Such a period is drawn apart — a line's last segment
    dotted and its marker open, a bar lighter and hatched — its axis label says how far it
    goes ("Dec 2026 (to 6 Dec)") and its hover says "to date". The hover of every point
    adds "vs Nov 2026: +0.3 pp" (complete periods only: a partial period is not compared
    with the one before) and "vs Dec 2025: −0.1 pp", last year's value coming from
    ``last_year`` (trace index -> this year's period -> the same period a year earlier, a
    partial one cut at the same day) or, for complete periods, from the trace itself when it
    reaches back a year. Returns the partial periods; a figure without a period axis is left
    as it is."""
    freq = period_freq(fig)
    if freq is None:
        return []
    months = PERIOD_MONTHS[freq]
    series = [(i, trace, x) for i, trace in enumerate(fig.data) if (x := period_x(trace, freq))]
    periods = sorted({p for _, _, x in series for p in x})
    partial = {p for p in periods if is_partial(p, freq, cut, cut)}
    helpers: list[go.Scatter] = []
    for index, trace, x in series:
        y = numbers(trace.y, len(x))
        flags = [p in partial for p in x]
        own = dict(zip(x, y, strict=True))
        reference = (last_year or {}).get(index)
        spec = _value_format(trace, fig.layout[_axis_name(trace)])
        lines = [
            _hover_lines(p, v, flags[k], own, partial, reference, freq, months, cut, spec)
            for k, (p, v) in enumerate(zip(x, y, strict=True))
        ]
        _set_hover(trace, lines)
        if any(flags):
            helpers += _style_partial(fig, index, trace, x, y, flags)
    for helper in helpers:
        fig.add_trace(helper)
    if partial:
        step = max(1, math.ceil(len(periods) / MAX_PERIOD_TICKS))
        ticks = periods[::-1][::step][::-1]  # counted back from the last period: it is labelled
        fig.update_xaxes(
            tickmode="array",
            tickvals=ticks,
            ticktext=[
                partial_label(p, freq, cut, "<br>") if p in partial else period_text(p, freq) for p in ticks
            ],
        )
    fig.update_layout(
        meta={**_layout_meta(fig), PARTIAL_META: [p.date().isoformat() for p in sorted(partial)]}
    )
    return sorted(partial)


def _value_format(trace: object, axis: object) -> tuple[str, str]:
    """(d3 format, suffix) the trace's values are read in: the format of ``%{y:…}`` in its
    hover template, else its y axis's hover or tick format."""
    template = trace.hovertemplate if isinstance(trace.hovertemplate, str) else ""
    found = re.search(r"%\{y:([^}]+)\}", template)
    spec = (
        found.group(1) if found else getattr(axis, "hoverformat", None) or getattr(axis, "tickformat", None)
    )
    return str(spec or ""), str(getattr(axis, "ticksuffix", None) or "")


def _axis_name(trace: object) -> str:
    name = getattr(trace, "yaxis", None) or "y"
    return "yaxis" + name[1:]


def _hover_lines(
    period: pd.Timestamp,
    value: float,
    partial_point: bool,
    own: Mapping[pd.Timestamp, float],
    partial: set[pd.Timestamp],
    reference: Mapping[pd.Timestamp, float] | None,
    freq: str,
    months: int,
    cut: dt.date,
    value_format: tuple[str, str],
) -> list[str]:
    lines = []
    if partial_point:
        lines.append(f"to date ({partial_note(period, cut)})")
    elif not math.isnan(value):
        before = period - pd.DateOffset(months=months)
        previous = own.get(before, math.nan)
        if before not in partial and not math.isnan(previous):
            lines.append(
                f"vs {period_text(before, freq)}: {_delta_text(value - previous, previous, value_format)}"
            )
    year_ago = period - pd.DateOffset(years=1)
    if reference is not None:
        last = reference.get(period, math.nan)
    else:  # the trace itself, complete periods only (a partial one needs last year cut alike)
        last = own.get(year_ago, math.nan) if not partial_point and year_ago not in partial else math.nan
    if not (math.isnan(value) or last is None or math.isnan(last)):
        label = (
            partial_label(year_ago, freq, pd.Timestamp(cut) - pd.DateOffset(years=1))
            if partial_point
            else (period_text(year_ago, freq))
        )
        lines.append(f"vs {label}: {_delta_text(value - last, last, value_format)}")
    return lines


def _set_hover(trace: object, lines: list[list[str]]) -> None:
    """Append ``lines`` (one list per point) to the trace's hover."""
    if not any(lines):
        return
    extra = ["<br>".join(point) for point in lines]
    template = trace.hovertemplate
    if isinstance(template, str) and template:
        head, tag, tail = template.partition("<extra>")
        trace.hovertemplate = [f"{head}<br>{e}{tag}{tail}" if e else template for e in extra]
        return
    base = trace.hovertext if trace.hovertext is not None else None
    if isinstance(base, str):
        base = [base] * len(extra)
    trace.hovertext = [
        "<br>".join(part for part in ((str(base[k]) if base is not None else ""), e) if part)
        for k, e in enumerate(extra)
    ]


def _style_partial(
    fig: go.Figure, index: int, trace: object, x: list[pd.Timestamp], y: np.ndarray, flags: list[bool]
) -> list[go.Scatter]:
    """Draw the partial points apart; returns the helper lines to add (Scatter traces)."""
    if isinstance(trace, go.Bar):
        opacity = trace.marker.opacity if trace.marker.opacity is not None else 1.0
        opacities = list(opacity) if isinstance(opacity, list | tuple) else [opacity] * len(x)
        shape = trace.marker.pattern.shape
        shapes = list(shape) if isinstance(shape, list | tuple) else [shape or ""] * len(x)
        trace.marker.opacity = [PARTIAL_OPACITY if f else o for f, o in zip(flags, opacities, strict=True)]
        trace.marker.pattern.shape = [PARTIAL_PATTERN if f else s for f, s in zip(flags, shapes, strict=True)]
        return []
    if not isinstance(trace, go.Scatter):
        return []
    mode = trace.mode or "lines+markers"
    symbol = trace.marker.symbol
    symbols = list(symbol) if isinstance(symbol, list | tuple) else [symbol or "circle"] * len(x)
    trace.marker.symbol = [_open_symbol(s) if f else s for f, s in zip(flags, symbols, strict=True)]
    if "lines" not in mode:
        return []
    colour = _trace_colour(fig, index, trace)
    line = {
        "color": colour,
        "width": trace.line.width or 2,
        "shape": trace.line.shape,
        "dash": trace.line.dash,
    }
    if "markers" not in mode:  # a line without markers gets one marker: the partial point
        trace.marker.size = [9 if f else 0 for f in flags]
        trace.mode = f"{mode}+markers"
    if trace.marker.color is None:
        trace.marker.color = colour
    if not trace.legendgroup:
        trace.legendgroup = f"series-{index}"
    # the trace keeps its data, mode and hover; its line is drawn by the two helpers below,
    # solid over the complete periods and dotted to the partial ones
    trace.line.width = 0
    solid = [None if f else v for f, v in zip(flags, y, strict=True)]
    # the dotted part: each partial point and the point before it
    dotted = [
        v if f or (k + 1 < len(flags) and flags[k + 1]) else None
        for k, (f, v) in enumerate(zip(flags, y, strict=True))
    ]
    common = {
        "x": x,
        "mode": "lines",
        "hoverinfo": "skip",
        "showlegend": False,
        "legendgroup": trace.legendgroup,
        "xaxis": trace.xaxis,
        "yaxis": trace.yaxis,
    }
    return [
        go.Scatter(
            y=solid,
            name=f"{trace.name or ''} (complete)",
            line=line,
            meta={"partial_helper": "line"},
            **common,
        ),
        go.Scatter(
            y=dotted,
            name=f"{trace.name} (to date)",
            line={**line, "dash": PARTIAL_DASH},
            meta={"partial_helper": "to date"},
            **common,
        ),
    ]


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
            fig.add_trace(
                go.Bar(
                    x=frame["period"],
                    y=frame[column],
                    name=label,
                    marker_color=colour,
                    meta={"column": column},
                )
            )
        else:
            fig.add_trace(
                go.Scatter(
                    x=frame["period"],
                    y=frame[column],
                    name=label,
                    mode="lines+markers",
                    line={"color": colour, "width": 2},
                    meta={"column": column},
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
    frame: pd.DataFrame, category: str, good: str, bad: str, names: tuple[str, str], freq: str | None = None
) -> go.Figure:
    """Two bars per category in the good / bad colours (e.g. new vs churned customers);
    with ``freq`` the category is a period column, drawn on a period axis."""
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=frame[category], y=frame[good], name=names[0], marker_color=GOOD, meta={"column": good})
    )
    fig.add_trace(
        go.Bar(x=frame[category], y=frame[bad], name=names[1], marker_color=BAD, meta={"column": bad})
    )
    fig.update_yaxes(**axis_format("count"))
    fig.update_layout(barmode="group")
    if freq:
        period_axis(fig, freq)
    return fig


#: ``trace.meta`` key: label -> the stored code it replaced (for a click that needs the code).
CODES_META = "codes"


def _labelled(values: object) -> tuple[list[object], dict[str, str]] | None:
    """``values`` with code categories as labels and the label -> code map; None when
    nothing changes (numbers, dates, text written for people)."""
    if values is None or isinstance(values, str | bytes | dict):
        return None
    try:
        items = list(values)
    except TypeError:
        return None
    if not items or not all(isinstance(v, str) or v is None for v in items):
        return None
    texts = [v for v in items if isinstance(v, str)]
    whole = is_code_column(texts)
    codes = {v: code_label(v) for v in texts if (whole and WORD_CODE.match(v)) or CODE.match(v)}
    codes = {code: shown for code, shown in codes.items() if shown != code}
    if not codes:
        return None
    return [codes.get(v, v) if isinstance(v, str) else v for v in items], {s: c for c, s in codes.items()}


def readable_figure(fig: go.Figure) -> go.Figure:
    """Every stored code a reader would meet in ``fig`` shown as its label
    (``charts.theme.label``: ``paid_search`` -> "Paid search", an unknown
    ``website_visit`` -> "Website visit"): legend entries, bar / funnel / pie categories,
    tick labels, annotations (subplot titles) and hover texts that are a code. The codes a
    trace's categories replaced stay in ``trace.meta["codes"]`` (label -> code). Changes
    ``fig`` in place and returns it; text written for people is left as it is."""
    for trace in fig.data:
        name = getattr(trace, "name", None)
        if isinstance(name, str) and (CODE.match(name) or name in _known_words()):
            trace.name = code_label(name)
        replaced: dict[str, str] = {}
        for field in ("x", "y", "labels", "text", "hovertext"):
            if field not in trace:
                continue
            value = trace[field]
            if isinstance(value, str):
                if CODE.match(value):
                    trace[field] = code_label(value)
                continue
            found = _labelled(value)
            if found is not None:
                trace[field], codes = found
                if field in ("x", "y", "labels"):
                    replaced.update(codes)
        if replaced:
            meta = trace.meta if isinstance(trace.meta, dict) else ({} if trace.meta is None else None)
            if meta is not None:
                trace.meta = {**meta, CODES_META: {**meta.get(CODES_META, {}), **replaced}}
    for axis_name in [k for k in fig.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[axis_name]
        for field in ("ticktext", "categoryarray"):
            found = _labelled(axis[field])
            if found is not None:
                axis[field] = found[0]
    for annotation in fig.layout.annotations or ():
        if isinstance(annotation.text, str) and (
            CODE.match(annotation.text) or annotation.text in _known_words()
        ):
            annotation.text = code_label(annotation.text)
    return fig


def _known_words() -> frozenset[str]:
    from charts.theme import _enum_words

    return _enum_words()


def rate_axes_from_zero(fig: go.Figure) -> go.Figure:
    """Every rate axis of ``fig`` (a percentage tick format) starts at zero
    (``rangemode="tozero"``) unless it has an explicit range or is marked as not starting
    there (``charts.theme.mark_not_from_zero``): a zoomed rate axis makes a 0.3 pp change
    look like a collapse. Changes ``fig`` in place and returns it."""
    for name in [k for k in fig.layout.to_plotly_json() if re.fullmatch(r"[xy]axis\d*", k)]:
        axis = fig.layout[name]
        if not str(axis.tickformat or "").endswith("%") or axis.type in ("category", "date"):
            continue
        if axis.range is not None or NOT_FROM_ZERO in str(axis.title.text or ""):
            continue
        if axis.rangemode in (None, "normal"):
            axis.rangemode = "tozero"
    return fig


#: Pixels from the top of a figure to the top of its legend when the legend sits between the
#: title and the subplot titles (:func:`legend_between_title_and_subplots`), and the top
#: margin that leaves room for the subplot titles under it.
LEGEND_TOP_PX, SUBPLOT_TOP_MARGIN_PX = 36, 112


def legend_between_title_and_subplots(fig: go.Figure, height: int) -> go.Figure:
    """For a figure of ``make_subplots(subplot_titles=…)`` ``height`` px high: the legend
    goes in a band of its own under the title and above the subplot titles (the theme puts
    it just above the plot area, where the top row's subplot titles are). Returns ``fig``."""
    fig.update_layout(
        height=height,
        margin={"t": SUBPLOT_TOP_MARGIN_PX},
        legend={"yref": "container", "y": 1 - LEGEND_TOP_PX / height, "yanchor": "top"},
    )
    return fig


def band_outline(x: Sequence[object], low: Sequence[object], high: Sequence[object]) -> tuple[list, list]:
    """The outline of an interval band for a ``fill="toself"`` scatter: one closed shape per
    run of points where both bounds are known (x forward along ``high``, back along
    ``low``), runs separated by None. A missing bound (too few responses for an interval)
    leaves a gap instead of a shape drawn across the periods around it."""
    xs: list = []
    ys: list = []
    run: list[tuple[object, float, float]] = []

    def close() -> None:
        if not run:
            return
        if xs:
            xs.append(None)
            ys.append(None)
        xs.extend([p for p, _, _ in run] + [p for p, _, _ in reversed(run)])
        ys.extend([h for _, _, h in run] + [lo for _, lo, _ in reversed(run)])
        run.clear()

    for point, lo, hi in zip(x, numbers(low, len(x)), numbers(high, len(x)), strict=True):
        if math.isnan(lo) or math.isnan(hi):
            close()
        else:
            run.append((point, float(lo), float(hi)))
    close()
    return xs, ys
