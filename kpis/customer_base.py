"""The customer base per period in one pass: active customers, churn, MRR retention and
retention cost share the same per-account activity at each period's start and end.

:func:`customer_base` computes it once, in one statement: the activity — per (period,
account) from one range join of the period grid with ``subscriptions``, or, with a product
or owner filter, from the subscriptions' spans between period boundaries
(:func:`kpis.activity.span_statement`) — and the retention costs per period. ``active_customers``, ``churn_rate``, ``revenue_retention`` and
``retention_cost`` are column selections of it, so they always agree, and a page that
shows several of them (the Overview) needs the database once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from kpis import rollups
from kpis.activity import (
    ACTIVITY_COUNTS,
    ACTIVITY_MEASURES,
    MRR_SPREAD,
    MRR_SUMS,
    fold_spans,
    grid_params,
    grid_statement,
    instant_params,
    span_statement,
)
from kpis.core import connection, period_end, period_found, period_starts, ratio_interval
from kpis.filters import (
    Filters,
    in_day_range,
    named_values,
    named_values_active,
    scope,
    shape,
    value_params,
)
from kpis.measures import is_retention_cost, retention_cost_sums

COUNTS = list(ACTIVITY_COUNTS)
MRR = list(MRR_SUMS)
SPREAD = list(MRR_SPREAD)  # for the MRR ratios' intervals (kpis.activity.MRR_SPREAD)
RATES = ["churn_rate", "revenue_churn_rate", "net_revenue_retention", "gross_revenue_retention"]
#: Delta-method 95 % intervals of the MRR ratios (see :func:`customer_base`).
INTERVALS = [
    "revenue_churn_ci_low",
    "revenue_churn_ci_high",
    "nrr_ci_low",
    "nrr_ci_high",
    "grr_ci_low",
    "grr_ci_high",
]
COLUMNS = [
    "period",
    *COUNTS,
    *MRR,
    *RATES,
    *INTERVALS,
    "retention_costs",
    "cost_per_retained_customer",
    *schema.COST_CATEGORIES,
]


#: Statement templates of :func:`_base_statement` by (dialect, freq, costs, number of
#: periods, ``kpis.filters.shape``): keyed by the statement's shape, not the filters' values
#: (which are named bind parameters), like SQLAlchemy's compiled cache — another owner,
#: product, region or date range of the same shape reuses the template and its compiled
#: SQL (building and hashing the statement cost more than running it on a small slice).
_TEMPLATES: dict[tuple[object, ...], sa.Select] = {}
_TEMPLATES_MAX = 512


def _base_statement(dialect: sa.Dialect, f: Filters, freq: str, costs: bool) -> sa.Select:
    """One statement: per period index ``i``, the activity counts and MRR sums, then (with
    ``costs``) the retention-cost sums — costs grouped by the period of incurred_on, matched
    to the grid by the same period expression of each period's start. A template whose
    values are named parameters: execute it with :func:`_base_params` of the same filters."""
    periods = period_starts(f.start, f.end, freq)
    key = (dialect, freq, costs, len(periods), shape(f))
    template = _TEMPLATES.get(key)
    if template is None:
        with named_values():
            template = _build_base_statement(dialect, f, freq, costs, periods)
        if len(_TEMPLATES) >= _TEMPLATES_MAX:
            _TEMPLATES.clear()
        _TEMPLATES[key] = template
    return template


def _base_params(f: Filters, freq: str, periods: list[pd.Timestamp]) -> dict[str, object]:
    """The parameter values of :func:`_base_statement`'s template for ``f``."""
    instants = _instants(freq, periods)
    days = {f"d{k}": t.date() for k, t in enumerate(instants)}
    if _by_spans(f):
        return {**value_params(f), **instant_params(instants), **days}
    return {**value_params(f), **grid_params(list(itertools.pairwise(instants))), **days}


def _by_spans(f: Filters) -> bool:
    """Whether :func:`_build_base_statement` sums the activity from the subscriptions'
    spans (:func:`kpis.activity.span_statement`) rather than per (period, account)
    (:func:`kpis.activity.grid_statement`): with a product filter, whose selection is a
    large share of the subscriptions (the busiest product: 40 % of the accounts, 1 s of
    CPU per call at 1M accounts by period and account, 0.5 s by spans), and with an owner
    list (chosen or the scope's). On PostgreSQL the grid's range join of an owner's
    accounts ran first over *every* subscription (one index range scan per period: 13 ×
    ≈ 87k rows at 100,000 accounts, 2.3M buffer hits), the owner's accounts joined after
    — the planner estimates the join of the periods with ``started_at <= e`` blind —:
    2.7 s wall, 0.9 s backend CPU; by spans each subscription of the owner's accounts is
    read once: 0.43 s, 0.13 s. On DuckDB both ≈ 0.17 s. The other filters (read from the
    roll-ups, or the cut month's remainder: one period) keep the grid. Same numbers."""
    return bool(f.products or f.owner_limits)


def _instants(freq: str, periods: list[pd.Timestamp]) -> list[pd.Timestamp]:
    """The periods' boundaries t_0 < ... < t_n: consecutive calendar periods, each ends
    where the next starts."""
    return [*periods, period_end(periods[-1], freq)]


def _build_base_statement(
    dialect: sa.Dialect, f: Filters, freq: str, costs: bool, periods: list[pd.Timestamp]
) -> sa.Select | sa.CompoundSelect:
    """The activity as :func:`kpis.activity.span_statement`'s or
    :func:`kpis.activity.grid_statement`'s rows (kind, a, b, 14 sums; :func:`_by_spans`);
    with ``costs``, plus one row per period index with retention costs (kind ``COSTS``, a
    = b = the index, the activity's columns NULL, then the cost sums)."""
    instants = _instants(freq, periods)
    activity = span_statement(f, instants) if _by_spans(f) else grid_statement(f, instants)
    if not costs:
        return activity
    spans = activity.subquery("spans")
    no_costs = [sa.cast(sa.null(), sa.Double()).label(c) for c in _COST_SUMS]
    no_activity = [sa.cast(sa.null(), sa.Double()).label(c) for c in _ACTIVITY]
    table = schema.costs
    days = (
        [sa.bindparam(f"d{k}", type_=sa.Date()) for k in range(len(instants))]
        if named_values_active()
        else [sa.literal(t.date(), sa.Date()) for t in instants]
    )
    # the index i of the period [t_i, t_(i+1)) holding incurred_on (-1 before t_0)
    index = sa.case(
        *(
            (table.c.incurred_on < day, sa.literal_column(str(k - 1), sa.Integer()))
            for k, day in enumerate(days)
        ),
        else_=sa.literal_column(str(len(periods)), sa.Integer()),
    )
    spent = (
        sa.select(
            sa.literal_column(str(COSTS), sa.Integer()).label("kind"),
            index.label("a"),
            index.label("b"),
            *no_activity,
            *retention_cost_sums(table),
        )
        .where(is_retention_cost(table), in_day_range(table.c.incurred_on, f), *scope(f, table))
        .group_by(index)
    )
    return sa.union_all(sa.select(spans, *no_costs), spent)


def _cost_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """Retention costs per period of incurred_on (the period as ``period_start`` gives it)."""
    costs = schema.costs
    period = period_start(dialect, costs.c.incurred_on, freq)
    return (
        sa.select(period.label("period"), *retention_cost_sums(costs))
        .where(is_retention_cost(costs), in_day_range(costs.c.incurred_on, f), *scope(f, costs))
        .group_by(period)
    )


def customer_base(
    conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month", costs: bool = True
) -> pd.DataFrame:
    """Customers, churn, MRR retention and retention cost per calendar period ``[s, e)``.

    Active at t = an account with a subscription (within the filters' segments, owners and
    products) with ``started_at ≤ t < ended_at`` (no ``ended_at`` = still running); an
    account's MRR at t = Σ MRR of those subscriptions (NULL counts as 0).

    * customers_at_start / customers_at_end = accounts active at s / at e; churned = active
      at s and not at e; new_customers = active at e and not at s; retained_customers =
      active at both; churn_rate = churned ÷ customers_at_start.
    * mrr_at_start = MRR at s of the accounts active at s; churned_mrr = MRR at s of those
      not active at e; expansion / contraction = per-account MRR increase / decrease from
      s to e of the retained; revenue_churn_rate = (churned_mrr + contraction) ÷
      mrr_at_start; net_revenue_retention = (mrr_at_start + expansion − contraction −
      churned_mrr) ÷ mrr_at_start; gross_revenue_retention = (mrr_at_start − contraction −
      churned_mrr) ÷ mrr_at_start.
    * retention_costs = Σ costs with purpose = retention by incurred_on in the period (and
      in [start, end)), split by category; cost_per_retained_customer = retention_costs ÷
      retained_customers. ``costs=False`` skips the cost query (cost columns absent).

    Intervals of the MRR ratios (money ratios, not proportions: delta method over the n =
    customers_at_start accounts active at s, :func:`kpis.core.ratio_interval`): per account
    x = MRR at s, y = MRR at e (0 when lost), g = min(x, y) (0 when lost), so NRR = Σy ÷ Σx
    and GRR = Σg ÷ Σx; Var(R) ≈ n ÷ (n − 1) · Σ(y_i − R·x_i)² ÷ (Σx)², computed from the
    sums Σx², Σy², Σxy (Σg², Σxg for GRR) the database adds up (the roll-ups hold them);
    nrr_ci_low / nrr_ci_high = NRR ∓ 1.959964·√Var, the low bound clipped at 0;
    grr_ci_low / grr_ci_high likewise, clipped to [0, 1]; revenue churn = 1 − GRR, so
    revenue_churn_ci_low / _high = 1 − grr_ci_high / 1 − grr_ci_low. NaN when mrr_at_start is
    0 or fewer than 2 accounts; a normal approximation, unreliable for few accounts: a rate
    with customers_at_start < 30 (churn, NRR, GRR, revenue churn) or a cost per retained
    customer with retained_customers < 30 is a low sample (``churn_rate``,
    ``revenue_retention`` and ``retention_cost`` carry the ``low_sample`` flag).

    Ratios are NaN when their denominator is 0. One row per period whose first day lies in
    ``[f.start, f.end)``, in order. Read from the roll-ups when they apply
    (``kpis.rollups``: same numbers). Columns: ``COLUMNS``. Inside :func:`sharing` /
    after :func:`start_sharing`, a call repeated with the same arguments returns a copy of
    the first one's frame.
    """
    shared = _SHARED.get()
    if shared is None:
        return _customer_base(conn, f, freq, costs)
    key = (_database_of(conn), f, freq, costs)
    if key not in shared:
        shared[key] = _customer_base(conn, f, freq, costs)
    return shared[key].copy()


#: Inside :func:`sharing` (one run of a dashboard page): frames of :func:`customer_base` by
#: (database, filters, freq, costs), so the KPIs built on it (``churn_rate``,
#: ``active_customers``, ``revenue_retention``, ``retention_cost``) read the database once
#: per selection, not once each.
_SHARED: ContextVar[dict[tuple, pd.DataFrame] | None] = ContextVar("kpis_shared_customer_base", default=None)


def start_sharing() -> None:
    """From now on in this context (a dashboard page's script run, which cannot wrap itself
    in a ``with``), :func:`customer_base` computes each (database, filters, freq, costs)
    once and hands out copies; a fresh memo each call, so a new run never sees the frames
    of an earlier one (an import in between is read)."""
    _SHARED.set({})


@contextmanager
def sharing() -> Iterator[None]:
    """:func:`start_sharing` for the block, then no sharing (the state before it)."""
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def sharing_active() -> bool:
    """True after :func:`start_sharing` or inside :func:`sharing` in this context."""
    return _SHARED.get() is not None


def _database_of(conn: sa.Connection | sa.Engine) -> sa.Engine:
    """The engine behind ``conn`` (the object, not its URL: two engines on one URL may
    see different schemas through their connect arguments)."""
    return conn.engine if isinstance(conn, sa.Connection) else conn


def _customer_base(conn: sa.Connection | sa.Engine, f: Filters, freq: str, costs: bool) -> pd.DataFrame:
    """:func:`customer_base` without sharing."""
    periods = period_starts(f.start, f.end, freq)
    wanted = COLUMNS if costs else [c for c in COLUMNS if c not in _COST_COLUMNS]
    if not periods:
        return pd.DataFrame(columns=wanted)
    sums = _COST_SUMS if costs else []
    with connection(conn) as c:
        found = _rolled_up(c, f, freq, periods, costs)
        if found is None:
            statement = _base_statement(c.dialect, f, freq, costs)
            found = _fold(c.execute(statement, _base_params(f, freq, periods)), len(periods), costs)
    zeros = (0,) * (len(_ACTIVITY) + len(sums))
    rows = [found.get(i, zeros) for i in range(len(periods))]
    data: dict[str, np.ndarray | pd.DatetimeIndex] = {"period": pd.to_datetime(periods)}
    for j, column in enumerate([*_ACTIVITY, *sums]):
        values = [0 if row[j] is None else row[j] for row in rows]
        data[column] = np.array(values, dtype="int64" if column in COUNTS else "float64")
    starts = data["customers_at_start"].astype(float)
    data["churn_rate"] = _ratio(data["churned"].astype(float), starts)
    m, x, k, ch = (data[c] for c in MRR)
    data["revenue_churn_rate"] = _ratio(ch + k, m)
    data["net_revenue_retention"] = _ratio(m + x - k - ch, m)
    data["gross_revenue_retention"] = _ratio(m - k - ch, m)
    xx, yy, xy, gg, xg = (data[c] for c in SPREAD)
    low, high = ratio_interval(m + x - k - ch, m, yy, xy, xx, starts)
    data["nrr_ci_low"], data["nrr_ci_high"] = np.maximum(low, 0.0), high
    low, high = ratio_interval(m - k - ch, m, gg, xg, xx, starts)
    data["grr_ci_low"], data["grr_ci_high"] = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
    data["revenue_churn_ci_low"] = 1.0 - data["grr_ci_high"]
    data["revenue_churn_ci_high"] = 1.0 - data["grr_ci_low"]
    if costs:
        data["cost_per_retained_customer"] = _ratio(
            data["retention_costs"], data["retained_customers"].astype(float)
        )
    return pd.DataFrame({column: data[column] for column in wanted})  # no reindexing copy


def _rolled_up(
    c: sa.Connection, f: Filters, freq: str, periods: list[pd.Timestamp], costs: bool
) -> dict[int, tuple] | None:
    """The base statement's rows (period index -> sums) read from the roll-ups, or None
    when they do not apply (``kpis.rollups.read``)."""
    activity = rollups.read(c, rollups.CUSTOMER_BASE, f, freq, periods)
    spent: dict[pd.Timestamp, tuple] | None = {}
    if costs and activity is not None:
        spent = rollups.read_with_remainder(
            c,
            rollups.RETENTION_COSTS,
            f,
            freq,
            periods,
            lambda part: period_found(c, _cost_statement(c.dialect, part, freq)),
        )
    if activity is None or spent is None:
        return None
    no_activity = (0,) * len(_ACTIVITY)
    no_costs = (0.0,) * len(_COST_SUMS) if costs else ()
    return {
        i: (activity.get(p, no_activity)) + (spent.get(p, no_costs) if costs else ())
        for i, p in enumerate(periods)
    }


def _fold(rows: Iterable[Sequence[object]], periods: int, costs: bool) -> dict[int, tuple]:
    """:func:`_base_statement`'s rows as period index -> (activity sums, then cost sums):
    the activity folded by :func:`kpis.activity.fold_spans`, the costs of periods outside
    the grid (index -1 or ``periods``: before its first or after its last) dropped."""
    spans, spent = [], {}
    for row in rows:
        if row[0] == COSTS:
            spent[int(row[1])] = tuple(row[3 + len(_ACTIVITY) :])  # type: ignore[call-overload]
        else:
            spans.append(row[: 3 + len(_ACTIVITY)])
    no_costs = (0.0,) * len(_COST_SUMS) if costs else ()
    return {
        i: (*sums, *(spent.get(i, no_costs) if costs else ()))
        for i, sums in enumerate(fold_spans(spans, periods))
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator ÷ denominator, NaN where the denominator is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator != 0, numerator / denominator, np.nan)


_ACTIVITY = list(ACTIVITY_MEASURES)
#: The kind of :func:`_base_statement`'s cost rows (after kpis.activity's span kinds).
COSTS = 3
_COST_SUMS = ["retention_costs", *schema.COST_CATEGORIES]
_COST_COLUMNS = {"cost_per_retained_customer", *_COST_SUMS}
