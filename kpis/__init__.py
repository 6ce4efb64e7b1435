"""CRM Insights KPIs: ``(conn, filters, ...) -> pandas.DataFrame``, computed in the database.

>>> from kpis import Filters, churn_rate
>>> churn_rate(engine, Filters("2024-01-01", "2025-01-01"), "month")
"""

from kpis.churn import churn_by, churn_rate, churned_accounts
from kpis.costs import retention_cost
from kpis.feedback import ces, latest_comments, nps, nps_score_distribution
from kpis.filters import Filters, data_date_range, dimension_values
from kpis.sales import sales_cycle, sales_cycle_distribution, stage_durations, win_rate
from kpis.service import first_contact_resolution, resolution_times, ticket_breakdown

__all__ = [
    "Filters",
    "ces",
    "churn_by",
    "churn_rate",
    "churned_accounts",
    "data_date_range",
    "dimension_values",
    "first_contact_resolution",
    "latest_comments",
    "nps",
    "nps_score_distribution",
    "resolution_times",
    "retention_cost",
    "sales_cycle",
    "sales_cycle_distribution",
    "stage_durations",
    "ticket_breakdown",
    "win_rate",
]
