"""The one list of KPI definitions: what the dashboard's cards and every export show.

Each entry's ``definition`` is the formula sentence of its function's docstring, word for
word (tests/kpis/test_registry.py checks that), so the dashboard and the code cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from kpis.churn import churn_rate
from kpis.costs import retention_cost
from kpis.feedback import ces, nps
from kpis.sales import sales_cycle, stage_durations, win_rate
from kpis.service import first_contact_resolution

UNITS = frozenset({"ratio", "nps", "score", "days", "money", "count"})


@dataclass(frozen=True)
class KpiDefinition:
    """One KPI: ``function(conn, filters, ...)`` returns a frame whose ``value_column`` is
    the headline number; ``page`` is the dashboard page script that shows it."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    definition: str
    function: Callable[..., pd.DataFrame]
    value_column: str
    page: str

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {sorted(UNITS)}, not {self.unit!r}")


KPIS: list[KpiDefinition] = [
    KpiDefinition(
        key="churn_rate",
        title="Churn rate",
        unit="ratio",
        higher_is_better=False,
        definition=(
            "churn_rate = churned ÷ customers_at_start, where customers_at_start = customers "
            "active at s and churned = customers active at s and not active at e; customers won "
            "during the period are in neither count."
        ),
        function=churn_rate,
        value_column="churn_rate",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="nps",
        title="Net Promoter Score",
        unit="nps",
        higher_is_better=True,
        definition=(
            "NPS = 100·(promoters − detractors) ÷ responses, over responses with survey = nps "
            "by responded_at; promoters score 9–10, detractors 0–6, passives the rest (7–8)."
        ),
        function=nps,
        value_column="nps",
        page="pages/4_Customer_feedback.py",
    ),
    KpiDefinition(
        key="ces",
        title="Customer Effort Score",
        unit="score",
        higher_is_better=True,
        definition=(
            "ces_mean = mean score of responses with survey = ces by responded_at (scale "
            '1–7, 7 = very easy); share_easy = share of scores 5–7 (the "% easy" variant).'
        ),
        function=ces,
        value_column="ces_mean",
        page="pages/4_Customer_feedback.py",
    ),
    KpiDefinition(
        key="win_rate",
        title="Win rate",
        unit="ratio",
        higher_is_better=True,
        definition="win_rate = won ÷ (won + lost), deals by closed_at; open deals excluded.",
        function=win_rate,
        value_column="win_rate",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="sales_cycle",
        title="Sales cycle (median)",
        unit="days",
        higher_is_better=False,
        definition=(
            "days from created_at to closed_at of won deals with closed_at in [start, end); "
            "mean, median and 90th percentile (percentiles interpolate linearly, like "
            "percentile_cont)."
        ),
        function=sales_cycle,
        value_column="median_days",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="stage_durations",
        title="Time in stage (median)",
        unit="days",
        higher_is_better=False,
        definition=(
            "deals created in [start, end); a visit to a stage lasts from its entered_at to "
            "the deal's next entered_at (any stage), or to closed_at when it is the last visit of a "
            "won/lost deal. A visit with no such end (the deal is still open in it) is CENSORED at "
            "C = min(end, now): its duration C − entered_at is a lower bound; a visit entered at or "
            "after C is not observed. Kaplan–Meier per stage: S(t) = Π over finished durations "
            "t_i ≤ t of (1 − d_i ÷ n_i), d_i = visits finished at t_i, n_i = visits lasting ≥ t_i; "
            "median_days = smallest t with S(t) ≤ 0.5, p90_days = smallest t with S(t) ≤ 0.1, NaN "
            "when never reached. Re-entered stages count each visit; skipped stages get no visit. "
            "conversion_to_next = deals that, at or after entering the stage, entered an open stage "
            "of higher position or were won ÷ deals that entered the stage."
        ),
        function=stage_durations,
        value_column="median_days",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="first_contact_resolution",
        title="First-contact resolution",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "fcr_rate = first_contact ÷ resolved, where resolved = tickets with resolved_at "
            "in the period and first_contact = those with contacts_until_resolved = 1 (an unknown "
            "count is resolved but not first-contact)."
        ),
        function=first_contact_resolution,
        value_column="fcr_rate",
        page="pages/3_Service.py",
    ),
    KpiDefinition(
        key="retention_cost",
        title="Retention cost per retained customer",
        unit="money",
        higher_is_better=False,
        definition=(
            "cost_per_retained_customer = retention_costs ÷ retained_customers, where "
            "retention_costs = sum of costs with purpose = retention by incurred_on in the period, "
            "and retained_customers = customers active at the period's start s and at its end e."
        ),
        function=retention_cost,
        value_column="cost_per_retained_customer",
        page="pages/5_Marketing_and_retention_cost.py",
    ),
]


def get(key: str) -> KpiDefinition:
    """The definition with this key; ``KeyError`` naming the known keys otherwise."""
    for kpi in KPIS:
        if kpi.key == key:
            return kpi
    raise KeyError(f"unknown KPI {key!r}; known: {', '.join(k.key for k in KPIS)}")
