"""Retention cost: what keeping customers costs, per retained customer and cost bucket."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from kpis.churn import customer_flows
from kpis.core import connection, on_period_grid, period_starts, read_frame
from kpis.filters import Filters, in_day_range, scope


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
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    costs = schema.costs
    at_start, at_end = customer_flows(f, periods, freq)
    retained_statement = (
        sa.select(at_start.c.period, sa.func.count().label("retained_customers"))
        .select_from(
            at_start.join(
                at_end,
                sa.and_(at_end.c.period == at_start.c.period, at_end.c.account_id == at_start.c.account_id),
            )
        )
        .group_by(at_start.c.period)
    )
    with connection(conn) as c:
        period = period_start(c.dialect, costs.c.incurred_on, freq)
        amounts = [
            sa.func.sum(sa.case((costs.c.category == category, costs.c.amount), else_=0.0)).label(category)
            for category in categories
        ]
        cost_statement = (
            sa.select(period.label("period"), sa.func.sum(costs.c.amount).label("retention_costs"), *amounts)
            .where(costs.c.purpose == "retention", in_day_range(costs.c.incurred_on, f), *scope(f, costs))
            .group_by(period)
        )
        spent = on_period_grid(read_frame(c, cost_statement), periods)
        retained = on_period_grid(read_frame(c, retained_statement), periods)
    frame = spent.merge(retained, on="period")
    for column in ["retention_costs", *categories]:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float).fillna(0.0)
    frame["retained_customers"] = frame["retained_customers"].fillna(0).astype("int64")
    customers = frame["retained_customers"].astype(float)
    frame["cost_per_retained_customer"] = frame["retention_costs"] / customers.where(customers > 0)
    return frame[columns]
