"""Retention cost: what keeping customers costs, per retained customer and cost bucket."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from kpis.core import LOW_SAMPLE
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

    ``low_sample`` = fewer than 30 retained customers (a few customers make the cost per
    customer jumpy). No interval: the costs are a total, not a sample of per-customer
    amounts (costs without an account belong to no customer).
    Columns: period, retention_costs, retained_customers, cost_per_retained_customer,
    low_sample, personnel, production, overhead, marketing, loyalty.
    """
    categories = list(schema.COST_CATEGORIES)
    columns = ["period", "retention_costs", "retained_customers", "cost_per_retained_customer"]
    frame = customer_base(conn, f, freq)
    frame["low_sample"] = (frame["retained_customers"] < LOW_SAMPLE).astype(bool)
    return frame[[*columns, "low_sample", *categories]]
