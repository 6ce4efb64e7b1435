"""Customer profitability: what each account paid minus what it cost, by cost category."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.schema import COST_CATEGORIES
from kpis.core import connection
from kpis.filters import Filters, in_day_range, in_range, scope

Bind = sa.Connection | sa.Engine


def customer_profitability(conn: Bind, f: Filters, limit: int | None = None) -> pd.DataFrame:
    """Profit per account over ``[start, end)``.

    profit = payments − costs per account, where payments = Σ payment amounts by paid_at
    in [start, end) (refunds netted) and costs = Σ costs carrying the account_id by
    incurred_on in [start, end), split by cost category; costs without an account are
    left out.

    The split gives one column per cost category (personnel, production, overhead,
    marketing, loyalty). Accounts within the filters' segments / owners / products that
    have a payment or an attributed cost in the range; sorted by profit, highest first
    (ties by account_id); ``limit`` keeps the first rows. Columns: account_id, name,
    segment, payments, costs, personnel, production, overhead, marketing, loyalty, profit.
    """
    rows = _profits(f)
    statement = rows.order_by(rows.selected_columns.profit.desc(), rows.selected_columns.account_id)
    if limit is not None:
        statement = statement.limit(limit)
    with connection(conn) as c:
        result = c.execute(statement)
        out = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    money = ["payments", "costs", *COST_CATEGORIES, "profit"]
    out[money] = out[money].astype(float)
    return out


def profitability_ends(conn: Bind, f: Filters, n: int = 50) -> pd.DataFrame:
    """The ``n`` most and the ``n`` least profitable accounts of :func:`customer_profitability`
    (same formula, filters, order and columns), plus ``accounts``: how many accounts its
    whole ranking holds (the same number on every row).

    Ranked in the database (profit, highest first, ties by account_id; the rows ranked 1..n
    and the last n, each end by a top-n sort), so only up to 2·n rows reach Python however many accounts there are;
    fewer than 2·n accounts: all of them. Columns: account_id, name, segment, payments,
    costs, personnel, production, overhead, marketing, loyalty, profit, accounts.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, not {n}")
    profits = _profits(f).cte("profits")
    best = [profits.c.profit.desc(), profits.c.account_id]
    worst = [profits.c.profit, profits.c.account_id.desc()]  # the same order, reversed
    # the first n and the last n by two top-n sorts (no ranking of every account); an
    # account in both (fewer than 2·n accounts) is one row of the union
    ends = sa.union(
        *(sa.select(sa.select(profits).order_by(*order).limit(n).subquery()) for order in (best, worst))
    ).subquery("ends")
    accounts = sa.select(sa.func.count()).select_from(profits).scalar_subquery()
    statement = sa.select(*ends.c, accounts.label("accounts")).order_by(
        ends.c.profit.desc(), ends.c.account_id
    )
    with connection(conn) as c:
        result = c.execute(statement)
        out = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    money = ["payments", "costs", *COST_CATEGORIES, "profit"]
    out[money] = out[money].astype(float)
    out["accounts"] = out["accounts"].astype("int64")
    return out


def _profits(f: Filters) -> sa.Select:
    """One row per account with a payment or an attributed cost in ``[start, end)``,
    within the filters: the columns of :func:`customer_profitability`, unordered.

    The filters narrow the accounts, and also the payments and costs summed per account
    before the join (the same accounts: neither table has an owner, product or pipeline
    column, so :func:`kpis.filters.scope` selects their rows through the account), so one
    owner sums that owner's payments rather than everyone's."""
    accounts, payments, costs = schema.accounts, schema.payments, schema.costs
    paid = (
        sa.select(payments.c.account_id, sa.func.sum(payments.c.amount).label("payments"))
        .where(in_range(payments.c.paid_at, f), *scope(f, payments))
        .group_by(payments.c.account_id)
        .cte("paid")
    )
    spent = (
        sa.select(
            costs.c.account_id,
            sa.func.sum(costs.c.amount).label("costs"),
            *(
                sa.func.sum(sa.case((costs.c.category == category, costs.c.amount), else_=0.0)).label(
                    category
                )
                for category in COST_CATEGORIES
            ),
        )
        .where(costs.c.account_id.is_not(None), in_day_range(costs.c.incurred_on, f), *scope(f, costs))
        .group_by(costs.c.account_id)
        .cte("spent")
    )
    payments_total = sa.func.coalesce(paid.c.payments, 0.0)
    costs_total = sa.func.coalesce(spent.c.costs, 0.0)
    profit = (payments_total - costs_total).label("profit")
    return (
        sa.select(
            accounts.c.account_id,
            accounts.c.name,
            accounts.c.segment,
            payments_total.label("payments"),
            costs_total.label("costs"),
            *(sa.func.coalesce(spent.c[category], 0.0).label(category) for category in COST_CATEGORIES),
            profit,
        )
        .select_from(
            accounts.outerjoin(paid, paid.c.account_id == accounts.c.account_id).outerjoin(
                spent, spent.c.account_id == accounts.c.account_id
            )
        )
        .where(sa.or_(paid.c.account_id.is_not(None), spent.c.account_id.is_not(None)), *scope(f, accounts))
    )
