"""File exports for charts and tables: PNG / SVG / PDF images, interactive HTML, CSV, XLSX and a
whole-page PDF report.

Plain Python (no Streamlit), usable from a notebook::

    from charts.export import figure_bytes, frame_xlsx
    Path("churn.png").write_bytes(figure_bytes(fig, "png"))

Static images are rendered by kaleido 1.x driving the system's Chromium (Debian: ``apt-get install
chromium``). One headless Chromium is started on first use and kept warm for the life of the
process, on its own thread and event loop, so every later export costs a render (~0.1-0.3 s)
instead of a browser start (~2 s). Calls from several threads (Streamlit sessions) are safe.

CSV and XLSX downloads are spreadsheet-safe: text that starts with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return gets a single quote in front (``'=HYPERLINK(...)``, OWASP's rule against
formula injection; ``crm_data.spreadsheet_safety``), numbers stay numbers, and XLSX cells hold text
as text (never a formula or a hyperlink).

The whole-page PDF is an HTML report (title, active filters, every chart as vector SVG with its
definition) printed to PDF by the same warm Chromium, so it needs no extra PDF library; the active
filters are repeated in a running header on every printed page.

Exports carry their context: ``figure_bytes(fig, fmt, context="01 Dec 2025 – 30 Nov 2026 · …")``
prints the filters and date range as a subtitle in the image (the on-screen figure is not
changed), and ``file_name("Churn rate", "2025-12-01_2026-11-30_segment-enterprise", "png")``
gives ``churn-rate_2025-12-01_2026-11-30_segment-enterprise.png`` (slugged, at most
:data:`MAX_FILE_STEM` characters before the extension).
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import hashlib
import html
import io
import os
import re
import shutil
import tempfile
import textwrap
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

import pandas as pd
import plotly.graph_objects as go

from crm_data.spreadsheet_safety import csv_text, neutralise_frame, neutralise_text

ImageFormat = Literal["png", "svg", "pdf"]
IMAGE_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")

MIME_TYPES: dict[str, str] = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "html": "text/html",
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

MISSING_CHROMIUM_HELP = (
    "PNG, SVG and PDF export needs the Chromium browser, which was not found. "
    "Install it with `apt-get install chromium` (Debian/Ubuntu) or set CRM_CHROMIUM_PATH to a "
    "Chrome/Chromium executable, then restart the dashboard. HTML, CSV and XLSX downloads work without it."
)

#: Where Chromium is looked for, in order, after the CRM_CHROMIUM_PATH / BROWSER_PATH variables.
CHROMIUM_CANDIDATES: tuple[str, ...] = (
    "/usr/bin/chromium",
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
)

#: Extra Chromium switches on top of kaleido's defaults (which already include --headless,
#: --no-sandbox, --disable-gpu, --no-first-run, --disable-component-update and --disable-sync).
EXTRA_CHROMIUM_SWITCHES: tuple[str, ...] = ("--disable-background-networking",)

DEFAULT_WIDTH = 1000
DEFAULT_HEIGHT = 500
PNG_SCALE = 2
RENDER_TIMEOUT_SECONDS = 90
START_TIMEOUT_SECONDS = 60
#: File names: at most this many characters before the extension (file systems allow 255
#: bytes; mail clients and Windows paths are happier well below).
MAX_FILE_STEM = 120
#: The context subtitle of an exported image: characters per line, and its font size (px).
CONTEXT_LINE_CHARACTERS = 150
CONTEXT_FONT_SIZE = 11


class ReportItem(NamedTuple):
    """One chart of a page as its exports see it: the title, the Plotly figure, its definition
    in words and the KPI frame it was drawn from (``None`` when the chart has no table)."""

    title: str
    figure: go.Figure
    definition: str
    data: pd.DataFrame | None = None


class ChromiumMissingError(RuntimeError):
    """Raised for PNG / SVG / PDF export when no Chromium executable can be found."""

    def __init__(self, message: str = MISSING_CHROMIUM_HELP) -> None:
        super().__init__(message)


class ExportError(RuntimeError):
    """Raised when Chromium is present but rendering a figure or report failed."""


# --------------------------------------------------------------------------------------------
# Chromium lookup
# --------------------------------------------------------------------------------------------


def chromium_path() -> str | None:
    """The Chromium executable used for image export, or None when none is installed.

    Order: $CRM_CHROMIUM_PATH, $BROWSER_PATH (the variable kaleido/choreographer read), then
    :data:`CHROMIUM_CANDIDATES` (absolute paths as is, bare names on $PATH).
    """
    for variable in ("CRM_CHROMIUM_PATH", "BROWSER_PATH"):
        value = os.environ.get(variable)
        if value and Path(value).is_file() and os.access(value, os.X_OK):
            return value
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.isabs(candidate):
            if Path(candidate).is_file() and os.access(candidate, os.X_OK):
                return candidate
        elif found := shutil.which(candidate):
            return found
    return None


def chromium_available() -> bool:
    """True when a Chromium executable for PNG / SVG / PDF export is installed."""
    return chromium_path() is not None


def _require_chromium() -> str:
    path = chromium_path()
    if path is None:
        raise ChromiumMissingError()
    return path


# --------------------------------------------------------------------------------------------
# The warm kaleido server: one Chromium per process on a private event-loop thread
# --------------------------------------------------------------------------------------------


def _quiet_chromium_class() -> type:
    from choreographer.browsers.chromium import Chromium

    class QuietChromium(Chromium):
        """Kaleido's Chromium launcher plus :data:`EXTRA_CHROMIUM_SWITCHES`."""

        def get_cli(self) -> list[str]:
            return [*super().get_cli(), *EXTRA_CHROMIUM_SWITCHES]

    return QuietChromium


class _KaleidoServer:
    """One kaleido browser kept open on a background event loop; thread-safe ``run(coro)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._kaleido: Any = None

    @property
    def running(self) -> bool:
        return self._kaleido is not None

    def _start(self) -> None:
        import kaleido

        path = _require_chromium()
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="kaleido-server", daemon=True)
        thread.start()

        async def open_browser() -> Any:
            browser = kaleido.Kaleido(
                n=1,
                path=path,
                mathjax=False,  # no CDN fetch: the dashboard works offline
                timeout=RENDER_TIMEOUT_SECONDS,
                browser_cls=_quiet_chromium_class(),
            )
            await browser.open()
            return browser

        try:
            self._kaleido = asyncio.run_coroutine_threadsafe(open_browser(), loop).result(
                START_TIMEOUT_SECONDS
            )
        except BaseException as error:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            loop.close()
            raise ExportError(f"Could not start Chromium at {path} for image export: {error}") from error
        self._loop, self._thread = loop, thread

    def ensure_started(self) -> None:
        with self._lock:
            if self._kaleido is None:
                self._start()

    def run(self, make_coroutine: Any, timeout: float = RENDER_TIMEOUT_SECONDS) -> Any:
        """Run ``make_coroutine(kaleido)`` on the server loop and return its result.

        A failure that looks like a dead browser stops the server so the next call starts a new one.
        """
        self.ensure_started()
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(make_coroutine(self._kaleido), self._loop)
        try:
            return future.result(timeout)
        except FutureTimeoutError as error:
            future.cancel()
            self.stop()
            raise ExportError(f"Chromium did not finish the export within {timeout:.0f} s") from error
        except (ValueError, TypeError, AttributeError):
            raise  # a bad figure or option: the browser is fine
        except Exception as error:
            self.stop()
            raise ExportError(f"Chromium export failed: {error}") from error

    def stop(self) -> None:
        with self._lock:
            browser, loop, thread = self._kaleido, self._loop, self._thread
            self._kaleido = self._loop = self._thread = None
        if loop is None:
            return
        if browser is not None:
            with contextlib.suppress(Exception):  # best effort on shutdown
                asyncio.run_coroutine_threadsafe(browser.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(5)
        if not loop.is_running():
            loop.close()


_SERVER = _KaleidoServer()
atexit.register(_SERVER.stop)


def warm_up() -> None:
    """Start the export browser now (it otherwise starts on the first image export)."""
    _SERVER.ensure_started()


def shutdown() -> None:
    """Close the export browser (a later export starts a new one)."""
    _SERVER.stop()


def server_running() -> bool:
    """True while the warm export browser is open."""
    return _SERVER.running


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def _layout_options(
    fig: go.Figure, fmt: str, width: int | None, height: int | None, scale: float | None
) -> dict[str, Any]:
    return {
        "format": fmt,
        "width": width or fig.layout.width or DEFAULT_WIDTH,
        "height": height or fig.layout.height or DEFAULT_HEIGHT,
        "scale": scale if scale is not None else (PNG_SCALE if fmt == "png" else 1),
    }


def slug(text: str) -> str:
    """``"Churn rate — Perú"`` -> ``"churn-rate-peru"``: ASCII letters and digits joined by
    ``-`` (accents dropped, everything else a separator); ``""`` for nothing left."""
    ascii_text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def file_name(title: str, tag: str | None, extension: str, max_stem: int = MAX_FILE_STEM) -> str:
    """A download's file name: the slugged ``title``, then ``_`` and the filter ``tag`` (see
    ``ui.filters.View.file_tag``; its own ``_`` / ``-`` kept, anything else slugged), then
    ``.extension``. A stem longer than ``max_stem`` is cut and ends in ``-`` + 8 hex digits
    of a hash of the whole stem, so two long names that differ only at the end stay apart."""
    stem = slug(title) or "export"
    if tag:
        tag_text = "_".join(part for part in (slug(p) for p in str(tag).split("_")) if part)
        if tag_text:
            stem = f"{stem}_{tag_text}"
    if len(stem) > max_stem:
        digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()[:8]
        stem = stem[: max_stem - len(digest) - 1].rstrip("-_") + "-" + digest
    return f"{stem}.{extension.lstrip('.')}"


def with_context(fig: go.Figure, context: str) -> go.Figure:
    """A copy of ``fig`` whose title carries ``context`` (the active filters and date range)
    as a subtitle, wrapped at :data:`CONTEXT_LINE_CHARACTERS`; the top margin grows to fit.
    ``fig`` itself is not changed (the on-screen chart keeps its look)."""
    out = go.Figure(fig)
    lines = textwrap.wrap(str(context), CONTEXT_LINE_CHARACTERS) or [""]
    text = "<br>".join(html.escape(line, quote=False) for line in lines)
    title = out.layout.title.text or ""
    margin_top = out.layout.margin.t if out.layout.margin.t is not None else 80
    out.update_layout(
        title={
            "text": title or " ",
            "subtitle": {"text": text, "font": {"size": CONTEXT_FONT_SIZE, "color": "#52606d"}},
            "yref": "container",
            "y": 0.98,
            "yanchor": "top",
        },
        margin={"t": max(margin_top, 60) + (CONTEXT_FONT_SIZE + 5) * len(lines)},
    )
    return out


def figure_bytes(
    fig: go.Figure,
    fmt: ImageFormat,
    *,
    width: int | None = None,
    height: int | None = None,
    scale: float | None = None,
    context: str | None = None,
) -> bytes:
    """The figure as a PNG, SVG or PDF file, rendered by the warm Chromium.

    Size defaults to the figure's layout size, else 1000 x 500 px; PNGs are rendered at scale 2.
    ``context`` (the active filters and date range, ``View.describe()``) is printed as the
    title's subtitle in the file (:func:`with_context`; ``fig`` is not changed).
    Raises :class:`ChromiumMissingError` (message: what to install) when Chromium is absent.
    """
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"Unsupported image format {fmt!r}; expected one of {', '.join(IMAGE_FORMATS)}")
    _require_chromium()
    if context:
        fig = with_context(fig, context)
    options = _layout_options(fig, fmt, width, height, scale)
    spec = fig.to_dict()
    return _SERVER.run(lambda browser: browser.calc_fig(spec, opts=options))


def figure_html(fig: go.Figure, *, title: str | None = None) -> bytes:
    """The figure as a self-contained interactive HTML page (plotly.js embedded; works offline)."""
    page = fig.to_html(
        full_html=True,
        include_plotlyjs=True,
        config={"displaylogo": False, "responsive": True},
    )
    if title:
        page = page.replace("<head>", f"<head><title>{html.escape(title)}</title>", 1)
    return page.encode("utf-8")


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def frame_csv(df: pd.DataFrame) -> bytes:
    """The frame as UTF-8 CSV with a header row and no index (timestamps in ISO 8601).

    Spreadsheet-safe: text cells and column names that start with ``=``, ``+``, ``-``, ``@``, a
    tab or a carriage return get a leading ``'`` (numbers are not touched), and fields with line
    breaks (``\\r`` too) are quoted.
    """
    return csv_text(neutralise_frame(df), date_format="%Y-%m-%dT%H:%M:%S").encode("utf-8")


_INVALID_SHEET_CHARACTERS = re.compile(r"[\[\]:*?/\\]")
_RATIO_NAME = re.compile(r"(rate|ratio|share|conversion|coverage|ctr|retention)", re.IGNORECASE)
_NPS_NAME = re.compile(r"^nps$", re.IGNORECASE)


def _sheet_names(names: Sequence[str]) -> list[str]:
    """Excel-safe, unique sheet names (max 31 characters, no []:*?/\\, not "About")."""
    used: set[str] = {"about"}
    result = []
    for index, raw in enumerate(names, start=1):
        base = _INVALID_SHEET_CHARACTERS.sub(" ", str(raw)).strip().strip("'") or f"Sheet{index}"
        candidate = base[:31]
        suffix = 2
        while candidate.lower() in used:
            tail = f" ({suffix})"
            candidate = base[: 31 - len(tail)] + tail
            suffix += 1
        used.add(candidate.lower())
        result.append(candidate)
    return result


def _column_format(df: pd.DataFrame, column: str) -> dict[str, Any] | None:
    """Number format for a column: rates as %, NPS with one decimal, counts and amounts with separators.

    Interval columns (ci_low / ci_high, lo80 …) follow the measure they bound: % when the sheet holds
    a rate and no NPS, one decimal when it holds NPS.
    """
    series = df[column]
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    name = str(column)
    columns = [str(c) for c in df.columns]
    has_nps = any(_NPS_NAME.match(c) for c in columns)
    has_rate = any(_RATIO_NAME.search(c) and not c.startswith("share_easy_ci") for c in columns)
    if _NPS_NAME.match(name) or (name.startswith("ci_") and has_nps):
        return {"num_format": "0.0"}
    if _RATIO_NAME.search(name) or (name.startswith("ci_") and has_rate and not has_nps):
        return {"num_format": "0.0%"}
    if pd.api.types.is_integer_dtype(series):
        return {"num_format": "#,##0"}
    return {"num_format": "#,##0.00"}


def _excel_ready(df: pd.DataFrame) -> pd.DataFrame:
    """Copy with tz-aware timestamps made naive UTC (Excel has no time zones) and a flat index."""
    out = df.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.tz_convert("UTC").dt.tz_localize(None)
    return out.reset_index(drop=True)


def frame_xlsx(sheets: Mapping[str, pd.DataFrame], meta: Mapping[str, str] | None = None) -> bytes:
    """An Excel workbook: one sheet per frame, formatted numbers, then an "About" sheet.

    The About sheet lists ``meta`` (e.g. "Definition", "Filters") as name / value rows plus the export
    time in UTC, so a spreadsheet passed around still says what the numbers mean.

    Text is stored as text, never as a formula or a hyperlink (xlsxwriter's ``strings_to_formulas``
    and ``strings_to_urls`` off), and neutralised as in :func:`frame_csv` (a leading ``'`` on text
    starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return), so it stays harmless when
    the sheet is saved again as CSV. Numbers stay numbers.
    """
    buffer = io.BytesIO()
    with pd.ExcelWriter(
        buffer,
        engine="xlsxwriter",
        datetime_format="yyyy-mm-dd hh:mm",
        date_format="yyyy-mm-dd",
        engine_kwargs={"options": {"strings_to_formulas": False, "strings_to_urls": False}},
    ) as writer:
        book = writer.book
        header = book.add_format({"bold": True, "bg_color": "#E8EEF4", "bottom": 1, "text_wrap": True})
        formats: dict[str, Any] = {}
        names = _sheet_names(list(sheets))
        for sheet_name, frame in zip(names, sheets.values(), strict=True):
            data = neutralise_frame(_excel_ready(frame))
            data.to_excel(writer, sheet_name=sheet_name, index=False)
            sheet = writer.sheets[sheet_name]
            for position, column in enumerate(data.columns):
                sheet.write_string(0, position, str(column), header)  # names neutralised above
                spec = _column_format(data, column)
                key = repr(spec)
                if spec is not None and key not in formats:
                    formats[key] = book.add_format(spec)
                lengths = data[column].astype(str).str.len()
                text_width = 0 if lengths.dropna().empty else int(lengths.max())
                width = min(max(len(str(column)), text_width, 8) + 2, 60)
                sheet.set_column(position, position, width, formats.get(key) if spec else None)
            sheet.freeze_panes(1, 0)
            if len(data.columns):
                sheet.autofilter(0, 0, max(len(data), 1), len(data.columns) - 1)

        about = book.add_worksheet("About")
        wrap = book.add_format({"text_wrap": True, "valign": "top"})
        bold = book.add_format({"bold": True, "valign": "top"})
        about.set_column(0, 0, 18)
        about.set_column(1, 1, 100)
        rows = [*dict(meta or {}).items(), ("Exported", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))]
        for row, (name, value) in enumerate(rows):
            about.write_string(row, 0, neutralise_text(str(name)), bold)
            about.write_string(row, 1, neutralise_text(str(value)), wrap)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Whole-page PDF report
# --------------------------------------------------------------------------------------------

_REPORT_CSS = """
@page { size: A4 landscape; margin: 20mm 14mm 16mm 14mm; }
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #1f2933; font-size: 10.5pt; }
h1 { font-size: 20pt; margin: 0 0 4pt 0; }
.meta { color: #52606d; margin: 0 0 2pt 0; }
.filters { background: #f0f4f8; border-left: 4px solid #0072B2; padding: 6pt 8pt; margin: 8pt 0 4pt 0; }
.item { page-break-inside: avoid; break-inside: avoid; margin-top: 14pt; }
.item + .item { page-break-before: always; break-before: page; }
.item h2 { font-size: 14pt; margin: 0 0 6pt 0; }
.chart svg { width: 100%; height: auto; max-height: 105mm; }
.definition { margin-top: 6pt; padding: 6pt 8pt; border: 1px solid #cbd2d9; border-radius: 4px; }
.definition b { display: block; margin-bottom: 2pt; }
.empty { color: #52606d; font-style: italic; }
"""


def _svg_for_report(svg: str) -> str:
    """Plotly SVG made scalable: keep its viewBox, drop the fixed pixel size."""
    match = re.search(r"<svg[^>]*>", svg)
    if not match:
        return svg
    tag = match.group(0)
    width = re.search(r'\swidth="([\d.]+)"', tag)
    height = re.search(r'\sheight="([\d.]+)"', tag)
    new_tag = tag
    if width and height and "viewBox" not in tag:
        new_tag = new_tag.replace("<svg", f'<svg viewBox="0 0 {width.group(1)} {height.group(1)}"', 1)
    new_tag = re.sub(r'\s(width|height)="[\d.]+"', "", new_tag)
    return svg.replace(tag, new_tag, 1)


def report_html(title: str, filters_text: str, items: Sequence[tuple[str, str, str]]) -> str:
    """The HTML of a page report; ``items`` are (chart title, chart SVG markup, definition)."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='meta'>CRM Insights report &middot; generated {generated}</p>",
        f"<div class='filters'><b>Active filters:</b> {html.escape(filters_text or 'none')}</div>",
    ]
    if not items:
        parts.append("<p class='empty'>This page has no charts for the current selection.</p>")
    for chart_title, svg, definition in items:
        parts.append("<section class='item'>")
        parts.append(f"<h2>{html.escape(chart_title)}</h2>")
        parts.append(f"<div class='chart'>{_svg_for_report(svg)}</div>")
        if definition:
            parts.append(f"<div class='definition'><b>Definition</b>{html.escape(definition)}</div>")
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


_RUNNING_STYLE = (
    "font-family: 'DejaVu Sans', 'Liberation Sans', Arial, sans-serif; font-size: 7.5pt; color: #52606d; "
    "width: 100%; margin: 0 14mm; -webkit-print-color-adjust: exact;"
)


def running_header(title: str, filters_text: str) -> str:
    """Chrome's ``headerTemplate`` for the page PDF: the page title and the active filters,
    printed in the top margin of every page."""
    return (
        f'<div style="{_RUNNING_STYLE}"><b>{html.escape(title)}</b> &middot; '
        f"{html.escape(filters_text or 'no filters')}</div>"
    )


def running_footer(title: str) -> str:
    """Chrome's ``footerTemplate``: "CRM Insights · <title> · page n of m"."""
    return (
        f'<div style="{_RUNNING_STYLE} text-align: right;">CRM Insights &middot; {html.escape(title)} '
        "&middot; page <span class='pageNumber'></span> of <span class='totalPages'></span></div>"
    )


async def _print_html_to_pdf(
    browser: Any, page: str, header: str | None = None, footer: str | None = None
) -> bytes:
    """Open ``page`` in a fresh tab of ``browser`` and print it with Chrome's Page.printToPDF
    (with ``header`` / ``footer`` templates on every page when given)."""
    with tempfile.TemporaryDirectory(prefix="crm-report-") as folder:
        path = Path(folder) / "report.html"
        path.write_text(page, encoding="utf-8")
        tab = await browser.create_tab("")
        try:
            loaded = tab.subscribe_once("Page.loadEventFired")
            await tab.send_command("Page.enable")
            navigation = await tab.send_command("Page.navigate", params={"url": path.as_uri()})
            if "error" in navigation:
                raise ExportError(f"Could not open the report page: {navigation['error']}")
            await loaded
            params: dict[str, Any] = {"printBackground": True, "preferCSSPageSize": True}
            if header is not None or footer is not None:
                params.update(
                    displayHeaderFooter=True,
                    headerTemplate=header or "<span></span>",
                    footerTemplate=footer or "<span></span>",
                )
            else:
                params["displayHeaderFooter"] = False
            response = await tab.send_command("Page.printToPDF", params=params)
        finally:
            await browser.close_tab(tab)
    if "error" in response:
        raise ExportError(f"Chromium could not print the report: {response['error']}")
    return base64.b64decode(response["result"]["data"])


def page_pdf(
    title: str, filters_text: str, items: Sequence[ReportItem | tuple[str, go.Figure, str]]
) -> bytes:
    """One PDF for a whole dashboard page: its title, the active filters, then every chart (vector)
    with its definition, one chart per A4-landscape page. Every printed page repeats the title
    and the active filters in its header and numbers itself in its footer.

    ``items`` are :class:`ReportItem` (or (chart title, figure, definition text)). Raises :class:`ChromiumMissingError` when
    Chromium is absent.
    """
    _require_chromium()
    rendered = []
    for chart_title, fig, definition, *_ in items:
        svg = figure_bytes(fig, "svg").decode("utf-8")
        rendered.append((chart_title, svg, definition or ""))
    page = report_html(title, filters_text, rendered)
    header, footer = running_header(title, filters_text), running_footer(title)
    return _SERVER.run(lambda browser: _print_html_to_pdf(browser, page, header, footer))
