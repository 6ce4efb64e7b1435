"""The workload: every KPI the Overview page computes for one filter change."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

import kpis
from kpis import Filters


def window(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The benchmark's 12 full months before the current one."""
    today = today or dt.date.today()
    end = today.replace(day=1)
    return end.replace(year=end.year - 1), end


def product_overview(engine: sa.Engine, f: Filters) -> list:
    """The product: the Overview's KPI functions, monthly, on one connection."""
    with engine.connect() as conn:
        return [
            kpis.revenue(conn, f, "month"),
            kpis.active_customers(conn, f, "month"),
            kpis.churn_rate(conn, f, "month"),
            kpis.revenue_retention(conn, f, "month"),
            kpis.nps(conn, f, "month"),
            kpis.ces(conn, f, "month"),
            kpis.win_rate(conn, f, "month"),
            kpis.sales_cycle(conn, f),
            kpis.first_contact_resolution(conn, f, "month"),
            kpis.retention_cost(conn, f, "month"),
        ]
