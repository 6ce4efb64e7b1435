"""CRM Insights KPIs: ``(conn, filters, ...) -> pandas.DataFrame``, computed in the database.

>>> from kpis import Filters, churn_rate
>>> churn_rate(engine, Filters("2024-01-01", "2025-01-01"), "month")
"""

from kpis.churn import churn_by, churn_rate, churned_accounts
from kpis.complaints import complaint_spikes, complaint_weekly
from kpis.costs import retention_cost
from kpis.customer_base import customer_base
from kpis.feedback import ces, latest_comments, nps, nps_score_distribution, survey_scores
from kpis.filters import Filters, data_date_range, dimension_values
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

__all__ = [
    "Filters",
    "active_customers",
    "campaign_funnel",
    "ces",
    "churn_by",
    "churn_rate",
    "churned_accounts",
    "cohort_retention",
    "complaint_spikes",
    "complaint_weekly",
    "customer_base",
    "customer_profitability",
    "data_date_range",
    "dimension_values",
    "first_contact_resolution",
    "funnel",
    "latest_comments",
    "lead_conversion",
    "nps",
    "nps_score_distribution",
    "open_deal_aging",
    "profitability_ends",
    "resolution_times",
    "retention_cost",
    "revenue",
    "revenue_retention",
    "sales_cycle",
    "sales_cycle_distribution",
    "social_metrics",
    "stage_durations",
    "stuck_deals",
    "survey_scores",
    "ticket_breakdown",
    "web_metrics",
    "weighted_pipeline",
    "win_rate",
    "win_rate_by",
]
