"""The Overview's exports: its cards as an image (PNG / PDF) and as data (CSV / XLSX), each
carrying the filters and the date range (in the image, in the file name, in the About sheet).

* :func:`cards_table` — one row per card: kpi, period, value, previous_period, previous,
  change, unit, ci_low, ci_high (the 95 % interval when the KPI has one, else empty),
  low_sample, definition;
* :func:`cards_figure` — the cards grid as a Plotly figure of indicators (number, change on
  the previous period coloured by "higher is better", the period compared), which
  ``charts.export.figure_bytes`` renders with the warm Chromium, filters as subtitle;
* :func:`overview_exports` — the "Export" popover with the four downloads (each file is
  built only when its button is clicked, and written to the audit log like every export).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charts.theme import CURRENCY
from ui.cards import CardNumbers, registry_entry
from ui.filters import View, period_label

TITLE = "Overview"
CARDS_TITLE = "Overview cards"
COLUMNS = [
    "kpi", "period", "value", "previous_period", "previous", "change", "unit", "ci_low", "ci_high",
    "low_sample", "definition",
]  # fmt: skip
#: value column -> the prefix of its interval columns when it is not the column's own name.
INTERVAL_PREFIXES = {"net_revenue_retention": "nrr", "revenue_churn_rate": "revenue_churn"}
#: Plotly number formats per registry unit (the cards' own formats, ``charts.theme.fmt_value``).
VALUE_FORMATS = {
    "ratio": ".1%",
    "money": ",.0f",
    "days": ",.1f",
    "nps": "+.1f",
    "score": ".2f",
    "count": ",.0f",
}
GREEN, RED = "#1B7F3B", "#B42318"


def interval(frame: pd.DataFrame | None, column: str, period: pd.Timestamp | None) -> tuple[float, float]:
    """The 95 % interval of ``column`` at ``period`` from a card's KPI frame: the columns
    ``<column>_ci_low/_high`` (or its short prefix, e.g. ``nps_ci_low``, ``nrr_ci_low``), else
    ``ci_low/ci_high`` when the frame holds no other interval; (NaN, NaN) when none."""
    nan = (math.nan, math.nan)
    if frame is None or period is None or "period" not in frame or frame.empty:
        return nan
    prefixes = [column, column.removesuffix("_rate"), INTERVAL_PREFIXES.get(column, ""), column.split("_")[0]]
    names = [(f"{p}_ci_low", f"{p}_ci_high") for p in prefixes if p]
    if not any(str(c).endswith("_ci_low") for c in frame.columns):
        names.append(("ci_low", "ci_high"))
    rows = frame[pd.to_datetime(frame["period"]) == pd.Timestamp(period)]
    for low, high in names:
        if low in rows and high in rows and len(rows):
            return float(rows[low].iloc[0]), float(rows[high].iloc[0])
    return nan


def cards_table(
    cards: Sequence[tuple[str, str, CardNumbers | str | None, pd.DataFrame | None]], freq: str
) -> pd.DataFrame:
    """One row per card, in the Overview's order. ``cards``: (registry key, value column,
    the card's numbers, its KPI frame). A card that could not be computed keeps its row with
    empty numbers (its definition says what it is)."""
    records = []
    for key, column, numbers, frame in cards:
        entry = registry_entry(key)
        title = entry.title if entry else key.replace("_", " ").capitalize()
        unit = entry.unit if entry else ""
        definition = entry.definition if entry else ""
        if not isinstance(numbers, CardNumbers):
            records.append({"kpi": title, "unit": unit, "definition": definition})
            continue
        low, high = interval(frame, column, numbers.period)
        records.append(
            {
                "kpi": title,
                "period": period_label(numbers.period, freq) if numbers.period is not None else None,
                "value": numbers.value,
                "previous_period": period_label(numbers.previous, freq)
                if numbers.previous is not None
                else None,
                "previous": numbers.value - numbers.delta if not math.isnan(numbers.delta) else math.nan,
                "change": numbers.delta,
                "unit": unit,
                "ci_low": low,
                "ci_high": high,
                "low_sample": bool(numbers.low_sample),
                "definition": definition,
            }
        )
    out = pd.DataFrame(records, columns=COLUMNS)
    for name in ("value", "previous", "change", "ci_low", "ci_high"):
        out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    out["low_sample"] = out["low_sample"].fillna(False).astype(bool)
    return out


def cards_figure(table: pd.DataFrame, columns: int = 5) -> go.Figure:
    """The cards as a grid of Plotly indicators: title, the period (and the one compared),
    the value in its unit, the change coloured by whether up is good."""
    rows = max(1, math.ceil(len(table) / columns))
    fig = go.Figure()
    for index, row in enumerate(table.itertuples(index=False)):
        entry = next((e for e in _entries() if e.title == row.kpi), None)
        up_is_good = bool(entry.higher_is_better) if entry else True
        fmt = VALUE_FORMATS.get(str(row.unit), ",.2f")
        prefix = CURRENCY if row.unit == "money" else ""
        compared = (
            f"{row.period} vs {row.previous_period}" if row.previous_period else (row.period or "no period")
        )
        mark = " ⚠ few observations" if row.low_sample else ""
        value = None if pd.isna(row.value) else float(row.value)
        reference = None if pd.isna(row.previous) else float(row.previous)
        good, bad = (GREEN, RED) if up_is_good else (RED, GREEN)
        fig.add_trace(
            go.Indicator(
                mode="number+delta" if reference is not None else "number",
                value=value,
                number={"valueformat": fmt, "prefix": prefix, "font": {"size": 34}},
                delta={
                    "reference": reference,
                    "valueformat": fmt,
                    "increasing": {"color": good},
                    "decreasing": {"color": bad},
                    "font": {"size": 16},
                },
                title={
                    "text": f"<b>{entry.card_title if entry else row.kpi}</b><br><span style='font-size:12px;color:#52606d'>{compared}{mark}</span>",
                    "font": {"size": 16},
                },
                domain={"row": index // columns, "column": index % columns},
            )
        )
    fig.update_layout(
        grid={"rows": rows, "columns": columns, "pattern": "independent", "ygap": 0.3},
        title_text=TITLE,
        width=1400,
        height=120 + 190 * rows,
        margin={"t": 110, "l": 30, "r": 30, "b": 20},
        paper_bgcolor="white",
    )
    return fig


def _entries() -> list[Any]:
    from kpis import registry

    return list(registry.KPIS)


def overview_exports(view: View, table: pd.DataFrame) -> None:
    """The Overview's "Export" popover: the cards as PNG / PDF, their numbers as CSV / XLSX."""
    from charts import export
    from ui.report import _download, audited

    context, tag = view.describe(), view.file_tag()
    meta = {
        "Page": TITLE,
        "Filters": context,
        "Rows": "one per card: the last complete period and the one before",
    }
    with st.popover("Export the cards", icon=":material/download:", key="export-overview-cards"):
        if export.chromium_available():
            for fmt in ("png", "pdf"):
                name = export.file_name(CARDS_TITLE, tag, fmt)
                _download(
                    f"{fmt.upper()} (cards)",
                    audited(
                        lambda fmt=fmt: export.figure_bytes(cards_figure(table), fmt, context=context),
                        view,
                        TITLE,
                        name,
                        "cards",
                    ),
                    name,
                    export.MIME_TYPES[fmt],
                    f"overview-cards-{fmt}",
                )
        else:
            st.caption(export.MISSING_CHROMIUM_HELP)
        frame = table.copy()
        for fmt, label, build in (
            ("csv", "CSV (figures)", lambda: export.frame_csv(frame)),
            ("xlsx", "XLSX (figures)", lambda: export.frame_xlsx({CARDS_TITLE: frame}, meta)),
        ):
            name = export.file_name(CARDS_TITLE, tag, fmt)
            _download(
                label,
                audited(build, view, TITLE, name, "cards"),
                name,
                export.MIME_TYPES[fmt],
                f"overview-cards-{fmt}",
            )
