"""Sales KPIs: win rate, sales-cycle length, time in each pipeline stage.

Deals are scoped by their account (segment lists), their own owner and product. Each KPI
dates deals by the column its definition names (``closed_at`` or ``created_at``). The
database aggregates; Python only turns the few aggregated counts into ratios and
intervals, so every database gives the same numbers.
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import (
    counts_selected_rows,
    days_between,
    fetch_columns,
    fetches_columns,
    packed_rows,
    percentile,
    period_start,
    scans_to_filter,
    unpack_rows,
)
from kpis import rollups, stage_visits
from kpis.core import LOW_SAMPLE, connection, period_rows, period_starts, read_frame, wilson_interval
from kpis.filters import Filters, in_range, scope
from kpis.measures import win_rate_date, win_rate_sums

#: Survival at or below the target within this tolerance counts as reached (``exp(Σ ln)``
#: rounding must not move a median that is exactly 0.5 to the next time).
KM_TOLERANCE = 1e-9


@functools.lru_cache(maxsize=256)
def _win_rate_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """The statement of :func:`win_rate` (built once per dialect, filters and arguments)."""
    deals = schema.deals
    # one scan: closed deals dated by closed_at, still-open deals by created_at
    is_open = deals.c.status == "open"
    period = period_start(dialect, win_rate_date(deals), freq)
    return (
        sa.select(period.label("period"), *win_rate_sums(deals))
        .where(
            sa.or_(
                sa.and_(deals.c.status.in_(("won", "lost")), in_range(deals.c.closed_at, f)),
                sa.and_(is_open, in_range(deals.c.created_at, f)),
            ),
            *scope(f, deals),
        )
        .group_by(period)
    )


def win_rate(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Win rate per period of ``closed_at``.

    Formula: win_rate = won ÷ (won + lost), deals by closed_at; open deals excluded.
    Variant (shown, not mixed in): win_rate_all_deals = won ÷ (won + lost + open_created),
    where open_created = deals still open that were created in the period (by created_at),
    i.e. undecided pipeline counted as not won.

    Interval: Wilson score 95 % interval of won ÷ (won + lost); ``low_sample`` = fewer than
    30 closed deals. A period without closed deals has win_rate NaN. Read from the win-rate
    roll-up when it applies (``kpis.rollups``: same numbers). Columns: period, won, lost, win_rate, ci_low, ci_high, low_sample, open_created,
    win_rate_all_deals.
    """
    columns = [
        "period",
        "won",
        "lost",
        "win_rate",
        "ci_low",
        "ci_high",
        "low_sample",
        "open_created",
        "win_rate_all_deals",
    ]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    frame = rollups.period_rows_or_rolled(
        conn, rollups.WIN_RATE, f, freq, periods, _win_rate_statement, counts=("won", "lost", "open_created")
    )
    closed_n = frame["won"] + frame["lost"]
    frame["win_rate"] = frame["won"] / closed_n.astype(float).where(closed_n > 0)
    intervals = [wilson_interval(w, n) for w, n in zip(frame["won"], closed_n, strict=True)]
    frame["ci_low"] = [low for low, _ in intervals]
    frame["ci_high"] = [high for _, high in intervals]
    frame["low_sample"] = closed_n < LOW_SAMPLE
    all_n = closed_n + frame["open_created"]
    frame["win_rate_all_deals"] = frame["won"] / all_n.astype(float).where(all_n > 0)
    return frame[columns]


def _cycle_days(
    dialect: sa.Dialect, f: Filters, deals: sa.Table = schema.deals
) -> tuple[sa.ColumnElement, list]:
    """The days from created_at to closed_at, and the conditions of the won deals closed in
    [start, end) within the filters, on ``deals`` (the deals table, or the stored deal rows,
    which carry its columns)."""
    days = days_between(dialect, deals.c.created_at, deals.c.closed_at)
    return days, [deals.c.status == "won", in_range(deals.c.closed_at, f), *scope(f, deals)]


def _won_deals_table(c: sa.Connection, f: Filters) -> sa.Table:
    """Where :func:`median_sales_cycle` and :func:`sales_cycle_distribution` — figures that
    do not depend on the rows' order, unlike a mean of doubles — read the won deals: the
    stored deal rows (:data:`kpis.stage_visits.DEAL_STAGES`, one row per deal with its
    created_at, status, closed_at and scope columns) when an account-level list applies,
    they are readable and the database scans to filter (DuckDB): they select the accounts
    by integer keys (``kpis.filters.account_keys``), where the deals probe each won deal's
    text account_id. Else the deals."""
    if f.has_account_filter and scans_to_filter(c.dialect) and rollups.visits_readable(c):
        return stage_visits.DEAL_STAGES
    return schema.deals


def sales_cycle(conn: sa.Connection | sa.Engine, f: Filters, freq: str | None = None) -> pd.DataFrame:
    """Sales-cycle length of won deals.

    Formula: days from created_at to closed_at of won deals with closed_at in [start, end);
    mean, median and 90th percentile (percentiles interpolate linearly, like
    percentile_cont). No won deals: deals = 0 and NaN days.
    Columns: deals, mean_days, median_days, p90_days (one row).

    With ``freq`` (month, quarter, year): the same per calendar period of closed_at, in one
    statement — one row per period whose first day lies in [start, end), in order (deals
    closed before the first such period are not counted; the last period stops at end);
    a period without won deals has deals = 0 and NaN days.
    Columns: period, deals, mean_days, median_days, p90_days.
    """
    if freq is not None:
        return _sales_cycle_by_period(conn, f, freq)
    with connection(conn) as c:
        days, conditions = _cycle_days(c.dialect, f)
        statement = sa.select(
            sa.func.count().label("deals"),
            sa.func.avg(days).label("mean_days"),
            percentile(c.dialect, days, 0.5).label("median_days"),
            percentile(c.dialect, days, 0.9).label("p90_days"),
        ).where(*conditions)
        frame = read_frame(c, statement)
    frame["deals"] = frame["deals"].fillna(0).astype("int64")
    for column in ("mean_days", "median_days", "p90_days"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    return frame


def median_sales_cycle(conn: sa.Connection | sa.Engine, f: Filters) -> float:
    """:func:`sales_cycle`'s ``median_days`` alone: the median of the days from created_at
    to closed_at of the won deals with closed_at in [start, end) (within the scope),
    interpolated linearly; NaN without won deals. One percentile, no mean or 90th (what
    ``forecasting.pipeline_forecast`` reads). The won deals from :func:`_won_deals_table`."""
    with connection(conn) as c:
        days, conditions = _cycle_days(c.dialect, f, _won_deals_table(c, f))
        median = c.execute(sa.select(percentile(c.dialect, days, 0.5)).where(*conditions)).scalar()
    return math.nan if median is None else float(median)


@functools.lru_cache(maxsize=256)
def _cycle_by_period_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """The statement of :func:`_sales_cycle_by_period` (built once per dialect, filters and arguments)."""
    deals = schema.deals
    days, conditions = _cycle_days(dialect, f)
    period = period_start(dialect, deals.c.closed_at, freq)
    statement = (
        sa.select(
            period.label("period"),
            sa.func.count().label("deals"),
            sa.func.avg(days).label("mean_days"),
            percentile(dialect, days, 0.5).label("median_days"),
            percentile(dialect, days, 0.9).label("p90_days"),
        )
        .where(*conditions)
        .group_by(period)
    )
    return statement


def _sales_cycle_by_period(conn: sa.Connection | sa.Engine, f: Filters, freq: str) -> pd.DataFrame:
    columns = ["period", "deals", "mean_days", "median_days", "p90_days"]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    statement = _cycle_by_period_statement(conn.dialect, f, freq)
    return period_rows(
        conn, statement, periods, counts=("deals",), values=("mean_days", "median_days", "p90_days")
    )


def sales_cycle_distribution(
    conn: sa.Connection | sa.Engine, f: Filters, bins: int | Sequence[float] = 10
) -> pd.DataFrame:
    """Histogram of the sales-cycle length (won deals closed in [start, end), days from
    created_at to closed_at).

    ``bins`` is a number of equal-width bins from 0 to the longest cycle, or explicit edges
    in days. Bins are [bin_start_days, bin_end_days), the last one closed on the right;
    cycles outside the edges are not counted. Columns: bin_start_days, bin_end_days, deals.
    The won deals from :func:`_won_deals_table`.
    """
    columns = ["bin_start_days", "bin_end_days", "deals"]
    with connection(conn) as c:
        days, conditions = _cycle_days(c.dialect, f, _won_deals_table(c, f))
        if isinstance(bins, int):
            if bins < 1:
                raise ValueError("bins must be at least 1")
            longest = c.execute(sa.select(sa.func.max(days)).where(*conditions)).scalar()
            if longest is None:
                return pd.DataFrame(columns=columns)
            longest = float(longest)
            edges = [float(e) for e in np.linspace(0.0, longest if longest > 0 else 1.0, bins + 1)]
        else:
            edges = [float(e) for e in bins]
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ValueError("bin edges must be at least two increasing numbers")
        last = len(edges) - 2
        index = sa.case(
            *[(days < sa.literal(edge, sa.Double()), i) for i, edge in enumerate(edges[1:-1])], else_=last
        ).label("bin")
        inside = sa.and_(
            days >= sa.literal(edges[0], sa.Double()), days <= sa.literal(edges[-1], sa.Double())
        )
        statement = (
            sa.select(index, sa.func.count().label("deals")).where(*conditions, inside).group_by(index)
        )
        counts = dict(c.execute(statement).all())
    return pd.DataFrame(
        {
            "bin_start_days": edges[:-1],
            "bin_end_days": edges[1:],
            "deals": [int(counts.get(i, 0)) for i in range(len(edges) - 1)],
        }
    )


def stage_durations(
    conn: sa.Connection | sa.Engine, f: Filters, now: dt.datetime | None = None
) -> pd.DataFrame:
    """Time deals spend in each open pipeline stage, with still-open deals censored.

    Formula: deals created in [start, end); a visit to a stage lasts from its entered_at to
    the deal's next entered_at (any stage), or to closed_at when it is the last visit of a
    won/lost deal. Observation ends at C = min(end, now): a visit entered at or after C is
    not observed; a visit that ended by C (end ≤ C) is finished; a visit still running at C
    (no end yet, or an end after C) is CENSORED at C: its duration C − entered_at is a
    lower bound. Kaplan–Meier per stage: S(t) = Π over finished durations t_i ≤ t of
    (1 − d_i ÷ n_i), d_i = visits finished at t_i, n_i = visits lasting ≥ t_i; median_days
    = smallest t with S(t) ≤ 0.5, p90_days = smallest t with S(t) ≤ 0.1, NaN when never
    reached. Re-entered stages count each visit; skipped stages get no visit.
    conversion_to_next = deals that, at or after entering the stage, entered an open stage
    of higher position or were won ÷ deals with an observed visit to the stage (progress
    is read from the deal's whole history, also after C).

    Order of a deal's visits: by entered_at; visits entered at the same instant by the
    stage's position, a stage missing from pipeline_stages (no position) first — the rule
    of ``kpis.pipeline``'s current stage — then by stage name.

    Rows: the open stages of pipeline_stages (closed stages are not rows), by position.
    Columns: stage, position, deals (distinct deals), finished and censored (visits),
    median_days, p90_days, conversion_to_next.

    The visits come from the stored visits (:mod:`kpis.stage_visits`, kept by the import)
    when they are built and ``CRM_ROLLUPS`` is not ``off``, else from one window over the
    history of each deal in the range: the same visits, the same frames. On DuckDB the
    stored visits' durations are fetched as arrays and the Kaplan–Meier runs in numpy
    (:func:`_durations_in_python`: the same numbers as the SQL of :func:`_km_quantiles`);
    on PostgreSQL too when a filter other than the date range selects the visits (few of
    them: :func:`crm_data.dialects.counts_selected_rows`), else from the index of finished
    lengths (:func:`_km_from_spans`).
    """
    columns = [
        "stage",
        "position",
        "deals",
        "finished",
        "censored",
        "median_days",
        "p90_days",
        "conversion_to_next",
    ]
    censor_at = min(f.end_ts, now or dt.datetime.now(dt.UTC).replace(tzinfo=None))
    censor = sa.literal(censor_at, sa.DateTime())
    with connection(conn) as c:
        dialect = c.dialect
        keys = stage_visits.stage_keys()
        stored = rollups.visits_readable(c)
        selected = bool(scope(f, stage_visits.TABLE))
        if stored and (fetches_columns(dialect) or (selected and counts_selected_rows(dialect))):
            return _finish_durations(_durations_in_python(c, f, censor, keys))[columns]
        if stored and not selected and stage_visits.spans_indexed(c):
            counts, quantiles = _km_from_spans(dialect, f, censor)
        else:
            if stored:
                visits, counts = _stored_visits(dialect, f, censor)
            else:
                visits, counts = _stage_visits(dialect, f, censor, keys)
            quantiles = _km_quantiles(visits, counts)
        statement = (
            sa.select(
                keys.c.stage,
                keys.c.position,
                counts.c.deals,
                counts.c.finished,
                counts.c.censored,
                quantiles.c.median_days,
                quantiles.c.p90_days,
                counts.c.progressed,
            )
            .select_from(
                keys.outerjoin(counts, counts.c.stage_key == keys.c.stage_key).outerjoin(
                    quantiles, quantiles.c.stage_key == keys.c.stage_key
                )
            )
            .where(keys.c.is_closed.is_not(sa.true()))
            .order_by(keys.c.stage_key)
        )
        frame = read_frame(c, statement)
    return _finish_durations(frame)[columns]


def _finish_durations(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`stage_durations`' frame typed (counts of a stage without visits 0) with
    conversion_to_next = progressed ÷ deals (NaN without deals)."""
    for column in ("deals", "finished", "censored", "progressed"):
        frame[column] = frame[column].fillna(0).astype("int64")
    frame["position"] = frame["position"].astype("int64")
    for column in ("median_days", "p90_days"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["conversion_to_next"] = [
        p / n if n else math.nan for p, n in zip(frame["progressed"], frame["deals"], strict=True)
    ]
    return frame


def _observed(
    dialect: sa.Dialect, entered_at: sa.ColumnElement, ended_at: sa.ColumnElement, censor: sa.ColumnElement
) -> tuple[sa.ColumnElement[int], sa.ColumnElement]:
    """A visit as observed until C (``censor``): event = 1 when it ended by C (finished),
    else 0 (censored: still running at C, or ended after it); duration = days from
    ``entered_at`` to its end when finished, to C when censored."""
    finished = sa.and_(ended_at.is_not(None), ended_at <= censor)
    return sa.case((finished, 1), else_=0), days_between(
        dialect, entered_at, sa.case((finished, ended_at), else_=censor)
    )


def _stage_visits(
    dialect: sa.Dialect, f: Filters, censor: sa.ColumnElement, keys: sa.CTE
) -> tuple[sa.CTE, sa.CTE]:
    """:func:`stage_durations`' observed visits (stage_key, duration, event) and per-stage
    counts (deals, finished, censored, progressed) from the base tables: one window over
    the history of each deal created in the range (:func:`kpis.stage_visits.visit_window`)."""
    deals = schema.deals
    window = stage_visits.visit_window(
        stage_visits.visit_deals([in_range(deals.c.created_at, f), *scope(f, deals)]), keys
    )
    v = window.c
    event, duration = _observed(dialect, v.entered_at, stage_visits.ended_at(window), censor)
    visits = (
        sa.select(
            v.deal_id,
            v.stage_key,
            stage_visits.progressed(window).label("progressed"),
            event.label("event"),
            duration.label("duration"),
        )
        .where(stage_visits.is_visit(window), v.entered_at < censor)
        .cte("visits")
    )
    per_deal = (
        sa.select(
            visits.c.stage_key,
            sa.func.max(visits.c.progressed).label("progressed"),
            sa.func.sum(visits.c.event).label("finished"),
            sa.func.count().label("visits"),
        )
        .group_by(visits.c.deal_id, visits.c.stage_key)
        .cte("per_deal")
    )
    counts = (
        sa.select(
            per_deal.c.stage_key,
            sa.func.count().label("deals"),
            sa.func.sum(per_deal.c.finished).label("finished"),
            sa.func.sum(per_deal.c.visits - per_deal.c.finished).label("censored"),
            sa.func.sum(per_deal.c.progressed).label("progressed"),
        )
        .group_by(per_deal.c.stage_key)
        .cte("counts")
    )
    return visits, counts


def _stored_visits(dialect: sa.Dialect, f: Filters, censor: sa.ColumnElement) -> tuple[sa.CTE, sa.CTE]:
    """:func:`_stage_visits` from the stored visits (:mod:`kpis.stage_visits`): those of the
    deals created in the range and selected by the filters, entered before C. A deal's
    first visit to a stage is observed when any of them is (it is entered first) and is
    progressed when any of them is (its later positions include theirs), so a stage's
    deals and progressed deals are sums of the first visits' flags — no grouping per deal.
    On DuckDB, and on PostgreSQL with a selection, :func:`_durations_in_python` reads the
    stored visits instead."""
    t = stage_visits.TABLE
    event, duration = _observed(dialect, t.c.entered_at, t.c.ended_at, censor)
    visits = (
        sa.select(
            t.c.stage_key,
            t.c.first_visit,
            t.c.progressed,
            event.label("event"),
            duration.label("duration"),
        )
        .where(in_range(t.c.created_at, f), *scope(f, t), t.c.entered_at < censor)
        .cte("visits")
    )
    counts = (
        sa.select(
            visits.c.stage_key,
            sa.func.sum(visits.c.first_visit).label("deals"),
            sa.func.sum(visits.c.event).label("finished"),
            (sa.func.count() - sa.func.sum(visits.c.event)).label("censored"),
            sa.func.sum(visits.c.first_visit * visits.c.progressed).label("progressed"),
        )
        .group_by(visits.c.stage_key)
        .cte("counts")
    )
    return visits, counts


#: Below every visit's length (``ended_at - entered_at`` of two timestamps is at most
#: ≈ 110M days either way): the lower bound of the first censored length's range.
_NO_SPAN = dt.timedelta(days=-999_999_999)


def _km_from_spans(dialect: sa.Dialect, f: Filters, censor: sa.ColumnElement) -> tuple[sa.CTE, sa.CTE]:
    """:func:`_stored_visits`' counts and :func:`_km_quantiles`' quantiles of the stored
    visits selected by the date range alone, without numbering every visit: the finished
    visits are read in length order from :data:`kpis.stage_visits.SPANS_INDEX`
    (PostgreSQL), so only the censored ones are sorted.

    A visit's duration orders as its length (interval) does, so with the censored visits
    grouped by length s_1 < s_2 < … (c_k visits each, C_k = c_1 + … + c_k) and F_k = the
    finished visits of length ≤ s_k, the censored visits of s_k hold the numbers
    a_k..b_k, b_k = F_k + C_k, a_k = b_k − c_k + 1 (finished before censored at one
    length, as in :func:`_km_quantiles`). F_k is a running sum of the finished visits
    with a length in (s_{k−1}, s_k]: one index range scan per censored length, which
    together read each finished visit up to the last censored length once. The
    stretches and the target numbers r are :func:`_km_targets`'; a target is a finished
    visit between two censored numbers, so with k the last censored length with b_k < r
    (none: b = 0, no lower bound) it is the (r − b_k)-th finished visit longer than s_k:
    an index scan from s_k that skips r − b_k − 1 of them. Same numbers as the numbering."""
    t = stage_visits.TABLE
    in_selection = (in_range(t.c.created_at, f), t.c.entered_at < censor)
    is_finished = sa.and_(t.c.ended_at.is_not(None), t.c.ended_at <= censor)
    bigint = sa.BigInteger()
    # one scan: per stage the finished visits (span NULL) and per censored length its visits
    span = sa.case((is_finished, sa.null()), else_=censor - t.c.entered_at)
    grouped = (
        sa.select(
            t.c.stage_key,
            span.label("span"),
            sa.func.count().label("visits"),
            sa.func.sum(t.c.first_visit).label("deals"),
            sa.func.sum(t.c.first_visit * t.c.progressed).label("progressed"),
        )
        .where(*in_selection)
        .group_by(t.c.stage_key, span)
        .cte("grouped")
    )
    g = grouped.c
    counts = (
        sa.select(
            g.stage_key,
            sa.cast(sa.func.sum(g.deals), bigint).label("deals"),
            sa.cast(
                sa.func.coalesce(sa.func.sum(sa.case((g.span.is_(None), g.visits), else_=0)), 0), bigint
            ).label("finished"),
            sa.cast(
                sa.func.coalesce(sa.func.sum(sa.case((g.span.is_not(None), g.visits), else_=0)), 0), bigint
            ).label("censored"),
            sa.cast(sa.func.sum(g.progressed), bigint).label("progressed"),
        )
        .group_by(g.stage_key)
        .cte("counts")
    )
    totals = sa.select(counts.c.stage_key, (counts.c.finished + counts.c.censored).label("n")).cte("totals")
    by_length = {"partition_by": g.stage_key, "order_by": g.span}
    censored_lengths = (
        sa.select(
            g.stage_key,
            g.span,
            g.visits.label("c"),
            sa.func.lag(g.span, 1, sa.literal(_NO_SPAN, sa.Interval())).over(**by_length).label("previous"),
            sa.cast(sa.func.sum(g.visits).over(**by_length, rows=(None, 0)), bigint).label("censored_up_to"),
        )
        .where(g.span.is_not(None))
        .subquery("censored_lengths")
    )
    cl = censored_lengths.c
    v = t.alias("finished_visits")
    finished = (
        sa.and_(v.c.ended_at.is_not(None), v.c.ended_at <= censor),
        in_range(v.c.created_at, f),
        v.c.entered_at < censor,
    )
    between = (
        sa.select(sa.func.count().label("finished"))
        .where(
            v.c.stage_key == cl.stage_key,
            stage_visits.finished_span(v) > cl.previous,
            stage_visits.finished_span(v) <= cl.span,
            *finished,
        )
        .lateral("between")
    )
    running = sa.cast(
        sa.func.sum(between.c.finished).over(partition_by=cl.stage_key, order_by=cl.span, rows=(None, 0)),
        bigint,
    )
    censored_times = (
        sa.select(
            cl.stage_key,
            cl.span,
            (running + cl.censored_up_to - cl.c + 1).label("a"),
            (running + cl.censored_up_to).label("b"),
        )
        .select_from(censored_lengths.join(between, sa.true()))
        .cte("censored_times")
    )
    targets = _km_targets(censored_times, totals)
    wanted = sa.union_all(
        sa.select(targets.c.stage_key, sa.literal(50).label("q"), targets.c.r50.label("r")).where(
            targets.c.r50.is_not(None)
        ),
        sa.select(targets.c.stage_key, sa.literal(90), targets.c.r90).where(targets.c.r90.is_not(None)),
    ).subquery("wanted")
    ct = censored_times.c
    # the last censored length numbered before the target
    before = (
        sa.select(ct.span, ct.b)
        .where(ct.stage_key == wanted.c.stage_key, ct.b < wanted.c.r)
        .order_by(ct.b.desc())
        .limit(1)
        .lateral("before")
    )
    after = sa.func.coalesce(before.c.span, sa.literal(_NO_SPAN, sa.Interval()))
    skipped = sa.cast(wanted.c.r - sa.func.coalesce(before.c.b, 0) - 1, bigint)
    picked = (
        sa.select(days_between(dialect, v.c.entered_at, v.c.ended_at).label("duration"))
        .where(v.c.stage_key == wanted.c.stage_key, stage_visits.finished_span(v) > after, *finished)
        .order_by(v.c.stage_key, stage_visits.finished_span(v))
        .offset(skipped)
        .limit(1)
        .lateral("picked")
    )
    quantiles = (
        sa.select(
            wanted.c.stage_key,
            sa.func.max(sa.case((wanted.c.q == 50, picked.c.duration))).label("median_days"),
            sa.func.max(sa.case((wanted.c.q == 90, picked.c.duration))).label("p90_days"),
        )
        .select_from(wanted.outerjoin(before, sa.true()).join(picked, sa.true()))
        .group_by(wanted.c.stage_key)
        .cte("quantiles")
    )
    return counts, quantiles


#: Bits of a stored visit's ``flags`` in :func:`_durations_in_python`: finished by C,
#: the deal's first visit to the stage, a first visit that progressed.
FINISHED_BIT, FIRST_BIT, PROGRESSED_BIT = 4, 2, 1


def _durations_in_python(
    c: sa.Connection, f: Filters, censor: sa.ColumnElement, keys: sa.CTE
) -> pd.DataFrame:
    """:func:`stage_durations`' rows from the stored visits with the counting and the
    Kaplan–Meier in numpy, for a database that hands over whole columns
    (:func:`crm_data.dialects.fetches_columns`), or for visits selected by a filter other
    than the date range on one whose rows outrun its numbering window
    (:func:`crm_data.dialects.counts_selected_rows`: PostgreSQL, ≈ 86k rows for the
    busiest product at 100k accounts against the window's sort and joins; there each
    stage's (duration, flags) arrive as one byte string, :func:`crm_data.dialects.packed_rows`).

    The visits selected as in :func:`_stored_visits` (deals created in the range, in scope,
    entered before C) arrive as two columns per stage: the duration (the same
    :func:`_observed` expression) and ``flags`` = 4·finished + 2·first_visit +
    first_visit·progressed. Per stage: deals = first visits, finished = Σ finished,
    censored = visits − finished, progressed = first visits that progressed (the sums of
    :func:`_stored_visits`, one ``bincount`` of the flags); the median and 90th percentile
    from the sorted durations by :func:`km_quantiles` — a sort of one stage's durations in
    numpy instead of the database's numbering window over every visit (at 1M accounts over
    three years 11M visits: docs/performance.md, session 14).

    Selected by the date range alone, one statement per stage (each a scan of the stored
    table filtered by its stage: no sort); with owners, products, pipelines or accounts
    selected (few visits, and an account list's subquery per scan), one statement ordered
    by stage — on PostgreSQL grouped by stage, each group's rows packed into one byte string
    (:func:`crm_data.dialects.packed_rows`, read back by ``unpack_rows``)."""
    stages = read_frame(
        c,
        sa.select(keys.c.stage_key, keys.c.stage, keys.c.position)
        .where(keys.c.is_closed.is_not(sa.true()))
        .order_by(keys.c.stage_key),
    )
    t = stage_visits.TABLE
    event, duration = _observed(c.dialect, t.c.entered_at, t.c.ended_at, censor)
    flags = sa.cast(
        event * FINISHED_BIT
        + t.c.first_visit * FIRST_BIT
        + t.c.first_visit * t.c.progressed * PROGRESSED_BIT,
        sa.SmallInteger(),
    ).label("flags")
    selected = scope(f, t)
    chosen = [in_range(t.c.created_at, f), *selected, t.c.entered_at < censor]
    stage_list = [int(k) for k in stages["stage_key"]]

    def per_stage() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        packed = packed_rows(c.dialect, duration, flags)
        if selected and packed is not None:  # PostgreSQL: one byte string per stage
            fetched = {
                int(key): unpack_rows(rows, duration, flags)
                for key, rows in c.execute(
                    sa.select(t.c.stage_key, packed.label("rows")).where(*chosen).group_by(t.c.stage_key)
                )
            }
            nothing = unpack_rows(None, duration, flags)
            for key in stage_list:
                yield fetched.get(key, nothing)
            return
        if selected:
            arrays = fetch_columns(
                c,
                sa.select(t.c.stage_key, duration.label("duration"), flags)
                .where(*chosen)
                .order_by(t.c.stage_key),
            )
            edges = np.searchsorted(arrays["stage_key"], [[k, k + 1] for k in stage_list])
            for lo, hi in edges:
                yield arrays["duration"][lo:hi], arrays["flags"][lo:hi]
            return
        for key in stage_list:
            arrays = fetch_columns(
                c, sa.select(duration.label("duration"), flags).where(*chosen, t.c.stage_key == key)
            )
            yield arrays["duration"], arrays["flags"]

    rows = []
    for durations, fetched_flags in per_stage():
        stage_flags = fetched_flags.astype(np.intp)  # int16 from DuckDB and from unpack_rows
        counts = np.bincount(stage_flags, minlength=8)
        bits = np.arange(8)
        finished = int(counts[(bits & FINISHED_BIT) > 0].sum())
        censored_visits = durations[(stage_flags & FINISHED_BIT) == 0]
        median, p90 = km_quantiles(np.sort(durations), censored_visits, (0.5, 0.1))
        rows.append(
            {
                "deals": int(counts[(bits & FIRST_BIT) > 0].sum()),
                "finished": finished,
                "censored": len(durations) - finished,
                "median_days": median,
                "p90_days": p90,
                "progressed": int(counts[(bits & PROGRESSED_BIT) > 0].sum()),
            }
        )
    counted = pd.DataFrame(
        rows, columns=["deals", "finished", "censored", "median_days", "p90_days", "progressed"]
    )
    return pd.concat([stages.drop(columns="stage_key"), counted], axis=1)


def km_quantiles(durations: np.ndarray, censored: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Kaplan–Meier quantiles of one stage's visits: for each q, the smallest duration t
    with S(t) ≤ q (within :data:`KM_TOLERANCE`), NaN when never reached.

    ``durations``: every visit's duration, sorted ascending (n of them); ``censored``: the
    durations of the censored visits, any order. The arithmetic of :func:`_km_quantiles`
    step for step (so the same numbers): number the visits 1..n by duration; the censored
    visits of a distinct censored duration hold the numbers a..b, b = the visits with a
    duration ≤ it, a = b − its censored visits + 1, factor = ln((n − a + 1) ÷ (n − b)) (÷ 1
    when b = n); L = the running sum of the factors in order of b, from 0 for the stretch
    before the first censored visit; in the stretch after b (up to the next a, else n + 1)
    the first finished number reaching q is i = ⌈n − (q + tolerance) · n · e^−L⌉, or b + 1
    when that is ≤ b; the quantile is the duration at the smallest such i. ``math.log`` and
    ``math.exp`` (the C library's, as the databases' ``ln`` and ``exp``), not numpy's
    vectorised forms, which may differ in the last bit."""
    n = len(durations)
    if n == 0:
        return [math.nan for _ in qs]
    distinct, per_duration = np.unique(censored, return_counts=True)
    last = np.searchsorted(durations, distinct, side="right")  # b
    first = last - per_duration + 1  # a
    ratios = (n - first + 1).astype(np.float64) / np.where(last < n, n - last, 1).astype(np.float64)
    factors = np.fromiter(map(math.log, ratios.tolist()), np.float64, len(ratios))
    after = np.concatenate(([0], last))  # rk: the stretch after this censored number
    until = np.concatenate((first, [n + 1]))  # the first censored number after the stretch
    scale = np.fromiter(
        map(math.exp, (-np.cumsum(np.concatenate(([0.0], factors)))).tolist()), np.float64, len(after)
    )
    total = float(n)
    quantiles = []
    for q in qs:
        reach = np.ceil(total - (q + KM_TOLERANCE) * total * scale)
        number = np.where(reach > after, reach, after + 1)
        inside = number[number < until]
        quantiles.append(float(durations[int(inside.min()) - 1]) if len(inside) else math.nan)
    return quantiles


def _km_quantiles(visits: sa.CTE, counts: sa.CTE) -> sa.CTE:
    """Per stage, the Kaplan–Meier median and 90th percentile of ``visits``' durations
    (``event`` 1 = finished, 0 = censored): the smallest duration t with S(t) ≤ 0.5 (0.1),
    within :data:`KM_TOLERANCE`; NULL when never reached.

    One running window over the distinct durations of a stage (the visits grouped by
    duration first: d finished of m), plus one over its durations with censored visits only,
    instead of two running windows over every distinct duration. Number the n visits of a
    stage 1..n by duration, a finished visit before a censored one of the same duration (a
    visit censored at t is still at risk at t): a duration's visits hold the numbers
    cum − m + 1 .. cum (cum = visits up to it), its finished ones the first d. Multiplying
    (1 − d/n) over the distinct times is the same as multiplying (n − i) ÷ (n − i + 1) over
    the finished visits' numbers i (ties telescope to 1 − d/n), so after finished visit i

        S = (n − i) ÷ n × Π over censored visits k < i of (n − k + 1) ÷ (n − k).

    The censored visits of one duration, numbers a..b, contribute
    Π (n − k + 1) ÷ (n − k) = (n − a + 1) ÷ (n − b) (telescoping; k = n, the last visit, has
    no finished visit after it and counts 1). Between two durations with censored visits S
    falls by whole visits only: in the stretch after the censored numbers up to b (with L =
    the log of the product over the censored numbers ≤ b) the first finished visit with
    S ≤ q is i = ⌈n − (q + tolerance) · n · e^−L⌉ when that number lies before the next
    censored number. The quantile is the duration holding the smallest such i (S only
    falls, so the first stretch that reaches q holds it).

    The visits are sorted by duration alone: the duration at a number does not depend on
    the order of the visits of one duration, and the censored numbers a..b of a duration
    are b = the highest number among its visits (all of them, finished too), a = b − its
    censored visits + 1."""
    # every visit numbered 1..n within its stage by duration. Visits of one duration hold
    # consecutive numbers in either order, so the number of the last one (the visits of the
    # stage up to that duration, cum) is known only after grouping them, and the duration at
    # a number is the same in any order: one sort key (a second key, finished before
    # censored, made DuckDB's window sort ≈ 1.5× slower)
    numbered = sa.select(
        visits.c.stage_key,
        visits.c.duration,
        sa.func.row_number().over(partition_by=visits.c.stage_key, order_by=visits.c.duration).label("i"),
    ).cte("numbered")
    n = (counts.c.finished + counts.c.censored).label("n")
    totals = sa.select(counts.c.stage_key, n).cte("totals")
    # the durations with censored visits, and how many (c) of a stage's visits have each
    censored_durations = (
        sa.select(visits.c.stage_key, visits.c.duration, sa.func.count().label("c"))
        .where(visits.c.event == 0)
        .group_by(visits.c.stage_key, visits.c.duration)
        .subquery("censored_durations")
    )
    # their numbers in the order finished before censored: a..b, b = cum (the highest number
    # among all visits of the duration), a = b − c + 1
    last_number = sa.func.max(numbered.c.i)
    censored_times = (
        sa.select(
            numbered.c.stage_key,
            (last_number - censored_durations.c.c + 1).label("a"),
            last_number.label("b"),
        )
        .select_from(
            numbered.join(
                censored_durations,
                sa.and_(
                    censored_durations.c.stage_key == numbered.c.stage_key,
                    censored_durations.c.duration == numbered.c.duration,
                ),
            )
        )
        .group_by(numbered.c.stage_key, numbered.c.duration, censored_durations.c.c)
        .subquery("censored_times")
    )
    targets = _km_targets(censored_times, totals)
    i = numbered.c.i
    return (
        sa.select(
            numbered.c.stage_key,
            sa.func.max(sa.case((i == targets.c.r50, numbered.c.duration))).label("median_days"),
            sa.func.max(sa.case((i == targets.c.r90, numbered.c.duration))).label("p90_days"),
        )
        .select_from(numbered.join(targets, targets.c.stage_key == numbered.c.stage_key))
        .where(sa.or_(i == targets.c.r50, i == targets.c.r90))
        .group_by(numbered.c.stage_key)
        .cte("quantiles")
    )


def _km_targets(censored_times: sa.FromClause, totals: sa.FromClause) -> sa.CTE:
    """Per stage, the numbers r50 and r90 (1..n, in :func:`_km_quantiles`' numbering) of the
    visits whose durations are the Kaplan–Meier median and 90th percentile (NULL when never
    reached), from ``censored_times`` (stage_key, a, b: the numbers a..b of the censored
    visits of one duration) and ``totals`` (stage_key, n): the stretches of finished visits
    between censored numbers, as :func:`_km_quantiles` describes."""
    double = sa.Double()
    first_censored = censored_times.c.a
    last_censored = censored_times.c.b
    censored = sa.union_all(
        sa.select(
            censored_times.c.stage_key,
            first_censored.label("a"),
            last_censored.label("b"),
            sa.func.ln(
                sa.cast(totals.c.n - first_censored + 1, double)
                / sa.cast(sa.case((last_censored < totals.c.n, totals.c.n - last_censored), else_=1), double)
            ).label("factor"),
        ).select_from(censored_times.join(totals, totals.c.stage_key == censored_times.c.stage_key)),
        # the stretch before the first censored visit
        sa.select(
            totals.c.stage_key,
            sa.literal(0, sa.BigInteger()),
            sa.literal(0, sa.BigInteger()),
            sa.literal(0.0, double),
        ),
    ).subquery("censored")
    ordered = {"partition_by": censored.c.stage_key, "order_by": censored.c.b}
    stretches = (
        sa.select(
            censored.c.stage_key,
            censored.c.b.label("rk"),
            sa.func.lead(censored.c.a).over(**ordered).label("next_rk"),
            sa.func.sum(censored.c.factor).over(**ordered, rows=(None, 0)).label("log_factor"),
        )
    ).subquery("stretches")
    st = stretches.c
    with_n = (
        sa.select(st.stage_key, st.rk, st.next_rk, st.log_factor, totals.c.n)
        .select_from(stretches.join(totals, totals.c.stage_key == st.stage_key))
        .subquery("with_n")
    )
    w = with_n.c
    end = sa.func.coalesce(w.next_rk, w.n + 1)  # first censored number after the stretch

    def first_reaching(q: float) -> sa.ColumnElement:
        reach = sa.func.ceil(
            sa.cast(w.n, double)
            - sa.literal(q + KM_TOLERANCE, double) * sa.cast(w.n, double) * sa.func.exp(-w.log_factor)
        )
        i = sa.case((reach > w.rk, reach), else_=w.rk + 1)
        return sa.func.min(sa.case((i < end, i)))

    return (
        sa.select(w.stage_key, first_reaching(0.5).label("r50"), first_reaching(0.1).label("r90"))
        .group_by(w.stage_key)
        .cte("targets")
    )
