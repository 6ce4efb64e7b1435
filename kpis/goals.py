"""Progress on goals: actual against target, pace within a running period, status, and
quota attainment per owner. Plain Python; ``today`` is a parameter everywhere.

Goals themselves (KPI, period, target, slice) are stored by ``crm_data.goals``. The actual
value of a goal is the KPI's own function (``kpis.registry``; won amount: :func:`won_amount`)
over the goal's period and slice, cut at ``today`` (exclusive: the data runs up to the day
before, like ``kpis.core.as_of``). One caveat, from the KPIs themselves: the customer-base
KPIs (active and new customers, churn rate, net revenue retention, revenue churn) compare
the customers at a period's start with those at its *end* instant even when the range is cut
short (``kpis.customer_base``), so in a running period a subscription already recorded as
ending later in that period counts as churned now.

**Pace and status** (:func:`evaluate`), for a goal of period ``[s, e)`` as of ``today``:

* elapsed share = (min(today, e) − s) ÷ (e − s) in days, 0 before the period starts;
* expected by now = target × elapsed share for an *additive* KPI (revenue, won amount,
  new customers: they add up over the period's days), the target itself for any other
  KPI (rates, scores, counts at an instant and durations are judged on their value so far);
* meets(x, t) = x ≥ t when higher is better, x ≤ t when lower is better;
* status:

  - ``not started``: today ≤ s;
  - ``no data``: the KPI has no value for the period so far (no closed deals for a win
    rate, no customers at the start for a churn rate …);
  - the period has ended (today ≥ e): ``achieved`` when meets(actual, target), else
    ``missed``;
  - running: ``achieved`` when an additive, higher-is-better KPI already meets the whole
    target; else ``on track`` when meets(actual, expected by now), else ``at risk``.

* progress (for a bar) = actual ÷ target when higher is better, target ÷ actual when lower
  is better (1 = on target), limited to 0..1; NaN without an actual.

**Quota attainment** (:func:`quota_attainment`): quotas are goals of won amount per owner
per quarter (a slice of exactly one owner); attainment = won amount ÷ quota, won amount =
Σ amount of the owner's won deals (``deals.owner_id``) with closed_at in the quarter up to
today; the owner's name comes from the CRM ``users`` table.

**Visibility**: a person whose scope is limited sees only goals whose slice lies inside
that scope (each limited dimension set to a value the scope allows); a company-wide goal's
actual is not theirs to compare.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from crm_data.goals import DIMENSIONS, GOAL_KPIS, Goal
from kpis.core import connection, period_rows, period_starts
from kpis.filters import EVERYTHING, LIST_FIELDS, Filters, Scope, in_range, scope

Bind = sa.Connection | sa.Engine

NOT_STARTED, NO_DATA, ACHIEVED, MISSED, ON_TRACK, AT_RISK = (
    "not started",
    "no data",
    "achieved",
    "missed",
    "on track",
    "at risk",
)
STATUSES: tuple[str, ...] = (ACHIEVED, ON_TRACK, AT_RISK, MISSED, NO_DATA, NOT_STARTED)


# ---------------------------------------------------------------- won amount


@functools.lru_cache(maxsize=128)
def _won_statement(dialect: sa.Dialect, f: Filters, freq: str, by_owner: bool) -> sa.Select:
    deals = schema.deals
    period = period_start(dialect, deals.c.closed_at, freq)
    keys = [period.label("period")] + ([deals.c.owner_id] if by_owner else [])
    return (
        sa.select(
            *keys,
            sa.func.count().label("won_deals"),
            sa.func.sum(sa.func.coalesce(deals.c.amount, 0.0)).label("won_amount"),
        )
        .where(deals.c.status == "won", in_range(deals.c.closed_at, f), *scope(f, deals))
        .group_by(*keys)
    )


def won_amount(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Won amount per period of ``closed_at``.

    Formula: won_amount = Σ amount of deals with status won by closed_at in the period (a
    missing amount counts 0); won_deals = their number. Columns: period, won_deals, won_amount.
    """
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=["period", "won_deals", "won_amount"])
    with connection(conn) as c:
        statement = _won_statement(c.dialect, f, freq, False)
        return period_rows(c, statement, periods, counts=("won_deals",), sums=("won_amount",))


def won_amount_by_owner(conn: Bind, f: Filters) -> pd.DataFrame:
    """Won amount per deal owner over ``[start, end)``: the same formula as
    :func:`won_amount`, grouped by ``deals.owner_id``. Columns: owner_id, owner (the CRM
    user's name, the id when unknown), won_deals, won_amount."""
    deals, users = schema.deals, schema.users
    statement = (
        sa.select(
            deals.c.owner_id,
            sa.func.max(users.c.name).label("owner"),
            sa.func.count().label("won_deals"),
            sa.func.sum(sa.func.coalesce(deals.c.amount, 0.0)).label("won_amount"),
        )
        .select_from(deals.outerjoin(users, users.c.user_id == deals.c.owner_id))
        .where(deals.c.status == "won", in_range(deals.c.closed_at, f), *scope(f, deals))
        .group_by(deals.c.owner_id)
    )
    with connection(conn) as c:
        rows = c.execute(statement).all()
    out = pd.DataFrame(rows, columns=["owner_id", "owner", "won_deals", "won_amount"])
    out["owner"] = [name or uid for uid, name in zip(out["owner_id"], out["owner"], strict=True)]
    return out.astype({"won_deals": "int64", "won_amount": "float64"})


def owner_names(conn: Bind) -> dict[str, str]:
    """CRM user id -> name (the owners goals and quotas may name)."""
    with connection(conn) as c:
        rows = c.execute(sa.select(schema.users.c.user_id, schema.users.c.name)).all()
    return {str(uid): str(name or uid) for uid, name in rows}


# ---------------------------------------------------------------- actual values


def _source(key: str) -> tuple[Callable[..., pd.DataFrame], str]:
    """The KPI function and column that give goal KPI ``key``'s value."""
    if key == "ces":  # one value per period: all touchpoints together
        from kpis.feedback import ces

        return functools.partial(ces, by_touchpoint=False), "ces_mean"
    if key == "won_amount":
        return won_amount, "won_amount"
    if key == "new_customers":
        from kpis.revenue import active_customers

        return active_customers, "new_customers"
    from kpis import registry

    entry = registry.get(key)
    return entry.function, entry.value_column


def kpi_value(conn: Bind, f: Filters, kpi: str, freq: str) -> float:
    """Goal KPI ``kpi`` over ``[f.start, f.end)`` as one ``freq`` period starting at
    ``f.start`` (``f.end`` may cut it short): the KPI function's value for that period, NaN
    when it has none."""
    function, column = _source(kpi)
    frame = function(conn, f, freq=freq)
    if frame is None or frame.empty or column not in frame:
        return math.nan
    rows = frame[pd.to_datetime(frame["period"]) == pd.Timestamp(f.start)]
    if rows.empty:
        return math.nan
    value = rows[column].iloc[0]
    return float(value) if pd.notna(value) else math.nan


def goal_filters(goal: Goal, today: dt.date, scope_: Scope = EVERYTHING) -> Filters | None:
    """The filters of ``goal``'s period and slice up to ``today`` (exclusive) within
    ``scope_``; None when the period has not started."""
    end = min(goal.period_end, today)
    if end <= goal.period_start:
        return None
    values = {DIMENSIONS[name]: (value,) for name, value in goal.slice.items()}
    return Filters(start=goal.period_start, end=end, **values).within(scope_)


def visible(goal: Goal, scope_: Scope) -> bool:
    """True when ``goal``'s slice lies inside ``scope_`` (module docstring)."""
    for field_name, allowed in scope_.limits().items():
        dimension = next((d for d, f in DIMENSIONS.items() if f == field_name), None)
        value = getattr(goal, dimension) if dimension else ""
        if not value or value not in allowed:
            return False
    return True


def applies_to(goal: Goal, filters: Filters) -> bool:
    """True when ``goal`` is the goal of exactly this selection: in each dimension the values
    the numbers are for — the chosen ones, else the scope's limit (a viewer limited to EMEA
    who chose no region looks at EMEA) — are the goal's one value or, for a dimension the
    goal does not limit, none at all; no other list is set (company size, channel, product,
    pipeline …); and the goal is inside the filters' scope."""
    for field_name in (*LIST_FIELDS, "pipelines"):
        dimension = next((d for d, f in DIMENSIONS.items() if f == field_name), None)
        wanted = (getattr(goal, dimension),) if dimension and getattr(goal, dimension) else ()
        if _effective(filters, field_name) != wanted:
            return False
    return visible(goal, filters.scope)


def _effective(filters: Filters, field_name: str) -> tuple[str, ...]:
    """The values of dimension ``field_name`` the filters' numbers are for (() = all)."""
    chosen = tuple(getattr(filters, field_name))
    if chosen:
        return chosen
    limit = filters.scope.limits().get(field_name)
    return tuple(limit) if limit is not None else ()


# ---------------------------------------------------------------- pace and status


def elapsed_share(goal: Goal, today: dt.date) -> float:
    """The share of ``goal``'s period before ``today``: 0 before it starts, 1 once it ended."""
    total = (goal.period_end - goal.period_start).days
    done = (min(max(today, goal.period_start), goal.period_end) - goal.period_start).days
    return done / total


@dataclass(frozen=True)
class Progress:
    """A goal judged as of a day (module docstring for the rule)."""

    goal: Goal
    actual: float
    share: float
    expected: float
    status: str
    progress: float

    @property
    def running(self) -> bool:
        return 0.0 < self.share < 1.0


def _meets(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def evaluate(goal: Goal, actual: float, today: dt.date) -> Progress:
    """``goal`` judged with its ``actual`` value so far, as of ``today`` (the rule in the
    module docstring)."""
    info = GOAL_KPIS[goal.kpi]
    share = elapsed_share(goal, today)
    expected = goal.target * share if info.additive else goal.target
    higher = info.higher_is_better
    missing = actual is None or (isinstance(actual, float) and math.isnan(actual))
    actual = math.nan if missing else float(actual)
    if share <= 0.0:
        status = NOT_STARTED
    elif missing:
        status = NO_DATA
    elif share >= 1.0:
        status = ACHIEVED if _meets(actual, goal.target, higher) else MISSED
    elif info.additive and higher and actual >= goal.target:
        status = ACHIEVED
    else:
        status = ON_TRACK if _meets(actual, expected, higher) else AT_RISK
    return Progress(goal, actual, share, expected, status, _progress(actual, goal.target, higher))


def _progress(actual: float, target: float, higher: bool) -> float:
    if math.isnan(actual):
        return math.nan
    if higher:
        ratio = actual / target if target else (1.0 if actual >= 0 else 0.0)
    else:
        ratio = target / actual if actual else 1.0
    return min(max(ratio, 0.0), 1.0)


def progress(conn: Bind, goals: Iterable[Goal], today: dt.date, scope_: Scope = EVERYTHING) -> pd.DataFrame:
    """Every visible goal judged as of ``today``. Columns: goal_id, kpi, title, unit,
    period_kind, period, period_start, slice (text), actual, target, expected, share,
    progress, status."""
    rows = []
    for goal in goals:
        if not visible(goal, scope_):
            continue
        f = goal_filters(goal, today, scope_)
        actual = math.nan if f is None else kpi_value(conn, f, goal.kpi, goal.period_kind)
        rows.append(progress_row(evaluate(goal, actual, today)))
    return pd.DataFrame(rows, columns=PROGRESS_COLUMNS)


PROGRESS_COLUMNS = [
    "goal_id",
    "kpi",
    "title",
    "unit",
    "period_kind",
    "period",
    "period_start",
    "slice",
    "actual",
    "target",
    "expected",
    "share",
    "progress",
    "status",
]


def slice_text(goal: Goal, names: dict[str, str] | None = None) -> str:
    """``segment SMB · owner Alice`` or ``all accounts`` (``names``: owner id -> name)."""
    names = names or {}
    parts = [f"{d} {names.get(v, v) if d == 'owner' else v}" for d, v in goal.slice.items()]
    return " · ".join(parts) or "all accounts"


def progress_row(p: Progress, names: dict[str, str] | None = None) -> dict[str, object]:
    """One row of :func:`progress`."""
    g = p.goal
    info = GOAL_KPIS[g.kpi]
    return {
        "goal_id": g.goal_id,
        "kpi": g.kpi,
        "title": info.title,
        "unit": info.unit,
        "period_kind": g.period_kind,
        "period": g.period,
        "period_start": g.period_start,
        "slice": slice_text(g, names),
        "actual": p.actual,
        "target": g.target,
        "expected": p.expected,
        "share": p.share,
        "progress": p.progress,
        "status": p.status,
    }


# ---------------------------------------------------------------- quotas


def is_quota(goal: Goal) -> bool:
    """A quota: won amount of exactly one owner in a quarter."""
    return goal.kpi == "won_amount" and goal.period_kind == "quarter" and list(goal.slice) == ["owner"]


def quota_attainment(
    conn: Bind, goals: Iterable[Goal], quarter: dt.date, today: dt.date, scope_: Scope = EVERYTHING
) -> pd.DataFrame:
    """Quota attainment per owner for the quarter starting ``quarter`` as of ``today``.

    attainment = won_amount ÷ quota; expected = quota × elapsed share of the quarter;
    status by :func:`evaluate`. One row per quota (owners without a won deal: 0), highest
    attainment first. Columns: owner_id, owner, quota, won_amount, won_deals, attainment,
    expected, status.
    """
    columns = ["owner_id", "owner", "quota", "won_amount", "won_deals", "attainment", "expected", "status"]
    quotas = [g for g in goals if is_quota(g) and g.period_start == quarter and visible(g, scope_)]
    if not quotas:
        return pd.DataFrame(columns=columns)
    names = owner_names(conn)
    end = min(quotas[0].period_end, today)
    won = (
        won_amount_by_owner(conn, Filters(quarter, end).within(scope_))
        if end > quarter
        else pd.DataFrame(columns=["owner_id", "owner", "won_deals", "won_amount"])
    )
    by_owner = {str(r.owner_id): r for r in won.itertuples(index=False)}
    rows = []
    for goal in quotas:
        hit = by_owner.get(goal.owner)
        amount = float(hit.won_amount) if hit is not None else 0.0
        judged = evaluate(goal, amount if end > quarter else math.nan, today)
        rows.append(
            {
                "owner_id": goal.owner,
                "owner": names.get(goal.owner, goal.owner),
                "quota": goal.target,
                "won_amount": amount,
                "won_deals": int(hit.won_deals) if hit is not None else 0,
                "attainment": amount / goal.target if goal.target else math.nan,
                "expected": judged.expected,
                "status": judged.status,
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    return out.sort_values(["attainment", "owner"], ascending=[False, True], na_position="last").reset_index(
        drop=True
    )
