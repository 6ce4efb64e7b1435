"""Dashboard pages rendered without a browser, as PDF, XLSX or PPTX files.

:func:`render_page` runs a page script headless (``streamlit.testing.v1.AppTest``: the
script runs in this process, no server, no browser) with

* the report's filters as the page's URL query (``from``, ``to``, ``period``, ``segment``
  …: exactly what a copied link holds; ``ui.filters`` validates them as for a link), and
* the recipient signed in as themselves (the ``ui.auth`` session of their account), so
  ``ui.auth`` intersects their scope into the filters: **each recipient gets only what
  their scope allows**, whatever the report's filters say. Without any account (a laptop
  install) the page runs as the anonymous user, as the dashboard would.

It collects the page's ``ui.report.PageReport`` (its charts as ``ReportItem``: title,
figure, definition, data) through ``ui.report.CAPTURED``; the Overview gives its cards.
:func:`render_files` turns pages into attachments: a PDF per page
(``charts.export.page_pdf``), a PPTX deck per page (``charts.slides.page_deck``; the
Overview as its one slide of cards), or one XLSX workbook for the whole report
(``charts.export.frame_xlsx``: a sheet per chart, a "Filters" sheet, the About sheet).

Streamlit is imported here only inside the functions (the package stays importable
without it); the rest of ``delivery`` is plain Python.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pandas as pd
import plotly.graph_objects as go

from charts.export import ReportItem

PROJECT_DIR = Path(__file__).resolve().parent.parent
#: Seconds one headless page run may take (the machine may be shared and slow).
PAGE_TIMEOUT = 180
FORMATS: tuple[str, ...] = ("pdf", "xlsx", "pptx")
MIME_TYPES = {
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
}


class RenderError(RuntimeError):
    """A page could not be rendered (the message names the page, the recipient and why)."""


@dataclass
class RenderedPage:
    """One page as a recipient sees it: its title, the filters it applied (``context``),
    its charts, the Overview's cards (``cards``) and the notices the page showed (e.g. a
    filter value outside the recipient's scope that was ignored)."""

    script: str
    title: str
    context: str
    items: list[ReportItem] = field(default_factory=list)
    cards: list[Any] | None = None
    notices: list[str] = field(default_factory=list)
    source: str = "CRM Insights database"


@dataclass(frozen=True)
class File:
    """A rendered file: name, bytes and MIME type (``delivery.channels.Attachment`` fields)."""

    filename: str
    content: bytes
    mime_type: str


def query_params(query: str) -> dict[str, list[str]]:
    """A URL query (``segment=SMB&segment=Mid-market&from=2026-01-01``; a leading ``?`` is
    fine) as the lists ``AppTest.query_params`` takes."""
    return {key: values for key, values in parse_qs(query.lstrip("?"), keep_blank_values=False).items()}


@contextlib.contextmanager
def _environment(url: str, anonymous: bool) -> Iterator[None]:
    """The page's database (``CRM_DATABASE_URL``) and, for an install without accounts,
    anonymous use (what the dashboard allows on 127.0.0.1), for the length of one run."""
    saved = {name: os.environ.get(name) for name in ("CRM_DATABASE_URL", "CRM_ALLOW_ANONYMOUS")}
    os.environ["CRM_DATABASE_URL"] = url
    if anonymous:
        os.environ["CRM_ALLOW_ANONYMOUS"] = "1"
    else:
        os.environ.pop("CRM_ALLOW_ANONYMOUS", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def render_page(script: str, query: str, account: str | None, url: str) -> RenderedPage:
    """Run the page ``script`` (``pages/1_Sales_pipeline.py``, ``dashboard.py``) headless
    with the filters of ``query`` and ``account`` signed in (None: anonymous, only for an
    install without accounts), on the CRM database ``url``; return what it drew."""
    _quiet_streamlit()
    from streamlit.testing.v1 import AppTest

    from ui import auth
    from ui import report as ui_report

    path = PROJECT_DIR / script
    if not path.is_file():
        raise RenderError(f"{script}: no such page in {PROJECT_DIR}")
    token = uuid.uuid4().hex
    who = account or "anonymous"
    at = AppTest.from_file(str(path), default_timeout=PAGE_TIMEOUT)
    at.query_params = query_params(query)
    at.session_state[ui_report.CAPTURE_KEY] = token
    if account is not None:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        at.session_state[auth.SESSION_KEY] = {"name": account, "how": "report", "since": now, "seen": now}
    with _environment(url, anonymous=account is None):
        auth.forget_accounts()
        try:
            at.run()
        finally:
            captured = ui_report.CAPTURED.pop(token, None)
    if at.exception:
        messages = "; ".join(str(e.value).splitlines()[0] for e in at.exception if e.value)
        raise RenderError(f"{script} for {who}: the page failed: {messages or 'an exception'}")
    if captured is None:
        shown = " ".join(str(e.value) for e in at.error) or "it stopped before drawing its charts"
        raise RenderError(f"{script} for {who}: nothing to send ({_plain(shown)})")
    notices = [_plain(str(w.value)) for w in at.sidebar.warning]
    view = captured.view
    source = ui_report.data_source_text(url)
    if isinstance(captured, ui_report.OverviewCards):
        return RenderedPage(
            script, captured.title, view.describe(), [], list(captured.cards), notices, source
        )
    return RenderedPage(script, captured.title, view.describe(), list(captured.items), None, notices, source)


def _quiet_streamlit() -> None:
    """Streamlit's "No runtime found" / "missing ScriptRunContext" warnings say that no server
    runs, which is the point here: keep them out of cron's mail (errors still show)."""
    from streamlit import logger

    logger.set_log_level("error")


def _plain(text: str) -> str:
    """Streamlit markdown as plain text: no ``:material/...:`` icons, no ``**``, no backslashes."""
    text = re.sub(r":material/[a-z_]+:", "", text)
    return " ".join(text.replace("**", "").replace("\\", "").split())


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "page"


def cards_frame(cards: Sequence[Any]) -> pd.DataFrame:
    """The Overview's cards as a table: KPI, value (as shown), change, periods, raw value."""
    from charts.theme import fmt_delta, fmt_value

    rows = []
    for card in cards:
        rows.append(
            {
                "kpi": card.title,
                "shown": card.error or fmt_value(card.value, card.unit),
                "change": "" if card.error else fmt_delta(card.delta, card.unit),
                "periods": card.caption,
                "value": card.value,
                "unit": card.unit,
            }
        )
    return pd.DataFrame(rows, columns=["kpi", "shown", "change", "periods", "value", "unit"])


def _cards_item(page: RenderedPage) -> ReportItem:
    """The Overview's cards as one chart-like item (a table figure) for the PDF and XLSX."""
    frame = cards_frame(page.cards or [])
    fig = go.Figure(
        go.Table(
            header={"values": ["KPI", "Value", "Change", "Periods"], "align": "left"},
            cells={"values": [frame[c] for c in ("kpi", "shown", "change", "periods")], "align": "left"},
        )
    )
    fig.update_layout(title_text="Headline KPIs", height=120 + 30 * len(frame))
    return ReportItem(
        "Headline KPIs", fig, "The Overview's cards: the last complete period and its change.", frame
    )


def page_items(page: RenderedPage) -> list[ReportItem]:
    """The page's charts; for the Overview, its cards as one table item."""
    return [_cards_item(page)] if page.cards is not None else list(page.items)


def render_files(
    report_name: str,
    pages: Sequence[RenderedPage],
    fmt: str,
    *,
    scope: str = "",
    when: dt.datetime | None = None,
) -> list[File]:
    """The attachments of one delivery: a file per page for ``pdf`` and ``pptx``, one
    workbook for ``xlsx``. ``scope`` (the recipient's, in words) goes into the XLSX's Filters
    sheet; ``when`` names the files' date (default: now, UTC)."""
    from charts import export, slides

    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: one of {', '.join(FORMATS)}")
    day = f"{(when or dt.datetime.now(dt.UTC)):%Y-%m-%d}"
    if fmt == "xlsx":
        sheets: dict[str, pd.DataFrame] = {}
        rows = []
        for page in pages:
            for item in page_items(page):
                if item.data is not None:
                    sheets[_unique(sheets, item.title)] = item.data
            rows.append({"page": page.title, "filters": page.context, "scope": scope or "everything"})
        sheets[_unique(sheets, "Filters")] = pd.DataFrame(rows, columns=["page", "filters", "scope"])
        meta = {
            "Report": report_name,
            "Pages": ", ".join(p.title for p in pages),
            "Scope": scope or "everything",
        }
        return [File(f"{_slug(report_name)}-{day}.xlsx", export.frame_xlsx(sheets, meta), MIME_TYPES["xlsx"])]
    files = []
    for page in pages:
        name = f"{_slug(report_name)}-{_slug(page.title)}-{day}.{fmt}"
        if fmt == "pdf":
            content = export.page_pdf(page.title, page.context, page_items(page))
        elif page.cards is not None:
            content = slides.overview_deck(page.context, page.cards, generated=when)
        else:
            content = slides.page_deck(
                page.title, page.context, page.items, source=page.source, generated=when
            )
        files.append(File(name, content, MIME_TYPES[fmt]))
    return files


def _unique(existing: dict[str, Any], title: str) -> str:
    name, n = title, 2
    while name in existing:
        name, n = f"{title} ({n})", n + 1
    return name
