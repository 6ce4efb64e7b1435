"""Subscription activity at period boundaries — the customer base's additive measures,
shared by the KPI functions (:mod:`kpis.customer_base`, :mod:`kpis.revenue`) and the
customer-base roll-up (:mod:`kpis.measures`, :mod:`kpis.rollups`), which import it; it
imports no KPI module.

Active at t = an account with a subscription with ``started_at ≤ t < ended_at`` (no
``ended_at`` = still running); an account's MRR at t = Σ MRR of those subscriptions (NULL
counts as 0). Per period ``[s, e)`` of a grid, :func:`_per_account_period` gives each
account's activity and MRR at s and at e, :func:`_activity_statement` sums them per period
(and per account dimension group for the roll-up).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from kpis.filters import Filters, named_values_active, scope

#: Stands in for a missing ``ended_at`` (still running) in range-join conditions.
FOREVER = dt.datetime(9999, 12, 31)


def _as_datetime(value: pd.Timestamp | dt.datetime | dt.date) -> dt.datetime:
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, dt.datetime):
        return value
    return dt.datetime.combine(value, dt.time())


def period_grid(
    bounds: Sequence[tuple[object, object]], name: str = "grid", keys: Sequence[int] | None = None
) -> sa.CTE:
    """A CTE ``name(i, s, e)``: one row per ``(start, end)`` instant pair, sent as bound
    parameters (``i`` = position in ``bounds``, or ``keys[position]`` when given).

    Inside :func:`kpis.filters.named_values` (a statement template) ``i`` is the position
    written into the SQL and ``s`` / ``e`` are the named parameters ``<name>_s<i>`` /
    ``<name>_e<i>`` without values (:func:`grid_params` gives them)."""
    labels = list(keys) if keys is not None else list(range(len(bounds)))
    if named_values_active():
        if keys is not None:
            raise ValueError("a named period grid has no keys")
        selects = [
            sa.select(
                sa.literal_column(str(i), sa.Integer()).label("i"),
                sa.bindparam(f"{name}_s{i}", type_=sa.DateTime()).label("s"),
                sa.bindparam(f"{name}_e{i}", type_=sa.DateTime()).label("e"),
            )
            for i in range(len(bounds))
        ]
    else:
        selects = [
            sa.select(
                sa.literal(labels[i], sa.Integer()).label("i"),
                sa.literal(_as_datetime(s), sa.DateTime()).label("s"),
                sa.literal(_as_datetime(e), sa.DateTime()).label("e"),
            )
            for i, (s, e) in enumerate(bounds)
        ]
    if not selects:
        raise ValueError("period_grid needs at least one period")
    statement = selects[0] if len(selects) == 1 else sa.union_all(*selects)
    return statement.cte(name)


def grid_params(bounds: Sequence[tuple[object, object]], name: str = "grid") -> dict[str, dt.datetime]:
    """The values of a named :func:`period_grid` (built inside ``named_values``)."""
    params: dict[str, dt.datetime] = {}
    for i, (s, e) in enumerate(bounds):
        params[f"{name}_s{i}"] = _as_datetime(s)
        params[f"{name}_e{i}"] = _as_datetime(e)
    return params


def active_at(
    started_at: ColumnElement, ended_at: ColumnElement, instant: ColumnElement
) -> ColumnElement[bool]:
    """DESIGN.md's rule: a subscription is active at ``instant`` when
    ``started_at <= instant < ended_at`` (no ``ended_at`` = still running)."""
    return sa.and_(started_at <= instant, sa.or_(ended_at.is_(None), ended_at > instant))


#: Constants written into the SQL of the per-account activity (not bound parameters).
_ZERO = sa.literal_column("0.0", sa.Double())


def _const_flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.case(
        (condition, sa.literal_column("1", sa.Integer())), else_=sa.literal_column("0", sa.Integer())
    )


def _per_account_period(f: Filters, grid: sa.CTE) -> sa.CTE:
    """Per (period i, account): active at s / at e, MRR of subscriptions active at s / at e.

    Only subscriptions in the filters' scope and overlapping ``[s, e]`` are joined."""
    sub = schema.subscriptions
    at_s = active_at(sub.c.started_at, sub.c.ended_at, grid.c.s)
    at_e = active_at(sub.c.started_at, sub.c.ended_at, grid.c.e)
    mrr = sa.func.coalesce(sub.c.mrr, _ZERO)
    return (
        sa.select(
            grid.c.i,
            sub.c.account_id,
            sa.func.max(_const_flag(at_s)).label("act_s"),
            sa.func.max(_const_flag(at_e)).label("act_e"),
            sa.func.sum(sa.case((at_s, mrr), else_=_ZERO)).label("mrr_s"),
            sa.func.sum(sa.case((at_e, mrr), else_=_ZERO)).label("mrr_e"),
        )
        .select_from(
            grid.join(
                sub,
                # ended_at NULL = running: as a plain range condition (coalesce to a far
                # future) the databases can use a range join here.
                sa.and_(
                    sub.c.started_at <= grid.c.e,
                    sa.func.coalesce(sub.c.ended_at, sa.literal(FOREVER, sa.DateTime())) > grid.c.s,
                ),
            )
        )
        .where(*scope(f, sub))
        .group_by(grid.c.i, sub.c.account_id)
        .cte("per_account")
    )


#: Constants written into the SQL (not bound): fewer parameters to build and bind per
#: statement, and plain constants for the planner. Never user values.
ONE = sa.literal_column("1", sa.Integer())
NONE = sa.literal_column("0", sa.Integer())
ZERO = sa.literal_column("0.0", sa.Double())


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, ONE), else_=NONE)


def _activity_statement(f: Filters, grid: sa.CTE, by: tuple[str, ...] = ()) -> sa.Select:
    """Per period ``grid.i`` (and, with ``by``, per value of those ``accounts`` columns —
    the roll-up's grouping): the activity counts and MRR sums of :func:`customer_base`."""
    per = _per_account_period(f, grid)
    at_s, at_e = per.c.act_s == ONE, per.c.act_e == ONE
    lost, kept = sa.and_(at_s, per.c.act_e == NONE), sa.and_(at_s, at_e)
    change = per.c.mrr_e - per.c.mrr_s
    # per account active at s: x = MRR at s; y = MRR at e (0 when lost); g = min(x, y) (0 when lost)
    x, y = per.c.mrr_s, per.c.mrr_e
    g = sa.case((change < ZERO, y), else_=x)
    accounts = schema.accounts
    groups = [per.c.i, *(accounts.c[column] for column in by)]
    statement = sa.select(
        *groups,
        sa.func.sum(per.c.act_s).label("customers_at_start"),
        sa.func.sum(_flag(sa.and_(per.c.act_s == NONE, at_e))).label("new_customers"),
        sa.func.sum(_flag(lost)).label("churned"),
        sa.func.sum(per.c.act_e).label("customers_at_end"),
        sa.func.sum(_flag(kept)).label("retained_customers"),
        sa.func.sum(sa.case((at_s, per.c.mrr_s), else_=ZERO)).label("mrr_at_start"),
        sa.func.sum(sa.case((sa.and_(kept, change > ZERO), change), else_=ZERO)).label("expansion"),
        sa.func.sum(sa.case((sa.and_(kept, change < ZERO), -change), else_=ZERO)).label("contraction"),
        sa.func.sum(sa.case((lost, per.c.mrr_s), else_=ZERO)).label("churned_mrr"),
        sa.func.sum(sa.case((at_s, x * x), else_=ZERO)).label("mrr_at_start_squares"),
        sa.func.sum(sa.case((kept, y * y), else_=ZERO)).label("net_mrr_squares"),
        sa.func.sum(sa.case((kept, x * y), else_=ZERO)).label("net_mrr_products"),
        sa.func.sum(sa.case((kept, g * g), else_=ZERO)).label("gross_mrr_squares"),
        sa.func.sum(sa.case((kept, x * g), else_=ZERO)).label("gross_mrr_products"),
    )
    if by:
        statement = statement.select_from(per.outerjoin(accounts, accounts.c.account_id == per.c.account_id))
    return statement.group_by(*groups)
