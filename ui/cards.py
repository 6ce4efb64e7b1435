"""KPI cards and definition cards.

* ``kpi_card(key, value, delta, sparkline, low_sample, link)``: one number from the kpis
  registry entry ``key`` — formatted for its unit, the period-over-period change coloured
  by "higher is better", a sparkline, a low-sample warning and a link to its page.
* ``definition_card(key)`` / ``definition_text(key)``: the registry's definition, shown
  next to every chart so nobody has to guess what "win rate" means here.
* ``latest(frame, column, ...)``: the numbers a card shows, taken from a KPI's per-period
  frame (the last complete period, the one before, the series).
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from charts.theme import fmt_delta, fmt_value
from kpis.core import is_partial

PROJECT_DIR = Path(__file__).resolve().parent.parent
UNIT_WORDS = {
    "ratio": "a share (0–100 %)",
    "nps": "NPS points (−100 to +100)",
    "score": "a mean score",
    "days": "days",
    "money": "money (reporting currency)",
    "count": "a count",
}


def registry_entry(key: str) -> Any | None:
    """The ``kpis.registry`` definition for ``key``, or None when it is not registered."""
    try:
        from kpis import registry
    except ImportError:
        return None
    try:
        return registry.get(key)
    except (KeyError, LookupError, ValueError):
        return None


def definition_text(key: str | None, fallback: str | None = None) -> str:
    """The definition to print beside a chart / in an export: the registry's, else ``fallback``."""
    entry = registry_entry(key) if key else None
    if entry is not None:
        return str(entry.definition)
    return fallback or ""


def registry_entry_for(function: Any) -> Any | None:
    """The first ``kpis.registry`` entry computed by ``function``, or None."""
    try:
        from kpis import registry
    except ImportError:
        return None
    for entry in registry.KPIS:
        if entry.function is function:
            return entry
    return None


_COLUMNS_NOTE = re.compile(r"\s*\bColumns:.*\Z", re.DOTALL)


_BULLET = re.compile(r"^\s*[*-]\s+", re.MULTILINE)


def _one_line(text: str) -> str:
    """One line of plain text: bullets' markers dropped, reST ``literals`` shown plain,
    whitespace collapsed (it is shown as Markdown in a caption and as text in exports)."""
    return " ".join(_BULLET.sub("", text).replace("``", "").split())


def docstring_definition(function: Any) -> str:
    """What a number means, for charts of KPI functions beside the registry's headline ones.

    The registry's definition when an entry is computed by ``function``; else, from the
    docstring, its summary line followed by the "Formula:" paragraph (up to any "Columns:"
    list); a docstring without a "Formula:" paragraph gives its summary and the paragraphs
    after it, again without the column list.
    """
    entry = registry_entry_for(function)
    if entry is not None:
        return str(entry.definition)
    paragraphs = [p.strip() for p in (inspect.getdoc(function) or "").split("\n\n") if p.strip()]
    if not paragraphs:
        return ""
    summary, rest = paragraphs[0], paragraphs[1:]
    formula = [p for p in rest if p.startswith("Formula:")]
    body = formula[:1] if formula else rest
    parts = [_one_line(p) for p in [summary] + [_COLUMNS_NOTE.sub("", p) for p in body]]
    return " ".join(p for p in parts if p)


def definition_card(key: str, fallback: str | None = None) -> None:
    """A small card: the KPI's title, its definition and which direction is good."""
    entry = registry_entry(key)
    if entry is None:
        if fallback:
            st.caption(f":material/info: {fallback}")
        return
    direction = "higher is better" if entry.higher_is_better else "lower is better"
    unit = UNIT_WORDS.get(entry.unit, entry.unit)
    st.caption(f":material/info: **{entry.title}** — {entry.definition} *(Unit: {unit}; {direction}.)*")


@dataclass(frozen=True)
class CardNumbers:
    """What a card shows: the value of one period, its change on the period before, the series."""

    value: float
    delta: float
    sparkline: list[float]
    low_sample: bool
    period: pd.Timestamp | None
    previous: pd.Timestamp | None


def latest(
    frame: pd.DataFrame,
    column: str,
    freq: str,
    today: dt.date | None = None,
    low_sample_column: str = "low_sample",
    end: dt.date | None = None,
) -> CardNumbers:
    """The last complete period's ``column`` (the last period at all when none is complete),
    its change on the period before, and the whole series for the sparkline. Complete: not
    partial (``kpis.core.is_partial``) as of ``today`` in a range ending at ``end``."""
    nan = math.nan
    if frame is None or frame.empty or column not in frame:
        return CardNumbers(nan, nan, [], False, None, None)
    rows = frame.sort_values("period").reset_index(drop=True)
    complete = [i for i, p in enumerate(rows["period"]) if not is_partial(p, freq, end or dt.date.max, today)]
    index = complete[-1] if complete else len(rows) - 1
    value = float(rows.at[index, column]) if pd.notna(rows.at[index, column]) else nan
    previous = (
        float(rows.at[index - 1, column]) if index > 0 and pd.notna(rows.at[index - 1, column]) else nan
    )
    low = bool(rows.at[index, low_sample_column]) if low_sample_column in rows else False
    series = [float(v) if pd.notna(v) else None for v in rows[column].iloc[: index + 1]]
    return CardNumbers(
        value=value,
        delta=value - previous if not (math.isnan(value) or math.isnan(previous)) else nan,
        sparkline=[v for v in series if v is not None],
        low_sample=low,
        period=pd.Timestamp(rows.at[index, "period"]),
        previous=pd.Timestamp(rows.at[index - 1, "period"]) if index > 0 else None,
    )


def page_exists(link: str | None) -> bool:
    """True when ``link`` names a page script of this app (``dashboard.py`` or ``pages/…``)."""
    return bool(link) and (PROJECT_DIR / str(link)).is_file()


def kpi_card(
    key: str,
    value: float | None,
    delta: float | None = None,
    sparkline: list[float] | None = None,
    low_sample: bool = False,
    link: str | None = None,
    *,
    caption: str | None = None,
    delta_description: str | None = None,
    title: str | None = None,
    unit: str | None = None,
    higher_is_better: bool | None = None,
) -> None:
    """One KPI in a bordered card. Title, unit and direction come from the registry entry
    ``key`` (the keyword arguments override them for numbers the registry does not hold)."""
    entry = registry_entry(key)
    title = title or (entry.card_title if entry else key.replace("_", " ").capitalize())
    unit = unit or (entry.unit if entry else "count")
    if higher_is_better is None:
        higher_is_better = bool(entry.higher_is_better) if entry else True
    with st.container(border=True):
        st.metric(
            title,
            fmt_value(value, unit),
            delta=fmt_delta(delta, unit) or None,
            delta_color="off" if delta == 0 else ("normal" if higher_is_better else "inverse"),
            help=_card_help(entry),
            chart_data=sparkline if sparkline and len(sparkline) > 1 else None,
            chart_type="line",
            delta_description=delta_description,
        )
        if caption:
            st.caption(caption)
        if low_sample and value is not None and not (isinstance(value, float) and math.isnan(value)):
            st.caption(":orange[:material/warning: Fewer than 30 observations: read with care.]")
        if page_exists(link):
            st.page_link(str(link), label="Details", icon=":material/arrow_forward:")


def _card_help(entry: Any | None) -> str | None:
    """The card's help: the KPI's definition, headed by its full name when the card shows
    a shorter one."""
    if entry is None:
        return None
    if entry.card_title != entry.title:
        return f"**{entry.title}**: {entry.definition}"
    return str(entry.definition)


@dataclass(frozen=True)
class CardSpec:
    """How the Overview gets one card's numbers from ``kpis``.

    ``function`` is the name of a ``kpis`` function, called with ``kwargs``; ``column``
    the value to show. ``per_period=False`` marks a function without ``freq`` (e.g.
    ``sales_cycle``): it is called once per period of the view. ``count`` names the
    column of observations behind the value when the KPI has no ``low_sample`` flag.
    """

    key: str
    function: str
    column: str
    link: str
    per_period: bool = True
    kwargs: tuple[tuple[str, Any], ...] = ()
    count: str | None = None


def slide_card(key: str, numbers: CardNumbers | str | None, caption: str = "") -> Any:
    """One Overview card for the PowerPoint slide (``charts.slides.SlideCard``): title, unit
    and direction from the registry entry ``key``, the numbers ``latest`` gave, or the
    message of a KPI that failed / is not available."""
    from charts.slides import SlideCard

    entry = registry_entry(key)
    title = entry.card_title if entry else key.replace("_", " ").capitalize()
    unit = entry.unit if entry else "count"
    better = bool(entry.higher_is_better) if entry else True
    if not isinstance(numbers, CardNumbers):
        return SlideCard(title, None, unit, error=numbers or "not available yet")
    return SlideCard(
        title,
        numbers.value,
        unit,
        numbers.delta,
        better,
        caption,
        tuple(numbers.sparkline),
        numbers.low_sample,
    )
