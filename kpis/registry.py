"""The one list of KPI definitions: what the dashboard's cards and every export show.

Each entry's ``definition`` is the formula sentence of its function's docstring, word for
word (tests/kpis/test_registry.py checks that), so the dashboard and the code cannot drift.

``READS`` says which tables every KPI function reads; which filter-bar lists narrow it
follows from them (``honours``, ``ignored``: web traffic and social media have no account,
only deals have a pipeline), so a chart can say "Not filtered by: Segment" (``ui.filter_scope``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from crm_data import schema
from kpis.churn import churn_by, churn_rate, churned_accounts
from kpis.complaints import complaint_spikes, complaint_weekly
from kpis.costs import retention_cost
from kpis.customer_base import customer_base
from kpis.feedback import ces, latest_comments, nps, nps_score_distribution, survey_scores
from kpis.filters import honoured_dimensions
from kpis.marketing import campaign_funnel, social_metrics, web_metrics
from kpis.pipeline import (
    funnel,
    lead_conversion,
    open_deal_aging,
    stuck_deals,
    weighted_pipeline,
    win_rate_by,
)
from kpis.profitability import customer_profitability, profitability_ends
from kpis.revenue import active_customers, cohort_retention, revenue, revenue_retention
from kpis.sales import sales_cycle, sales_cycle_distribution, stage_durations, win_rate
from kpis.service import first_contact_resolution, resolution_times, ticket_breakdown


def expected_pipeline(conn: object, f: object, today: object = None) -> pd.DataFrame:
    """Expected pipeline (learned win rates) by current stage: ``forecasting.expected_pipeline``
    (imported on first use, so the registry does not load the forecasting models).

    expected_amount = Σ amount of open deals (status open; the date range does not restrict
    them) × the win rate learned for their current stage: won ÷ closed among the deals
    closed in [start, end) that passed through it (the stage table's probability below 30
    such deals); the Weighted pipeline (stage probabilities) weighs the same deals by the
    probability configured per stage instead.
    """
    from forecasting.pipeline import expected_pipeline as compute

    return compute(conn, f, today=today)  # type: ignore[arg-type]


UNITS = frozenset({"ratio", "nps", "score", "days", "money", "count"})

#: The tables each KPI function of ``kpis`` reads its records from — the ones it passes
#: through ``kpis.filters.scope``. The filter-bar lists a KPI honours follow from them
#: (:func:`honours`); one entry per function that takes a ``Filters``.
READS: dict[Callable[..., Any], tuple[str, ...]] = {
    active_customers: ("subscriptions",),
    campaign_funnel: ("campaign_responses",),  # campaign cost allocated by the sends' share
    ces: ("survey_responses",),
    churn_by: ("subscriptions",),
    churn_rate: ("subscriptions",),
    churned_accounts: ("subscriptions",),
    cohort_retention: ("subscriptions",),
    complaint_spikes: ("tickets",),
    complaint_weekly: ("tickets",),
    customer_base: ("subscriptions", "costs"),
    customer_profitability: ("accounts",),
    profitability_ends: ("accounts",),  # the same rows, ranked in SQL
    expected_pipeline: ("deals",),  # open deals × learned win rates (forecasting.expected_pipeline)
    first_contact_resolution: ("tickets",),
    funnel: ("deals",),
    latest_comments: ("survey_responses",),
    lead_conversion: ("deals",),
    nps: ("survey_responses",),
    nps_score_distribution: ("survey_responses",),
    open_deal_aging: ("deals",),
    resolution_times: ("tickets",),
    retention_cost: ("subscriptions", "costs"),
    revenue: ("payments",),
    revenue_retention: ("subscriptions",),
    sales_cycle: ("deals",),
    sales_cycle_distribution: ("deals",),
    social_metrics: ("social_media",),
    stage_durations: ("deals",),
    stuck_deals: ("deals",),
    survey_scores: ("survey_responses",),
    ticket_breakdown: ("tickets",),
    web_metrics: ("web_traffic",),
    weighted_pipeline: ("deals",),
    win_rate: ("deals",),
    win_rate_by: ("deals",),
}

#: How a table is named in sentences ("web traffic has no account"), and whether it is plural.
TABLE_NAMES: dict[str, tuple[str, bool]] = {
    "accounts": ("accounts", True),
    "campaign_responses": ("campaign sends", True),
    "costs": ("costs", True),
    "deals": ("deals", True),
    "payments": ("payments", True),
    "social_media": ("social media", False),
    "subscriptions": ("subscriptions", True),
    "survey_responses": ("survey responses", True),
    "tickets": ("tickets", True),
    "web_traffic": ("web traffic", False),
}


def honours(function: Callable[..., Any]) -> frozenset[str] | None:
    """The Filters lists (``kpis.filters.DIMENSION_FIELDS``) that narrow ``function``'s
    numbers: those every table it reads honours (``kpis.filters.honoured_dimensions``).
    None for a function not in ``READS`` (unknown: claim nothing)."""
    tables = READS.get(function)
    if tables is None:
        return None
    honoured = [honoured_dimensions(schema.metadata.tables[t]) for t in tables]
    return frozenset.intersection(*honoured)


def ignored(function: Callable[..., Any], active: Iterable[str]) -> list[tuple[str, str]]:
    """Of the ``active`` Filters lists, those ``function`` cannot honour, each with the
    reason: ``[("segments", "web traffic has no account"), ("pipelines", "… no pipeline")]``.
    Empty for a function not in ``READS``."""
    honoured = honours(function)
    if honoured is None:
        return []
    out = []
    for name in active:
        if name in honoured:
            continue
        for table in READS[function]:
            if name not in honoured_dimensions(schema.metadata.tables[table]):
                noun, plural = TABLE_NAMES.get(table, (table.replace("_", " "), True))
                missing = "pipeline" if name == "pipelines" else "account"
                out.append((name, f"{noun} {'have' if plural else 'has'} no {missing}"))
                break
    return out


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
    #: A shorter title for the Overview's cards, where ``title`` would be cut short.
    short_title: str = ""

    @property
    def honours(self) -> frozenset[str]:
        """The filter-bar lists (Filters fields) that narrow this KPI (from ``READS``)."""
        return honours(self.function) or frozenset()

    @property
    def card_title(self) -> str:
        """``short_title`` when there is one, else ``title``."""
        return self.short_title or self.title

    def __post_init__(self) -> None:
        if self.function not in READS:
            raise ValueError(f"{self.key}: say in READS which tables {self.function.__name__} reads")
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
            "won/lost deal. Observation ends at C = min(end, now): a visit entered at or after C is "
            "not observed; a visit that ended by C (end ≤ C) is finished; a visit still running at C "
            "(no end yet, or an end after C) is CENSORED at C: its duration C − entered_at is a "
            "lower bound. Kaplan–Meier per stage: S(t) = Π over finished durations t_i ≤ t of "
            "(1 − d_i ÷ n_i), d_i = visits finished at t_i, n_i = visits lasting ≥ t_i; median_days "
            "= smallest t with S(t) ≤ 0.5, p90_days = smallest t with S(t) ≤ 0.1, NaN when never "
            "reached. Re-entered stages count each visit; skipped stages get no visit. "
            "conversion_to_next = deals that, at or after entering the stage, entered an open stage "
            "of higher position or were won ÷ deals with an observed visit to the stage (progress "
            "is read from the deal's whole history, also after C)."
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
            "count is resolved but not first-contact); a period in which no resolved ticket records "
            "its count has no value (unknown), not 0 %."
        ),
        function=first_contact_resolution,
        value_column="fcr_rate",
        page="pages/3_Service.py",
        short_title="1st-contact resolution",
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
        short_title="Retention cost each",
    ),
    KpiDefinition(
        key="revenue",
        title="Revenue",
        unit="money",
        higher_is_better=True,
        definition=(
            "revenue = Σ payment amounts by paid_at in the period, net of refunds (negative "
            "amounts); gross_revenue = Σ positive amounts; refunds = −Σ negative amounts; "
            "paying_accounts = distinct accounts with a positive payment; arpa = revenue ÷ "
            "paying_accounts."
        ),
        function=revenue,
        value_column="revenue",
        page="pages/6_Forecast.py",
    ),
    KpiDefinition(
        key="arpa",
        title="Average revenue per account (ARPA)",
        unit="money",
        higher_is_better=True,
        definition=(
            "revenue = Σ payment amounts by paid_at in the period, net of refunds (negative "
            "amounts); gross_revenue = Σ positive amounts; refunds = −Σ negative amounts; "
            "paying_accounts = distinct accounts with a positive payment; arpa = revenue ÷ "
            "paying_accounts."
        ),
        function=revenue,
        value_column="arpa",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="active_customers",
        title="Active customers",
        unit="count",
        higher_is_better=True,
        definition=(
            "customers_at_start = accounts with a subscription active at the period's start s "
            "(started_at ≤ s < ended_at), customers_at_end = active at its end e; churned = "
            "active at s and not at e; new_customers = active at e and not at s, so "
            "customers_at_end = customers_at_start − churned + new_customers."
        ),
        function=active_customers,
        value_column="customers_at_end",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="net_revenue_retention",
        title="Net revenue retention",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "net_revenue_retention = (mrr_at_start + expansion − contraction − churned_mrr) ÷ "
            "mrr_at_start, over the accounts active at the period's start s: mrr_at_start = their "
            "subscription MRR at s, churned_mrr = MRR at s of those no longer active at e, "
            "expansion / contraction = per-account MRR increase / decrease from s to e; accounts "
            "new in the period are excluded."
        ),
        function=revenue_retention,
        value_column="net_revenue_retention",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="revenue_churn",
        title="Revenue churn",
        unit="ratio",
        higher_is_better=False,
        definition=(
            "revenue_churn_rate = (churned_mrr + contraction) ÷ mrr_at_start; "
            "gross_revenue_retention = (mrr_at_start − contraction − churned_mrr) ÷ mrr_at_start."
        ),
        function=revenue_retention,
        value_column="revenue_churn_rate",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="lead_conversion",
        title="Lead conversion",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "lead_conversion = won ÷ created, deals by the period of created_at (the created "
            "cohort); deals still open stay in the denominator, so a young cohort's conversion "
            "rises as its deals close."
        ),
        function=lead_conversion,
        value_column="lead_conversion",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="funnel",
        title="Pipeline funnel",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "deals created in [start, end); reached_in_order = deals that entered every funnel "
            "stage up to this one (by position; closed-lost stages are not funnel stages, a won "
            "deal counts as entering the won stage), reached_any = deals that entered this stage "
            "or a later one; step conversion = reached ÷ reached at the previous stage (the first "
            "stage: ÷ deals created), cumulative conversion = reached ÷ deals created."
        ),
        function=funnel,
        value_column="cumulative_conversion_in_order",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="weighted_pipeline",
        title="Weighted pipeline (stage probabilities)",
        unit="money",
        higher_is_better=True,
        definition=(
            "weighted_amount = Σ amount of open deals (status open; the date range does not "
            "restrict them) in their current stage (latest entered_at) × "
            "pipeline_stages.probability, the probability configured per stage; the Expected "
            "pipeline (learned win rates) weighs the same deals by the win rate learned from "
            "closed deals instead."
        ),
        function=weighted_pipeline,
        value_column="weighted_amount",
        page="pages/1_Sales_pipeline.py",
    ),
    KpiDefinition(
        key="expected_pipeline",
        title="Expected pipeline (learned win rates)",
        unit="money",
        higher_is_better=True,
        definition=(
            "expected_amount = Σ amount of open deals (status open; the date range does not "
            "restrict them) × the win rate learned for their current stage: won ÷ closed among "
            "the deals closed in [start, end) that passed through it (the stage table's "
            "probability below 30 such deals); the Weighted pipeline (stage probabilities) "
            "weighs the same deals by the probability configured per stage instead."
        ),
        function=expected_pipeline,
        value_column="expected_amount",
        page="pages/6_Forecast.py",
    ),
    KpiDefinition(
        key="cohort_retention",
        title="Cohort retention",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "cohort = month of an account's first subscription start; retention_rate = retained ÷ "
            "customers, where retained at month k = accounts of the cohort active at the first "
            "instant of month cohort + k (k = 0: the whole cohort)."
        ),
        function=cohort_retention,
        value_column="retention_rate",
        page="pages/2_Customers_and_churn.py",
    ),
    KpiDefinition(
        key="customer_profitability",
        title="Customer profitability",
        unit="money",
        higher_is_better=True,
        definition=(
            "profit = payments − costs per account, where payments = Σ payment amounts by paid_at "
            "in [start, end) (refunds netted) and costs = Σ costs carrying the account_id by "
            "incurred_on in [start, end), split by cost category; costs without an account are "
            "left out."
        ),
        function=customer_profitability,
        value_column="profit",
        page="pages/5_Marketing_and_retention_cost.py",
    ),
    KpiDefinition(
        key="campaign_funnel",
        title="Campaign cost per conversion",
        unit="money",
        higher_is_better=False,
        definition=(
            "campaigns whose started_on lies in [start, end); sent / opened / clicked / converted "
            "= responses with that timestamp set, or the vendor report's figures of the campaign; "
            "open_rate, click_rate and conversion_rate are relative to sent; cost = campaign_cost × "
            "share_of_sends, where share_of_sends = the selection's sends ÷ the campaign's sends (1 without a "
            "segment, owner or product filter); cost_per_conversion = cost ÷ converted (NaN when "
            "nothing converted)."
        ),
        function=campaign_funnel,
        value_column="cost_per_conversion",
        page="pages/5_Marketing_and_retention_cost.py",
    ),
    KpiDefinition(
        key="web_ctr",
        title="Web click-through rate",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "ctr = clicks ÷ impressions and signup_rate = signups ÷ sessions, daily web_traffic "
            "summed over all sources by date in the period."
        ),
        function=web_metrics,
        value_column="ctr",
        page="pages/5_Marketing_and_retention_cost.py",
    ),
    KpiDefinition(
        key="social_engagement",
        title="Social engagement rate",
        unit="ratio",
        higher_is_better=True,
        definition=(
            "engagement_rate = engagements ÷ impressions per platform, summed over the period's "
            "days; followers = the value on the last day of the period that has one."
        ),
        function=social_metrics,
        value_column="engagement_rate",
        page="pages/5_Marketing_and_retention_cost.py",
    ),
    KpiDefinition(
        key="complaint_spikes",
        title="Complaint spikes",
        unit="count",
        higher_is_better=False,
        definition=(
            "observed = defect or complaint tickets per product and ISO week (Monday start) by "
            "opened_at; expected = the product's mean weekly count over the previous 12 weeks "
            "(weeks without tickets count as 0); is_spike = P(X ≥ observed) < 0.01 for X ~ "
            "Poisson(max(expected, 0.5)) and observed ≥ 3."
        ),
        function=complaint_spikes,
        value_column="observed",
        page="pages/3_Service.py",
    ),
]


def get(key: str) -> KpiDefinition:
    """The definition with this key; ``KeyError`` naming the known keys otherwise."""
    for kpi in KPIS:
        if kpi.key == key:
            return kpi
    raise KeyError(f"unknown KPI {key!r}; known: {', '.join(k.key for k in KPIS)}")


#: Each KPI in plain words, read before its formula (``definition``): what the number tells a
#: reader, without column names. Cards and exports show "<in words> Formula: <definition>".
IN_WORDS: dict[str, str] = {
    "churn_rate": "The share of the customers at the start of a period who are no longer customers at its end.",
    "nps": (
        "How likely customers are to recommend us: the share of promoters minus the share of "
        "detractors, from −100 to +100."
    ),
    "ces": "How easy customers found it to get something done with us, per touchpoint (higher is easier).",
    "win_rate": "Of the deals closed in a period, the share that were won.",
    "sales_cycle": "How many days a won deal took from its creation to its close.",
    "stage_durations": "How long deals stay in each pipeline stage before they move on or close.",
    "first_contact_resolution": "The share of resolved tickets that were resolved at the first contact.",
    "retention_cost": "What keeping one customer through a period cost: retention spending per customer kept.",
    "revenue": "The money customers paid in a period, after refunds, and the average per paying account.",
    "active_customers": "How many accounts had an active subscription, and how many joined and left.",
    "net_revenue_retention": (
        "Recurring revenue kept from the customers at the start of a period, with their upgrades "
        "and downgrades: above 100 % means they grew."
    ),
    "revenue_churn": "The share of recurring revenue lost to cancellations and downgrades in a period.",
    "lead_conversion": "Of the deals created in a period, the share that were won so far.",
    "funnel": "How many deals reached each pipeline stage, and the share that moved on from the stage before.",
    "weighted_pipeline": "The open deals' amounts, each weighted by the chance of its stage to be won.",
    "cohort_retention": "Of the customers who started in a month, the share still customers each month after.",
    "customer_profitability": "What each customer paid minus what serving that customer cost.",
    "campaign_funnel": "How many recipients of a campaign opened, clicked and converted, and the cost per conversion.",
    "web_ctr": "The share of website impressions that led to a click, and of sessions that led to a sign-up.",
    "social_engagement": "The share of social-media impressions that led to an engagement (a reaction, comment or share), per platform.",
    "complaint_spikes": "Weeks in which a product got far more defect or complaint tickets than usual.",
    "arpa": "What an average paying account paid in a period, after refunds.",
    "expected_pipeline": (
        "What the open deals are worth if each is won as often as deals that passed through its "
        "stage were won lately."
    ),
}


def in_words(key: str) -> str:
    """The KPI ``key`` in plain words (``IN_WORDS``), or "" when none is written."""
    return IN_WORDS.get(key, "")
