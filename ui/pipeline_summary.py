"""The open pipeline's headline figures, drawn the same way on the Sales pipeline and the
Forecast page, so a name means one number everywhere:

* **Weighted pipeline (stage probabilities)** — ``kpis.weighted_pipeline``: every open deal
  × the probability configured for its stage;
* **Expected pipeline (learned win rates)** — ``forecasting.pipeline_forecast(...).expected_total``:
  every open deal × the win rate learned from the deals closed in the date range;
* **Overdue open deals** — open deals whose expected close is before today: count and
  amount, shown apart (in no month of the pipeline forecast, not in the next quarter).

Both pages call :func:`pipeline_metrics` with their ``View``; the numbers come from the
cached ``ui.data.kpi`` calls, so the two pages cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import streamlit as st

import forecasting
import kpis
from charts.theme import fmt_count, fmt_money
from kpis.registry import get
from ui.data import kpi

#: Months of the pipeline forecast (the next quarter from the current month).
PIPELINE_MONTHS = 3
WEIGHTED_LABEL = get("weighted_pipeline").title
EXPECTED_LABEL = get("expected_pipeline").title
OVERDUE_LABEL = "Overdue open deals"
OVERDUE_HELP = (
    "Open deals whose expected close — the day they entered their current stage plus the typical days "
    "from that stage to a win — is before today. They are shown apart: in no month of the pipeline "
    "forecast and not in the next-quarter figure, since their date no longer says when they will close."
)
DIFFERENCE = (
    f"Two figures for the same open deals: **{WEIGHTED_LABEL}** multiplies each deal's amount by the "
    f"probability configured for its stage; **{EXPECTED_LABEL}** by the win rate that deals which passed "
    "through that stage actually had (closed in the date range; the configured probability where fewer "
    "than 30 closed)."
)


@dataclass(frozen=True)
class PipelineTotals:
    """The headline figures of the open pipeline for one selection."""

    weighted: float
    expected: float
    open_deals: int
    overdue_deals: int
    overdue_amount: float
    overdue_expected: float


def pipeline_forecast(view: Any) -> forecasting.PipelineForecast:
    """The cached pipeline forecast both pages draw from."""
    return kpi(forecasting.pipeline_forecast, view.filters, months=PIPELINE_MONTHS)


def pipeline_totals(view: Any) -> PipelineTotals:
    """The figures of :func:`pipeline_metrics` for ``view`` (no drawing)."""
    weighted = kpi(kpis.weighted_pipeline, view.filters)
    pipe = pipeline_forecast(view)
    return PipelineTotals(
        weighted=float(weighted["weighted_amount"].sum()) if len(weighted) else 0.0,
        expected=pipe.expected_total,
        open_deals=int(weighted["open_deals"].sum()) if len(weighted) else 0,
        overdue_deals=pipe.overdue_deals,
        overdue_amount=pipe.overdue_amount,
        overdue_expected=pipe.overdue_expected,
    )


def pipeline_metrics(view: Any) -> PipelineTotals:
    """Draw the three figures side by side (with their definitions as help) and a caption
    on how the two pipeline figures differ; return them."""
    totals = pipeline_totals(view)
    weighted, expected, overdue = st.columns(3)
    weighted.metric(WEIGHTED_LABEL, fmt_money(totals.weighted), help=get("weighted_pipeline").definition)
    expected.metric(EXPECTED_LABEL, fmt_money(totals.expected), help=get("expected_pipeline").definition)
    overdue.metric(
        OVERDUE_LABEL,
        f"{fmt_count(totals.overdue_deals)} deals · {fmt_money(totals.overdue_amount)}",
        help=OVERDUE_HELP,
    )
    st.caption(f":material/info: {DIFFERENCE}")
    return totals
