"""Customer profitability: what each account paid minus what it cost, by cost category."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import enforced_references
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
    and the last n, each end by a top-n sort), so only up to 2·n rows reach Python however
    many accounts there are; fewer than 2·n accounts: all of them. The ranking carries the
    account ids and the sums only; the accounts' names and segments are read afterwards for
    the 2·n rows of the ends, by primary key (at a million accounts, carrying every
    account's name through the ranking cost a tenth of the call). Columns: account_id,
    name, segment, payments, costs, personnel, production, overhead, marketing, loyalty,
    profit, accounts.
    """
    if n < 0:
        raise ValueError(f"n must be at least 0, not {n}")
    accounts = schema.accounts
    with connection(conn) as c:
        profits = _ranking(f, _accounts_enforced(c)).cte("profits")
        best = [profits.c.profit.desc(), profits.c.account_id]
        worst = [profits.c.profit, profits.c.account_id.desc()]  # the same order, reversed
        # the first n and the last n by two top-n sorts (no ranking of every account); an
        # account in both (fewer than 2·n accounts) is one row of the union
        ends = sa.union(
            *(sa.select(sa.select(profits).order_by(*order).limit(n).subquery()) for order in (best, worst))
        ).subquery("ends")
        ranked = sa.select(sa.func.count()).select_from(profits).scalar_subquery()
        statement = sa.select(ends, ranked.label("accounts")).order_by(
            ends.c.profit.desc(), ends.c.account_id
        )
        result = c.execute(statement)
        columns = list(result.keys())
        rows = result.fetchall()
        # the names and segments of the ends' accounts, by their primary key (joined in the
        # statement, the join scanned every account's id for 2·n rows: ~40 ms at 1M)
        ids = [row[0] for row in rows]
        named = (
            {
                row[0]: tuple(row[1:])
                for row in c.execute(
                    sa.select(accounts.c.account_id, accounts.c.name, accounts.c.segment).where(
                        accounts.c.account_id.in_(ids)
                    )
                )
            }
            if ids
            else {}
        )
    out = pd.DataFrame(
        [(row[0], *named[row[0]], *row[1:]) for row in rows],
        columns=[columns[0], "name", "segment", *columns[1:]],
    )
    out[_MONEY] = out[_MONEY].astype(float)
    out["accounts"] = out["accounts"].astype("int64")
    return out


#: The money columns of :func:`customer_profitability`, in its order.
_MONEY = ["payments", "costs", *COST_CATEGORIES, "profit"]


def _profits(f: Filters) -> sa.Select:
    """One row per account with a payment or an attributed cost in ``[start, end)``,
    within the filters: the columns of :func:`customer_profitability` (:func:`_ranking`
    with each account's name and segment), unordered."""
    ranking = _ranking(f).subquery("ranking")
    accounts = schema.accounts
    return sa.select(
        ranking.c.account_id, accounts.c.name, accounts.c.segment, *(ranking.c[c] for c in _MONEY)
    ).select_from(ranking.join(accounts, accounts.c.account_id == ranking.c.account_id))


#: The references that make every payment's and every attributed cost's account a row of
#: ``accounts`` when the database enforces them (``crm_data.dialects.enforced_references``).
ACCOUNT_REFERENCES = frozenset(
    {("payments", "account_id", "accounts", "account_id"), ("costs", "account_id", "accounts", "account_id")}
)


def _accounts_enforced(conn: sa.Connection) -> bool:
    """Whether the database enforces :data:`ACCOUNT_REFERENCES` (PostgreSQL with its
    foreign keys validated and their triggers enabled; never DuckDB or SQLite)."""
    return enforced_references(conn) >= ACCOUNT_REFERENCES


def _ranking(f: Filters, enforced: bool = False) -> sa.Select:
    """One row per account with a payment or an attributed cost in ``[start, end)``,
    within the filters: account_id and the money columns of :func:`customer_profitability`.

    The filters narrow the payments and costs summed per account before the join (neither
    table has an owner, product or pipeline column, so :func:`kpis.filters.scope` selects
    their rows through the account: the accounts ``scope(f, accounts)`` selects), so one
    owner sums that owner's payments rather than everyone's. The accounts joined to the
    sums are then within the filters already; the join repeats the conditions on the
    accounts' own columns (segments, owners...: they narrow the accounts scanned, one
    owner's 2 % of them) but not the product filter's semi-join on the subscriptions (a
    second read of them, for accounts the sums have already narrowed).

    ``enforced`` (:func:`_accounts_enforced`): every summed account is a row of
    ``accounts``, and the sums are within the filters already, so without conditions on
    the accounts' own columns (none, or only products) the ranking is the sums' FULL JOIN
    alone — the same rows without reading every account (at 1M accounts, the default
    range's 587,622 accounts: the statement's backend CPU 4.4–4.6 → 3.3–3.4 s). With
    such conditions the accounts still narrow the join (one owner: 1.5 vs 1.6–1.7 s)."""
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
    money = [
        payments_total.label("payments"),
        costs_total.label("costs"),
        *(sa.func.coalesce(spent.c[category], 0.0).label(category) for category in COST_CATEGORIES),
        profit,
    ]
    narrowing = scope(f.replace(products=()), accounts)
    if enforced and not narrowing:
        account_id = sa.func.coalesce(paid.c.account_id, spent.c.account_id, type_=accounts.c.account_id.type)
        return sa.select(account_id.label("account_id"), *money).select_from(
            paid.join(spent, spent.c.account_id == paid.c.account_id, full=True)
        )
    return (
        sa.select(accounts.c.account_id, *money)
        .select_from(
            accounts.outerjoin(paid, paid.c.account_id == accounts.c.account_id).outerjoin(
                spent, spent.c.account_id == accounts.c.account_id
            )
        )
        .where(
            sa.or_(paid.c.account_id.is_not(None), spent.c.account_id.is_not(None)),
            *narrowing,
        )
    )
