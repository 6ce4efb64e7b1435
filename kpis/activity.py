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
import itertools
from collections.abc import Iterable, Sequence

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


# ---------------------------------------------------------------- spans: the customer base's direct path
#
# Consecutive periods share their boundaries: period i is [t_i, t_(i+1)) of the instants
# t_0 < t_1 < ... < t_n. A subscription is active at t_k exactly for k in [ka, kb), where
# ka = #{k: t_k < started_at} and kb = #{k: t_k < ended_at} (n + 1 when still running),
# so an account's state — how many of its subscriptions are active and their MRR — changes
# only at its subscriptions' ka and kb. :func:`span_statement` sums the per-period
# measures of :func:`_activity_statement` from those changes instead of from one row per
# (period, account): an account with one subscription in the filters (most) is a span
# [ka, kb) with one MRR, summed per (ka, kb) pair; an account with several is one row per
# instant where its state changes. Same numbers, without grouping every account of every
# period.

#: Row kinds of :func:`span_statement`.
CHANGE, STEADY, SINGLE = 0, 1, 2


def instant_params(instants: Sequence[object], name: str = "t") -> dict[str, dt.datetime]:
    """The values of the named instants of a :func:`span_statement` template (``t0`` ... ``tn``)."""
    return {f"{name}{k}": _as_datetime(t) for k, t in enumerate(instants)}


def _instants(instants: Sequence[object], name: str = "t") -> list[ColumnElement]:
    """The instants as SQL: named parameters without values inside
    :func:`kpis.filters.named_values`, else bound values."""
    if named_values_active():
        return [sa.bindparam(f"{name}{k}", type_=sa.DateTime()) for k in range(len(instants))]
    return [sa.literal(_as_datetime(t), sa.DateTime()) for t in instants]


def _index_before(column: ColumnElement, instants: list[ColumnElement]) -> ColumnElement[int]:
    """#{k: t_k < column} for increasing instants t_0 < ... < t_n (n + 1 when column is
    after all of them): the first k with column <= t_k."""
    whens = [(column <= t, sa.literal_column(str(k), sa.Integer())) for k, t in enumerate(instants)]
    return sa.case(*whens, else_=sa.literal_column(str(len(instants)), sa.Integer()))


def span_statement(f: Filters, instants: Sequence[object]) -> sa.CompoundSelect:
    """Rows ``(kind, a, b, <_activity_statement's 14 sums>)`` that add up, per period ``i``
    of the consecutive periods ``[t_i, t_(i+1))`` (``instants`` = t_0 ... t_n), to the
    activity of :func:`_activity_statement` for the filters' subscriptions (see
    :func:`fold_spans`):

    * ``SINGLE`` (a = ka, b = kb): accounts with one subscription active at some t_k — the
      count and the sums of m and m² of their MRR m (in the count, MRR and squares columns);
    * ``CHANGE`` (a = period k − 1): accounts with several, at an instant t_k (k ≥ 1) where
      their state changes, the period's sums from the state at t_(k−1) to the one at t_k;
    * ``STEADY`` (periods a..b): accounts with several, active and unchanged from t_a to
      t_(b+1) — per period the count and the sums of M and M² of their MRR M."""
    sub = schema.subscriptions
    t = _instants(instants)
    n = len(t) - 1
    after = sa.literal_column(str(n + 1), sa.Integer())
    ka = _index_before(sub.c.started_at, t)
    kb = sa.case((sub.c.ended_at.is_(None), after), else_=_index_before(sub.c.ended_at, t))
    candidates = (
        sa.select(
            sub.c.account_id,
            sa.func.coalesce(sub.c.mrr, ZERO).label("mrr"),
            ka.label("ka"),
            kb.label("kb"),
        )
        .where(
            sub.c.started_at <= t[-1],
            sa.func.coalesce(sub.c.ended_at, sa.literal(FOREVER, sa.DateTime())) > t[0],
            *scope(f, sub),
        )
        .subquery("candidates")
    )
    # active at some instant; read twice (DuckDB computes it once: a window count here
    # was planned as a second scan of subscriptions joined to the first)
    relevant = sa.select(candidates).where(candidates.c.ka < candidates.c.kb).cte("relevant")
    per_account = (
        sa.select(relevant.c.account_id, sa.func.count().label("spans"))
        .group_by(relevant.c.account_id)
        .subquery("per_account")
    )
    spans = (
        sa.select(relevant, per_account.c.spans)
        .select_from(relevant.join(per_account, per_account.c.account_id == relevant.c.account_id))
        .cte("spans")
    )
    several = sa.select(spans).where(spans.c.spans > ONE).cte("several")
    points = sa.union(
        sa.select(several.c.account_id, several.c.ka.label("k")),
        sa.select(several.c.account_id, several.c.kb).where(several.c.kb <= sa.literal_column(str(n))),
    ).subquery("points")
    active = several.alias("active")
    state = (
        sa.select(
            points.c.account_id,
            points.c.k,
            sa.func.count(active.c.account_id).label("c"),
            sa.func.coalesce(sa.func.sum(active.c.mrr), ZERO).label("m"),
        )
        .select_from(
            points.outerjoin(
                active,
                sa.and_(
                    active.c.account_id == points.c.account_id,
                    active.c.ka <= points.c.k,
                    active.c.kb > points.c.k,
                ),
            )
        )
        .group_by(points.c.account_id, points.c.k)
        .subquery("state")
    )
    order = {"partition_by": state.c.account_id, "order_by": state.c.k}
    changes = sa.select(
        state.c.k,
        state.c.c,
        state.c.m,
        sa.func.coalesce(sa.func.lag(state.c.c).over(**order), NONE).label("pc"),
        sa.func.coalesce(sa.func.lag(state.c.m).over(**order), ZERO).label("pm"),
        sa.func.coalesce(sa.func.lead(state.c.k).over(**order), after).label("nk"),
    ).cte("changes")
    # the change at t_k, in period k - 1: x = MRR at its start, y = at its end (as in
    # _activity_statement: 0 when inactive), g = min(x, y)
    at_s, at_e = changes.c.pc > NONE, changes.c.c > NONE
    lost, kept = sa.and_(at_s, sa.not_(at_e)), sa.and_(at_s, at_e)
    x, y = changes.c.pm, changes.c.m
    change = y - x
    g = sa.case((change < ZERO, y), else_=x)
    change_rows = (
        sa.select(
            sa.literal_column(str(CHANGE), sa.Integer()).label("kind"),
            (changes.c.k - ONE).label("a"),
            (changes.c.k - ONE).label("b"),
            sa.func.sum(_flag(at_s)).label("customers_at_start"),
            sa.func.sum(_flag(sa.and_(sa.not_(at_s), at_e))).label("new_customers"),
            sa.func.sum(_flag(lost)).label("churned"),
            sa.func.sum(_flag(at_e)).label("customers_at_end"),
            sa.func.sum(_flag(kept)).label("retained_customers"),
            sa.func.sum(sa.case((at_s, x), else_=ZERO)).label("mrr_at_start"),
            sa.func.sum(sa.case((sa.and_(kept, change > ZERO), change), else_=ZERO)).label("expansion"),
            sa.func.sum(sa.case((sa.and_(kept, change < ZERO), -change), else_=ZERO)).label("contraction"),
            sa.func.sum(sa.case((lost, x), else_=ZERO)).label("churned_mrr"),
            sa.func.sum(sa.case((at_s, x * x), else_=ZERO)).label("mrr_at_start_squares"),
            sa.func.sum(sa.case((kept, y * y), else_=ZERO)).label("net_mrr_squares"),
            sa.func.sum(sa.case((kept, x * y), else_=ZERO)).label("net_mrr_products"),
            sa.func.sum(sa.case((kept, g * g), else_=ZERO)).label("gross_mrr_squares"),
            sa.func.sum(sa.case((kept, x * g), else_=ZERO)).label("gross_mrr_products"),
        )
        .where(changes.c.k >= ONE)
        .group_by(changes.c.k)
    )

    def per_state(kind: int, a: ColumnElement, b: ColumnElement, m: ColumnElement) -> list:
        count = sa.func.count()
        total, squares = sa.func.sum(m), sa.func.sum(m * m)
        return [
            sa.literal_column(str(kind), sa.Integer()).label("kind"),
            a.label("a"),
            b.label("b"),
            count,
            sa.literal_column("0", sa.BigInteger()),
            sa.literal_column("0", sa.BigInteger()),
            count,
            count,
            total,
            ZERO,
            ZERO,
            ZERO,
            squares,
            squares,
            squares,
            squares,
            squares,
        ]

    # unchanged and active from t_k to t_(nk - 1): periods k .. nk - 2
    steady_rows = (
        sa.select(*per_state(STEADY, changes.c.k, changes.c.nk - sa.literal_column("2"), changes.c.m))
        .where(changes.c.c > NONE, changes.c.nk - changes.c.k >= sa.literal_column("2"))
        .group_by(changes.c.k, changes.c.nk)
    )
    single_rows = (
        sa.select(*per_state(SINGLE, spans.c.ka, spans.c.kb, spans.c.mrr))
        .where(spans.c.spans == ONE)
        .group_by(spans.c.ka, spans.c.kb)
    )
    return sa.union_all(change_rows, steady_rows, single_rows)


def grid_statement(f: Filters, instants: Sequence[object]) -> sa.Select:
    """:func:`_activity_statement` for the consecutive periods ``[t_i, t_(i+1))`` as
    :func:`span_statement`'s ``CHANGE`` rows (kind, a = b = i, the 14 sums): one row per
    period with an active account (inside ``named_values``, the grid's named parameters
    come from :func:`grid_params` of the periods' bounds)."""
    grid = period_grid(list(itertools.pairwise(instants)))
    activity = _activity_statement(f, grid).subquery("activity")
    return sa.select(
        sa.literal_column(str(CHANGE), sa.Integer()).label("kind"),
        activity.c.i.label("a"),
        activity.c.i.label("b"),
        *(activity.c[name] for name in ACTIVITY_MEASURES),
    )


#: The measures of :func:`_activity_statement`, in its order — declared here once for the
#: customer base (``kpis.customer_base``) and its roll-up (``kpis.measures.CUSTOMER_BASE``):
#: counts of accounts, the MRR sums, then the per-account sums of squares and products of
#: the accounts active at s for the MRR ratios' intervals (x = MRR at s, y = MRR at e,
#: g = min(x, y) of the retained, 0 if lost).
ACTIVITY_COUNTS = ("customers_at_start", "new_customers", "churned", "customers_at_end", "retained_customers")
MRR_SUMS = ("mrr_at_start", "expansion", "contraction", "churned_mrr")
MRR_SPREAD = (
    "mrr_at_start_squares",
    "net_mrr_squares",
    "net_mrr_products",
    "gross_mrr_squares",
    "gross_mrr_products",
)
ACTIVITY_MEASURES = ACTIVITY_COUNTS + MRR_SUMS + MRR_SPREAD
_COUNTS = len(ACTIVITY_COUNTS)  # the counts come first


def fold_spans(rows: Iterable[Sequence[object]], periods: int) -> list[list[float | int]]:
    """Per period 0 .. periods − 1, the 14 measures of :func:`_activity_statement` from the
    rows of :func:`span_statement` (kind, a, b, 14 values)::

        CHANGE (a = i):        the row's values, to period i;
        STEADY (a..b):         count c, Σ M, Σ M² to each period i in a..b as
                               customers at start, at end and retained = c; MRR at start =
                               Σ M; the five squares and products = Σ M²;
        SINGLE (ka, kb):       count c, Σ m, Σ m²: the steady values to each period in
                               ka..kb − 2; in period ka − 1 (ka ≥ 1) c new customers and c
                               at its end; in period kb − 1 (kb ≤ periods) c at its start,
                               c churned, MRR at start and churned MRR Σ m, squares at
                               start Σ m².

    Counts are ints, sums floats (0 where nothing adds)."""
    out: list[list[float | int]] = [[0] * _COUNTS + [0.0] * (len(ACTIVITY_MEASURES) - _COUNTS)]
    out = [list(out[0]) for _ in range(periods)]

    def add(i: int, values: Sequence[object]) -> None:
        row = out[i]
        for j, value in enumerate(values):
            if value is not None:
                row[j] += int(value) if j < _COUNTS else float(value)  # type: ignore[arg-type]

    for kind, a, b, *values in rows:
        a, b = int(a), int(b)  # type: ignore[arg-type]
        if kind == CHANGE:
            add(a, values)
            continue
        c, total, squares = values[0], values[5], values[9]
        steady = (c, 0, 0, c, c, total, 0.0, 0.0, 0.0, squares, squares, squares, squares, squares)
        last = b if kind == STEADY else b - 2
        for i in range(a, last + 1):
            add(i, steady)
        if kind == SINGLE:
            if 1 <= a <= periods:
                add(a - 1, (0, c, 0, c, 0))
            if 1 <= b <= periods:
                add(b - 1, (c, 0, c, 0, 0, total, 0.0, 0.0, total, squares))
    return out
