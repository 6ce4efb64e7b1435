"""Pipeline-weighted forecast: open deals × their stage's win probability, placed in the
month each deal is expected to close; and the combined next-quarter figure.

Rules (``pipeline_forecast``):

* **Open deals**: status ``open`` within the filters' segments / owners / products
  (``kpis.filters.scope``); the date range does not restrict them (the pipeline is what is
  open now). A deal's current stage is its latest ``deal_stage_history`` row by
  ``entered_at`` (ties: the higher stage position, a stage missing from the stage table
  lowest, then the stage name); a deal without history is in the first open stage
  (lowest position) since ``created_at``.
* **Learning set**: deals closed (status won or lost) with ``closed_at`` in the filters'
  ``[start, end)`` and within their scope.
* **Win probability of a stage** = won ÷ closed among the learning deals that passed
  through that stage (have a history row for it). With fewer than 30 such closed deals
  (``kpis.core.LOW_SAMPLE``) the stage table's ``probability`` is used instead (values
  above 1 are read as percentages); if that is empty too, the learnt share when there is
  one, else the overall win rate of the learning set, else 0.
* **Expected close**: the current stage's ``entered_at`` + the median number of days from
  entering that stage (the last time) to ``closed_at`` among the won learning deals that
  passed through it; without any, the median sales cycle (``kpis.sales_cycle``, created →
  won) is used; without that, 0 days.
* **Overdue**: a deal whose expected close is before ``today`` (00:00 UTC of that day) and
  that is still open is *overdue*. It is in no month: it is reported apart
  (``PipelineForecast.overdue_deals`` / ``overdue_amount`` / ``overdue_expected``, the
  by-stage ``overdue_deals`` / ``expected_revenue_overdue`` and a note), since its date
  says nothing about when — or whether — it will close.
* **Months**: the month containing ``today`` (UTC; the first month counts from ``today``
  on) and the ``months − 1`` after it. expected_revenue = Σ amount × win probability of
  the deals expected to close in the month; deals without an amount count 0.
* **Expected pipeline (learned win rates)** = Σ amount × win probability of every open
  deal (in the months, after them and overdue): ``PipelineForecast.expected_total``. The
  *weighted pipeline* (``kpis.weighted_pipeline``) is the other figure: the same deals ×
  the stage table's configured probability.

All of it runs in the database (the expected-close month is found by comparing
``entered_at`` with per-stage thresholds sent as bound parameters, so no date arithmetic
differs between dialects); only per-stage and per-month aggregates come back. The learning
reads the stored stage visits (:mod:`kpis.stage_visits`, kept by the import) when they are
built and ``CRM_ROLLUPS`` is not ``off`` — the gating of ``kpis.stage_durations``: per open
stage one aggregate over the last visits of the learning deals; the visits hold no closed
stage and no stage missing from the stage table, so those are learnt from the history only
when an open deal sits in one (the only case their numbers are read), and the open deals
placed again. Else it reads the history once, grouped by deal (one row per closed deal with
a column per stage of the stage table: when it last entered it), not by (deal, stage) pair.
The open deals' current stages are ``kpis.pipeline.current_stage``'s, as for the weighted
pipeline: from the stored visits too (a visit without an end is its deal's latest history
row; a deal whose latest row is a closed or unknown stage by a window over its own
history), unless a stage position is below 0 or NULL; else one window over the open deals'
history. The same numbers either way. The median sales cycle
is ``kpis.sales_cycle``'s own (its percentile alone: ``kpis.sales.median_sales_cycle``).

``combined_next_quarter`` shows the parts of one next-quarter figure (rule in its docstring).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import days_between, not_materialized, percentile
from kpis import rollups, stage_visits
from kpis.core import LOW_SAMPLE, connection
from kpis.filters import Filters, in_range, scope
from kpis.pipeline import current_stage, reads_stored_open
from kpis.sales import median_sales_cycle

if TYPE_CHECKING:  # a statsmodels forecast's result: the pipeline forecast itself needs no statsmodels
    from forecasting.selection import ForecastResult

PER_STAGE_COLUMNS = ["stage", "closed_deals", "won_deals", "median_days"]
BY_MONTH_COLUMNS = ["period", "expected_revenue", "deals", "amount"]
BY_STAGE_COLUMNS = [
    "stage",
    "open_deals",
    "win_probability",
    "expected_revenue",
    "position",
    "amount",
    "deals_in_window",
    "expected_revenue_later",
    "probability_source",
    "closed_deals",
    "median_days_to_close",
    "days_source",
    "overdue_deals",
    "expected_revenue_overdue",
]


@dataclass
class PipelineForecast:
    """``by_month``: period, expected_revenue, deals, amount (deals expected to close in
    that month and their unweighted amount). ``by_stage``: stage, open_deals,
    win_probability, expected_revenue (within the months), position, amount (all open),
    deals_in_window, expected_revenue_later (expected to close after the months),
    probability_source (history / stage table / ...), closed_deals (learning deals
    through the stage), median_days_to_close, days_source, overdue_deals and
    expected_revenue_overdue (expected close before today, still open). ``notes``:
    fallbacks and data remarks. ``overdue_*``: the open deals whose expected close is
    before today — count, unweighted amount and amount × win probability; they are in
    no month of ``by_month``."""

    by_month: pd.DataFrame
    by_stage: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    overdue_deals: int = 0
    overdue_amount: float = 0.0
    overdue_expected: float = 0.0

    @property
    def expected_total(self) -> float:
        """Expected pipeline (learned win rates): Σ amount × win probability of every open
        deal — in the months, after them and overdue."""
        if self.by_stage.empty:
            return 0.0
        columns = ["expected_revenue", "expected_revenue_later", "expected_revenue_overdue"]
        return float(self.by_stage[[c for c in columns if c in self.by_stage]].to_numpy().sum())


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _month_starts(today: dt.date, months: int) -> list[dt.datetime]:
    """``months + 1`` consecutive month starts from the month of ``today``."""
    first = pd.Timestamp(today.replace(day=1))
    return [(first + pd.DateOffset(months=k)).to_pydatetime() for k in range(months + 1)]


def _boundaries(today: dt.date, months: int) -> list[dt.datetime]:
    """The bucket edges: ``today`` 00:00, then the next ``months`` month starts (so the
    first month runs from today; an expected close before today is overdue)."""
    starts = _month_starts(today, months)
    return [dt.datetime.combine(today, dt.time()), *starts[1:]]


def _closed_deals(f: Filters) -> sa.CTE:
    deals = schema.deals
    return (
        sa.select(deals.c.deal_id, deals.c.status, deals.c.created_at, deals.c.closed_at)
        .where(deals.c.status.in_(("won", "lost")), in_range(deals.c.closed_at, f), *scope(f, deals))
        .cte("closed_deals")
    )


def _passed_stages(c: sa.Connection, f: Filters, stages: Collection[str]) -> list[tuple]:
    """Per stage outside ``stages`` (every stage when empty): (stage, closed learning deals
    through it, how many won, median days to close) — a row per (deal, stage) pair of their
    history rows, then per stage (the general form; :func:`_learning_pass` covers the
    stages of the stage table)."""
    history = schema.deal_stage_history
    closed = _closed_deals(f)
    passed = (
        sa.select(
            history.c.stage,
            history.c.deal_id,
            closed.c.status,
            closed.c.closed_at,
            sa.func.max(history.c.entered_at).label("last_entered"),
        )
        .select_from(history.join(closed, closed.c.deal_id == history.c.deal_id))
        .where(history.c.stage.not_in(list(stages)) if stages else sa.true())
        # deal first: PostgreSQL groups in the history key's order (deal_id, stage) by
        # hashing; with the stage first it sorted every (stage, deal) pair by text
        .group_by(history.c.deal_id, history.c.stage, closed.c.status, closed.c.closed_at)
        .subquery("passed")
    )
    won = passed.c.status == "won"
    days = days_between(c.dialect, passed.c.last_entered, passed.c.closed_at)
    rows = c.execute(
        sa.select(
            passed.c.stage,
            sa.func.count().label("closed_deals"),
            sa.func.sum(sa.case((won, 1), else_=0)).label("won_deals"),
            percentile(c.dialect, sa.case((won, days)), 0.5).label("median_days"),
        ).group_by(passed.c.stage)
    ).fetchall()
    return [tuple(row) for row in rows]


def _learning_pass(c: sa.Connection, f: Filters, stages: list[str]) -> tuple[int, int, list[tuple], int]:
    """One pass over the learning deals and their stage history: (closed deals, won deals,
    per-stage rows for ``stages`` as :func:`_passed_stages` gives them, history rows of a
    stage not in ``stages``).

    One row per closed learning deal (history left-joined, grouped by the deal: a few
    columns per deal rather than a row per (deal, stage) pair), holding per stage of
    ``stages`` the last time the deal entered it (NULL: never); per stage then: closed_deals
    = deals with that time, won_deals = the won ones, median_days = median over the won
    ones of closed_at − that time (the percentile skips the others' NULLs). The same numbers
    as :func:`_passed_stages` per (deal, stage) pair: a deal's pair is its row's column."""
    history, closed = schema.deal_stage_history, _closed_deals(f)
    entered = [
        sa.func.max(sa.case((history.c.stage == sa.literal(stage, sa.String()), history.c.entered_at))).label(
            f"entered_{k}"
        )
        for k, stage in enumerate(stages)
    ]
    # rows of a stage the table does not list (none in a consistent database); NULL for a
    # deal without history (the left join), so not counted
    other = history.c.stage.not_in(stages) if stages else history.c.stage.is_not(None)
    per_deal = (
        sa.select(
            closed.c.deal_id,
            # one value per deal (deal_id is the deals' key): max() takes it
            sa.func.max(closed.c.status).label("status"),
            sa.func.max(closed.c.closed_at).label("closed_at"),
            *entered,
            sa.func.count(sa.case((other, 1))).label("other_rows"),
        )
        .select_from(closed.outerjoin(history, history.c.deal_id == closed.c.deal_id))
        .group_by(closed.c.deal_id)
        .subquery("per_deal")
    )
    won = per_deal.c.status == "won"
    columns: list[ColumnElement] = [
        sa.func.count().label("closed_count"),
        sa.func.sum(sa.case((won, 1), else_=0)).label("won_count"),
        sa.func.sum(per_deal.c.other_rows).label("other_rows"),
    ]
    for k in range(len(stages)):
        last = per_deal.c[f"entered_{k}"]
        days = days_between(c.dialect, last, per_deal.c.closed_at)
        columns += [
            sa.func.count(last),
            sa.func.sum(sa.case((sa.and_(won, last.is_not(None)), 1), else_=0)),
            percentile(c.dialect, sa.case((won, days)), 0.5),
        ]
    row = c.execute(sa.select(*columns)).one()
    closed_count, won_count, other_rows = (int(v or 0) for v in row[:3])
    per_stage = [(stage, *row[3 + 3 * k : 6 + 3 * k]) for k, stage in enumerate(stages)]
    # a stage no learning deal passed through has no row (as in :func:`_passed_stages`)
    return closed_count, won_count, [r for r in per_stage if r[1]], other_rows


def _stored_learning(c: sa.Connection, f: Filters) -> tuple[int, int, list[tuple], list[str]]:
    """The learning from the stored visits (:mod:`kpis.stage_visits`): (closed learning
    deals, won ones, per open stage of ``pipeline_stages`` the rows of
    :func:`_passed_stages`, the open stages' names).

    The counts from the stored deal rows (:data:`kpis.stage_visits.DEAL_STAGES`: one row
    per deal with its status, closed_at and scope columns, and the bits of the stages it has
    a history row for): the learning deals counted per (bits, won) — a few dozen groups —,
    then in Python closed = Σ of the groups, won = Σ of the won groups, and per open stage
    closed_deals = Σ of the groups with the stage's bit set, won_deals = Σ of the won ones
    (a deal has a history row for an open stage of the table exactly when it has a visit to
    it). The medians from the visits: per stage, median over the won learning deals' visits
    flagged ``last_visit`` (their last entry to it) of closed_at − entered_at — the won
    deals' visits only, the values the median over every learning visit reads (a lost
    deal's value is NULL there). When an open stage has a key above
    :data:`kpis.stage_visits.MASK_KEYS` (no bit), everything from the visits
    (:func:`_visits_learning`). The visits hold no closed stage nor a stage missing from
    ``pipeline_stages``: those come from :func:`_passed_stages` (the caller's)."""
    keys = stage_visits.stage_keys()
    open_keys = {
        str(stage): int(key)
        for stage, key in c.execute(
            # the stages stage_visits.is_visit keeps: known and not closed (NULL is_closed: open)
            sa.select(keys.c.stage, keys.c.stage_key).where(keys.c.is_closed.is_not(sa.true()))
        )
    }
    if any(key > stage_visits.MASK_KEYS for key in open_keys.values()):
        return _visits_learning(c, f, list(open_keys))
    t = stage_visits.DEAL_STAGES
    won = sa.case((t.c.status == "won", 1), else_=0).label("won")
    per_bits = (
        sa.select(t.c.stages, won, sa.func.count())
        .where(t.c.status.in_(("won", "lost")), in_range(t.c.closed_at, f), *scope(f, t))
        .group_by(t.c.stages, won)
    )
    closed_count = won_count = 0
    closed_deals, won_deals = dict.fromkeys(open_keys, 0), dict.fromkeys(open_keys, 0)
    for bits, is_won, n in c.execute(per_bits):
        closed_count += int(n)
        won_count += int(n) if is_won else 0
        for stage, key in open_keys.items():
            if int(bits) >> (key - 1) & 1:
                closed_deals[stage] += int(n)
                won_deals[stage] += int(n) if is_won else 0
    visits = stage_visits.TABLE
    days = days_between(c.dialect, visits.c.entered_at, visits.c.closed_at)
    medians = dict(
        c.execute(
            sa.select(visits.c.stage_key, percentile(c.dialect, days, 0.5))
            .where(
                visits.c.last_visit == 1,
                visits.c.status == "won",
                in_range(visits.c.closed_at, f),
                *scope(f, visits),
            )
            .group_by(visits.c.stage_key)
        ).fetchall()
    )
    rows = [
        (stage, closed_deals[stage], won_deals[stage], medians.get(key))
        for stage, key in sorted(open_keys.items(), key=lambda item: item[1])
        if closed_deals[stage]  # a stage no learning deal passed through has no row
    ]
    return closed_count, won_count, rows, list(open_keys)


def _visits_learning(
    c: sa.Connection, f: Filters, open_stages: list[str]
) -> tuple[int, int, list[tuple], list[str]]:
    """:func:`_stored_learning` from the visits alone (an open stage without a bit in the
    stored deal rows): per stage, closed_deals = the learning deals' visits flagged
    ``last_visit``, won_deals = the won ones, median_days = median over the won ones of
    closed_at − entered_at — one aggregate over the visits, no grouping per deal; the
    closed and won learning deals counted on ``deals``."""
    visits, keys, closed = stage_visits.TABLE, stage_visits.stage_keys(), _closed_deals(f)
    won = visits.c.status == "won"
    days = days_between(c.dialect, visits.c.entered_at, visits.c.closed_at)
    per_key = (
        sa.select(
            visits.c.stage_key,
            sa.func.count().label("closed_deals"),
            sa.func.sum(sa.case((won, 1), else_=0)).label("won_deals"),
            percentile(c.dialect, sa.case((won, days)), 0.5).label("median_days"),
        )
        .where(
            visits.c.last_visit == 1,
            visits.c.status.in_(("won", "lost")),
            in_range(visits.c.closed_at, f),
            *scope(f, visits),
        )
        .group_by(visits.c.stage_key)
        .subquery("per_key")
    )
    rows = c.execute(
        sa.select(
            keys.c.stage, per_key.c.closed_deals, per_key.c.won_deals, per_key.c.median_days
        ).select_from(per_key.join(keys, keys.c.stage_key == per_key.c.stage_key))
    ).fetchall()
    closed_count, won_count = c.execute(
        sa.select(sa.func.count(), sa.func.sum(sa.case((closed.c.status == "won", 1), else_=0)))
    ).one()
    return int(closed_count or 0), int(won_count or 0), [tuple(row) for row in rows], open_stages


def _stage_history_stats(
    c: sa.Connection, f: Filters, stages: list[str], every_stage: bool = True
) -> tuple[int, int, pd.DataFrame, frozenset[str] | None]:
    """(closed learning deals, won ones, per stage: closed learning deals through it, how
    many won, median days to close; the stages learnt — None: every stage).

    With the stored visits (built, and ``CRM_ROLLUPS`` not ``off``: the gating of
    ``kpis.stage_durations``): the open stages of ``pipeline_stages`` from them
    (:func:`_stored_learning`); every other stage (closed, or missing from
    ``pipeline_stages``) from its history rows (:func:`_passed_stages`) — unless
    ``every_stage`` is False: then only the open stages are learnt (and returned as the
    stages learnt; :func:`_complete` adds the others when needed). Else the stages of
    ``stages`` from one pass (:func:`_learning_pass`); a stage missing from it, only when
    its history has one (:func:`_passed_stages`). The same numbers either way."""
    learnt: frozenset[str] | None = None
    if rollups.visits_readable(c):
        closed_count, won_count, rows, open_stages = _stored_learning(c, f)
        if every_stage or not open_stages:
            # empty open_stages: _passed_stages gives every stage (the visits hold none)
            rows += _passed_stages(c, f, open_stages)
        else:
            learnt = frozenset(open_stages)
    else:
        closed_count, won_count, rows, other_rows = _learning_pass(c, f, stages)
        if other_rows:
            rows += _passed_stages(c, f, stages)
    return closed_count, won_count, _per_stage_frame(rows), learnt


def _per_stage_frame(rows: list[tuple]) -> pd.DataFrame:
    """Rows of (stage, closed_deals, won_deals, median_days) as a frame of those columns."""
    frame = pd.DataFrame(rows, columns=PER_STAGE_COLUMNS)
    frame["closed_deals"] = frame["closed_deals"].fillna(0).astype(int)
    frame["won_deals"] = frame["won_deals"].fillna(0).astype(int)
    frame["median_days"] = pd.to_numeric(frame["median_days"], errors="coerce").astype(float)
    return frame


def _current_stages(c: sa.Connection, f: Filters, first_stage: str | None) -> sa.Subquery:
    """Open deals in scope with their current stage and when they entered it: their latest
    history row (``kpis.pipeline.current_stage``: from the stored visits or one window),
    else ``first_stage`` since created_at (``no_history``). From the stored deal rows alone
    when :func:`kpis.pipeline.reads_stored_open` (:func:`_stored_current_stages`)."""
    if reads_stored_open(c, f):
        return _stored_current_stages(f, first_stage)
    deals = schema.deals
    open_deals = (
        sa.select(deals.c.deal_id, deals.c.amount, deals.c.created_at)
        .where(deals.c.status == "open", *scope(f, deals))
        .cte("open_deals")
    )
    latest = current_stage(c, not_materialized(open_deals), None)
    return sa.select(
        latest.c.deal_id,
        latest.c.amount,
        sa.func.coalesce(latest.c.stage, sa.literal(first_stage, sa.String())).label("stage"),
        sa.func.coalesce(latest.c.entered_at, latest.c.created_at).label("entered_at"),
        latest.c.stage.is_(None).label("no_history"),
    ).subquery("current")


def _stored_current_stages(f: Filters, first_stage: str | None) -> sa.Subquery:
    """:func:`_current_stages` from the stored deal rows (:data:`kpis.stage_visits.DEAL_STAGES`):
    every deal has one, carrying while it is open its latest history row and its amount —
    the rows ``current_stage`` gives the open deals, without a scan of ``deals``."""
    t = stage_visits.DEAL_STAGES
    return (
        sa.select(
            t.c.deal_id,
            t.c.amount,
            sa.func.coalesce(t.c.stage, sa.literal(first_stage, sa.String())).label("stage"),
            sa.func.coalesce(t.c.entered_at, t.c.created_at).label("entered_at"),
            t.c.stage.is_(None).label("no_history"),
        )
        .where(t.c.status == "open", *scope(f, t))
        .subquery("current")
    )


def _bucket(
    entered_at: ColumnElement,
    stage: ColumnElement,
    days_by_stage: dict[str, float],
    default_days: float,
    month_starts: list[dt.datetime],
) -> ColumnElement[int]:
    """-1 = expected to close before ``month_starts[0]`` (overdue: the first edge is
    today), k = in month k (0-based), len(month_starts) - 1 = after the last month. Expected close = entered_at + days, so
    close < month start M  ⟺  entered_at < M − days (thresholds are bound parameters)."""
    later = len(month_starts) - 1

    def thresholds(days: float, extra: ColumnElement[bool] | None) -> list[tuple[ColumnElement[bool], int]]:
        whens = []
        for k, start in enumerate(month_starts):
            threshold = sa.literal(start - dt.timedelta(days=days), sa.DateTime())
            condition = entered_at < threshold
            whens.append((condition if extra is None else sa.and_(extra, condition), k - 1))
        if extra is not None:
            whens.append((extra, later))
        return whens

    whens: list[tuple[ColumnElement[bool], int]] = []
    for name, days in days_by_stage.items():
        whens.extend(thresholds(days, stage == sa.literal(name, sa.String())))
    whens.extend(thresholds(default_days, None))
    return sa.case(*whens, else_=later)


@dataclass
class _Learnt:
    """What the closed history says, per stage and overall."""

    stages: pd.DataFrame  # stage, position, probability (table), is_closed
    per_stage: pd.DataFrame  # stage, closed_deals, won_deals, median_days
    overall_win_rate: float
    cycle_median: float
    #: None: ``per_stage`` holds every stage the learning deals passed through; else only
    #: these stages' rows (the open ones, from the stored visits) — the others' are learnt
    #: (:func:`_complete`) when an open deal sits in one, the only case they are read:
    #: a stage's rows give its open deals' probability and days to close, and a closed
    #: stage is a row of ``by_stage`` only with open deals in it
    only: frozenset[str] | None = None

    @property
    def default_days(self) -> float:
        return self.cycle_median if math.isfinite(self.cycle_median) else 0.0

    @property
    def first_stage(self) -> str | None:
        open_stages = self.stages[~self.stages["is_closed"].fillna(False).astype(bool)]
        return str(open_stages["stage"].iloc[0]) if len(open_stages) else None

    def closed_deals(self, stage: str) -> int:
        row = self.per_stage[self.per_stage["stage"] == stage]
        return int(row["closed_deals"].iloc[0]) if len(row) else 0

    def won_deals(self, stage: str) -> int:
        row = self.per_stage[self.per_stage["stage"] == stage]
        return int(row["won_deals"].iloc[0]) if len(row) else 0

    def learnt_days(self, stage: str) -> float:
        row = self.per_stage[self.per_stage["stage"] == stage]
        return float(row["median_days"].iloc[0]) if len(row) else math.nan

    def days_to_close(self, stage: str) -> float:
        days = self.learnt_days(stage)
        return days if math.isfinite(days) else self.default_days

    def days_source(self, stage: str) -> str:
        if math.isfinite(self.learnt_days(stage)):
            return "history"
        return "sales cycle median" if math.isfinite(self.cycle_median) else "none (0 days)"

    def win_probability(self, stage: str) -> tuple[float, str]:
        """(probability, source) by the fallback chain of the module docstring."""
        closed, won = self.closed_deals(stage), self.won_deals(stage)
        table = self.stages.loc[self.stages["stage"] == stage, "probability"]
        fallback = float(table.iloc[0]) if len(table) else math.nan
        if closed >= LOW_SAMPLE:
            return won / closed, "history"
        if math.isfinite(fallback):
            return fallback, "stage table"
        if closed:
            return won / closed, "history (small sample)"
        if math.isfinite(self.overall_win_rate):
            return self.overall_win_rate, "overall win rate"
        return 0.0, "none (no closed deals)"


def _learn(c: sa.Connection, f: Filters, notes: list[str]) -> _Learnt:
    table = schema.pipeline_stages
    rows = c.execute(
        sa.select(table.c.stage, table.c.position, table.c.probability, table.c.is_closed).order_by(
            table.c.position
        )
    ).fetchall()
    stages = pd.DataFrame(rows, columns=["stage", "position", "probability", "is_closed"])
    stages["probability"] = pd.to_numeric(stages["probability"], errors="coerce").astype(float)
    if (stages["probability"] > 1).any():
        stages["probability"] = stages["probability"].where(
            stages["probability"] <= 1, stages["probability"] / 100
        )
        notes.append("Stage probabilities above 1 were read as percentages.")
    # the median sales cycle is kpis.sales_cycle's median_days (kpis.sales.median_sales_cycle: that
    # percentile alone): days from created_at to closed_at of the won deals closed in
    # [start, end) within the scope — the learning set's won deals
    median = median_sales_cycle(c, f)
    known = [str(stage) for stage in stages["stage"].dropna().unique()]
    closed_count, won_count, per_stage, learnt = _stage_history_stats(c, f, known, every_stage=False)
    overall = won_count / closed_count if closed_count else math.nan
    return _Learnt(stages, per_stage, overall, median, learnt)


def _complete(c: sa.Connection, f: Filters, learnt: _Learnt) -> _Learnt:
    """``learnt`` with every stage learnt: the stages outside ``learnt.only`` (closed, or
    missing from ``pipeline_stages``) from their history rows (:func:`_passed_stages`)."""
    if learnt.only is None:
        return learnt
    rows = _per_stage_frame(_passed_stages(c, f, sorted(learnt.only)))
    per_stage = pd.concat([learnt.per_stage, rows], ignore_index=True) if len(rows) else learnt.per_stage
    return replace(learnt, per_stage=per_stage, only=None)


def _place_open_deals(
    c: sa.Connection, f: Filters, learnt: _Learnt, month_starts: list[dt.datetime]
) -> pd.DataFrame:
    """Open deals counted per (stage, bucket): deals, with_amount, amount, no_history."""
    known = pd.concat([learnt.stages["stage"], learnt.per_stage["stage"]]).dropna().unique().tolist()
    days_by_stage = {stage: learnt.days_to_close(stage) for stage in known}
    current = _current_stages(c, f, learnt.first_stage)
    bucket = _bucket(current.c.entered_at, current.c.stage, days_by_stage, learnt.default_days, month_starts)
    placed = sa.select(
        current.c.stage, current.c.amount, current.c.no_history, bucket.label("bucket")
    ).subquery("placed")
    grouped = sa.select(
        placed.c.stage,
        placed.c.bucket,
        sa.func.count().label("deals"),
        sa.func.count(placed.c.amount).label("with_amount"),
        sa.func.coalesce(sa.func.sum(placed.c.amount), 0.0).label("amount"),
        sa.func.sum(sa.case((placed.c.no_history, 1), else_=0)).label("no_history"),
    ).group_by(placed.c.stage, placed.c.bucket)
    cells = pd.DataFrame(
        c.execute(grouped).fetchall(),
        columns=["stage", "bucket", "deals", "with_amount", "amount", "no_history"],
    )
    cells["amount"] = cells["amount"].astype(float)
    for column in ("bucket", "deals", "with_amount", "no_history"):
        cells[column] = cells[column].fillna(0).astype(int)
    # the database returns the groups in any order (a parallel hash aggregate): sorted, the
    # per-month sums below add the same floats in the same order on every run
    return cells.sort_values(["stage", "bucket"], kind="stable", ignore_index=True)


def _by_month(cells: pd.DataFrame, periods: list[pd.Timestamp]) -> pd.DataFrame:
    inside = (cells["bucket"] >= 0) & (cells["bucket"] < len(periods))  # overdue (-1): in no month
    window = cells[inside].rename(columns={"bucket": "month"})
    totals = window.groupby("month").agg(
        expected_revenue=("expected", "sum"), deals=("deals", "sum"), amount=("amount", "sum")
    )
    totals = totals.reindex(range(len(periods)), fill_value=0)
    return pd.DataFrame(
        {
            "period": pd.DatetimeIndex(periods).astype("datetime64[ns]"),
            "expected_revenue": totals["expected_revenue"].to_numpy(dtype=float),
            "deals": totals["deals"].to_numpy(dtype=int),
            "amount": totals["amount"].to_numpy(dtype=float),
        }
    )


def _by_stage(cells: pd.DataFrame, learnt: _Learnt, months: int) -> pd.DataFrame:
    open_stages = set(learnt.stages.loc[~learnt.stages["is_closed"].fillna(False).astype(bool), "stage"])
    stages = dict.fromkeys([*learnt.stages["stage"], *cells["stage"].dropna()])
    positions = dict(zip(learnt.stages["stage"], learnt.stages["position"], strict=True))
    rows = []
    for stage in stages:
        mine = cells[cells["stage"] == stage]
        if mine.empty and stage not in open_stages:
            continue  # a closed stage without open deals
        inside = mine[(mine["bucket"] >= 0) & (mine["bucket"] < months)]
        overdue = mine[mine["bucket"] < 0]
        probability, source = learnt.win_probability(stage)
        rows.append(
            {
                "stage": stage,
                "open_deals": int(mine["deals"].sum()),
                "win_probability": probability,
                "expected_revenue": float(inside["expected"].sum()),
                "position": positions.get(stage, math.nan),
                "amount": float(mine["amount"].sum()),
                "deals_in_window": int(inside["deals"].sum()),
                "expected_revenue_later": float(mine.loc[mine["bucket"] >= months, "expected"].sum()),
                "probability_source": source,
                "closed_deals": learnt.closed_deals(stage),
                "median_days_to_close": learnt.days_to_close(stage),
                "days_source": learnt.days_source(stage),
                "overdue_deals": int(overdue["deals"].sum()),
                "expected_revenue_overdue": float(overdue["expected"].sum()),
            }
        )
    frame = pd.DataFrame(rows, columns=BY_STAGE_COLUMNS)
    return frame.sort_values("position", na_position="last", kind="stable").reset_index(drop=True)


def _notes(
    cells: pd.DataFrame, by_stage: pd.DataFrame, learnt: _Learnt, periods: list[pd.Timestamp]
) -> list[str]:
    notes: list[str] = []
    total = int(cells["deals"].sum())
    if total == 0:
        return ["There are no open deals for this selection."]
    fallback = by_stage.loc[by_stage["probability_source"] != "history", "stage"].tolist()
    if fallback:
        notes.append(
            f"Fewer than {LOW_SAMPLE} closed deals passed through {', '.join(fallback)} in the date range: their "
            "win probability comes from the stage table (or the fallback named in the table)."
        )
    overdue = cells[cells["bucket"] == -1]
    if len(overdue) and int(overdue["deals"].sum()):
        notes.append(
            f"{int(overdue['deals'].sum())} open deal(s) are overdue: expected to have closed before today and still "
            f"open (amount {float(overdue['amount'].sum()):,.2f}). They are shown apart, in no month, and not in "
            "the next-quarter figure."
        )
    without_history = int(cells["no_history"].sum())
    if without_history:
        notes.append(
            f"{without_history} open deal(s) have no stage history: they are placed in the first stage "
            f"({learnt.first_stage}) since their creation."
        )
    closed_stages = set(learnt.stages.loc[learnt.stages["is_closed"].fillna(False).astype(bool), "stage"])
    in_closed = int(cells.loc[cells["stage"].isin(closed_stages), "deals"].sum())
    if in_closed:
        notes.append(f"{in_closed} open deal(s) sit in a closed stage (status and stage history disagree).")
    missing_amount = total - int(cells["with_amount"].sum())
    if missing_amount:
        notes.append(f"{missing_amount} open deal(s) have no amount and count as 0.")
    days_fallback = by_stage.loc[
        (by_stage["days_source"] != "history") & (by_stage["open_deals"] > 0), "stage"
    ]
    if len(days_fallback):
        source = (
            f"the median sales cycle ({learnt.cycle_median:.0f} days)"
            if math.isfinite(learnt.cycle_median)
            else "0 days (no won deal in the date range)"
        )
        notes.append(
            f"No won deal passed through {', '.join(days_fallback)}: their time to close is {source}."
        )
    beyond = int(cells.loc[cells["bucket"] >= len(periods), "deals"].sum())
    if beyond:
        notes.append(
            f"{beyond} open deal(s) are expected to close after {periods[-1]:%Y-%m} and are not in the months shown."
        )
    return notes


def pipeline_forecast(
    conn: sa.Connection | sa.Engine, f: Filters, months: int = 3, today: dt.datetime | dt.date | None = None
) -> PipelineForecast:
    """Expected revenue from the open pipeline per month and per stage (rules in the module
    docstring). ``today`` defaults to now (UTC)."""
    months = max(1, int(months))
    now = today or _utc_now()
    day = now.date() if isinstance(now, dt.datetime) else now
    month_starts = _boundaries(day, months)
    periods = [pd.Timestamp(m) for m in _month_starts(day, months)[:-1]]
    notes: list[str] = []
    with connection(conn) as c:
        learnt = _learn(c, f, notes)
        cells = _place_open_deals(c, f, learnt, month_starts)
        if learnt.only is not None and not set(cells["stage"].dropna()) <= learnt.only:
            # an open deal sits in a stage not learnt (closed, or missing from the stage
            # table): learnt now, and the deals placed again with its days to close
            learnt = _complete(c, f, learnt)
            cells = _place_open_deals(c, f, learnt, month_starts)
    probabilities = {stage: learnt.win_probability(stage)[0] for stage in cells["stage"].dropna().unique()}
    cells["expected"] = cells["amount"] * cells["stage"].map(probabilities).fillna(0.0)
    by_stage = _by_stage(cells, learnt, months)
    notes.extend(_notes(cells, by_stage, learnt, periods))
    overdue = cells[cells["bucket"] < 0]
    return PipelineForecast(
        _by_month(cells, periods),
        by_stage,
        notes,
        overdue_deals=int(overdue["deals"].sum()),
        overdue_amount=float(overdue["amount"].sum()),
        overdue_expected=float(overdue["expected"].sum()),
    )


EXPECTED_PIPELINE_COLUMNS = [
    "stage",
    "open_deals",
    "amount",
    "win_probability",
    "expected_amount",
    "overdue_deals",
]


def expected_pipeline(
    conn: sa.Connection | sa.Engine, f: Filters, today: dt.datetime | dt.date | None = None
) -> pd.DataFrame:
    """Expected pipeline (learned win rates) by current stage.

    expected_amount = Σ amount of open deals (status open; the date range does not restrict
    them) × the win rate learned for their current stage: won ÷ closed among the deals
    closed in [start, end) that passed through it (the stage table's probability below 30
    such deals); the Weighted pipeline (stage probabilities) weighs the same deals by the
    probability configured per stage instead.

    Rules as :func:`pipeline_forecast` (deals without stage history are in the first open
    stage; overdue deals are included and counted apart in ``overdue_deals``). Columns:
    stage, open_deals, amount, win_probability, expected_amount, overdue_deals.
    """
    by_stage = pipeline_forecast(conn, f, months=3, today=today).by_stage
    if by_stage.empty:
        return pd.DataFrame(columns=EXPECTED_PIPELINE_COLUMNS)
    out = by_stage.assign(
        expected_amount=by_stage[
            ["expected_revenue", "expected_revenue_later", "expected_revenue_overdue"]
        ].sum(axis=1)
    )
    return out[EXPECTED_PIPELINE_COLUMNS].reset_index(drop=True)


COMBINED_RULE = (
    "next-quarter revenue = the statistical forecast; the pipeline and the overdue deals stand beside it, "
    "not added and not a floor"
)


def combined_next_quarter(stat: ForecastResult, pipe: PipelineForecast) -> pd.DataFrame:
    """The next-quarter figure and what stands beside it, one row each (columns component,
    amount, deals, detail):

    * ``statistical``: Σ forecast mean over the pipeline's months (the next 3 months from
      the current one); if the forecast does not cover them (its history ends earlier), its
      first months instead — the detail says which;
    * ``pipeline``: Σ expected revenue (amount × learned win rate) of the open deals
      expected to close in those months, with its share of the statistical figure;
    * ``overdue``: the same for the open deals whose expected close is already past — in
      no month and in no total, shown so that they are followed up, not forecast;
    * ``next_quarter`` = statistical. Rule (``COMBINED_RULE``): revenue is forecast from
      revenue. Adding the pipeline would count new business twice (the revenue history
      already holds the deals usually won each quarter), and a deal's amount is a contract
      value that arrives as revenue over months (in the demo: 12 × the monthly fee); taking
      the larger of the two (the rule before) mixed those units and moved overdue deals
      into the current month. The pipeline row answers the other question — do the open
      deals support the forecast? — as a share of it.
    """
    columns = ["component", "amount", "deals", "detail"]
    periods = list(pd.to_datetime(pipe.by_month["period"])) if len(pipe.by_month) else []
    ahead = stat.forecast.copy()
    ahead["period"] = pd.to_datetime(ahead["period"])
    chosen = ahead[ahead["period"].isin(periods)]
    if chosen.empty or len(chosen) < len(periods):
        chosen = ahead.head(len(periods) or 3)
        where = "its first months"
    else:
        where = "the same months"
    if chosen.empty:
        return pd.DataFrame(columns=columns)
    span = f"{chosen['period'].iloc[0]:%Y-%m} to {chosen['period'].iloc[-1]:%Y-%m}"
    statistical = float(chosen["mean"].sum())
    pipeline = float(pipe.by_month["expected_revenue"].sum()) if len(pipe.by_month) else 0.0
    pipe_span = f"{periods[0]:%Y-%m} to {periods[-1]:%Y-%m}" if periods else "no months"
    deals = int(pipe.by_month["deals"].sum()) if len(pipe.by_month) else 0
    share = f" = {pipeline / statistical:.0%} of the forecast" if statistical > 0 else ""
    return pd.DataFrame(
        [
            {"component": "statistical", "amount": statistical, "deals": 0,
             "detail": f"{stat.spec or stat.model} forecast mean, {span} ({where})"},
            {"component": "pipeline", "amount": pipeline, "deals": deals,
             "detail": f"{deals} open deal(s) × learned win rate, expected to close {pipe_span}{share}; "
                       "not added"},
            {"component": "overdue", "amount": pipe.overdue_expected, "deals": pipe.overdue_deals,
             "detail": f"{pipe.overdue_deals} open deal(s) past their expected close (amount "
                       f"{pipe.overdue_amount:,.2f}) × learned win rate; in no month, not counted"},
            {"component": "next_quarter", "amount": statistical, "deals": 0, "detail": COMBINED_RULE},
        ],
        columns=columns,
    )  # fmt: skip
