"""Sales-pipeline KPIs beyond the contract: lead conversion by created cohort, win rate and
lead conversion by a dimension, the stage funnel (in-order and any-stage counting), the
weighted open pipeline, and the aging of open deals with a stuck-deal drill-down.

Everything is aggregated in the database; the only rows read into Python are the small
``pipeline_stages`` dimension table and the aggregated results (plus, for
``stuck_deals``, the drill-down records asked for, capped by ``limit``).

The open deals' current stage (``weighted_pipeline``, ``open_deal_aging``, ``stuck_deals``,
their records in ``kpis.records`` and ``forecasting.pipeline``) is :func:`current_stage`'s:
the latest history row entered by an instant, read from the stored deal rows beside the
stage visits (:mod:`kpis.stage_visits`: each open deal's latest row) when they are built
and ``CRM_ROLLUPS`` is not ``off`` — a deal whose latest row came after the instant, or
closed since, from the visit running at that instant when no stage position is below 0 —,
else from one window over the deals' history: the same rows. The funnel reads the stages
each deal entered from the same deal rows.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import days_between, not_materialized, percentile, period_start, scans_to_filter
from kpis import rollups, stage_visits
from kpis.core import LOW_SAMPLE, connection, period_starts, ratio, wilson_interval
from kpis.filters import Filters, in_range, scope
from kpis.measures import created_deal_sums

Bind = sa.Connection | sa.Engine

#: Group label for a missing dimension value, and stage label for deals with no stage history.
NOT_SET = "(not set)"
NO_STAGE = "(no stage)"
#: Stages entered are tracked as bits of a 64-bit integer.
MAX_FUNNEL_STAGES = 62

#: ``by`` of :func:`win_rate_by` -> (table, column) of the grouping value.
WIN_RATE_DIMENSIONS: dict[str, tuple[sa.Table, str]] = {
    "segment": (schema.accounts, "segment"),
    "industry": (schema.accounts, "industry"),
    "region": (schema.accounts, "region"),
    "country": (schema.accounts, "country"),
    "company_size": (schema.accounts, "company_size"),
    "acquisition_channel": (schema.accounts, "acquisition_channel"),
    "owner": (schema.deals, "owner_id"),
    "owner_id": (schema.deals, "owner_id"),
    "lead_source": (schema.deals, "lead_source"),
    "product": (schema.deals, "product_id"),
    "product_id": (schema.deals, "product_id"),
}


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _created_deals(f: Filters) -> list[ColumnElement[bool]]:
    deals = schema.deals
    return [in_range(deals.c.created_at, f), *scope(f, deals)]


# ---------------------------------------------------------------- lead conversion


@functools.lru_cache(maxsize=256)
def _lead_conversion_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """:func:`lead_conversion`'s counts per period of created_at on the base tables (the
    measures of :data:`kpis.measures.CREATED_DEALS`; built once per dialect, filters and
    freq)."""
    deals = schema.deals
    period = period_start(dialect, deals.c.created_at, freq).label("period")
    return sa.select(period, *created_deal_sums(deals)).where(*_created_deals(f)).group_by(period)


def lead_conversion(conn: Bind, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Lead conversion per created cohort, beside the cohort's win rate.

    lead_conversion = won ÷ created, deals by the period of created_at (the created
    cohort); deals still open stay in the denominator, so a young cohort's conversion
    rises as its deals close.

    * created = deals with ``created_at`` in the period (and in ``[start, end)``);
      won / lost / open = of those, by current status;
    * closed_win_rate = won ÷ (won + lost) of the same cohort (``kpis.win_rate`` instead
      dates deals by ``closed_at``).

    Interval: Wilson score 95 % interval of won ÷ created (``kpis.core.wilson_interval``);
    ``low_sample`` = fewer than 30 deals created. NaN when the denominator is 0 (both
    bounds too). Columns: period, created, won, lost, open, lead_conversion, ci_low,
    ci_high, low_sample, closed_win_rate.

    The counts are read from the roll-up of deals by created month and account dimension
    (:data:`kpis.rollups.CREATED_DEALS`) when it can answer (``kpis.rollups``), else from
    the deals: the same numbers.
    """
    periods = period_starts(f.start, f.end, freq)
    counts = ["created", "won", "lost", "open"]
    out = rollups.period_rows_or_rolled(
        conn, rollups.CREATED_DEALS, f, freq, periods, _lead_conversion_statement, counts=tuple(counts)
    )
    out["lead_conversion"] = [ratio(w, n) for w, n in zip(out["won"], out["created"], strict=True)]
    intervals = [wilson_interval(w, n) for w, n in zip(out["won"], out["created"], strict=True)]
    out["ci_low"] = [float(low) for low, _ in intervals]
    out["ci_high"] = [float(high) for _, high in intervals]
    out["low_sample"] = (out["created"] < LOW_SAMPLE).astype(bool)
    out["closed_win_rate"] = [ratio(w, w + lo) for w, lo in zip(out["won"], out["lost"], strict=True)]
    columns = ["period", *counts, "lead_conversion", "ci_low", "ci_high", "low_sample", "closed_win_rate"]
    return out[columns]


def win_rate_by(conn: Bind, f: Filters, by: str) -> pd.DataFrame:
    """Win rate and lead conversion per group, for the deals created in ``[start, end)``.

    ``by`` = segment | industry | region | country | company_size | acquisition_channel
    (through the deal's account) | owner | lead_source | product (the deal's own column).
    Deals whose value is missing (or that have no account) form the group "(not set)".

    * win_rate = won ÷ (won + lost) (open deals excluded), with a 95 % Wilson interval;
    * lead_conversion = won ÷ created (open deals stay in the denominator);
    * low_sample = won + lost < 30. Rates are NaN when their denominator is 0.

    Sorted by created (descending), then group. Columns: group, created, won, lost,
    win_rate, ci_low, ci_high, lead_conversion, low_sample.

    By an account dimension, the counts are read from the roll-up of deals by created
    month (:func:`_rolled_groups`) when it can answer, else from the deals: the same numbers.
    """
    if by not in WIN_RATE_DIMENSIONS:
        raise ValueError(f"by must be one of {sorted(WIN_RATE_DIMENSIONS)}, not {by!r}")
    with connection(conn) as c:
        statement = _rolled_groups(c, f, by)
        if statement is None:
            statement = _win_rate_by_statement(f, by)
        rows = [(g, int(n), int(w or 0), int(lo or 0)) for g, n, w, lo in c.execute(statement)]
    columns = [
        "group",
        "created",
        "won",
        "lost",
        "win_rate",
        "ci_low",
        "ci_high",
        "lead_conversion",
        "low_sample",
    ]
    records = []
    for g, created, won, lost in sorted(rows, key=lambda r: (-r[1], str(r[0]))):
        closed = won + lost
        low, high = wilson_interval(won, closed)
        records.append(
            (g, created, won, lost, ratio(won, closed), low, high, ratio(won, created), closed < LOW_SAMPLE)
        )
    out = pd.DataFrame(records, columns=columns)
    return out.astype(
        {
            "created": int,
            "won": int,
            "lost": int,
            "win_rate": float,
            "ci_low": float,
            "ci_high": float,
            "lead_conversion": float,
            "low_sample": bool,
        }
    )


@functools.lru_cache(maxsize=256)
def _win_rate_by_statement(f: Filters, by: str) -> sa.Select:
    """:func:`win_rate_by`'s counts (group, created, won, lost) on the base tables."""
    deals, accounts = schema.deals, schema.accounts
    table, column = WIN_RATE_DIMENSIONS[by]
    group = sa.func.coalesce(table.c[column], NOT_SET).label("group")
    source = deals
    if table is accounts:
        source = deals.outerjoin(accounts, accounts.c.account_id == deals.c.account_id)
    return (
        sa.select(
            group,
            sa.func.count().label("created"),
            _count_if(deals.c.status == "won").label("won"),
            _count_if(deals.c.status == "lost").label("lost"),
        )
        .select_from(source)
        .where(*_created_deals(f))
        .group_by(group)
    )


def _rolled_groups(c: sa.Connection, f: Filters, by: str) -> sa.Select | None:
    """:func:`win_rate_by`'s counts from the roll-up of deals by created month and account
    dimension (:data:`kpis.rollups.CREATED_DEALS`), summed over the months of the range per
    ``coalesce(by, '(not set)')`` — the group whose dimensions are all NULL included: it
    holds the deals without an account, or of a missing one, and of accounts without any
    dimension value, all "(not set)" on the base tables too. None (read the deals) when
    ``by`` is not an account dimension, ``start`` is not a month's first day (the roll-up
    counts whole months) or the roll-up cannot answer (:func:`kpis.rollups.groups_statement`)."""
    table, column = WIN_RATE_DIMENSIONS[by]
    if table is not schema.accounts or column not in rollups.DIMENSIONS or f.start.day != 1:
        return None
    return rollups.groups_statement(
        c,
        rollups.CREATED_DEALS,
        f,
        "month",
        period_starts(f.start, f.end, "month"),
        lambda value: sa.func.coalesce(value, NOT_SET).label("group"),
        column,
        ("created", "won", "lost"),
        blank=True,
    )


# ---------------------------------------------------------------- funnel


def _stages(c: sa.Connection) -> pd.DataFrame:
    """The (small) pipeline_stages table, ordered by position."""
    stages = schema.pipeline_stages
    rows = c.execute(
        sa.select(
            stages.c.stage, stages.c.position, stages.c.probability, stages.c.is_closed, stages.c.is_won
        ).order_by(stages.c.position, stages.c.stage)
    ).fetchall()
    frame = pd.DataFrame(rows, columns=["stage", "position", "probability", "is_closed", "is_won"])
    frame["is_closed"] = frame["is_closed"].fillna(False).astype(bool)
    frame["is_won"] = frame["is_won"].fillna(False).astype(bool)
    return frame


def _literal_table(
    rows: list[tuple], names: list[str], types: list[sa.types.TypeEngine], name: str
) -> sa.CTE:
    selects = [
        sa.select(*(sa.literal(v, t).label(n) for v, t, n in zip(row, types, names, strict=True)))
        for row in rows
    ]
    return (selects[0] if len(selects) == 1 else sa.union_all(*selects)).cte(name)


def funnel(conn: Bind, f: Filters) -> pd.DataFrame:
    """The stage funnel of the deals created in ``[start, end)``.

    deals created in [start, end); reached_in_order = deals that entered every funnel
    stage up to this one (by position; closed-lost stages are not funnel stages, a won
    deal counts as entering the won stage), reached_any = deals that entered this stage or
    a later one; step conversion = reached ÷ reached at the previous stage (the first
    stage: ÷ deals created), cumulative conversion = reached ÷ deals created.

    Funnel stages = ``pipeline_stages`` in ``position`` order, without stages that are
    closed and not won. A deal entered a stage when it has a ``deal_stage_history`` row
    for it; re-entering a stage counts once; "any" credits skipped stages, "in order"
    stops at the first skipped stage. Step and cumulative conversion are given for both
    countings; NaN when the denominator is 0. Columns: stage, position, reached_in_order,
    reached_any, step_conversion_in_order, cumulative_conversion_in_order,
    step_conversion_any, cumulative_conversion_any.

    The stages a deal entered come from the stored deal rows beside the stage visits
    (:mod:`kpis.stage_visits`, kept by the import) when they are built, ``CRM_ROLLUPS`` is
    not ``off`` — the gating of ``kpis.stage_durations`` — and ``pipeline_stages`` has at
    most :data:`kpis.stage_visits.MASK_KEYS` rows, else from one pass over the history of
    the deals created in the range: the same numbers (:func:`_stored_funnel_masks`,
    :func:`_funnel_masks`).
    """
    columns = [
        "stage", "position", "reached_in_order", "reached_any", "step_conversion_in_order",
        "cumulative_conversion_in_order", "step_conversion_any", "cumulative_conversion_any",
    ]  # fmt: skip
    with connection(conn) as c:
        every_stage = _stages(c)
        stages = every_stage[~(every_stage["is_closed"] & ~every_stage["is_won"])].reset_index(drop=True)
        if stages.empty:
            return pd.DataFrame(columns=columns)
        if len(stages) > MAX_FUNNEL_STAGES:
            raise ValueError(f"a funnel of more than {MAX_FUNNEL_STAGES} stages is not supported")
        if rollups.visits_readable(c) and len(every_stage) <= stage_visits.MASK_KEYS:
            masks, created = _stored_funnel_masks(c, f, stages)
        else:
            masks = _funnel_masks(c, f, stages)
            created = sum(n for _, n in masks)
    # For a mask: the deal entered stages 1..prefix in order (trailing one bits) and reached
    # rank top = its highest bit.
    histogram = [(((~m) & (m + 1)).bit_length() - 1, m.bit_length(), n) for m, n in masks]
    records = []
    previous_order = previous_any = created
    for rank, (stage, position) in enumerate(zip(stages["stage"], stages["position"], strict=True), start=1):
        in_order = sum(n for prefix, _, n in histogram if prefix >= rank)
        any_stage = sum(n for _, top, n in histogram if top >= rank)
        records.append(
            (stage, int(position), in_order, any_stage, ratio(in_order, previous_order),
             ratio(in_order, created), ratio(any_stage, previous_any), ratio(any_stage, created))
        )  # fmt: skip
        previous_order, previous_any = in_order, any_stage
    return pd.DataFrame(records, columns=columns)


def _funnel_bits(stages: pd.DataFrame) -> dict[str, int]:
    """The funnel stages (in rank order) -> their bit: the stage of rank r (1-based) is
    2^(r-1)."""
    return {str(stage): 1 << i for i, stage in enumerate(stages["stage"])}


def _funnel_masks(c: sa.Connection, f: Filters, stages: pd.DataFrame) -> list[tuple[int, int]]:
    """:func:`funnel`'s (mask, deals) pairs from the base tables: per deal created in the
    range (and scope), the sum of the bits (:func:`_funnel_bits`) of the funnel stages it
    has a history row for (plus the won bits for won deals); every created deal in one
    pair (a deal without any such row: mask 0)."""
    deals, history = schema.deals, schema.deal_stage_history
    # per deal, one 0/1 "entered" flag per funnel stage (max over its rows), weighted by the
    # stage's bit — one aggregation per deal, no DISTINCT over (deal, stage) first. Every
    # created deal is one group (its funnel-stage history rows joined on the left; a deal
    # without any has mask 0, which reaches no stage), so the groups' total is the number
    # of deals created: one statement, one pass over the deals.
    bits = _funnel_bits(stages)
    won_names = {str(s) for s, w in zip(stages["stage"], stages["is_won"], strict=True) if w}
    cohort = sa.select(deals.c.deal_id, deals.c.status).where(*_created_deals(f)).subquery("cohort")
    is_won = cohort.c.status == "won"

    def entered(name: str) -> ColumnElement[bool]:
        stage = history.c.stage == sa.literal(name, sa.String())
        return sa.or_(stage, is_won) if name in won_names else stage  # a won deal entered the won stage(s)

    mask = sum(
        (sa.func.max(sa.case((entered(name), bit), else_=0)) for name, bit in bits.items()),
        start=sa.literal_column("0", sa.BigInteger()),
    )
    per_deal = (
        sa.select(mask.label("mask"))
        .select_from(
            cohort.outerjoin(
                history, sa.and_(history.c.deal_id == cohort.c.deal_id, history.c.stage.in_(list(bits)))
            )
        )
        .group_by(cohort.c.deal_id)
        .subquery("per_deal")
    )
    return [
        (int(m), int(n))
        for m, n in c.execute(sa.select(per_deal.c.mask, sa.func.count()).group_by(per_deal.c.mask))
    ]


def _stored_funnel_masks(
    c: sa.Connection, f: Filters, stages: pd.DataFrame
) -> tuple[list[tuple[int, int]], int]:
    """(:func:`_funnel_masks`' pairs, deals created) from the stored deal rows
    (:data:`kpis.stage_visits.DEAL_STAGES`: per deal, the bits of the stages it has a
    history row for, by stage key; read when every stage has a key ≤
    :data:`kpis.stage_visits.MASK_KEYS`).

    The deals created in the range (and scope) counted per (stored bits, won); each pair's
    funnel mask = Σ the bits (:func:`_funnel_bits`) of the funnel stages whose key bit is
    set, plus the won stages' bits when won — in Python, over a few hundred pairs. Every
    deal has a row, so the pairs' total is the number of deals created."""
    t = stage_visits.DEAL_STAGES
    bits = _funnel_bits(stages)
    is_won = dict(zip(bits, stages["is_won"], strict=True))
    keys = stage_visits.stage_keys()
    key_bit = {
        str(stage): 1 << (int(key) - 1) for stage, key in c.execute(sa.select(keys.c.stage, keys.c.stage_key))
    }
    won = sa.case((t.c.status == "won", 1), else_=0).label("won")
    statement = (
        sa.select(t.c.stages, won, sa.func.count())
        .where(in_range(t.c.created_at, f), *scope(f, t))
        .group_by(t.c.stages, won)
    )
    found: dict[int, int] = {}
    for entered, is_won_deal, n in c.execute(statement):
        mask = sum(
            bit
            for name, bit in bits.items()
            if int(entered) & key_bit[name] or (is_won_deal and is_won[name])
        )
        found[mask] = found.get(mask, 0) + int(n)
    return [(m, n) for m, n in found.items() if n], sum(found.values())


# ---------------------------------------------------------------- open pipeline


def current_stage(c: sa.Connection, deals_cte: sa.CTE, as_of: dt.datetime | None) -> sa.Subquery:
    """Every deal of ``deals_cte`` once, with its columns and its latest
    ``deal_stage_history`` row's ``stage`` and ``entered_at`` (entered at or before ``as_of``
    when given; both NULL for a deal without such a row; ties broken by the higher stage
    position — a stage missing from pipeline_stages (NULL position) counts as lower than
    every known one — then stage name: :func:`kpis.stage_visits.latest_first`).

    When the stored visits are readable (built, ``CRM_ROLLUPS`` not ``off``): each deal's
    stored latest row (:func:`_stored_latest`), for the deals whose latest row was entered
    after ``as_of`` from the stored visits (:func:`_stored_current`) when every stage of
    ``pipeline_stages`` has a position ≥ 0 (:func:`visits_hold_current`), else from one
    window over their history (:func:`_window_current`); not readable: that window over
    every deal's history. The same rows."""
    if not rollups.visits_readable(c):
        return _window_current(deals_cte, as_of)
    return _stored_latest(deals_cte, as_of, _stored_current if visits_hold_current(c) else _window_current)


def visits_hold_current(c: sa.Connection) -> bool:
    """The stored visits (:mod:`kpis.stage_visits`) give :func:`current_stage`: they are
    readable (``kpis.stage_durations``' gating) and no stage of ``pipeline_stages`` has a
    position below 0 or NULL (the visits' order of the stages at one instant is then the
    window's)."""
    if not rollups.visits_readable(c):
        return False
    position = schema.pipeline_stages.c.position
    below = sa.select(sa.func.count()).where(sa.or_(position < 0, position.is_(None)))
    return c.execute(below).scalar_one() == 0


def _ranked_current(deals_cte: sa.CTE, as_of: dt.datetime | None) -> sa.Subquery:
    """:func:`current_stage` by one window over the history of the deals of ``deals_cte``.

    The deals are joined (left) to their history and ranked within each deal in one
    window, nothing joined after it: with the ranked rows joined back to the deals on
    ``rn = 1``, PostgreSQL estimated that filter of a window at one row and joined the
    deals to it by a nested loop over every pair (the open deals of the busiest region ×
    industry at 100,000 accounts: 22,821 × 1,442 rows, 33M comparisons, 14 s)."""
    history, stages = schema.deal_stage_history, schema.pipeline_stages
    order = stage_visits.latest_first()
    entries = history.c.deal_id == deals_cte.c.deal_id
    if as_of is not None:
        entries = sa.and_(entries, history.c.entered_at <= as_of)
    ranked = (
        sa.select(
            *deals_cte.c,
            history.c.stage,
            history.c.entered_at,
            sa.func.row_number().over(partition_by=deals_cte.c.deal_id, order_by=order).label("rn"),
        )
        .select_from(
            deals_cte.outerjoin(history, entries).outerjoin(stages, stages.c.stage == history.c.stage)
        )
        .subquery("ranked")
    )
    return (
        sa.select(*(column for column in ranked.c if column.name != "rn"))
        .where(ranked.c.rn == 1)
        .subquery("latest")
    )


def _window_current(deals_cte: sa.CTE, as_of: dt.datetime | None) -> sa.Subquery:
    """:func:`current_stage` from the base tables: :func:`_ranked_current` of every deal."""
    return _ranked_current(deals_cte, as_of)


def _stored_current(deals_cte: sa.CTE, as_of: dt.datetime | None) -> sa.Subquery:
    """:func:`current_stage` from the stored visits (:mod:`kpis.stage_visits`).

    A visit is current at ``as_of`` when ``entered_at ≤ as_of`` and its end (the deal's
    next history row in the visits' order, any stage, else the won / lost deal's
    closed_at) is NULL or after ``as_of`` (``as_of`` None: the end is NULL). Then no
    history row entered by ``as_of`` follows it in the visits' order (by entered_at, the
    rows of one instant by (position, stage), a stage missing from the table first): it is
    the row the window ranks first, whose order is the same when no position is below 0
    (the caller checks). Rows entered at one instant end at that instant but the last, so
    only the last can be current. A deal without a current visit (its latest row by
    ``as_of`` is a closed stage or one missing from the table, or it has none): the window
    over its own history only (:func:`_ranked_current`)."""
    visits, keys = stage_visits.TABLE, stage_visits.stage_keys()
    if as_of is None:
        current = visits.c.ended_at.is_(None)
    else:
        current = sa.and_(
            visits.c.entered_at <= as_of, sa.or_(visits.c.ended_at.is_(None), visits.c.ended_at > as_of)
        )
    running = (
        sa.select(*deals_cte.c, keys.c.stage, visits.c.entered_at)
        .select_from(
            deals_cte.join(visits, visits.c.deal_id == deals_cte.c.deal_id).join(
                keys, keys.c.stage_key == visits.c.stage_key
            )
        )
        .where(current)
        .cte("running")
    )
    return _found_then(deals_cte, running, as_of, _ranked_current, "without_running_visit")


def _found_then(
    deals_cte: sa.CTE,
    found: sa.CTE,
    as_of: dt.datetime | None,
    after: Callable[[sa.CTE, dt.datetime | None], sa.Subquery],
    name: str,
) -> sa.Subquery:
    """The rows of ``found`` (``deals_cte``'s columns, stage, entered_at; a deal at most
    once), then for the deals of ``deals_cte`` not in it (a CTE called ``name``) the rows of
    ``after(those deals, as_of)``: every deal once."""
    rest = sa.select(*deals_cte.c).where(deals_cte.c.deal_id.not_in(sa.select(found.c.deal_id))).cte(name)
    return sa.union_all(sa.select(*found.c), sa.select(*after(rest, as_of).c)).subquery("latest")


def _stored_latest(
    deals_cte: sa.CTE,
    as_of: dt.datetime | None,
    after: Callable[[sa.CTE, dt.datetime | None], sa.Subquery],
) -> sa.Subquery:
    """:func:`current_stage` from the stored deal rows (:data:`kpis.stage_visits.DEAL_STAGES`:
    each deal's latest history row, by :func:`current_stage`'s order). A deal still open
    whose latest row was entered by ``as_of`` (or that has none, or ``as_of`` None) has that
    row; the others (closed since, or a row entered after ``as_of``: the range ends before
    it) go through ``after`` (:func:`_stored_current` or :func:`_window_current`) over
    their own deals only. (Only the deals open now are read from the stored rows: every
    caller asks about open deals, and the status filter lets the scan skip the closed
    deals' rows before the join.)

    One left join of the deals to those stored rows splits them: matched, the stored row;
    unmatched, ``after`` (not a join plus a ``NOT IN`` of its result: ``weighted_pipeline``'s
    statement at L on DuckDB 0.11–0.13 → 0.085 s CPU, ``pipeline_forecast``'s open deals on
    PostgreSQL at M 255–332 → 109–143 ms)."""
    t = stage_visits.DEAL_STAGES
    stored = [t.c.deal_id == deals_cte.c.deal_id, t.c.status == "open"]
    if as_of is not None:
        stored.append(sa.or_(t.c.entered_at.is_(None), t.c.entered_at <= as_of))
    joined = (
        sa.select(*deals_cte.c, t.c.stage, t.c.entered_at, t.c.deal_id.label("stored_deal"))
        .select_from(deals_cte.outerjoin(t, sa.and_(*stored)))
        .cte("stored_latest")
    )
    columns = [joined.c[column.name] for column in deals_cte.c]
    found = sa.select(*columns, joined.c.stage, joined.c.entered_at).where(joined.c.stored_deal.is_not(None))
    rest = sa.select(*columns).where(joined.c.stored_deal.is_(None)).cte("not_stored_latest")
    return sa.union_all(found, sa.select(*after(rest, as_of).c)).subquery("latest")


def weighted_pipeline(conn: Bind, f: Filters) -> pd.DataFrame:
    """Weighted pipeline (stage probabilities) by current stage.

    weighted_amount = Σ amount of open deals (status open; the date range does not
    restrict them) in their current stage (latest entered_at) × pipeline_stages.probability,
    the probability configured per stage; the Expected pipeline (learned win rates) weighs
    the same deals by the win rate learned from closed deals instead.

    * open deals within the filters' segments / owners / products; NULL amount = 0;
    * open_deals, amount = count and Σ amount per current stage (ties of entered_at go to
      the stage of higher position);
    * probability = ``pipeline_stages.probability``.

    One row per open (not closed) stage in position order, zeros included, then any other
    stage holding open deals; open deals without stage history form a "(no stage)" row
    with probability and weighted_amount NaN. Columns: stage, position, open_deals,
    amount, probability, weighted_amount. The open deals and their amounts come from the
    stored deal rows when :func:`reads_stored_open` (:func:`_stored_weighted`).
    """
    deals = schema.deals
    with connection(conn) as c:
        if reads_stored_open(c, f):
            statement = _stored_weighted(f)
        else:
            open_deals = (
                sa.select(deals.c.deal_id, deals.c.amount)
                .where(deals.c.status == "open", *scope(f, deals))
                .cte("open_deals")
            )
            latest = current_stage(c, not_materialized(open_deals), None)
            stage = sa.func.coalesce(latest.c.stage, NO_STAGE).label("stage")
            statement = sa.select(
                stage,
                sa.func.count().label("open_deals"),
                sa.func.sum(sa.func.coalesce(latest.c.amount, 0.0)),
            ).group_by(stage)
        stages = _stages(c)
        found = {s: (int(n), float(a or 0.0)) for s, n, a in c.execute(statement)}
    out = pd.DataFrame(
        [(s, p, *found.get(s, (0, 0.0)), prob) for s, p, prob in _stage_rows(stages, found)],
        columns=["stage", "position", "open_deals", "amount", "probability"],
    )
    out["probability"] = out["probability"].astype(float)
    out["weighted_amount"] = out["amount"] * out["probability"]
    return out


def _stored_weighted(f: Filters) -> sa.Select:
    """:func:`weighted_pipeline`'s open deals per current stage (stage, open_deals, Σ amount)
    from the stored deal rows alone (:data:`kpis.stage_visits.DEAL_STAGES`): every deal has
    one, carrying while the deal is open its latest history row and its amount — one
    aggregate, no scan of ``deals``."""
    t = stage_visits.DEAL_STAGES
    stage = sa.func.coalesce(t.c.stage, NO_STAGE).label("stage")
    return (
        sa.select(stage, sa.func.count().label("open_deals"), sa.func.sum(sa.func.coalesce(t.c.amount, 0.0)))
        .where(t.c.status == "open", *scope(f, t))
        .group_by(stage)
    )


def _stage_rows(stages: pd.DataFrame, found: dict) -> list[tuple]:
    """(stage, position, probability) for every open stage, then stages with data that are
    closed or unknown, then "(no stage)" when it has data."""
    rows = []
    for stage, position, probability, is_closed in zip(
        stages["stage"], stages["position"], stages["probability"], stages["is_closed"], strict=True
    ):
        if not is_closed or stage in found:
            rows.append((stage, float(position), probability))
    known = set(stages["stage"])
    for stage in sorted(s for s in found if s not in known and s != NO_STAGE):
        rows.append((stage, float("nan"), float("nan")))
    if NO_STAGE in found:
        rows.append((NO_STAGE, float("nan"), float("nan")))
    return rows


def _as_of(f: Filters, now: dt.datetime | None) -> dt.datetime:
    current = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return min(current, f.end_ts)


def reads_stored_open(c: sa.Connection, f: Filters) -> bool:
    """The deals open at an instant (and the deals open now) come from the stored deal rows
    (:data:`kpis.stage_visits.DEAL_STAGES`): they are readable, and the database scans to
    filter or no owner or product is selected (a row store's indexes on ``deals.owner_id``
    and ``deals.product_id`` serve those filters better: :func:`_open_at`)."""
    return rollups.visits_readable(c) and (scans_to_filter(c.dialect) or not f.limits_owners_or_products)


def _open_at(c: sa.Connection, f: Filters, as_of: dt.datetime, carried: tuple[str, ...] = ()) -> sa.CTE:
    """Deals open at ``as_of`` with their stage then and days in it.

    Open at t: ``created_at ≤ t`` and (``closed_at > t``, or no ``closed_at`` and status
    open). Stage at t = latest history row entered at or before t; deals without one are
    in "(no stage)" since ``created_at``. When the stored deal rows are readable, the deals
    and their stage come from them in one scan (:func:`_stored_open_at`) — on a row store
    only without an owner or product filter, which the deals' indexes serve better (one
    owner at 100k accounts on PostgreSQL: 0.02–0.03 s from the deals, 0.08–0.10 s from a
    scan of the stored rows) —, else from the deals and :func:`current_stage`: the same
    rows.

    ``carried`` (with the stored rows only): columns of the stored deal rows added to each
    row, plus ``stored`` = 1 when the row is a deal open now read from them (its ``name``
    and ``amount`` are the deal's), 0 for a deal closed since (both NULL)."""
    extra: list[sa.ColumnElement] = []
    if reads_stored_open(c, f):
        latest = _stored_open_at(c, f, as_of, carried)
        extra = [latest.c[name] for name in (*carried, "stored")] if carried else []
    else:
        deals = schema.deals
        open_deals = (
            sa.select(deals.c.deal_id, deals.c.created_at).where(*_open_then(deals, f, as_of)).cte("open_at")
        )
        latest = current_stage(c, not_materialized(open_deals), as_of)
    entered = sa.func.coalesce(latest.c.entered_at, latest.c.created_at)
    return sa.select(
        latest.c.deal_id,
        sa.func.coalesce(latest.c.stage, NO_STAGE).label("stage"),
        entered.label("entered_at"),
        days_between(c.dialect, entered, sa.literal(as_of, sa.DateTime())).label("age"),
        *extra,
    ).cte("aged")


def _open_then(deals: sa.Table, f: Filters, as_of: dt.datetime) -> list[ColumnElement[bool]]:
    """The deals of ``deals`` (the deals table, or the stored deal rows, which carry its
    columns) open at ``as_of`` within the filters' scope (:func:`_open_at`)."""
    return [
        deals.c.created_at <= as_of,
        sa.or_(deals.c.closed_at > as_of, sa.and_(deals.c.closed_at.is_(None), deals.c.status == "open")),
        *scope(f, deals),
    ]


def _stored_open_at(
    c: sa.Connection, f: Filters, as_of: dt.datetime, carried: tuple[str, ...] = ()
) -> sa.Subquery:
    """:func:`_open_at`'s deals with their stage at ``as_of`` (deal_id, created_at, stage,
    entered_at), from the stored deal rows alone (:data:`kpis.stage_visits.DEAL_STAGES`:
    one row per deal with the deal's columns and, for a deal open now, its latest history
    row) — the rows :func:`current_stage` gives for the same deals, without reading the
    deals table or joining it to the stored rows: a deal open now whose latest row was
    entered by ``as_of`` (or that has none) has that row; the others (closed since, or a
    row entered after ``as_of``) go through the stored visits or the window over their own
    history, as in :func:`_stored_latest`. ``carried``: more columns of the stored rows,
    and then ``stored`` (1: read from the stored rows, 0: through the visits or window)."""
    t = stage_visits.DEAL_STAGES
    # the stored rows scanned once (DuckDB materializes a CTE read twice; PostgreSQL plans
    # it inside each reader, on the table's statistics)
    rows = not_materialized(
        sa.select(
            t.c.deal_id, t.c.created_at, t.c.status, t.c.stage, t.c.entered_at, *(t.c[n] for n in carried)
        )
        .where(*_open_then(t, f, as_of))
        .cte("open_at")
    )
    r = rows.c
    stored = sa.and_(r.status == "open", sa.or_(r.entered_at.is_(None), r.entered_at <= as_of))
    not_stored = sa.or_(r.status.is_(None), r.status != "open", r.entered_at > as_of)
    flag = [sa.literal(1, sa.Integer()).label("stored")] if carried else []
    found = sa.select(r.deal_id, r.created_at, r.stage, r.entered_at, *(r[n] for n in carried), *flag).where(
        stored
    )
    unflagged = [sa.literal(0, sa.Integer()).label("stored")] if carried else []
    rest = sa.select(r.deal_id, r.created_at, *(r[n] for n in carried), *unflagged).where(not_stored)
    rest_cte = rest.cte("not_stored_latest")
    after = (_stored_current if visits_hold_current(c) else _window_current)(rest_cte, as_of)
    # the after-path's columns: the rest's, then stage and entered_at
    names = ["deal_id", "created_at", "stage", "entered_at", *carried, *(["stored"] if carried else [])]
    return sa.union_all(found, sa.select(*(after.c[n] for n in names))).subquery("latest")


def open_deal_aging(conn: Bind, f: Filters, now: dt.datetime | None = None) -> pd.DataFrame:
    """How long open deals have sat in their current stage, as of min(now, ``end``).

    Deals open at that instant (created by then and not yet closed; the start of the
    range does not restrict them) within the filters' segments / owners / products; age =
    days from entering the current stage (latest history row entered by then; deals with
    none: from ``created_at``, in "(no stage)") to the instant.

    * open_deals = count; median_age_days / p90_age_days = linear percentiles of age;
    * over_90_days = deals aged more than 90 days.

    One row per open stage in position order (zeros / NaN included), then other stages
    with deals. Columns: stage, open_deals, median_age_days, p90_age_days, over_90_days.
    """
    with connection(conn) as c:
        aged = _open_at(c, f, _as_of(f, now))
        statement = sa.select(
            aged.c.stage,
            sa.func.count(),
            percentile(c.dialect, aged.c.age, 0.5),
            percentile(c.dialect, aged.c.age, 0.9),
            _count_if(aged.c.age > 90),
        ).group_by(aged.c.stage)
        found = {s: (int(n), _float(m), _float(p), int(o or 0)) for s, n, m, p, o in c.execute(statement)}
        stages = _stages(c)
    nan = float("nan")
    rows = [(s, *found.get(s, (0, nan, nan, 0))) for s, _, _ in _stage_rows(stages, found)]
    return pd.DataFrame(
        rows, columns=["stage", "open_deals", "median_age_days", "p90_age_days", "over_90_days"]
    )


def _float(value: object) -> float:
    return float("nan") if value is None else float(value)


def stuck_deals(
    conn: Bind,
    f: Filters,
    stage: str | None,
    min_days: float = 0,
    limit: int = 500,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Drill-down: the open deals in ``stage`` (None = every stage) for at least
    ``min_days`` days as of min(now, ``end``) — same rules as :func:`open_deal_aging`.

    Longest-waiting first, at most ``limit`` rows. Columns: deal_id, name, account_id,
    account, owner_id, owner, amount, stage, entered_at, days_in_stage. From the stored
    deal rows when :func:`reads_stored_open` (:func:`_stored_stuck_deals`).
    """
    deals, accounts, users = schema.deals, schema.accounts, schema.users
    with connection(conn) as c:
        if reads_stored_open(c, f):
            out = _stored_stuck_deals(c, f, stage, min_days, limit, _as_of(f, now))
        else:
            aged = _open_at(c, f, _as_of(f, now))
            conditions = [aged.c.age >= min_days]
            if stage is not None:
                conditions.append(aged.c.stage == stage)
            # the longest-waiting ``limit`` deals first, then their names (accounts and users
            # joined to those rows only, not to every open deal of the stage)
            top = (
                sa.select(aged.c.deal_id, aged.c.stage, aged.c.entered_at, aged.c.age)
                .where(*conditions)
                .order_by(aged.c.age.desc(), aged.c.deal_id)
                .limit(limit)
                .subquery("top")
            )
            statement = (
                sa.select(
                    deals.c.deal_id,
                    deals.c.name,
                    deals.c.account_id,
                    accounts.c.name.label("account"),
                    deals.c.owner_id,
                    users.c.name.label("owner"),
                    deals.c.amount,
                    top.c.stage,
                    top.c.entered_at,
                    top.c.age.label("days_in_stage"),
                )
                .select_from(
                    top.join(deals, deals.c.deal_id == top.c.deal_id)
                    .outerjoin(accounts, accounts.c.account_id == deals.c.account_id)
                    .outerjoin(users, users.c.user_id == deals.c.owner_id)
                )
                .order_by(top.c.age.desc(), top.c.deal_id)
            )
            result = c.execute(statement)
            out = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    if not out.empty:
        out["entered_at"] = pd.to_datetime(out["entered_at"])
        out["days_in_stage"] = out["days_in_stage"].astype(float)
    return out


#: :func:`stuck_deals`' columns.
STUCK_COLUMNS = [
    "deal_id",
    "name",
    "account_id",
    "account",
    "owner_id",
    "owner",
    "amount",
    "stage",
    "entered_at",
    "days_in_stage",
]


def _stored_stuck_deals(
    c: sa.Connection, f: Filters, stage: str | None, min_days: float, limit: int, as_of: dt.datetime
) -> pd.DataFrame:
    """:func:`stuck_deals` from the stored deal rows (:data:`kpis.stage_visits.DEAL_STAGES`),
    which carry an open deal's name, account, owner and amount: the longest-waiting
    ``limit`` deals with those columns from the one scan of :func:`_open_at`, then accounts
    and users joined to those rows — no scan of ``deals`` (at 1M accounts its 4.9M rows'
    names and amounts were ≈ 2/3 of the call). A listed deal open at ``as_of`` but closed
    since has no stored name or amount: those are read from ``deals`` for its id alone."""
    accounts, users, deals = schema.accounts, schema.users, schema.deals
    aged = _open_at(c, f, as_of, carried=("name", "account_id", "owner_id", "amount"))
    conditions = [aged.c.age >= min_days]
    if stage is not None:
        conditions.append(aged.c.stage == stage)
    top = (
        sa.select(*aged.c)
        .where(*conditions)
        .order_by(aged.c.age.desc(), aged.c.deal_id)
        .limit(limit)
        .subquery("top")
    )
    statement = (
        sa.select(
            top.c.deal_id,
            top.c.name,
            top.c.account_id,
            accounts.c.name.label("account"),
            top.c.owner_id,
            users.c.name.label("owner"),
            top.c.amount,
            top.c.stage,
            top.c.entered_at,
            top.c.age.label("days_in_stage"),
            top.c.stored,
        )
        .select_from(
            top.outerjoin(accounts, accounts.c.account_id == top.c.account_id).outerjoin(
                users, users.c.user_id == top.c.owner_id
            )
        )
        .order_by(top.c.age.desc(), top.c.deal_id)
    )
    result = c.execute(statement)
    columns = list(result.keys())
    rows = [tuple(row) for row in result.fetchall()]
    stored, deal_id, name, amount = (columns.index(n) for n in ("stored", "deal_id", "name", "amount"))
    closed_since = [row[deal_id] for row in rows if row[stored] == 0]
    if closed_since:
        found = {
            i: (n, a)
            for i, n, a in c.execute(
                sa.select(deals.c.deal_id, deals.c.name, deals.c.amount).where(
                    deals.c.deal_id.in_(closed_since)
                )
            )
        }
        for k, row in enumerate(rows):
            if row[stored] == 0:
                values = list(row)
                values[name], values[amount] = found[row[deal_id]]
                rows[k] = tuple(values)
    out = pd.DataFrame(rows, columns=columns)
    return out[STUCK_COLUMNS]
