"""Retention cost: what keeping customers costs, per retained customer and cost bucket."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from kpis.customer_base import customer_base
from kpis.filters import Filters


def retention_cost(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Retention cost per retained customer, per period.

    Formula: cost_per_retained_customer = retention_costs ÷ retained_customers, where
    retention_costs = sum of costs with purpose = retention by incurred_on in the period,
    and retained_customers = customers active at the period's start s and at its end e.

    One column per cost category (personnel, production, overhead, marketing, loyalty)
    splits retention_costs. Costs without an account count only while no account-level
    filter is set. No retained customers: cost_per_retained_customer NaN.
    Columns: period, retention_costs, retained_customers, cost_per_retained_customer,
    personnel, production, overhead, marketing, loyalty.
    """
    categories = list(schema.COST_CATEGORIES)
    columns = ["period", "retention_costs", "retained_customers", "cost_per_retained_customer", *categories]
    return customer_base(conn, f, freq)[columns]
