"""A page's charts and tables with their definitions and downloads.

``report = PageReport("Sales pipeline", view)`` draws the page title and the active
filters; then

* ``report.chart(fig, data, title, kpi_key=None, definition=None)`` draws the Plotly
  figure, its definition card (from ``kpis.registry``, else ``definition``) and an
  "Export" popover: PNG / SVG / PDF (needs Chromium; without it a note says what to
  install), interactive HTML, and the chart's data as CSV / XLSX (the XLSX carries the
  definition and the active filters). Every file is built only when its button is
  clicked (``st.download_button`` with a callable). Every file carries its context: the
  images and the HTML show ``view.describe()`` as a subtitle (``charts.export.with_context``;
  the on-screen chart is unchanged) and every file name ends in ``view.file_tag()``
  (``churn-rate-per-month_2025-12-01_2026-11-30_segment-enterprise.png``).
  A chart over periods (``charts.figures.period_axis``) gets its partial period marked
  (``charts.figures.mark_periods``: dotted / open / hatched, "Dec 2026 (to 6 Dec)"), a
  caption saying so, and in its hover the change on the previous complete period and on
  the same period last year (last year's numbers: the same ``ui.data.kpi`` call for the
  range a year earlier, cut at the same day). Its CSV / XLSX carry a ``partial`` column.
* A chart whose KPI cannot honour an active filter (web traffic and social media have no
  account, tickets no pipeline: ``ui.filter_scope``, from ``kpis.registry.READS``) gets a
  caption "Not filtered by: Segment (web traffic has no account)"; its XLSX metadata and
  the page PDF say the same.
* ``report.table(df, title)`` draws a table with a CSV download (drill-downs); its numbers
  are formatted by column name (``column_config``: rates as %, money, days, counts).
  ``records=True`` marks record-level rows (accounts, deals, comments): only analysts and
  admins get them; a viewer gets a note instead and the rows never leave the server.
* Every download is written to the audit log when it is built (who, the file, the page,
  the chart or table, the active filters and scope).
* ``report.finish()`` offers the whole page as one PDF (every chart, its definition, the
  active filters, repeated in a running header on every printed page) and as a PowerPoint
  deck (``charts.slides.page_deck``).
* ``overview_download(view, cards)``: the Overview's cards as one PowerPoint slide.
* A headless run (``delivery.render``, scheduled reports) puts a token under
  ``CAPTURE_KEY`` in the session; the page's ``PageReport`` (the Overview's cards) is then
  kept in ``CAPTURED`` under it for the run to collect.

``no_data(message)`` is the friendly empty state for a selection without data.

``warm_export_server()`` starts the export browser in the background once per process
(``ui.filters.global_filters`` calls it on every page run; only the first call does work).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charts import figures
from charts.export import ReportItem
from charts.theme import CURRENCY, column_label, column_unit, readable_values
from kpis.core import naive_timestamps
from ui import filter_scope
from ui.cards import definition_card, definition_text

logger = logging.getLogger(__name__)

NO_DATA = "No data for this selection. Widen the date range or remove a filter in the sidebar."


def no_data(message: str | None = None) -> None:
    """The friendly empty state (never a traceback)."""
    st.info(message or NO_DATA, icon=":material/filter_alt_off:")


def low_sample_note(frame: pd.DataFrame, text: str) -> None:
    """A warning caption (``text``) under a chart when any row of ``frame`` is flagged
    ``low_sample`` by its KPI."""
    if "low_sample" in frame and frame["low_sample"].fillna(False).astype(bool).any():
        st.caption(f":orange[:material/warning: {text}]")


def is_empty(frame: pd.DataFrame | None, columns: list[str] | None = None) -> bool:
    """True when ``frame`` has no rows, or only NaN / zero in ``columns`` (nothing to draw)."""
    if frame is None or len(frame) == 0:
        return True
    if columns:
        values = frame[[c for c in columns if c in frame]]
        if values.empty:
            return True
        numeric = values.apply(pd.to_numeric, errors="coerce")
        return bool((numeric.isna() | (numeric == 0)).all().all())
    return False


#: ``st.column_config.NumberColumn`` arguments per unit: rates as % with one decimal (the
#: step sets a predefined format's precision: 0.001 of a fraction = 0.1 %), money with the
#: currency and thousands separators, days with one decimal, counts as whole numbers with
#: thousands separators, expected counts (a model's mean) with one decimal. The values stay
#: raw (sorting, CSV downloads).
NUMBER_FORMATS: dict[str, dict[str, Any]] = {
    "ratio": {"format": "percent", "step": 0.001},
    "money": {"format": {"$": "dollar", "€": "euro"}.get(CURRENCY, CURRENCY + " %,.2f"), "step": 0.01},
    "days": {"format": "%,.1f"},
    "count": {"format": "%,d"},
    "expected_count": {"format": "%,.1f"},
    "nps": {"format": "%+.1f"},
    "score": {"format": "%.2f"},
    # no unit: a p-value, a model parameter, an interval bound — two significant digits below
    # 0.1 (a p-value of 0.000033), else two decimals; never a raw 4.428571428571429
    "p_value": {"format": "%.2g"},
    "decimal": {"format": "%,.2f"},
    "small": {"format": "%.2g"},
}


def column_format(name: object, series: pd.Series, columns: Any = ()) -> str | None:
    """The unit a table column is shown in (a key of ``NUMBER_FORMATS``), by meaning:
    ``charts.theme.column_unit``'s naming conventions; a column with the word
    ``expected`` that is no money -> an expected count (one decimal); a float column of
    whole numbers that is no rate, money or days (``deals``, ``records`` read from a
    database as floats) -> a count; a p-value -> two significant digits; any other
    fractional column -> two decimals (two significant digits when its values are mostly
    below 0.1)."""
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    integer = pd.api.types.is_integer_dtype(series)
    unit = column_unit(name, integer=integer, columns=columns)
    words = [w for w in re.split(r"[^a-z0-9]+", str(name).lower()) if w]
    if unit is None and "expected" in words:  # "expected", "Complaints expected"
        return "expected_count"
    if unit is None and not integer and words and words[-1] not in ("id", "year", "position"):
        values = series.dropna().to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if len(values) and np.all(values == np.round(values)):
            return "count"
        if words[-2:] == ["p", "value"] or words == ["p"]:
            return "p_value"
        if len(values):
            return "decimal" if np.median(np.abs(values)) >= 0.1 else "small"
    return unit


def column_config(df: pd.DataFrame, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """``st.dataframe`` column configuration for ``df``: every column headed by its label
    (``charts.theme.column_label``: ``days_in_stage`` -> "Days in stage"), numbers formatted
    by meaning (:func:`column_format`: rates %, money, days, counts as integers, expected
    counts to one decimal). ``overrides`` (the page's own entries) win; one of them without a
    label gets the column's."""
    config: dict[str, Any] = {}
    for column in df.columns:
        name = str(column)
        shown = column_label(column)
        unit = column_format(column, df[column], df.columns)
        if unit in NUMBER_FORMATS:
            config[name] = st.column_config.NumberColumn(shown, **NUMBER_FORMATS[unit])
        elif pd.api.types.is_bool_dtype(df[column]):
            config[name] = st.column_config.CheckboxColumn(shown)
        elif shown != name:
            config[name] = st.column_config.Column(shown)
    for name, entry in (overrides or {}).items():
        if isinstance(entry, dict) and not entry.get("label") and name in config:
            entry = {**entry, "label": config[name].get("label")}
        config[name] = entry
    return config


#: Pixels a full-width table has on a 1440 px wide screen (the main column, sidebar open,
#: measured 978 px; less a margin for the grid's scroll bar and borders).
FULL_WIDTH_PX = 950
#: Glide data grid's text: about this many pixels per character, plus a cell's padding
#: (and a header's sort / menu icons).
CHAR_PX, CELL_PADDING_PX, HEADER_PADDING_PX, MIN_COLUMN_PX = 7.6, 22, 34, 56


def natural_widths(shown: pd.DataFrame, config: dict[str, Any], rows: int = 200) -> dict[str, float]:
    """About how wide (px) the grid draws each column of ``shown`` by itself: its header or
    its longest cell among the first ``rows`` (numbers as formatted, about 12 characters)."""
    out: dict[str, float] = {}
    for column in shown.columns:
        name = str(column)
        header = str((config.get(name) or {}).get("label") or name)
        series = shown[column].head(rows)
        if pd.api.types.is_bool_dtype(series):
            cell = 3
        elif pd.api.types.is_numeric_dtype(series):
            cell = 12
        elif pd.api.types.is_datetime64_any_dtype(series):
            cell = 19
        else:
            lengths = series.dropna().astype(str).str.len()
            cell = int(lengths.max()) if len(lengths) else 0  # an empty or all-missing column: 0
        out[name] = max(len(header) * CHAR_PX + HEADER_PADDING_PX, cell * CHAR_PX + CELL_PADDING_PX)
    return out


def fitted_widths(natural: dict[str, float], available: float) -> dict[str, int] | None:
    """Column widths (px) that fit ``available``: None when the natural widths fit already;
    else the widest columns are cut to one common cap (the narrow ones keep theirs), so every
    column stays on screen and a long text shows its start (the whole text on hover)."""
    if not natural or sum(natural.values()) <= available:
        return None
    low, high = float(MIN_COLUMN_PX), max(natural.values())
    for _ in range(40):  # the largest cap with sum(min(width, cap)) <= available
        cap = (low + high) / 2
        if sum(min(w, cap) for w in natural.values()) <= available:
            low = cap
        else:
            high = cap
    return {name: max(MIN_COLUMN_PX, int(min(width, low))) for name, width in natural.items()}


def show_dataframe(
    df: pd.DataFrame, *, column_config: dict[str, Any] | None = None, share: float = 1.0, **kwargs: Any
) -> Any:
    """``st.dataframe`` as every table of the product shows one: stored codes as labels
    (``charts.theme.readable_values``: ``poor_support`` -> "Poor support"), headers and
    number formats from :func:`column_config` (``column_config`` here: the page's own
    entries, which win), and column widths that fit the table's room (``share`` of the main
    column: 0.5 in one of two columns) at 1440 px, so no column is cut off
    (:func:`fitted_widths`). ``kwargs`` go to ``st.dataframe``."""
    kwargs.setdefault("hide_index", True)
    shown = readable_values(df)
    config = _column_config(df, column_config)
    widths = fitted_widths(natural_widths(shown, config), FULL_WIDTH_PX * share - 16 * (share < 1))
    for name, width in (widths or {}).items():
        entry = config.get(name)
        config[name] = (
            {**entry, "width": width}
            if isinstance(entry, dict)
            else st.column_config.Column(column_label(name), width=width)
        )
    return st.dataframe(shown, column_config=config, **kwargs)


_column_config = column_config


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "chart"


def _export():
    from charts import export

    return export


#: Set CRM_EXPORT_WARMUP=0 to start the export browser only on the first image export.
WARMUP_VARIABLE = "CRM_EXPORT_WARMUP"
_warmup_lock = threading.Lock()
_warmup_thread: threading.Thread | None = None


def _warm(export: Any) -> None:
    try:
        export.warm_up()
    except Exception as error:  # the first export click starts it again and reports the error
        logger.warning("Could not start the export browser in the background: %s", error)


def warm_export_server() -> threading.Thread | None:
    """Start the export Chromium (``charts.export.warm_up``) in a daemon thread, once per
    process, so the first PNG / SVG / PDF click costs a render (~0.2 s), not a browser
    start (~2 s). Does nothing without Chromium or with ``CRM_EXPORT_WARMUP=0``. Returns
    the thread (the same one on every later call), else None."""
    global _warmup_thread
    if os.environ.get(WARMUP_VARIABLE, "1").strip() == "0":
        return None
    with _warmup_lock:
        if _warmup_thread is None:
            export = _export()
            if not export.chromium_available():
                return None
            _warmup_thread = threading.Thread(
                target=_warm, args=(export,), name="crm-export-warmup", daemon=True
            )
            _warmup_thread.start()
        return _warmup_thread


#: Session key naming a headless run (``delivery.render``): the page's ``PageReport`` is
#: then kept in :data:`CAPTURED` under that token, so the run's charts can be collected.
CAPTURE_KEY = "_report_capture"
CAPTURED: dict[str, Any] = {}


def audited(
    build: Callable[[], bytes], view: Any, page: str, file_name: str, what: str
) -> Callable[[], bytes]:
    """``build`` that first writes who exported what to the audit log (the user, the file, the
    page, what, the active filters). The user is taken now: the deferred download runs
    outside the script run. A failed audit write is logged and the download goes ahead."""
    name = getattr(getattr(view, "user", None), "name", None) or "anonymous"
    details = {"page": page, "what": what, "filters": view.describe()}

    def run() -> bytes:
        from ui import auth

        try:
            auth.store().record(name, "export", file_name, details)
        except Exception as error:  # the download goes ahead; the failure is logged
            logger.warning("Could not write the export of %s to the audit log: %s", file_name, error)
        return build()

    return run


class PageReport:
    """Collects a page's charts so each can be exported alone and all together as one PDF."""

    def __init__(self, title: str, view: Any, *, caption: str | None = None) -> None:
        self.title = title
        self.view = view
        self.user = getattr(view, "user", None)
        self.items: list[ReportItem] = []
        self._keys: dict[str, int] = {}
        self._not_filtered: dict[str, str] = {}  # chart title -> "Not filtered by: …"
        token = st.session_state.get(CAPTURE_KEY)
        if token:
            CAPTURED[str(token)] = self
        st.title(title)
        st.caption(caption or f":material/filter_alt: {view.describe()}")

    def _key(self, title: str) -> str:
        base = _slug(title)
        n = self._keys.get(base, 0)
        self._keys[base] = n + 1
        return f"{_slug(self.title)}-{base}" + (f"-{n}" if n else "")

    def _meta(self, title: str, definition: str) -> dict[str, str]:
        meta = {"Page": self.title, "Chart": title, "Definition": definition, "Filters": self.view.describe()}
        if title in self._not_filtered:  # an active filter this chart's KPI cannot honour
            meta["Not filtered by"] = self._not_filtered[title].removeprefix(filter_scope.PREFIX)
        return meta

    def _audited(self, build: Callable[[], bytes], file_name: str, what: str) -> Callable[[], bytes]:
        """``build`` that first writes the export to the audit log (:func:`audited`)."""
        return audited(build, self.view, self.title, file_name, what)

    def chart(
        self,
        fig: go.Figure,
        data: pd.DataFrame | None,
        title: str,
        kpi_key: str | None = None,
        definition: str | None = None,
        drill: Callable[[Any], Any] | None = None,
    ) -> None:
        """Draw ``fig`` under ``title`` with its definition card and export buttons; with
        ``drill`` (``ui.drilldown``: a selected point -> its records) a click on a point or
        bar lists the records behind it under the chart."""
        key = self._key(title)
        text = definition_text(kpi_key, definition)
        not_filtered = filter_scope.chart_note(self.view, kpi_key, data)  # active filters it ignores
        if not_filtered:
            self._not_filtered[title] = not_filtered
        if not fig.layout.title.text:
            fig.update_layout(title_text=title)
        figures.readable_figure(fig)  # stored codes as labels (legend, categories, hover)
        figures.rate_axes_from_zero(fig)
        partial: list[pd.Timestamp] = []
        if figures.period_freq(fig) == getattr(self.view, "freq", None):
            partial = figures.mark_periods(fig, self.view.cut, self._last_year(fig, data))
            data = self._with_partial(data)
        if kpi_key:  # a dashed target line where the KPI has goals for this view (ui/goals.py)
            from ui.goals import add_target_line

            add_target_line(fig, data, kpi_key, self.view)
        selectable = {"on_select": "rerun", "selection_mode": ("points",)} if drill else {}
        event = st.plotly_chart(
            fig, theme=None, key=f"chart-{key}", config={"displaylogo": False}, **selectable
        )
        if not_filtered:
            st.caption(f":material/filter_alt_off: {not_filtered}")
        # the Export column stays wide enough for its button in half-width charts too
        left, right = st.columns([3, 1], vertical_alignment="top")
        with left:
            if kpi_key:
                definition_card(kpi_key, fallback=definition)
            elif definition:
                st.caption(f":material/info: {definition}")
        with right:
            self._export_popover(fig, data, title, text, key, self._partial_note(partial))
        if partial:
            st.caption(f":material/hourglass_top: {self._partial_note(partial)}")
        if drill is not None:
            from ui import drilldown

            drilldown.show(self, fig, data, event, drill, key)
        self.items.append(ReportItem(title, fig, f"{text} {not_filtered}." if not_filtered else text, data))

    def _partial_note(self, partial: list[pd.Timestamp]) -> str | None:
        """What the chart's partial periods mean, for the caption and the XLSX About sheet."""
        if not partial:
            return None
        freq, cut = self.view.freq, self.view.cut
        named = ", ".join(figures.partial_label(p, freq, cut) for p in partial)
        return (
            f"{named}: not a complete {freq}, so dotted / hatched, not compared with the {freq} before, "
            "and marked partial in the data; its hover compares it with last year to the same day."
        )

    def _with_partial(self, data: pd.DataFrame | None) -> pd.DataFrame | None:
        """``data`` with a ``partial`` column (True for a period not complete in this view)."""
        if data is None or "period" not in data or "partial" in data:
            return data
        return data.assign(partial=[bool(self.view.is_partial(p)) for p in data["period"]])

    def _last_year(self, fig: go.Figure, data: pd.DataFrame | None) -> dict[int, dict[pd.Timestamp, float]]:
        """Per period trace of ``fig``: this year's period -> the same period a year earlier,
        from the KPI that made ``data`` run again on the range a year back, ending a year
        before the view's cut (so a partial period meets last year's to the same day). Empty
        when ``data`` is no ``ui.data.kpi`` result; traces that match no column of it are
        left out (the hover then takes last year from the trace itself)."""
        from ui import data as ui_data

        if data is None or ui_data.SOURCE not in getattr(data, "attrs", {}) or "period" not in data:
            return {}
        year = pd.DateOffset(years=1)
        filters = self.view.filters
        source = filter_scope.source_function(data)
        if source is not None:  # only the filters that KPI honours, as the page passed them
            filters = filter_scope.honoured_filters(filters, source)
        start = (pd.Timestamp(filters.start) - year).date()
        end = (pd.Timestamp(self.view.cut) - year).date()
        if end <= start:
            return {}
        try:
            before = ui_data.kpi_again(data, filters.replace(start=start, end=end))
        except Exception as error:  # last year is a hover line: never worth a broken chart
            logger.warning("No last-year comparison for %s: %s", self.title, error)
            return {}
        if not isinstance(before, pd.DataFrame) or "period" not in before:
            return {}
        bounds = ui_data.data_date_range(ui_data.database_url())
        first = pd.Timestamp(bounds[0]) if bounds else None
        freq = self.view.freq
        out: dict[int, dict[pd.Timestamp, float]] = {}
        for index, trace in enumerate(fig.data):
            x = figures.period_x(trace, freq)
            hint = trace.meta.get("column") if isinstance(trace.meta, dict) else None
            found = match_series(data, x, trace.y, hint) if x else None
            if found is None:
                continue
            column, where = found
            rows = before
            for name, value in where.items():
                rows = rows[rows[name] == value]
            if column not in rows:
                continue
            out[index] = {
                period + year: float(value)
                for period, value in zip(naive_timestamps(rows["period"]), rows[column], strict=True)
                if pd.notna(value) and (first is None or period >= first)
            }
        return out

    def _export_popover(
        self,
        fig: go.Figure,
        data: pd.DataFrame | None,
        title: str,
        text: str,
        key: str,
        note: str | None = None,
    ) -> None:
        export = _export()
        context, tag = self.view.describe(), self._file_tag()  # filters in the image and the file name
        with st.popover("Export", icon=":material/download:", key=f"export-{key}"):
            if export.chromium_available():
                for fmt in export.IMAGE_FORMATS:
                    name = export.file_name(title, tag, fmt)
                    _download(
                        fmt.upper(),
                        self._audited(
                            (lambda fmt=fmt: export.figure_bytes(fig, fmt, context=context)), name, title
                        ),
                        name,
                        export.MIME_TYPES[fmt],
                        f"{key}-{fmt}",
                    )
            else:
                st.caption(export.MISSING_CHROMIUM_HELP)
            name = export.file_name(title, tag, "html")
            _download(
                "HTML (interactive)",
                self._audited(
                    lambda: export.figure_html(export.with_context(fig, context), title=title), name, title
                ),
                name,
                export.MIME_TYPES["html"],
                f"{key}-html",
            )
            if data is not None:
                frame = data.copy()
                name = export.file_name(title, tag, "csv")
                _download(
                    "CSV (data)",
                    self._audited(lambda: export.frame_csv(frame), name, title),
                    name,
                    export.MIME_TYPES["csv"],
                    f"{key}-csv",
                )
                meta = self._meta(title, text)
                if note:
                    meta["Partial period"] = note
                name = export.file_name(title, tag, "xlsx")
                _download(
                    "XLSX (data)",
                    self._audited(lambda: export.frame_xlsx({title[:31]: frame}, meta), name, title),
                    name,
                    export.MIME_TYPES["xlsx"],
                    f"{key}-xlsx",
                )

    def _file_tag(self) -> str | None:
        """The view's filters for file names (``View.file_tag``); None for a view without one."""
        tag = getattr(self.view, "file_tag", None)
        return tag() if callable(tag) else None

    def may_see_records(self) -> bool:
        """True for analysts and admins (and the anonymous laptop user): record-level rows."""
        return self.user is None or self.user.may("analyst")

    def table(
        self,
        df: pd.DataFrame,
        title: str,
        *,
        height: int | str = "auto",
        caption: str | None = None,
        records: bool = False,
        share: float = 1.0,
        xlsx: bool = False,
    ) -> None:
        """Draw ``df`` under ``title`` with a CSV download of exactly these rows, and with
        ``xlsx`` an XLSX one carrying the page, table and filters (``records``:
        record-level rows, for analysts and admins only; ``share``: the part of the main
        column the table has, e.g. 0.5 in one of two columns)."""
        key = self._key(title)
        st.markdown(f"**{title}**")
        if records and not self.may_see_records():
            st.info(
                "Record-level detail needs the analyst role: ask an administrator if you need it.",
                icon=":material/lock:",
            )
            return
        if caption:
            st.caption(caption)
        show_dataframe(df, height=height, key=f"table-{key}", share=share)
        export = _export()
        frame = df.copy()
        name = export.file_name(title, self._file_tag(), "csv")
        _download(
            f"Download CSV ({len(frame):,} rows)",
            self._audited(lambda: export.frame_csv(frame), name, title),
            name,
            export.MIME_TYPES["csv"],
            f"{key}-table-csv",
        )
        if xlsx:
            meta = {"Page": self.title, "Table": title, "Filters": self.view.describe()}
            _download(
                f"Download XLSX ({len(frame):,} rows)",
                self._audited(
                    lambda: export.frame_xlsx({title[:31]: frame}, meta), f"{_slug(title)}.xlsx", title
                ),
                f"{_slug(title)}.xlsx",
                export.MIME_TYPES["xlsx"],
                f"{key}-table-xlsx",
            )

    def finish(self) -> None:
        """The whole page as one PDF (every chart, its definition and the active filters)
        and as a PowerPoint deck (``charts.slides.page_deck``: native charts, notes, appendix)."""
        if not self.items:
            return
        st.divider()
        export = _export()
        if not export.chromium_available():
            st.caption(f"Whole-page PDF: {export.MISSING_CHROMIUM_HELP}")
            self._slides_download()
            return
        items = list(self.items)
        name = export.file_name(self.title, self._file_tag(), "pdf")
        _download(
            f"Download this page as PDF ({len(items)} chart{'s' if len(items) != 1 else ''})",
            self._audited(
                lambda: export.page_pdf(self.title, self.view.describe(), items), name, "whole page"
            ),
            name,
            export.MIME_TYPES["pdf"],
            f"{_slug(self.title)}-page-pdf",
            primary=True,
        )
        self._slides_download()

    def _slides_download(self) -> None:
        """ "Download this page as PowerPoint": built when clicked, written to the audit log."""
        from charts import slides

        items, context, source = list(self.items), self.view.describe(), data_source_text()
        _download(
            f"Download this page as PowerPoint ({len(items)} chart{'s' if len(items) != 1 else ''})",
            self._audited(
                lambda: slides.page_deck(self.title, context, items, source=source),
                f"{_slug(self.title)}.pptx",
                "whole page (slides)",
            ),
            f"{_slug(self.title)}.pptx",
            slides.MIME_TYPE,
            f"{_slug(self.title)}-page-pptx",
        )


def data_source_text(url: str | None = None) -> str:
    """Where a page's numbers come from, for slide notes: the database kind and name (no
    host, path or password: the deck travels by e-mail)."""
    import sqlalchemy as sa

    from ui import data as ui_data

    try:
        parsed = sa.make_url(url or ui_data.database_url())
    except Exception:  # a URL the page could read but this cannot parse: say less, not nothing
        return "CRM Insights database"
    name = os.path.basename(parsed.database or "") or "default database"
    return f"CRM Insights database ({parsed.get_backend_name()}: {name}); KPIs from the kpis package"


@dataclass(frozen=True)
class OverviewCards:
    """What a headless run of the Overview collects: its cards (``charts.slides.SlideCard``)."""

    title: str
    view: Any
    cards: list[Any]


def overview_download(view: Any, cards: list[Any]) -> None:
    """The Overview as one PowerPoint slide of cards (``cards``: ``charts.slides.SlideCard``),
    built when clicked and written to the audit log."""
    from charts import slides

    context = view.describe()
    token = st.session_state.get(CAPTURE_KEY)
    if token:  # a headless run (delivery.render) collects the cards
        CAPTURED[str(token)] = OverviewCards("Overview", view, list(cards))
    _download(
        "Download the Overview as PowerPoint (one slide)",
        audited(
            lambda: slides.overview_deck(context, cards), view, "Overview", "overview.pptx", "cards slide"
        ),
        "overview.pptx",
        slides.MIME_TYPE,
        "overview-pptx",
    )


def match_series(
    frame: pd.DataFrame, x: list[pd.Timestamp], y: object, column: str | None = None
) -> tuple[str, dict[str, object]] | None:
    """Which series of a KPI frame a trace draws: (column, {key column: value}) such that
    the rows with that key (all rows when the periods are unique) hold ``y`` at the periods
    ``x``; ``column`` is tried alone when the frame has it. None when nothing matches (a
    value the page computed, e.g. a cost per retained customer of one bucket)."""
    if frame is None or "period" not in frame or not x:
        return None
    values = figures.numbers(y, len(x))
    if not np.nan_to_num(values).any():  # all missing or zero: any column of zeros would match
        return None
    numeric = [
        c
        for c in frame.columns
        if c not in ("period", "partial")
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    columns = [column] if column in numeric else numeric
    periods = pd.DatetimeIndex(naive_timestamps(frame["period"]))
    subsets: list[tuple[dict[str, object], pd.DataFrame, pd.DatetimeIndex]] = []
    if periods.is_unique:
        subsets.append(({}, frame, periods))
    else:
        keys = [
            c
            for c in frame.columns
            if c != "period"
            and c not in numeric
            and not pd.api.types.is_datetime64_any_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ]
        for key in keys:
            for value in frame[key].dropna().unique():
                mask = (frame[key] == value).to_numpy()
                if periods[mask].is_unique:
                    subsets.append(({key: value}, frame[mask], periods[mask]))
    wanted = pd.DatetimeIndex(x)
    for where, rows, index in subsets:
        if not wanted.isin(index).all():
            continue
        for name in columns:
            got = pd.Series(rows[name].to_numpy(dtype=float), index=index).reindex(wanted).to_numpy()
            if np.allclose(got, values, rtol=1e-9, atol=0, equal_nan=True):
                return name, where
    return None


def _download(
    label: str, build: Callable[[], bytes], file_name: str, mime: str, key: str, primary: bool = False
) -> None:
    st.download_button(
        label,
        data=build,
        file_name=file_name,
        mime=mime,
        key=f"dl-{key}",
        on_click="ignore",
        type="primary" if primary else "secondary",
        icon=":material/download:",
    )
