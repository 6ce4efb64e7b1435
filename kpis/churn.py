"""Customer churn: who was a customer at the start of a period and no longer at its end.

A customer is *active at instant t* when one of its subscriptions (within the filters'
segments, owners and products) has ``started_at <= t < ended_at`` (no ``ended_at`` = still
running). Everything is evaluated in the database: the period boundaries travel as bound
parameters in a small ``UNION ALL`` table joined to ``subscriptions``, one statement for
all periods; only one aggregated row per period (or group) comes back.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from kpis import rollups
from kpis.core import LOW_SAMPLE, connection, period_starts, period_table, read_frame, wilson_interval
from kpis.filters import Filters, scope
from kpis.month_masks import combined, month_masks

#: ``by`` values of :func:`churn_by` -> accounts column.
CHURN_DIMENSIONS: dict[str, str] = {
    "segment": "segment",
    "industry": "industry",
    "region": "region",
    "country": "country",
    "company_size": "company_size",
    "acquisition_channel": "acquisition_channel",
    "owner_id": "owner_id",
    "owner": "owner_id",
}

#: Group label for accounts whose dimension value is missing.
NOT_SET = "(not set)"

#: The churn rate, its Wilson interval and ``low_sample`` (added by :func:`_finish`).
RATE_COLUMNS = ["churn_rate", "ci_low", "ci_high", "low_sample"]


def _active_at(instant: ColumnElement) -> ColumnElement[bool]:
    subscriptions = schema.subscriptions
    return sa.and_(
        subscriptions.c.started_at <= instant,
        sa.or_(subscriptions.c.ended_at.is_(None), subscriptions.c.ended_at > instant),
    )


def customer_flows(
    f: Filters, periods: list[pd.Timestamp], freq: str, accounts_where: ColumnElement[bool] | None = None
) -> tuple[sa.CTE, sa.CTE]:
    """Two CTEs over all ``periods`` at once: ``at_start(period, account_id)`` = customers
    active at the period's first instant ``s``; ``at_end(period, account_id)`` = customers
    active at its end ``e`` (the first instant of the next period). ``accounts_where``: only
    the subscriptions of the accounts matching it (a condition on ``accounts``)."""
    subscriptions = schema.subscriptions
    bounds = period_table(periods, freq)
    conditions = scope(f, subscriptions)
    if accounts_where is not None:
        accounts = schema.accounts
        conditions.append(
            subscriptions.c.account_id.in_(sa.select(accounts.c.account_id).where(accounts_where))
        )

    def active(instant: ColumnElement, name: str) -> sa.CTE:
        return (
            sa.select(bounds.c.period, subscriptions.c.account_id)
            .select_from(bounds.join(subscriptions, _active_at(instant)))
            .where(*conditions)
            .distinct()
            .cte(name)
        )

    return active(bounds.c.period, "at_start"), active(bounds.c.period_end, "at_end")


def _churn_counts(
    f: Filters,
    periods: list[pd.Timestamp],
    freq: str,
    group: ColumnElement | None,
    accounts_where: ColumnElement[bool] | None = None,
) -> sa.Select:
    at_start, at_end = customer_flows(f, periods, freq, accounts_where)
    churned = sa.func.sum(sa.case((at_end.c.account_id.is_(None), 1), else_=0))
    source = at_start.outerjoin(
        at_end,
        sa.and_(at_end.c.period == at_start.c.period, at_end.c.account_id == at_start.c.account_id),
    )
    if group is None:
        key = at_start.c.period
        columns = [key.label("period")]
    else:
        accounts = schema.accounts
        source = source.join(accounts, accounts.c.account_id == at_start.c.account_id)
        key = sa.func.coalesce(group, NOT_SET)
        columns = [key.label("group")]
    return (
        sa.select(*columns, sa.func.count().label("customers_at_start"), churned.label("churned"))
        .select_from(source)
        .group_by(key)
        .order_by(key)
    )


def _finish(frame: pd.DataFrame) -> pd.DataFrame:
    """The rate columns from the aggregated counts — the one place every churn frame
    (:func:`churn_rate` on either read path, :func:`churn_by`) gets them.

    churn_rate = churned ÷ customers_at_start; ci_low / ci_high = Wilson score 95 %
    interval of that proportion (``kpis.core.wilson_interval``): with p = churned ÷ n,
    n = customers_at_start and z = 1.959964, (p + z²/2n ∓ z·√(p(1 − p)/n + z²/4n²)) ÷
    (1 + z²/n); low_sample = customers_at_start < 30. With customers_at_start = 0 the
    rate and both bounds are NaN and low_sample is True. Missing or NULL counts become 0.
    """
    for column in ("customers_at_start", "churned"):
        frame[column] = frame[column].fillna(0).astype("int64")
    starts = frame["customers_at_start"]
    frame["churn_rate"] = (frame["churned"] / starts.astype(float).where(starts > 0)).astype(float)
    bounds = np.array(
        [wilson_interval(k, n) for k, n in zip(frame["churned"], starts, strict=True)], dtype="float64"
    ).reshape(-1, 2)
    frame["ci_low"] = bounds[:, 0]
    frame["ci_high"] = bounds[:, 1]
    frame["low_sample"] = (starts < LOW_SAMPLE).astype(bool)
    return frame


def churn_rate(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Customer churn per calendar period ``[s, e)``.

    Formula: churn_rate = churned ÷ customers_at_start, where customers_at_start = customers
    active at s and churned = customers active at s and not active at e; customers won
    during the period are in neither count.

    Interval: Wilson score 95 % interval of churned ÷ customers_at_start; ``low_sample`` =
    fewer than 30 customers at the start. One row per period whose first day lies in
    ``[f.start, f.end)``, in order; a period with no customers at its start has 0 counts
    and ``churn_rate``, ``ci_low`` and ``ci_high`` NaN (nothing could churn). The counts
    come from :func:`kpis.customer_base.customer_base` (its roll-up when it applies,
    ``kpis.rollups``: same numbers); the rate and interval are computed from them.
    Columns: period, customers_at_start, churned, churn_rate, ci_low, ci_high, low_sample.
    """
    from kpis.customer_base import customer_base

    counts = customer_base(conn, f, freq, costs=False)[["period", "customers_at_start", "churned"]]
    return _finish(counts.copy())[["period", "customers_at_start", "churned", *RATE_COLUMNS]]


def churn_by(conn: sa.Connection | sa.Engine, f: Filters, by: str) -> pd.DataFrame:
    """Monthly customer churn per account dimension, summed over the months of the range.

    Formula: churn_rate = Σ churned ÷ Σ customers_at_start over the calendar months whose
    first day lies in [start, end), per value of the account dimension ``by`` (segment,
    industry, region, country, company_size, acquisition_channel, owner_id); accounts
    without a value form the group "(not set)". A customer counts once per month it was
    active at the month's start.

    Interval: Wilson score 95 % interval of Σ churned ÷ Σ customers_at_start;
    ``low_sample`` = fewer than 30 customer-months at the start (Σ customers_at_start).
    Columns: group, customers_at_start, churned, churn_rate, ci_low, ci_high, low_sample
    (sorted by group; groups with no customers are absent).
    """
    if by not in CHURN_DIMENSIONS:
        raise ValueError(f"by must be one of {sorted(CHURN_DIMENSIONS)}, not {by!r}")
    columns = ["group", "customers_at_start", "churned", *RATE_COLUMNS]
    periods = period_starts(f.start, f.end, "month")
    if not periods:
        return pd.DataFrame(columns=columns)
    group = schema.accounts.c[CHURN_DIMENSIONS[by]]
    with connection(conn) as c:
        statement = _churn_by_rolled(c, f, periods, CHURN_DIMENSIONS[by])
        if statement is not None:
            frame = read_frame(c, statement)
        else:
            frame = _churn_by_masks(c, f, periods, group)
            if frame is None:
                frame = read_frame(c, _churn_counts(f, periods, "month", group))
    if frame.empty:
        return pd.DataFrame(columns=columns)
    return _finish(frame)[columns].reset_index(drop=True)


def _churn_by_masks(
    c: sa.Connection, f: Filters, periods: list[pd.Timestamp], group: ColumnElement
) -> pd.DataFrame | None:
    """:func:`churn_by`'s counts on the base tables without the range join of
    :func:`customer_flows` (``kpis.month_masks``): per account (of ``accounts``, its
    subscriptions within the filters) the month starts 0..n at which it is active, as bit
    masks (month i = the start of ``periods[i]``, month n = the end of the last one);
    accounts are counted per group and distinct masks in the database, and per mask
    customers_at_start = its bits i < n, churned = its bits i < n whose bit i + 1 is not
    set. None where the database has no bitwise OR aggregate (SQLite: :func:`_churn_counts`).
    Same columns, groups and order as :func:`_churn_counts`."""
    sub, accounts = schema.subscriptions, schema.accounts
    base = periods[0].year * 12 + periods[0].month - 1
    n = len(periods)
    masks = month_masks(c.dialect, base, n)
    if masks is None:
        return None
    per_account = (
        sa.select(sub.c.account_id, *(mask.label(f"m{k}") for k, mask in enumerate(masks)))
        .where(*scope(f, sub))
        .group_by(sub.c.account_id)
        .subquery("per_account")
    )
    key = sa.func.coalesce(group, NOT_SET)
    mask_columns = [per_account.c[f"m{k}"] for k in range(len(masks))]
    statement = (
        sa.select(key.label("group"), *mask_columns, sa.func.count().label("accounts"))
        .select_from(per_account.join(accounts, accounts.c.account_id == per_account.c.account_id))
        .group_by(key, *mask_columns)
        .order_by(key)  # the groups in the database's order, as _churn_counts gives them
    )
    starts_mask = (1 << n) - 1
    totals: dict[str, list[int]] = {}
    for name, *bits, count in c.execute(statement):
        active = combined(bits)
        at_start = active & starts_mask
        churned = at_start & ~(active >> 1)
        total = totals.setdefault(name, [0, 0])
        total[0] += int(count) * at_start.bit_count()
        total[1] += int(count) * churned.bit_count()
    rows = [(name, starts, lost) for name, (starts, lost) in totals.items() if starts > 0]
    return pd.DataFrame(rows, columns=["group", "customers_at_start", "churned"])


def _churn_by_rolled(
    c: sa.Connection, f: Filters, periods: list[pd.Timestamp], column: str
) -> sa.Select | None:
    """:func:`churn_by`'s counts from the customer-base roll-up (its per-month
    customers_at_start and churned are this function's, per account-dimension group) when
    it can answer: the roll-up's groups of accounts with some dimension value, plus, from
    the base tables, the accounts without any (the roll-up keeps them together with the
    subscriptions of missing accounts, which churn_by leaves out). None: read the base
    tables. Same columns and order as :func:`_churn_counts`."""
    if column not in rollups.DIMENSIONS:  # owner_id: not a roll-up dimension
        return None
    rolled = rollups.groups_statement(
        c,
        rollups.CUSTOMER_BASE,
        f,
        "month",
        periods,
        lambda value: sa.func.coalesce(value, NOT_SET).label("group"),
        column,
        ("customers_at_start", "churned"),
    )
    if rolled is None:
        return None
    accounts = schema.accounts
    blank = sa.and_(*(accounts.c[d].is_(None) for d in rollups.DIMENSIONS))
    unblank = _churn_counts(f, periods, "month", accounts.c[column], accounts_where=blank).order_by(None)
    both = sa.union_all(rolled, unblank).subquery("both_paths")
    starts = sa.cast(sa.func.sum(both.c.customers_at_start), sa.BigInteger())
    return (
        sa.select(
            both.c.group,
            starts.label("customers_at_start"),
            sa.cast(sa.func.sum(both.c.churned), sa.BigInteger()).label("churned"),
        )
        .group_by(both.c.group)
        .having(starts > 0)  # as on the base tables: only groups with a customer at a month's start
        .order_by(both.c.group)
    )


def churned_accounts(
    conn: sa.Connection | sa.Engine, f: Filters, period: dt.date | str | pd.Timestamp, freq: str = "month"
) -> pd.DataFrame:
    """Drill-down: the customers counted as churned in the period starting at ``period``.

    Rule: active at s = ``period`` and not active at e = the next period's first instant
    (same as :func:`churn_rate`). ``ended_at`` / ``end_reason`` come from the latest-ending
    of the account's subscriptions that were active at s; ``lost_mrr`` sums their MRR (NULL
    MRR counts as 0, so an account whose MRR is all missing lost 0, and the accounts'
    lost_mrr add up to ``customer_base``'s churned_mrr).

    Columns: account_id, name, segment, industry, company_size, region, country,
    acquisition_channel, owner_id, lost_mrr, ended_at, end_reason (ordered by ended_at).
    """
    start = pd.Timestamp(period)
    at_start, at_end = customer_flows(f, [start], freq)
    subscriptions = schema.subscriptions
    accounts = schema.accounts
    churners = (
        sa.select(at_start.c.account_id)
        .select_from(at_start.outerjoin(at_end, at_end.c.account_id == at_start.c.account_id))
        .where(at_end.c.account_id.is_(None))
        .cte("churners")
    )
    s_instant = sa.literal(start.to_pydatetime(), sa.DateTime())
    lost = (
        sa.select(
            subscriptions.c.account_id,
            subscriptions.c.ended_at,
            subscriptions.c.end_reason,
            # NULL MRR counts as 0, as in kpis.customer_base (all NULL: 0, not NULL)
            sa.func.sum(sa.func.coalesce(subscriptions.c.mrr, sa.literal(0.0, sa.Double())))
            .over(partition_by=subscriptions.c.account_id)
            .label("lost_mrr"),
            sa.func.row_number()
            .over(
                partition_by=subscriptions.c.account_id,
                order_by=[subscriptions.c.ended_at.desc(), subscriptions.c.subscription_id.desc()],
            )
            .label("latest"),
        )
        .where(
            subscriptions.c.account_id.in_(sa.select(churners.c.account_id)),
            _active_at(s_instant),
            *scope(f, subscriptions),
        )
        .cte("lost")
    )
    statement = (
        sa.select(
            accounts.c.account_id,
            accounts.c.name,
            accounts.c.segment,
            accounts.c.industry,
            accounts.c.company_size,
            accounts.c.region,
            accounts.c.country,
            accounts.c.acquisition_channel,
            accounts.c.owner_id,
            lost.c.lost_mrr,
            lost.c.ended_at,
            lost.c.end_reason,
        )
        .select_from(lost.join(accounts, accounts.c.account_id == lost.c.account_id))
        .where(lost.c.latest == 1)
        .order_by(lost.c.ended_at, accounts.c.account_id)
    )
    with connection(conn) as c:
        frame = read_frame(c, statement)
    if not frame.empty:
        frame["ended_at"] = pd.to_datetime(frame["ended_at"])
    return frame
