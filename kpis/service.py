"""Service KPIs: first-contact resolution, ticket volumes, resolution times.

Tickets are scoped by their account (segment lists; a ticket without an account counts
only while no account-level filter is set), the account's owner and their own product.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import days_between, percentile, period_start
from kpis import rollups
from kpis.core import (
    LOW_SAMPLE,
    connection,
    grid_columns,
    naive_timestamps,
    on_period_grid,
    period_starts,
    read_frame,
    wilson_interval,
)
from kpis.filters import Filters, in_range, scope, template, value_params
from kpis.measures import fcr_sums

NOT_SET = "(not set)"
#: ``by`` values of :func:`ticket_breakdown`.
BREAKDOWNS = ("category", "product", "channel", "priority")


def _fcr_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """The statement of :func:`first_contact_resolution`: a template per filter shape
    (``kpis.filters.template``), executed with ``value_params(f)``."""
    return template(_build_fcr_statement, dialect, f, freq)


def _build_fcr_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    tickets = schema.tickets
    period = period_start(dialect, tickets.c.resolved_at, freq)
    return (
        sa.select(period.label("period"), *fcr_sums(tickets))
        .where(in_range(tickets.c.resolved_at, f), *scope(f, tickets))
        .group_by(period)
    )


def first_contact_resolution(
    conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month"
) -> pd.DataFrame:
    """First-contact resolution rate per period of ``resolved_at``.

    Formula: fcr_rate = first_contact ÷ resolved, where resolved = tickets with resolved_at
    in the period and first_contact = those with contacts_until_resolved = 1 (an unknown
    count is resolved but not first-contact); a period in which no resolved ticket records
    its count has no value (unknown), not 0 %. recorded = the resolved tickets whose count
    is recorded (Salesforce cases, and help desks that do not count contacts, record none).

    Interval: Wilson score 95 % interval; ``low_sample`` = fewer than 30 resolved tickets;
    no resolved tickets: fcr_rate NaN. Read from the roll-up when it applies
    (``kpis.rollups``: same numbers). Columns: period, resolved, recorded, first_contact,
    fcr_rate, ci_low, ci_high, low_sample.
    """
    columns = [
        "period",
        "resolved",
        "recorded",
        "first_contact",
        "fcr_rate",
        "ci_low",
        "ci_high",
        "low_sample",
    ]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    with connection(conn) as c:
        found = rollups.found_or_rolled(
            c, rollups.FIRST_CONTACT_RESOLUTION, f, freq, periods, _fcr_statement, value_params
        )
    data = grid_columns(found, periods, counts=("resolved", "first_contact", "recorded"))
    resolved, first = data["resolved"], data["first_contact"]
    known = (resolved > 0) & (data["recorded"] > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        data["fcr_rate"] = np.where(known, first / resolved.astype(float), np.nan)
    intervals = [
        wilson_interval(k, n if ok else 0)
        for k, n, ok in zip(first.tolist(), resolved.tolist(), known.tolist(), strict=True)
    ]
    data["ci_low"] = np.array([low for low, _ in intervals], dtype="float64")
    data["ci_high"] = np.array([high for _, high in intervals], dtype="float64")
    data["low_sample"] = resolved < LOW_SAMPLE
    return pd.DataFrame({column: data[column] for column in columns})  # built once


def ticket_breakdown(
    conn: sa.Connection | sa.Engine, f: Filters, by: str = "category", freq: str = "month"
) -> pd.DataFrame:
    """Tickets opened per period and group.

    Formula: tickets = count of tickets by opened_at, per ``by`` = category | product
    (the product's name, else its id) | channel | priority; a missing value is the group
    "(not set)". Rows: every period × every group seen in the range (0 where none); no
    tickets at all in the selection gives no rows (there is no group to show).
    Columns: period, group, tickets.
    """
    if by not in BREAKDOWNS:
        raise ValueError(f"by must be one of {BREAKDOWNS}, not {by!r}")
    columns = ["period", "group", "tickets"]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    tickets, products = schema.tickets, schema.products
    source: sa.FromClause = tickets
    if by == "product":
        source = tickets.outerjoin(products, products.c.product_id == tickets.c.product_id)
        group = sa.func.coalesce(products.c.name, tickets.c.product_id, NOT_SET)
    else:
        group = sa.func.coalesce(tickets.c[by], NOT_SET)
    with connection(conn) as c:
        period = period_start(c.dialect, tickets.c.opened_at, freq)
        statement = (
            sa.select(period.label("period"), group.label("group"), sa.func.count().label("tickets"))
            .select_from(source)
            .where(in_range(tickets.c.opened_at, f), *scope(f, tickets))
            .group_by(period, group)
        )
        found = read_frame(c, statement)
    grid_periods = pd.to_datetime(periods)
    if found.empty:
        return pd.DataFrame(columns=columns)
    found["period"] = naive_timestamps(found["period"])
    found = found[found["period"].isin(grid_periods)]
    groups = sorted(found["group"].unique())
    grid = pd.DataFrame([(p, g) for p in grid_periods for g in groups], columns=["period", "group"])
    frame = grid.merge(found, on=["period", "group"], how="left")
    frame["tickets"] = frame["tickets"].fillna(0).astype("int64")
    return frame[columns]


def resolution_times(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Resolution and first-response times of tickets resolved per period (by resolved_at).

    Formula: hours to resolve = resolved_at − opened_at; hours to first response =
    first_response_at − opened_at of the same resolved tickets (those without a first
    response are left out of that median); medians and 90th percentile interpolate linearly.
    Columns: period, resolved, median_hours_to_resolve, p90_hours_to_resolve,
    median_hours_to_first_response.
    """
    columns = [
        "period",
        "resolved",
        "median_hours_to_resolve",
        "p90_hours_to_resolve",
        "median_hours_to_first_response",
    ]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    tickets = schema.tickets
    with connection(conn) as c:
        dialect = c.dialect
        period = period_start(dialect, tickets.c.resolved_at, freq)
        to_resolve = days_between(dialect, tickets.c.opened_at, tickets.c.resolved_at)
        to_respond = days_between(dialect, tickets.c.opened_at, tickets.c.first_response_at)
        statement = (
            sa.select(
                period.label("period"),
                sa.func.count().label("resolved"),
                percentile(dialect, to_resolve, 0.5).label("median_days_to_resolve"),
                percentile(dialect, to_resolve, 0.9).label("p90_days_to_resolve"),
                percentile(dialect, to_respond, 0.5).label("median_days_to_first_response"),
            )
            .where(in_range(tickets.c.resolved_at, f), *scope(f, tickets))
            .group_by(period)
        )
        frame = on_period_grid(read_frame(c, statement), periods)
    frame["resolved"] = frame["resolved"].fillna(0).astype("int64")
    for kind in ("median_{}_to_resolve", "p90_{}_to_resolve", "median_{}_to_first_response"):
        days = pd.to_numeric(frame[kind.format("days")], errors="coerce").astype(float)
        frame[kind.format("hours")] = days * 24.0
    return frame[columns]
