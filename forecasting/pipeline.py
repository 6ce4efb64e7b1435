"""Pipeline-weighted forecast: open deals × their stage's win probability, placed in the
month each deal is expected to close; and the combined next-quarter figure.

Rules (``pipeline_forecast``):

* **Open deals**: status ``open`` within the filters' segments / owners / products
  (``kpis.filters.scope``); the date range does not restrict them (the pipeline is what is
  open now). A deal's current stage is its latest ``deal_stage_history`` row by
  ``entered_at`` (ties: the higher stage position); a deal without history is in the
  first open stage (lowest position) since ``created_at``.
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
  won) is used; without that, 0 days. A deal whose expected close is already past counts
  in the current month (stated in the notes).
* **Months**: the month containing ``today`` (UTC) and the ``months − 1`` after it.
  expected_revenue = Σ amount × win probability of the deals expected to close in the
  month; deals without an amount count 0.

All of it runs in the database (the expected-close month is found by comparing
``entered_at`` with per-stage thresholds sent as bound parameters, so no date arithmetic
differs between dialects); only per-stage and per-month aggregates come back.

``combined_next_quarter`` shows the parts of one next-quarter figure (rule in its docstring).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.dialects import days_between, percentile
from forecasting.selection import ForecastResult
from kpis.core import LOW_SAMPLE, connection
from kpis.filters import Filters, in_range, scope

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
]


@dataclass
class PipelineForecast:
    """``by_month``: period, expected_revenue, deals, amount (deals expected to close in
    that month and their unweighted amount). ``by_stage``: stage, open_deals,
    win_probability, expected_revenue (within the months), position, amount (all open),
    deals_in_window, expected_revenue_later (expected to close after the months),
    probability_source (history / stage table / ...), closed_deals (learning deals
    through the stage), median_days_to_close, days_source. ``notes``: fallbacks and
    data remarks."""

    by_month: pd.DataFrame
    by_stage: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _month_starts(today: dt.date, months: int) -> list[dt.datetime]:
    """``months + 1`` consecutive month starts from the month of ``today``."""
    first = pd.Timestamp(today.replace(day=1))
    return [(first + pd.DateOffset(months=k)).to_pydatetime() for k in range(months + 1)]


def _closed_deals(f: Filters) -> sa.CTE:
    deals = schema.deals
    return (
        sa.select(deals.c.deal_id, deals.c.status, deals.c.closed_at)
        .where(deals.c.status.in_(("won", "lost")), in_range(deals.c.closed_at, f), *scope(f, deals))
        .cte("closed_deals")
    )


def _stage_history_stats(c: sa.Connection, f: Filters) -> pd.DataFrame:
    """Per stage: closed learning deals through it, how many won, median days to close."""
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
        .group_by(history.c.stage, history.c.deal_id, closed.c.status, closed.c.closed_at)
        .subquery("passed")
    )
    counts = c.execute(
        sa.select(
            passed.c.stage,
            sa.func.count().label("closed_deals"),
            sa.func.sum(sa.case((passed.c.status == "won", 1), else_=0)).label("won_deals"),
        ).group_by(passed.c.stage)
    ).fetchall()
    days = days_between(c.dialect, passed.c.last_entered, passed.c.closed_at)
    medians = c.execute(
        sa.select(passed.c.stage, percentile(c.dialect, days, 0.5).label("median_days"))
        .where(passed.c.status == "won")
        .group_by(passed.c.stage)
    ).fetchall()
    frame = pd.DataFrame(counts, columns=["stage", "closed_deals", "won_deals"])
    median_frame = pd.DataFrame(medians, columns=["stage", "median_days"])
    frame = frame.merge(median_frame, on="stage", how="outer")
    frame["closed_deals"] = frame["closed_deals"].fillna(0).astype(int)
    frame["won_deals"] = frame["won_deals"].fillna(0).astype(int)
    frame["median_days"] = pd.to_numeric(frame["median_days"], errors="coerce").astype(float)
    return frame


def _current_stages(f: Filters, first_stage: str | None) -> sa.Subquery:
    """Open deals in scope with their current stage and when they entered it."""
    deals, history, stages = schema.deals, schema.deal_stage_history, schema.pipeline_stages
    open_deals = (
        sa.select(deals.c.deal_id, deals.c.amount, deals.c.created_at)
        .where(deals.c.status == "open", *scope(f, deals))
        .cte("open_deals")
    )
    ranked = (
        sa.select(
            history.c.deal_id,
            history.c.stage,
            history.c.entered_at,
            sa.func.row_number()
            .over(
                partition_by=history.c.deal_id,
                order_by=[
                    history.c.entered_at.desc(),
                    sa.func.coalesce(stages.c.position, -1).desc(),
                    history.c.stage.desc(),
                ],
            )
            .label("rn"),
        )
        .select_from(
            history.join(open_deals, open_deals.c.deal_id == history.c.deal_id).outerjoin(
                stages, stages.c.stage == history.c.stage
            )
        )
        .subquery("ranked")
    )
    latest = sa.select(ranked).where(ranked.c.rn == 1).subquery("latest")
    return (
        sa.select(
            open_deals.c.deal_id,
            open_deals.c.amount,
            sa.func.coalesce(latest.c.stage, sa.literal(first_stage, sa.String())).label("stage"),
            sa.func.coalesce(latest.c.entered_at, open_deals.c.created_at).label("entered_at"),
            latest.c.stage.is_(None).label("no_history"),
        )
        .select_from(open_deals.outerjoin(latest, latest.c.deal_id == open_deals.c.deal_id))
        .subquery("current")
    )


def _bucket(
    entered_at: ColumnElement,
    stage: ColumnElement,
    days_by_stage: dict[str, float],
    default_days: float,
    month_starts: list[dt.datetime],
) -> ColumnElement[int]:
    """-1 = expected to close before the current month, k = in month k (0-based),
    len(month_starts) - 1 = after the last month. Expected close = entered_at + days, so
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


def _sales_cycle_median(c: sa.Connection, f: Filters) -> float:
    from kpis.sales import sales_cycle

    value = sales_cycle(c, f)["median_days"].iloc[0]
    return float(value) if value is not None and not pd.isna(value) else math.nan


def _days_source(learnt_median: float, cycle_median: float) -> str:
    if pd.notna(learnt_median):
        return "history"
    return "sales cycle median" if math.isfinite(cycle_median) else "none (0 days)"


def pipeline_forecast(
    conn: sa.Connection | sa.Engine, f: Filters, months: int = 3, today: dt.datetime | dt.date | None = None
) -> PipelineForecast:
    """Expected revenue from the open pipeline per month and per stage (rules in the module
    docstring). ``today`` defaults to now (UTC)."""
    months = max(1, int(months))
    now = today or _utc_now()
    today_date = now.date() if isinstance(now, dt.datetime) else now
    month_starts = _month_starts(today_date, months)
    notes: list[str] = []
    stages_table = schema.pipeline_stages
    with connection(conn) as c:
        stage_rows = c.execute(
            sa.select(
                stages_table.c.stage,
                stages_table.c.position,
                stages_table.c.probability,
                stages_table.c.is_closed,
            ).order_by(stages_table.c.position)
        ).fetchall()
        stages = pd.DataFrame(stage_rows, columns=["stage", "position", "probability", "is_closed"])
        stages["probability"] = pd.to_numeric(stages["probability"], errors="coerce").astype(float)
        if (stages["probability"] > 1).any():
            stages["probability"] = stages["probability"].where(
                stages["probability"] <= 1, stages["probability"] / 100
            )
            notes.append("Stage probabilities above 1 were read as percentages.")
        open_stages = stages[~stages["is_closed"].fillna(False).astype(bool)]
        first_stage = str(open_stages["stage"].iloc[0]) if len(open_stages) else None

        learnt = _stage_history_stats(c, f)
        closed = _closed_deals(f)
        closed_count, won_count = c.execute(
            sa.select(
                sa.func.count(), sa.func.sum(sa.case((closed.c.status == "won", 1), else_=0))
            ).select_from(closed)
        ).one()
        overall_win_rate = (won_count or 0) / closed_count if closed_count else math.nan
        cycle_median = _sales_cycle_median(c, f)
        default_days = cycle_median if math.isfinite(cycle_median) else 0.0

        known = pd.concat([stages["stage"], learnt["stage"]]).dropna().unique().tolist()
        learnt_days = dict(zip(learnt["stage"], learnt["median_days"], strict=True))
        days_by_stage = {
            stage: (
                float(learnt_days[stage])
                if stage in learnt_days and pd.notna(learnt_days[stage])
                else default_days
            )
            for stage in known
        }
        current = _current_stages(f, first_stage)
        bucket = _bucket(current.c.entered_at, current.c.stage, days_by_stage, default_days, month_starts)
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

    # ---- win probability per stage
    probability: dict[str, float] = {}
    probability_source: dict[str, str] = {}
    all_stages = list(dict.fromkeys([*stages["stage"], *learnt["stage"], *cells["stage"].dropna()]))
    learnt_by_stage = learnt.set_index("stage")
    table_probability = dict(zip(stages["stage"], stages["probability"], strict=True))
    for stage in all_stages:
        closed = int(learnt_by_stage["closed_deals"].get(stage, 0)) if stage in learnt_by_stage.index else 0
        won = int(learnt_by_stage["won_deals"].get(stage, 0)) if stage in learnt_by_stage.index else 0
        fallback = table_probability.get(stage, math.nan)
        if closed >= LOW_SAMPLE:
            probability[stage], probability_source[stage] = won / closed, "history"
        elif pd.notna(fallback):
            probability[stage], probability_source[stage] = float(fallback), "stage table"
        elif closed:
            probability[stage], probability_source[stage] = won / closed, "history (small sample)"
        elif math.isfinite(overall_win_rate):
            probability[stage], probability_source[stage] = overall_win_rate, "overall win rate"
        else:
            probability[stage], probability_source[stage] = 0.0, "none (no closed deals)"

    cells["win_probability"] = cells["stage"].map(probability).fillna(0.0)
    cells["expected"] = cells["amount"] * cells["win_probability"]
    later = months
    in_window = cells["bucket"] < later
    overdue = cells["bucket"] == -1
    cells["month"] = cells["bucket"].clip(lower=0)

    # ---- by month
    periods = [pd.Timestamp(m) for m in month_starts[:-1]]
    window = cells[in_window]
    per_month = window.groupby("month").agg(
        expected_revenue=("expected", "sum"), deals=("deals", "sum"), amount=("amount", "sum")
    )
    by_month = pd.DataFrame({"period": pd.DatetimeIndex(periods).astype("datetime64[ns]")})
    by_month["expected_revenue"] = [float(per_month["expected_revenue"].get(k, 0.0)) for k in range(months)]
    by_month["deals"] = [int(per_month["deals"].get(k, 0)) for k in range(months)]
    by_month["amount"] = [float(per_month["amount"].get(k, 0.0)) for k in range(months)]

    # ---- by stage
    positions = dict(zip(stages["stage"], stages["position"], strict=True))
    rows = []
    for stage in all_stages:
        mine = cells[cells["stage"] == stage]
        if mine.empty and stage not in set(open_stages["stage"]):
            continue  # closed stages without open deals
        inside = mine[mine["bucket"] < later]
        closed = int(learnt_by_stage["closed_deals"].get(stage, 0)) if stage in learnt_by_stage.index else 0
        learnt_median = learnt_days.get(stage, math.nan)
        rows.append(
            {
                "stage": stage,
                "open_deals": int(mine["deals"].sum()),
                "win_probability": probability[stage],
                "expected_revenue": float(inside["expected"].sum()),
                "position": positions.get(stage, math.nan),
                "amount": float(mine["amount"].sum()),
                "deals_in_window": int(inside["deals"].sum()),
                "expected_revenue_later": float(mine.loc[mine["bucket"] >= later, "expected"].sum()),
                "probability_source": probability_source[stage],
                "closed_deals": closed,
                "median_days_to_close": days_by_stage.get(stage, default_days),
                "days_source": _days_source(learnt_median, cycle_median),
            }
        )
    by_stage = pd.DataFrame(rows, columns=BY_STAGE_COLUMNS)
    by_stage = by_stage.sort_values("position", na_position="last", kind="stable").reset_index(drop=True)

    # ---- notes
    total_open = int(cells["deals"].sum())
    if total_open == 0:
        notes.append("There are no open deals for this selection.")
    fallback_stages = [s for s in by_stage["stage"] if probability_source[s] != "history"]
    if fallback_stages:
        notes.append(
            f"Fewer than {LOW_SAMPLE} closed deals passed through {', '.join(fallback_stages)} in the date range: "
            "their win probability comes from the stage table (or the fallbacks named in the table)."
        )
    if int(overdue.sum()) and int(cells.loc[overdue, "deals"].sum()):
        notes.append(
            f"{int(cells.loc[overdue, 'deals'].sum())} open deal(s) were expected to have closed already; "
            f"they are counted in the current month ({periods[0]:%Y-%m})."
        )
    if int(cells["no_history"].sum()):
        notes.append(
            f"{int(cells['no_history'].sum())} open deal(s) have no stage history: they are placed in the "
            f"first stage ({first_stage}) since their creation."
        )
    missing_amount = int(cells["deals"].sum() - cells["with_amount"].sum())
    if missing_amount:
        notes.append(f"{missing_amount} open deal(s) have no amount and count as 0.")
    days_fallback = [
        s for s in by_stage["stage"] if by_stage.set_index("stage").at[s, "days_source"] != "history"
    ]
    if days_fallback and total_open:
        source = (
            f"the median sales cycle ({cycle_median:.0f} days)" if math.isfinite(cycle_median) else "0 days"
        )
        notes.append(
            f"No won deal passed through {', '.join(days_fallback)}: their time to close is {source}."
        )
    beyond = int(cells.loc[~in_window, "deals"].sum())
    if beyond:
        notes.append(
            f"{beyond} open deal(s) are expected to close after {periods[-1]:%Y-%m} and are not in the months shown."
        )
    return PipelineForecast(by_month[BY_MONTH_COLUMNS], by_stage, notes)


COMBINED_RULE = "combined = the larger of the two: the statistical forecast, with the pipeline's expected revenue as a floor"


def combined_next_quarter(stat: ForecastResult, pipe: PipelineForecast) -> pd.DataFrame:
    """The next-quarter figure and its parts, one row each (columns component, amount,
    detail):

    * ``statistical``: Σ forecast mean over the pipeline's months (the next 3 months from
      the current one); if the forecast does not cover them (its history ends earlier), its
      first months instead — the detail says which;
    * ``pipeline``: Σ expected revenue of the open deals expected to close in those months;
    * ``combined`` = max(statistical, pipeline) — the pipeline is a floor under the
      statistical forecast, since deals already likely to close should not be forecast
      away, while revenue from existing customers is not in the pipeline.
    """
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
        return pd.DataFrame(columns=["component", "amount", "detail"])
    span = f"{chosen['period'].iloc[0]:%Y-%m} to {chosen['period'].iloc[-1]:%Y-%m}"
    statistical = float(chosen["mean"].sum())
    pipeline = float(pipe.by_month["expected_revenue"].sum()) if len(pipe.by_month) else 0.0
    pipe_span = f"{periods[0]:%Y-%m} to {periods[-1]:%Y-%m}" if periods else "no months"
    deals = int(pipe.by_month["deals"].sum()) if len(pipe.by_month) else 0
    return pd.DataFrame(
        [
            {"component": "statistical", "amount": statistical,
             "detail": f"{stat.spec or stat.model} forecast mean, {span} ({where})"},
            {"component": "pipeline", "amount": pipeline,
             "detail": f"{deals} open deal(s) × stage win probability, expected to close {pipe_span}"},
            {"component": "combined", "amount": max(statistical, pipeline), "detail": COMBINED_RULE},
        ]
    )  # fmt: skip
