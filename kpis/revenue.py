"""Revenue and customer-base KPIs: revenue per period, active customers, MRR retention
(revenue churn, net / gross revenue retention) and signup-month cohort retention.

All aggregation runs in the database. Period boundaries are sent as bound parameters
(a small ``grid`` CTE of ``(i, s, e)`` rows), so instants are compared with the stored
values in the database's own timestamp representation on every dialect.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import (
    bitmap_agg,
    bits_set_counts,
    bytewise,
    month_index,
    period_number,
    period_number_of,
    period_number_start,
    period_start,
)
from kpis import rollups
from kpis.activity import FOREVER, active_at, period_grid
from kpis.core import (
    LOW_SAMPLE,
    connection,
    grid_columns,
    period_end,
    period_found,
    period_starts,
    ratio,
    wilson_interval,
)
from kpis.filters import Filters, in_range, scope, template, value_params
from kpis.month_masks import combined, month_masks, month_spans, months_of

Bind = sa.Connection | sa.Engine


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


# ---------------------------------------------------------------- revenue


#: The periods of a range whose paying accounts are counted with a bitmap per account
#: (:func:`_build_bitmap_revenue_statement`): from 12 (fewer: few (period, account) pairs,
#: measured no faster at 1M accounts) to 600; other ranges count distinct (period, account).
BITMAP_PERIODS = range(12, 601)


def _revenue_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """The statement of :func:`revenue`: a template per filter shape (``kpis.filters.template``),
    executed with ``value_params(f)``; on DuckDB, for a month, quarter or year grain, per
    shape and range of periods the bitmap form (:func:`_build_bitmap_revenue_statement`)."""
    number = period_number(dialect, schema.payments.c.paid_at, freq)
    if number is not None:
        low = period_number_of(f.start_ts, freq)
        high = period_number_of(f.end_ts - dt.timedelta(microseconds=1), freq)
        if high - low + 1 in BITMAP_PERIODS and bitmap_agg(dialect, number, low, high) is not None:
            return template(_build_bitmap_revenue_statement, dialect, f, freq, low, high)
    return template(_build_revenue_statement, dialect, f, freq)


def _build_bitmap_revenue_statement(
    dialect: sa.Dialect, f: Filters, freq: str, low: int, high: int
) -> sa.Select:
    """:func:`_build_revenue_statement`'s rows with paying_accounts counted per account
    rather than per (period, account) pair: each paying account's periods (numbered
    ``low`` … ``high``, ``crm_data.dialects.period_number``) as one bitmap
    (``bitmap_agg``), then per period the bitmaps with its bit set (``bits_set_counts``) —
    a hash table of the accounts instead of one of every (period, account) pair (at 1M
    accounts, one product over six years: 5.9M pairs, 2.35 of its operators' 2.5 s). The
    sums per period as before; the same rows. The scoped payments are read once and held
    (a CTE read twice; scanning the payments again for the bitmaps was slower: 0.62 vs
    0.43 s CPU), with each payment's period number computed there once: both parts group
    by it, and the period's first instant comes from the number of each of the few
    grouped rows (``period_number_start``) rather than from a ``date_trunc`` of every
    payment (one product at 1M accounts over 72 months: 0.57 → 0.45 s CPU)."""
    pay = schema.payments
    number_of = period_number(dialect, pay.c.paid_at, freq)
    assert number_of is not None  # the caller checked
    rows = (
        sa.select(pay.c.account_id, number_of.label("number"), pay.c.amount)
        .where(in_range(pay.c.paid_at, f), *scope(f, pay))
        .cte("scoped_payments")
    )
    bits = bitmap_agg(dialect, rows.c.number, low, high)
    assert bits is not None  # the caller checked
    sums = revenue_sums(dialect, rows)[1:]  # revenue, gross_revenue, refunds
    per_period = sa.select(rows.c.number, *sums).group_by(rows.c.number).subquery("sums")
    period = period_number_start(dialect, per_period.c.number, freq)
    paying = (
        sa.select(bits.label("periods"))
        .where(rows.c.amount > 0, rows.c.account_id.is_not(None))
        .group_by(rows.c.account_id)
        .subquery("paying_periods")
    )
    counted = bits_set_counts(dialect, paying.c.periods, high - low + 1)
    assert counted is not None and period is not None  # as bitmap_agg
    return sa.select(
        period.label("period"),
        sa.func.coalesce(counted.c.groups, 0).label("paying_accounts"),
        *(per_period.c[c] for c in ("revenue", "gross_revenue", "refunds")),
    ).select_from(per_period.outerjoin(counted, counted.c.bit + low == per_period.c.number))


def _build_revenue_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    pay = schema.payments
    period = period_start(dialect, pay.c.paid_at, freq).label("period")
    return (
        sa.select(period, *revenue_sums(dialect, pay))
        .where(in_range(pay.c.paid_at, f), *scope(f, pay))
        .group_by(period)
    )


def revenue_sums(dialect: sa.Dialect, pay: sa.Table | sa.CTE) -> list[sa.ColumnElement]:
    """The aggregates of :func:`revenue` over ``payments`` rows: paying_accounts, revenue,
    gross_revenue, refunds (the distinct account ids compared bytewise:
    ``crm_data.dialects.bytewise``)."""
    paying = sa.case((pay.c.amount > 0, bytewise(dialect, pay.c.account_id)))
    return [
        sa.func.count(sa.distinct(paying)).label("paying_accounts"),
        sa.func.sum(pay.c.amount).label("revenue"),
        sa.func.sum(sa.case((pay.c.amount > 0, pay.c.amount), else_=0.0)).label("gross_revenue"),
        sa.func.sum(sa.case((pay.c.amount < 0, -pay.c.amount), else_=0.0)).label("refunds"),
    ]


def revenue(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Revenue per period from payments.

    revenue = Σ payment amounts by paid_at in the period, net of refunds (negative
    amounts); gross_revenue = Σ positive amounts; refunds = −Σ negative amounts;
    paying_accounts = distinct accounts with a positive payment; arpa = revenue ÷
    paying_accounts.

    So revenue = gross_revenue − refunds; arpa is NaN when no account paid. Payments count
    when ``paid_at`` lies in ``[start, end)``: when ``end`` is not a period boundary, the
    last period only counts payments before ``end``. Periods with no payments have zeros.
    Read from the revenue roll-up when it applies (``kpis.rollups``: same numbers).
    Columns: period, revenue, gross_revenue, refunds, paying_accounts, arpa.
    """
    periods = period_starts(f.start, f.end, freq)
    with connection(conn) as c:
        found = rollups.found_or_rolled(
            c, rollups.REVENUE, f, freq, periods, _revenue_statement, value_params
        )
    data = grid_columns(
        found, periods, counts=("paying_accounts",), sums=("revenue", "gross_revenue", "refunds")
    )
    paying = data["paying_accounts"].tolist()
    data["arpa"] = np.array([ratio(r, n) for r, n in zip(data["revenue"].tolist(), paying, strict=True)])
    columns = ["period", "revenue", "gross_revenue", "refunds", "paying_accounts", "arpa"]
    return pd.DataFrame({column: data[column] for column in columns})  # built once


def _build_net_revenue_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """``period, revenue`` of :func:`revenue_series` on the base tables: Σ amount of the
    scoped payments per period. Where the database gives a period's first instant from its
    number (DuckDB: ``period_number_start``), the payments are grouped by their period
    number (a ``year`` and ``month`` per payment rather than a ``date_trunc``)."""
    pay = schema.payments
    where = (in_range(pay.c.paid_at, f), *scope(f, pay))
    number = period_number(dialect, pay.c.paid_at, freq)
    if number is not None:
        sums = (
            sa.select(number.label("number"), sa.func.sum(pay.c.amount).label("revenue"))
            .where(*where)
            .group_by(number)
            .subquery("sums")
        )
        first = period_number_start(dialect, sums.c.number, freq)
        if first is not None:
            return sa.select(first.label("period"), sums.c.revenue)
    period = period_start(dialect, pay.c.paid_at, freq).label("period")
    return sa.select(period, sa.func.sum(pay.c.amount).label("revenue")).where(*where).group_by(period)


def _net_revenue_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """:func:`_build_net_revenue_statement` as a template per filter shape."""
    return template(_build_net_revenue_statement, dialect, f, freq)


def revenue_series(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """:func:`revenue`'s ``period`` and ``revenue`` columns alone (revenue = Σ payment
    amounts by paid_at in the period, net of refunds; zeros for periods without payments;
    the same numbers), for a caller that needs no paying accounts — the revenue forecast's
    series. From the revenue roll-up when it applies, as :func:`revenue`; otherwise the
    base tables' statement sums the payments per period and counts no distinct accounts
    (one product at 1M accounts over 72 months, DuckDB: 0.37 → 0.20 s CPU; one owner
    0.16 → 0.12 s). Columns: period, revenue."""
    periods = period_starts(f.start, f.end, freq)
    with connection(conn) as c:

        def base_rows(part: Filters) -> dict[pd.Timestamp, tuple]:
            return period_found(c, _revenue_statement(c.dialect, part, freq), value_params(part))

        rolled = rollups.read_with_remainder(c, rollups.REVENUE, f, freq, periods, base_rows)
        if rolled is not None:  # the roll-up's measures: paying_accounts, revenue, ...
            revenue_at = rollups.REVENUE.measures.index("revenue")
            found = {period: row[revenue_at : revenue_at + 1] for period, row in rolled.items()}
        else:
            found = period_found(c, _net_revenue_statement(c.dialect, f, freq), value_params(f))
    data = grid_columns(found, periods, sums=("revenue",))
    return pd.DataFrame({column: data[column] for column in ("period", "revenue")})


# ---------------------------------------------------------------- active customers


def active_customers(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Customers per period ``[s, e)`` (a customer is an account with an active subscription).

    customers_at_start = accounts with a subscription active at the period's start s
    (started_at ≤ s < ended_at), customers_at_end = active at its end e; churned = active
    at s and not at e; new_customers = active at e and not at s, so customers_at_end =
    customers_at_start − churned + new_customers.

    No ``ended_at`` = still running. new_customers includes returning accounts; accounts
    that start and stop inside one period are in none of the counts. Columns: period,
    customers_at_start, new_customers, churned, customers_at_end.
    """
    from kpis.customer_base import customer_base  # it builds on this module's helpers

    columns = ["period", "customers_at_start", "new_customers", "churned", "customers_at_end"]
    return customer_base(conn, f, freq, costs=False)[columns]


# ---------------------------------------------------------------- MRR retention


def revenue_retention(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Revenue churn and net / gross revenue retention from subscription MRR, per period ``[s, e)``.

    net_revenue_retention = (mrr_at_start + expansion − contraction − churned_mrr) ÷
    mrr_at_start, over the accounts active at the period's start s: mrr_at_start = their
    subscription MRR at s, churned_mrr = MRR at s of those no longer active at e,
    expansion / contraction = per-account MRR increase / decrease from s to e; accounts
    new in the period are excluded.

    revenue_churn_rate = (churned_mrr + contraction) ÷ mrr_at_start;
    gross_revenue_retention = (mrr_at_start − contraction − churned_mrr) ÷ mrr_at_start.

    Active at t = a subscription with ``started_at ≤ t < ended_at``; an account's MRR at t
    = Σ MRR of its subscriptions active at t (NULL MRR counts as 0). Ratios are NaN when
    mrr_at_start is 0.

    Interval (money ratios, not proportions, so no Wilson): delta method over the
    accounts_at_start accounts active at s — per account x = MRR at s, y = MRR at e (0
    when lost), so NRR = Σy ÷ Σx, and Var(NRR) ≈ n ÷ (n − 1) · Σ(y_i − NRR·x_i)² ÷ (Σx)²
    with n = accounts_at_start, from Σx², Σy², Σxy summed in the database; nrr_ci_low /
    nrr_ci_high = NRR ∓ 1.959964·√Var (low bound clipped at 0). GRR the same with
    g = min(x, y) (0 when lost) for y, clipped to [0, 1]; revenue churn = 1 − GRR, so its
    bounds are 1 − the GRR bounds. NaN with mrr_at_start 0 or fewer than 2 accounts.
    ``low_sample`` = fewer than 30 accounts at the start (the normal approximation is
    unreliable there). See :func:`kpis.customer_base.customer_base`; read from its roll-up
    when it applies (same numbers).

    Columns: period, accounts_at_start, mrr_at_start, expansion, contraction, churned_mrr,
    revenue_churn_rate, net_revenue_retention, gross_revenue_retention,
    revenue_churn_ci_low, revenue_churn_ci_high, nrr_ci_low, nrr_ci_high, grr_ci_low,
    grr_ci_high, low_sample.
    """
    from kpis.customer_base import INTERVALS, customer_base  # it builds on this module's helpers

    columns = ["period", "accounts_at_start", "mrr_at_start", "expansion", "contraction", "churned_mrr"]
    rates = ["revenue_churn_rate", "net_revenue_retention", "gross_revenue_retention", *INTERVALS]
    frame = customer_base(conn, f, freq, costs=False).rename(
        columns={"customers_at_start": "accounts_at_start"}
    )
    frame["low_sample"] = (frame["accounts_at_start"] < LOW_SAMPLE).astype(bool)
    return frame[[*columns, *rates, "low_sample"]]


# ---------------------------------------------------------------- cohort retention


def _month_floor(value: dt.datetime) -> pd.Timestamp:
    return pd.Timestamp(value.year, value.month, 1)


def _cohort_counts(
    c: sa.Connection, f: Filters, cohorts: list[pd.Timestamp], last_month: pd.Timestamp
) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """Cohort sizes {cj: accounts} and retained counts {(cj, j): accounts}, j > cj, for
    :func:`cohort_retention`, in one statement over the subscriptions within the filters;
    cj, j = months since ``cohorts[0]``, j up to the month of ``last_month`` (= top).

    No range join with a grid of months (``kpis.month_masks``): on DuckDB and PostgreSQL
    one aggregate per account gives its first start (cohort) and, as bit masks, the months
    at whose first instant one of its subscriptions is active; accounts are then counted
    per cohort and distinct masks (a few thousand rows), whose bits after the cohort's
    month Python adds up. Elsewhere (SQLite): :func:`_cohort_counts_windowed`."""
    sub = schema.subscriptions
    dialect = c.dialect
    base = cohorts[0].year * 12 + cohorts[0].month - 1
    top = last_month.year * 12 + last_month.month - 1 - base
    # the accounts kept have every subscription started in the cohorts' range (their first
    # start is): the masks of those subscriptions alone are theirs (kpis.month_masks)
    started = sub.c.started_at >= sa.literal(cohorts[0].to_pydatetime(), sa.DateTime())
    masks = month_masks(dialect, base, top, only=started)
    if masks is None:
        return _cohort_counts_windowed(c, f, cohorts, base, top)
    accounts = (
        sa.select(
            sa.func.min(sub.c.started_at).label("first_start"),
            *(mask.label(f"m{k}") for k, mask in enumerate(masks)),
        )
        .where(*scope(f, sub))
        .group_by(sub.c.account_id)
        .subquery("accounts")
    )
    cj = month_index(dialect, accounts.c.first_start) - base
    mask_columns = [accounts.c[f"m{k}"] for k in range(len(masks))]
    statement = (
        sa.select(cj.label("cj"), *mask_columns, sa.func.count().label("n"))
        .where(*_first_start_in(accounts.c.first_start, cohorts))
        .group_by(cj, *mask_columns)
    )
    sizes: dict[int, int] = {}
    retained: dict[tuple[int, int], int] = {}
    for cohort, *bits, n in c.execute(statement):
        cohort, n = int(cohort), int(n)
        sizes[cohort] = sizes.get(cohort, 0) + n
        for month in months_of(combined(bits)):
            if month > cohort:
                retained[(cohort, month)] = retained.get((cohort, month), 0) + n
    return sizes, retained


def _first_start_in(
    first_start: sa.ColumnElement, cohorts: list[pd.Timestamp]
) -> list[sa.ColumnElement[bool]]:
    """``first_start`` within the cohorts' months: [cohorts[0], end of the last one)."""
    after = period_end(cohorts[-1], "month").to_pydatetime()
    return [
        first_start >= sa.literal(cohorts[0].to_pydatetime(), sa.DateTime()),
        first_start < sa.literal(after, sa.DateTime()),
    ]


def _cohort_counts_windowed(
    c: sa.Connection, f: Filters, cohorts: list[pd.Timestamp], base: int, top: int
) -> tuple[dict[int, int], dict[tuple[int, int], int]]:
    """:func:`_cohort_counts` without a bitwise OR aggregate (SQLite): the same counts from
    one window over each member account's subscriptions.

    In ``started_at`` order (so lo ascending), the months a span adds to those of the
    account's earlier spans are [max(lo, prev + 1), hi], prev = the largest hi of the
    earlier spans (their union, from lo on, is [lo, prev]). These pieces are disjoint and
    cover the account's active months; clipped to the months after its cohort,
    [max(lo, prev + 1, cj + 1), hi], each adds +1 at (cj, its first month) and −1 at
    (cj, its last month + 1); retained(cj, j) = Σ of the deltas over months ≤ j."""
    sub = schema.subscriptions
    dialect = c.dialect
    lo, hi = month_spans(dialect, base, top)
    firsts = (
        sa.select(sub.c.account_id, sa.func.min(sub.c.started_at).label("first_start"))
        .where(*scope(f, sub))
        .group_by(sub.c.account_id)
        .subquery("firsts")
    )
    ordered = {"partition_by": sub.c.account_id, "order_by": [sub.c.started_at, sub.c.subscription_id]}
    spans = (
        sa.select(
            (month_index(dialect, firsts.c.first_start) - base).label("cj"),
            lo.label("lo"),
            hi.label("hi"),
            sa.func.max(hi).over(**ordered, rows=(None, -1)).label("prev"),
            sa.func.row_number().over(**ordered).label("rn"),
        )
        .select_from(sub.join(firsts, firsts.c.account_id == sub.c.account_id))
        .where(*_first_start_in(firsts.c.first_start, cohorts), *scope(f, sub))
        .subquery("spans")
    )
    first = sa.case(
        (spans.c.prev.is_(None), spans.c.lo),
        (spans.c.prev + 1 > spans.c.lo, spans.c.prev + 1),
        else_=spans.c.lo,
    )
    pieces = sa.select(spans.c.cj, first.label("a"), spans.c.hi.label("b"), spans.c.rn).subquery("pieces")
    a = sa.case((pieces.c.a > pieces.c.cj, pieces.c.a), else_=pieces.c.cj + 1)
    # each piece row three times (k): +1 at a, −1 at b + 1, and the cohort size (j NULL)
    kinds = sa.union_all(*(sa.select(sa.literal_column(str(k), sa.Integer()).label("k")) for k in range(3)))
    kinds = kinds.subquery("kinds")
    j = sa.case((kinds.c.k == 0, a), (kinds.c.k == 1, pieces.c.b + 1), else_=sa.null())
    d = sa.case((kinds.c.k == 0, 1), (kinds.c.k == 1, -1), else_=1)
    keep = sa.or_(sa.and_(kinds.c.k < 2, a <= pieces.c.b), sa.and_(kinds.c.k == 2, pieces.c.rn == 1))
    statement = (
        sa.select(pieces.c.cj, j.label("j"), sa.func.sum(d).label("n"))
        .select_from(pieces.join(kinds, sa.true()))
        .where(keep)
        .group_by(pieces.c.cj, j)
    )
    sizes: dict[int, int] = {}
    changes: dict[int, dict[int, int]] = {}
    for cohort, month, n in c.execute(statement):
        if month is None:
            sizes[int(cohort)] = int(n)
        else:
            changes.setdefault(int(cohort), {})[int(month)] = int(n)
    retained: dict[tuple[int, int], int] = {}
    for cohort, by_month in changes.items():
        running = 0
        for month in range(cohort + 1, top + 1):
            running += by_month.get(month, 0)
            if running:
                retained[(cohort, month)] = running
    return sizes, retained


def cohort_retention(conn: Bind, f: Filters, as_of: dt.datetime | None = None) -> pd.DataFrame:
    """Signup-month cohort retention.

    cohort = month of an account's first subscription start; retention_rate = retained ÷
    customers, where retained at month k = accounts of the cohort active at the first
    instant of month cohort + k (k = 0: the whole cohort).

    * cohorts whose first day lies in ``[start, end)``; first starts and activity use the
      subscriptions within the filters' segments / owners / products;
    * active at t = a subscription with ``started_at ≤ t < ended_at``;
    * retention_rate is NaN for an empty cohort;
    * k runs while the first day of month cohort + k is not after the end of the data:
      min(``as_of`` (default: now, UTC), the latest subscription start or end).

    Interval: Wilson score 95 % interval of retained ÷ customers
    (``kpis.core.wilson_interval``), NaN for an empty cohort; ``low_sample`` = fewer than
    30 customers in the cohort.

    Columns: cohort, months_since_start, customers, retained, retention_rate, ci_low,
    ci_high, low_sample.
    """
    columns = ["cohort", "months_since_start", "customers", "retained", "retention_rate"]
    columns += ["ci_low", "ci_high", "low_sample"]
    cohorts = period_starts(f.start, f.end, "month")
    if not cohorts:
        return pd.DataFrame(columns=columns)
    sub = schema.subscriptions
    now = as_of or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with connection(conn) as c:
        latest = c.execute(
            sa.select(sa.func.max(sub.c.started_at), sa.func.max(sub.c.ended_at)).where(*scope(f, sub))
        ).one()
        stamps = [pd.Timestamp(v).to_pydatetime() for v in latest if v is not None]
        data_end = min([now, max(stamps)]) if stamps else now
        last_month = _month_floor(data_end)
        n_months = max(
            len(cohorts), (last_month.year - cohorts[0].year) * 12 + last_month.month - cohorts[0].month + 1
        )
        months = [cohorts[0] + pd.DateOffset(months=j) for j in range(n_months)]
        sizes, retained = _cohort_counts(c, f, cohorts, last_month)
    rows = []
    for cj, cohort in enumerate(cohorts):
        customers = sizes.get(cj, 0)
        counts = [(0, customers)]
        for j in range(cj + 1, n_months):
            if months[j] > pd.Timestamp(data_end):
                break
            counts.append((j - cj, retained.get((cj, j), 0)))
        for k, kept in counts:
            low, high = wilson_interval(kept, customers)
            rows.append(
                (cohort, k, customers, kept, ratio(kept, customers), low, high, customers < LOW_SAMPLE)
            )
    out = pd.DataFrame(rows, columns=columns)
    out["cohort"] = pd.to_datetime(out["cohort"])
    for column in ("retention_rate", "ci_low", "ci_high"):
        out[column] = out[column].astype(float)
    out["low_sample"] = out["low_sample"].astype(bool)
    return out


__all__ = [
    "FOREVER",
    "active_at",
    "active_customers",
    "cohort_retention",
    "period_grid",
    "revenue",
    "revenue_retention",
    "revenue_series",
]
