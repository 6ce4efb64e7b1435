"""A dashboard page as a PowerPoint deck, and the Overview as one slide of cards (python-pptx).

Plain Python (no Streamlit)::

    from charts.slides import page_deck
    Path("sales.pptx").write_bytes(page_deck("Sales pipeline", view.describe(), report.items))

The deck (16:9):

1. a title slide: the page title, the filters and date range (``context``) and the
   generation date;
2. one slide per chart (:class:`charts.export.ReportItem`). The chart is a **native PowerPoint
   chart** when its traces allow (see :func:`native_chart`): lines and markers over periods
   or categories -> a line chart, bars -> a clustered (or stacked) column / bar chart, one
   pie -> a pie or doughnut, markers over numbers -> an XY scatter — so the numbers stay
   editable in PowerPoint ("Edit data"). Anything else (funnels, heatmaps, box plots, a
   second y axis, bars mixed with lines) becomes a PNG rendered by
   :func:`charts.export.figure_bytes` (needs Chromium; without it the slide says so and the
   numbers are still in the appendix). Interval bands and error bars are not drawn natively;
   their bounds are in the appendix data. The slide's **notes** hold the chart's definition,
   the data source and the filters;
3. an appendix: the data of every chart as table slides, at most :data:`APPENDIX_ROWS` rows
   and :data:`APPENDIX_COLUMNS` columns each (the latest periods of a series over periods,
   else the first rows); the slide says how many rows and which columns were left out.

:func:`overview_deck` is the Overview as one slide of :class:`SlideCard` cards (value in
its unit, change on the previous period coloured by "higher is better", the periods shown,
a native sparkline).
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from pptx import Presentation
from pptx.chart.data import CategoryChartData, XyChartData
from pptx.dml.color import RGBColor
from pptx.enum.chart import XL_CHART_TYPE, XL_LEGEND_POSITION
from pptx.enum.dml import MSO_LINE_DASH_STYLE
from pptx.enum.shapes import MSO_SHAPE
from pptx.enum.text import PP_ALIGN
from pptx.util import Emu, Inches, Pt

from charts import figures
from charts.export import ChromiumMissingError, ExportError, ReportItem, figure_bytes
from charts.theme import BAD, GOOD, NEUTRAL, PALETTE, column_unit, fmt_delta, fmt_value, readable

MIME_TYPE = "application/vnd.openxmlformats-officedocument.presentationml.presentation"

#: Rows and columns of a chart's data shown in the appendix.
APPENDIX_ROWS = 18
APPENDIX_COLUMNS = 8

SLIDE_WIDTH, SLIDE_HEIGHT = Inches(13.333), Inches(7.5)
MARGIN = Inches(0.5)
TEXT = RGBColor(0x1F, 0x29, 0x33)
MUTED = RGBColor(0x52, 0x60, 0x6D)

# layouts of python-pptx's default template
_TITLE, _TITLE_ONLY, _BLANK = 0, 5, 6

#: Traces that carry no numbers of their own: the partial-period helper lines of
#: ``charts.figures.mark_periods`` and interval bands (``hoverinfo="skip"``, ``fill`` to a
#: neighbour or around itself).
_BAND_FILLS = frozenset({"tonexty", "tonextx", "toself", "tonext"})


class SlideError(ValueError):
    """A deck cannot be built from what was given (the message says what and why)."""


# --------------------------------------------------------------------------------------------
# Native charts
# --------------------------------------------------------------------------------------------


@dataclass
class NativeChart:
    """A PowerPoint chart built from a Plotly figure's traces."""

    chart_type: Any  # XL_CHART_TYPE member
    data: CategoryChartData | XyChartData
    number_format: str | None
    colours: list[str | None]
    categories: list[str] = field(default_factory=list)
    partial: list[bool] = field(default_factory=list)  # per category: a period still running
    reverse_categories: bool = False


def drawn_traces(fig: go.Figure) -> list[Any]:
    """The traces that carry the chart's numbers: visible, not a partial-period helper line,
    not an interval band."""
    out = []
    for trace in fig.data:
        if trace.visible is False or trace.visible == "legendonly":
            continue
        if isinstance(trace.meta, dict) and trace.meta.get("partial_helper"):
            continue
        if getattr(trace, "hoverinfo", None) == "skip" or getattr(trace, "fill", None) in _BAND_FILLS:
            continue
        out.append(trace)
    return out


def excel_number_format(d3: str | None, suffix: str = "") -> str | None:
    """A d3 format (Plotly's) as an Excel / PowerPoint number format: ``.1%`` -> ``0.0%``,
    ``$,.0f`` -> ``"$"#,##0``, ``+.1f`` -> ``+0.0;-0.0;0.0``, ``,.0f`` -> ``#,##0``; a
    ``suffix`` (the axis's ``ticksuffix``, e.g. `` d``) is appended quoted. None for no format."""
    if not d3 and not suffix:
        return None
    spec = d3 or ""
    found = re.search(r"\.(\d+)", spec)
    decimals = int(found.group(1)) if found else 0
    fraction = "." + "0" * decimals if decimals else ""
    if "%" in spec:
        body = f"0{fraction}%"
    else:
        grouping = "," in spec or "s" in spec or "$" in spec or not spec
        body = ("#,##0" if grouping else "0") + (fraction if "s" not in spec else "")
        if "$" in spec:
            body = f'"$"{body}'
    if suffix:
        body += f'"{suffix}"'
    if "+" in spec:
        negative = body.replace("+", "")
        return f"+{body};-{negative};{negative}"
    return body


def _period_labels(fig: go.Figure, stamps: list[pd.Timestamp], freq: str) -> dict[pd.Timestamp, str]:
    """Category labels for periods: "Apr 2026", "Q2 2026", and a partial period as the
    figure's axis says it ("Dec 2026 (to 6 Dec)")."""
    labels = {p: figures.period_text(p, freq) for p in stamps}
    axis = fig.layout.xaxis
    if axis.tickvals is not None and axis.ticktext is not None:
        for value, text in zip(axis.tickvals, axis.ticktext, strict=False):
            try:
                stamp = pd.Timestamp(value)
            except (TypeError, ValueError):
                continue
            stamp = stamp.tz_localize(None) if stamp.tzinfo is not None else stamp
            if stamp in labels:
                labels[stamp] = re.sub(r"<br\s*/?>", " ", str(text))
    return labels


def _partial_periods(fig: go.Figure) -> set[pd.Timestamp]:
    meta = fig.layout.meta if isinstance(fig.layout.meta, dict) else {}
    return {pd.Timestamp(p) for p in meta.get(figures.PARTIAL_META, [])}


def _colour(trace: Any) -> str | None:
    for colour in (
        getattr(getattr(trace, "line", None), "color", None),
        getattr(getattr(trace, "marker", None), "color", None),
    ):
        if isinstance(colour, str) and re.fullmatch(r"#[0-9A-Fa-f]{6}", colour):
            return colour
    return None


def _categories(trace: Any, axis: str, freq: str | None) -> list[Any] | None:
    """A trace's category values along ``axis`` ("x" or "y"): period starts over a period
    axis, else the values as text; None when there are none."""
    values = getattr(trace, axis, None)
    if values is None or len(values) == 0:
        return None
    if freq is not None and axis == "x":
        stamps = figures.period_x(trace, freq)
        if stamps is not None:
            return list(stamps)
    return [v if isinstance(v, pd.Timestamp) else str(v) for v in values]


def _is_numeric(values: Any) -> bool:
    if values is None or len(values) == 0:
        return False
    return bool(pd.api.types.is_numeric_dtype(pd.Series(list(values))))


def native_chart(fig: go.Figure) -> NativeChart | None:
    """The figure as a native PowerPoint chart, or None when its traces do not allow one.

    * only ``Scatter`` traces over periods or categories -> a line chart (with markers when
      any trace has them); over numbers -> an XY scatter;
    * only ``Bar`` traces, one orientation -> clustered (``barmode`` group / overlay) or
      stacked (``stack`` / ``relative``) columns, or bars when horizontal;
    * one ``Pie`` -> a pie (a doughnut with a ``hole``).

    None for other trace types, bars mixed with lines, a second axis or subplots, and a
    figure without numbers.
    """
    traces = drawn_traces(fig)
    if not traces:
        return None
    kinds = {trace.type for trace in traces}
    if any(
        (getattr(t, "xaxis", None) or "x") != "x" or (getattr(t, "yaxis", None) or "y") != "y" for t in traces
    ):
        return None
    if kinds == {"pie"}:
        return _pie(traces) if len(traces) == 1 else None
    if kinds == {"bar"}:
        return _category_chart(fig, traces, "bar")
    if kinds == {"scatter"}:
        if all(_is_numeric(t.x) for t in traces):
            return _xy_chart(fig, traces)
        return _category_chart(fig, traces, "line")
    return None


def _pie(traces: list[Any]) -> NativeChart | None:
    trace = traces[0]
    if trace.values is None or trace.labels is None or len(set(trace.labels)) != len(trace.labels):
        return None  # Plotly counts or sums repeated labels itself: the picture shows what it drew
    labels = [str(v) for v in trace.labels]
    values = figures.numbers(trace.values, len(labels))
    if not labels:
        return None
    data = CategoryChartData(number_format="#,##0")
    data.categories = labels
    data.add_series(trace.name or "Share", [None if math.isnan(v) else float(v) for v in values])
    kind = XL_CHART_TYPE.DOUGHNUT if trace.hole else XL_CHART_TYPE.PIE
    return NativeChart(kind, data, "#,##0", [None], labels)


def _value_format(fig: go.Figure, trace: Any, value_axis: str) -> str | None:
    """The value axis's number format: its tick format (what the dashboard's axis shows),
    else the trace's hover format."""
    axis = fig.layout[value_axis]
    if axis.tickformat:
        return excel_number_format(axis.tickformat, axis.ticksuffix or "")
    spec, suffix = figures._value_format(trace, axis)
    return excel_number_format(spec, suffix)


def _series_name(trace: Any, index: int) -> str:
    """A trace's legend name; a column code (``churn_rate``) as words (``Churn rate``)."""
    name = str(trace.name or f"Series {index + 1}")
    return readable(name) if re.fullmatch(r"[a-z0-9_]+", name) else name


def _category_chart(fig: go.Figure, traces: list[Any], kind: str) -> NativeChart | None:
    horizontal = kind == "bar" and all(getattr(t, "orientation", None) == "h" for t in traces)
    if kind == "bar" and not horizontal and any(getattr(t, "orientation", None) == "h" for t in traces):
        return None
    category_axis, value_axis = ("y", "x") if horizontal else ("x", "y")
    freq = figures.period_freq(fig)
    order: list[Any] = []
    series: list[tuple[str, dict[Any, float]]] = []
    for index, trace in enumerate(traces):
        cats = _categories(trace, category_axis, freq)
        if cats is None or len(set(cats)) != len(cats):
            return None  # a category twice in one trace (Plotly stacks or overlays it): the picture
        values = figures.numbers(getattr(trace, value_axis), len(cats))
        for c in cats:
            if c not in order:
                order.append(c)
        series.append((_series_name(trace, index), dict(zip(cats, values, strict=True))))
    if all(isinstance(c, pd.Timestamp) for c in order):
        order.sort()
        labels_by = _period_labels(fig, order, freq) if freq else {c: f"{c:%Y-%m-%d}" for c in order}
        labels = [labels_by[c] for c in order]
        partial = _partial_periods(fig)
        flags = [c in partial for c in order]
    else:
        labels = [str(c) for c in order]
        flags = [False] * len(order)
    number_format = _value_format(fig, traces[0], value_axis + "axis")
    data = CategoryChartData(number_format=number_format or "General")
    data.categories = labels
    for name, values in series:
        data.add_series(
            name, [None if math.isnan(values.get(c, math.nan)) else float(values[c]) for c in order]
        )
    if kind == "bar":
        stacked = fig.layout.barmode in ("stack", "relative")
        if horizontal:
            chart_type = XL_CHART_TYPE.BAR_STACKED if stacked else XL_CHART_TYPE.BAR_CLUSTERED
        else:
            chart_type = XL_CHART_TYPE.COLUMN_STACKED if stacked else XL_CHART_TYPE.COLUMN_CLUSTERED
    else:
        markers = any("markers" in (t.mode or "lines+markers") for t in traces)
        chart_type = XL_CHART_TYPE.LINE_MARKERS if markers else XL_CHART_TYPE.LINE
    reverse = horizontal and fig.layout.yaxis.autorange == "reversed"
    return NativeChart(chart_type, data, number_format, [_colour(t) for t in traces], labels, flags, reverse)


def _xy_chart(fig: go.Figure, traces: list[Any]) -> NativeChart | None:
    data = XyChartData()
    for index, trace in enumerate(traces):
        xs = figures.numbers(trace.x, len(trace.x))
        ys = figures.numbers(trace.y, len(xs))
        one = data.add_series(_series_name(trace, index))
        for x, y in zip(xs, ys, strict=True):
            if not (math.isnan(x) or math.isnan(y)):
                one.add_data_point(float(x), float(y))
    lines = any("lines" in (t.mode or "markers") for t in traces)
    chart_type = XL_CHART_TYPE.XY_SCATTER_LINES if lines else XL_CHART_TYPE.XY_SCATTER
    return NativeChart(chart_type, data, _value_format(fig, traces[0], "yaxis"), [_colour(t) for t in traces])


def _rgb(hex_colour: str) -> RGBColor:
    return RGBColor.from_string(hex_colour.lstrip("#").upper())


def _add_native(slide: Any, native: NativeChart, left: int, top: int, width: int, height: int) -> Any:
    frame = slide.shapes.add_chart(native.chart_type, left, top, width, height, native.data)
    chart = frame.chart
    chart.font.size = Pt(12)
    chart.has_title = False  # the slide's title names the chart
    several = len(list(chart.plots[0].series)) > 1
    pie = native.chart_type in (XL_CHART_TYPE.PIE, XL_CHART_TYPE.DOUGHNUT)
    chart.has_legend = several or pie
    if chart.has_legend:
        chart.legend.position = XL_LEGEND_POSITION.BOTTOM
        chart.legend.include_in_layout = False
    if pie:
        plot = chart.plots[0]
        plot.has_data_labels = True
        plot.data_labels.number_format = "0.0%"
        plot.data_labels.number_format_is_linked = False
        plot.data_labels.show_percentage = True
        plot.data_labels.show_value = False
        return chart
    if native.number_format:
        axis = chart.value_axis
        axis.tick_labels.number_format = native.number_format
        axis.tick_labels.number_format_is_linked = False
    axis = chart.value_axis
    axis.has_major_gridlines = True
    axis.major_gridlines.format.line.color.rgb = RGBColor(0xD9, 0xDE, 0xE3)
    if native.reverse_categories:
        chart.category_axis.reverse_order = True
    line = native.chart_type in (
        XL_CHART_TYPE.LINE,
        XL_CHART_TYPE.LINE_MARKERS,
        XL_CHART_TYPE.XY_SCATTER_LINES,
    )
    for index, one in enumerate(chart.plots[0].series):
        colour = native.colours[index] if index < len(native.colours) else None
        rgb = _rgb(colour or PALETTE[index % len(PALETTE)])
        if line or native.chart_type == XL_CHART_TYPE.XY_SCATTER:
            one.format.line.color.rgb = rgb
            one.format.line.width = Pt(2.25)
            one.smooth = False
            if native.chart_type != XL_CHART_TYPE.LINE:
                one.marker.format.fill.solid()
                one.marker.format.fill.fore_color.rgb = rgb
                one.marker.format.line.color.rgb = rgb
            if native.chart_type == XL_CHART_TYPE.XY_SCATTER:
                one.format.line.fill.background()  # markers only
        else:
            one.format.fill.solid()
            one.format.fill.fore_color.rgb = rgb
        # a period still running: dotted line into it / a lighter bar, as on the dashboard
        for position, partial in enumerate(native.partial):
            if not partial:
                continue
            point = one.points[position]
            if line:
                point.format.line.color.rgb = rgb
                point.format.line.dash_style = MSO_LINE_DASH_STYLE.ROUND_DOT
                point.marker.format.fill.background()
                point.marker.format.line.color.rgb = rgb
            else:
                point.format.fill.solid()
                point.format.fill.fore_color.rgb = _rgb(_lighter(colour or PALETTE[index % len(PALETTE)]))
    return chart


def _lighter(hex_colour: str, share: float = 0.55) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return "#" + "".join(f"{round(c + (255 - c) * share):02X}" for c in (r, g, b))


# --------------------------------------------------------------------------------------------
# Slides
# --------------------------------------------------------------------------------------------


def _presentation() -> Any:
    prs = Presentation()
    prs.slide_width, prs.slide_height = SLIDE_WIDTH, SLIDE_HEIGHT
    return prs


def _text(
    slide: Any,
    text: str,
    left: int,
    top: int,
    width: int,
    height: int,
    *,
    size: int = 14,
    bold: bool = False,
    colour: RGBColor = TEXT,
    align: Any = PP_ALIGN.LEFT,
) -> Any:
    box = slide.shapes.add_textbox(left, top, width, height)
    frame = box.text_frame
    frame.word_wrap = True
    for index, line in enumerate(text.split("\n")):
        paragraph = frame.paragraphs[0] if index == 0 else frame.add_paragraph()
        paragraph.alignment = align
        run = paragraph.add_run()
        run.text = line
        run.font.size = Pt(size)
        run.font.bold = bold
        run.font.color.rgb = colour
    return box


def _title_only(prs: Any, title: str) -> Any:
    slide = prs.slides.add_slide(prs.slide_layouts[_TITLE_ONLY])
    shape = slide.shapes.title
    shape.left, shape.top = MARGIN, Inches(0.25)
    shape.width, shape.height = SLIDE_WIDTH - 2 * MARGIN, Inches(0.9)
    shape.text = title
    paragraph = shape.text_frame.paragraphs[0]
    paragraph.alignment = PP_ALIGN.LEFT
    paragraph.runs[0].font.size = Pt(28)
    paragraph.runs[0].font.bold = True
    paragraph.runs[0].font.color.rgb = TEXT
    return slide


def _footer(slide: Any, context: str) -> None:
    _text(
        slide,
        context,
        MARGIN,
        SLIDE_HEIGHT - Inches(0.55),
        SLIDE_WIDTH - 2 * MARGIN,
        Inches(0.4),
        size=10,
        colour=MUTED,
    )


def _generated_text(generated: dt.datetime | None) -> str:
    when = generated or dt.datetime.now(dt.UTC)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return f"Generated {when:%d %b %Y, %H:%M} UTC"


def title_slide(prs: Any, title: str, context: str, generated: dt.datetime | None = None) -> Any:
    """The deck's first slide: the page title, the filters and date range, the generation date."""
    slide = prs.slides.add_slide(prs.slide_layouts[_TITLE])
    slide.shapes.title.text = title
    subtitle = slide.placeholders[1]
    subtitle.text = f"{context or 'No filters'}\n{_generated_text(generated)} · CRM Insights"
    for paragraph in subtitle.text_frame.paragraphs:
        for run in paragraph.runs:
            run.font.size = Pt(18)
            run.font.color.rgb = MUTED
    return slide


def notes_text(item: ReportItem, source: str, context: str, how: str) -> str:
    """The notes of a chart slide: definition, data source, filters and how it is drawn."""
    lines = [f"Definition: {item.definition or 'not given'}", f"Data source: {source}"]
    if item.data is not None:
        lines.append(f"Data: {_rows(len(item.data))}; the table is in the appendix.")
    lines += [f"Filters: {context or 'none'}", how]
    return "\n".join(lines)


def chart_slide(prs: Any, item: ReportItem, context: str, source: str = "CRM Insights database") -> Any:
    """One chart: native when :func:`native_chart` can build it, else a PNG of the figure."""
    slide = _title_only(prs, item.title)
    left, top = MARGIN, Inches(1.2)
    width, height = SLIDE_WIDTH - 2 * MARGIN, SLIDE_HEIGHT - Inches(1.2) - Inches(0.7)
    native = native_chart(item.figure)
    if native is not None:
        _add_native(slide, native, left, top, width, height)
        how = "Chart: a native PowerPoint chart (right-click > Edit data to see or change its numbers)."
        if len(drawn_traces(item.figure)) < len(item.figure.data) or _has_error_bars(item.figure):
            how += " Interval bands and error bars are not drawn; their bounds are in the appendix data."
    else:
        how = "Chart: a picture of the dashboard's chart (PowerPoint has no native chart of this type)."
        _picture(slide, item, left, top, width, height)
    _footer(slide, context)
    slide.notes_slide.notes_text_frame.text = notes_text(item, source, context, how)
    return slide


def _has_error_bars(fig: go.Figure) -> bool:
    for trace in fig.data:
        for name in ("error_x", "error_y"):
            error = getattr(trace, name, None)
            if error is not None and (error.array is not None or error.visible):
                return True
    return False


def _picture(slide: Any, item: ReportItem, left: int, top: int, width: int, height: int) -> None:
    fig = item.figure
    ratio = height / width
    pixel_width = 1200
    try:
        png = figure_bytes(fig, "png", width=pixel_width, height=round(pixel_width * ratio), scale=2)
    except (ChromiumMissingError, ExportError) as error:
        _text(
            slide,
            f"This chart could not be drawn as a picture: {error}\nIts numbers are in the appendix.",
            left,
            top,
            width,
            Inches(1.5),
            size=14,
            colour=MUTED,
        )
        return
    slide.shapes.add_picture(io.BytesIO(png), left, top, width, height)


def _cell_text(value: Any, column: str, columns: Sequence[str], integer: bool, freq: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return ""
    if isinstance(value, pd.Timestamp | dt.datetime | dt.date):
        stamp = pd.Timestamp(value)
        if freq and column == "period":
            return figures.period_text(stamp, freq)
        return f"{stamp:%Y-%m-%d}" if stamp == stamp.normalize() else f"{stamp:%Y-%m-%d %H:%M}"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        unit = column_unit(column, integer=integer, columns=columns)
        if unit is not None:
            return fmt_value(value, unit)
        return (
            f"{value:,.2f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:,.0f}"
        )
    return str(value)


def appendix_rows(data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows and columns of ``data`` an appendix slide shows, and what it leaves out (in words).

    A series over periods shows its latest :data:`APPENDIX_ROWS` periods, anything else its
    first rows; at most :data:`APPENDIX_COLUMNS` columns."""
    total = len(data)
    frame = data.reset_index(drop=True)
    by_period = "period" in frame.columns
    if by_period:
        frame = frame.sort_values("period", kind="stable").reset_index(drop=True)
    shown = frame.tail(APPENDIX_ROWS) if by_period else frame.head(APPENDIX_ROWS)
    notes = []
    if total > len(shown):
        which = "the latest" if by_period else "the first"
        notes.append(f"{which} {len(shown):,} of {total:,} rows ({total - len(shown):,} left out)")
    else:
        notes.append(f"all {total:,} rows")
    columns = list(shown.columns)
    if len(columns) > APPENDIX_COLUMNS:
        dropped = columns[APPENDIX_COLUMNS:]
        shown = shown[columns[:APPENDIX_COLUMNS]]
        notes.append(
            f"{len(dropped)} column{'s' if len(dropped) != 1 else ''} left out: {', '.join(map(str, dropped))}"
        )
    return shown, "Showing " + "; ".join(notes) + ". The whole table is in the page's XLSX / CSV export."


def appendix_slide(prs: Any, item: ReportItem, context: str) -> Any | None:
    """The chart's data as a table slide (None when the chart has no data)."""
    if item.data is None:
        return None
    slide = _title_only(prs, f"Data: {item.title}")
    shown, note = appendix_rows(item.data)
    _text(slide, note, MARGIN, Inches(1.05), SLIDE_WIDTH - 2 * MARGIN, Inches(0.4), size=11, colour=MUTED)
    columns = [str(c) for c in shown.columns]
    if not columns:
        _footer(slide, context)
        return slide
    top = Inches(1.5)
    height = SLIDE_HEIGHT - top - Inches(0.7)
    row_height = min(Inches(0.3), Emu(int(height / (len(shown) + 1))))
    table = slide.shapes.add_table(
        len(shown) + 1, len(columns), MARGIN, top, SLIDE_WIDTH - 2 * MARGIN, row_height * (len(shown) + 1)
    ).table
    freq = figures.period_freq(item.figure)
    size = Pt(10 if len(shown) > 12 else 12)
    for col, name in enumerate(columns):
        cell = table.cell(0, col)
        cell.text = readable(name)
        cell.text_frame.paragraphs[0].runs[0].font.size = size
        cell.text_frame.paragraphs[0].runs[0].font.bold = True
    for row, values in enumerate(shown.itertuples(index=False), start=1):
        for col, (name, value) in enumerate(zip(columns, values, strict=True)):
            integer = pd.api.types.is_integer_dtype(shown[shown.columns[col]])
            text = _cell_text(value, name, columns, integer, freq)
            cell = table.cell(row, col)
            cell.text = text
            paragraph = cell.text_frame.paragraphs[0]
            if isinstance(value, int | float) and not isinstance(value, bool):
                paragraph.alignment = PP_ALIGN.RIGHT
            if paragraph.runs:
                paragraph.runs[0].font.size = size
    for row in range(len(shown) + 1):
        table.rows[row].height = row_height
    _footer(slide, context)
    return slide


def page_deck(
    title: str,
    context: str,
    items: Sequence[ReportItem],
    *,
    source: str = "CRM Insights database",
    generated: dt.datetime | None = None,
) -> bytes:
    """A dashboard page as a PPTX deck: title slide, one slide per chart, then the appendix of
    the charts' data (see the module docstring). ``context`` is the filters and date range as
    the page shows them (``View.describe()``); ``source`` goes into every chart's notes;
    ``generated`` (default: now) is printed on the title slide."""
    if not title:
        raise SlideError("A deck needs a title (the page's name).")
    prs = _presentation()
    title_slide(prs, title, context, generated)
    items = [ReportItem(*item) if not isinstance(item, ReportItem) else item for item in items]
    if not items:
        slide = _title_only(prs, title)
        _text(
            slide,
            "This page has no charts for the current selection.",
            MARGIN,
            Inches(1.5),
            SLIDE_WIDTH - 2 * MARGIN,
            Inches(1),
            size=18,
            colour=MUTED,
        )
    for item in items:
        chart_slide(prs, item, context, source)
    with_data = [item for item in items if item.data is not None]
    if with_data:
        divider = _title_only(prs, "Appendix: the data behind the charts")
        _text(
            divider,
            "\n".join(f"• {item.title} ({_rows(len(item.data))})" for item in with_data),
            MARGIN,
            Inches(1.4),
            SLIDE_WIDTH - 2 * MARGIN,
            Inches(5),
            size=16,
        )
        _footer(divider, context)
        for item in with_data:
            appendix_slide(prs, item, context)
    return save(prs)


def _rows(n: int) -> str:
    return f"{n:,} row{'s' if n != 1 else ''}"


def save(prs: Any) -> bytes:
    buffer = io.BytesIO()
    prs.save(buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# The Overview as one slide of cards
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlideCard:
    """One Overview card on a slide: ``value`` and ``delta`` (the change on the previous
    period) in ``unit`` (a ``kpis.registry`` unit), the periods it shows (``caption``), the
    series for its sparkline; ``error`` instead of a value when the KPI failed."""

    title: str
    value: float | None
    unit: str
    delta: float | None = None
    higher_is_better: bool = True
    caption: str = ""
    sparkline: Sequence[float] = ()
    low_sample: bool = False
    error: str | None = None


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def card_delta_colour(card: SlideCard) -> RGBColor:
    """The delta's colour: GOOD when the change goes the good way, BAD otherwise, grey for none."""
    if _missing(card.delta) or card.delta == 0:
        return _rgb(NEUTRAL)
    good = (card.delta > 0) == card.higher_is_better
    return _rgb(GOOD if good else BAD)


def cards_slide(
    prs: Any, cards: Sequence[SlideCard], context: str, title: str = "Overview", columns: int = 5
) -> Any:
    """One slide with a grid of cards (``columns`` per row): title, value, change, periods
    and a native sparkline (a small line chart: its numbers stay editable too)."""
    slide = _title_only(prs, title)
    _text(slide, context, MARGIN, Inches(1.0), SLIDE_WIDTH - 2 * MARGIN, Inches(0.5), size=12, colour=MUTED)
    rows = max(1, math.ceil(len(cards) / columns))
    gap = Inches(0.15)
    top0 = Inches(1.6)
    card_width = int((SLIDE_WIDTH - 2 * MARGIN - gap * (columns - 1)) / columns)
    card_height = int((SLIDE_HEIGHT - top0 - Inches(0.3) - gap * (rows - 1)) / rows)
    for index, card in enumerate(cards):
        row, col = divmod(index, columns)
        left = MARGIN + col * (card_width + gap)
        top = top0 + row * (card_height + gap)
        box = slide.shapes.add_shape(MSO_SHAPE.ROUNDED_RECTANGLE, left, top, card_width, card_height)
        box.adjustments[0] = 0.06
        box.fill.solid()
        box.fill.fore_color.rgb = RGBColor(0xFF, 0xFF, 0xFF)
        box.line.color.rgb = RGBColor(0xCB, 0xD2, 0xD9)
        box.shadow.inherit = False
        inner = Inches(0.12)
        width = card_width - 2 * inner
        _text(slide, card.title, left + inner, top + inner, width, Inches(0.35), size=12, colour=MUTED)
        if card.error:
            _text(
                slide,
                card.error,
                left + inner,
                top + Inches(0.5),
                width,
                Inches(1.2),
                size=10,
                colour=_rgb(BAD),
            )
            continue
        _text(
            slide,
            fmt_value(card.value, card.unit),
            left + inner,
            top + Inches(0.42),
            width,
            Inches(0.6),
            size=26,
            bold=True,
        )
        delta = fmt_delta(card.delta, card.unit)
        if delta:
            _text(
                slide,
                delta,
                left + inner,
                top + Inches(1.0),
                width,
                Inches(0.35),
                size=12,
                colour=card_delta_colour(card),
            )
        caption = card.caption + (" · fewer than 30 observations" if card.low_sample else "")
        if caption:
            _text(slide, caption, left + inner, top + Inches(1.3), width, Inches(0.35), size=9, colour=MUTED)
        spark = [float(v) for v in card.sparkline if not _missing(v)]
        spark_top = top + Inches(1.65)
        spark_height = top + card_height - spark_top - inner
        if len(spark) > 1 and spark_height > Inches(0.3):
            data = CategoryChartData()
            data.categories = [str(i + 1) for i in range(len(spark))]
            data.add_series(card.title, spark)
            chart = slide.shapes.add_chart(
                XL_CHART_TYPE.LINE, left + inner, spark_top, width, spark_height, data
            ).chart
            chart.has_legend = False
            chart.has_title = False
            chart.value_axis.visible = False
            chart.value_axis.has_major_gridlines = False
            chart.category_axis.visible = False
            series = chart.plots[0].series[0]
            series.format.line.color.rgb = _rgb(GOOD)
            series.format.line.width = Pt(1.5)
            series.smooth = False
    return slide


def overview_deck(
    context: str, cards: Sequence[SlideCard], *, title: str = "Overview", generated: dt.datetime | None = None
) -> bytes:
    """The Overview as a deck of one slide: every card, the filters and the generation date."""
    if not cards:
        raise SlideError("The Overview slide needs at least one card.")
    prs = _presentation()
    cards_slide(prs, cards, f"{context} · {_generated_text(generated)}", title)
    return save(prs)
