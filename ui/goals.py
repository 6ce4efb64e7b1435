"""Goals in the dashboard: the store, the actual values (cached like every KPI), a card's
"target X · on track" line and a chart's dashed target line.

* ``goal_store()`` / ``all_goals()``: the goals of the dashboard's database
  (``crm_data.goals.GoalStore``: beside the sign-in accounts), read at most every
  ``GOALS_TTL`` seconds; ``forget_goals()`` after a change.
* ``judge(goal, view)``: the goal's progress (``kpis.goals.evaluate``) as of the view's
  today, its actual from ``kpis.goals.kpi_value`` through ``ui.data.kpi``'s cache and within
  the user's scope.
* ``card_goal_text(kpi_key, view, shown)``: the Overview card's line(s) — the goal of the
  period the card shows and the goal of the period still running, for exactly the selected
  filters (``kpis.goals.applies_to``) and the view's period length.
* ``add_target_line(fig, data, kpi_key, view: Any)``: ``ui.report.PageReport.chart``'s hook —
  a dashed "Target" segment over each period that has a goal, on a chart over the view's
  periods with a trace that draws the KPI's own value column.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from charts.theme import NEUTRAL, fmt_value
from crm_data.engines import database_url
from crm_data.goals import GOAL_KPIS, Goal, GoalStore
from kpis import goals as kg
from kpis.core import as_of

GOALS_TTL = 10  # seconds the list of goals is cached (another session may change it)
STATUS_COLOURS = {
    kg.ACHIEVED: "green",
    kg.ON_TRACK: "blue",
    kg.AT_RISK: "orange",
    kg.MISSED: "red",
    kg.NO_DATA: "gray",
    kg.NOT_STARTED: "gray",
}


@st.cache_resource(show_spinner=False)
def _store(url: str) -> GoalStore:
    return GoalStore.open(url)


def goal_store() -> GoalStore:
    """The goals of the dashboard's database (one store per process)."""
    return _store(database_url())


@st.cache_data(ttl=GOALS_TTL, show_spinner=False)
def _goals(url: str) -> list[Goal]:
    return _store(url).goals()


def all_goals() -> list[Goal]:
    """Every goal (cached for ``GOALS_TTL`` seconds)."""
    return _goals(database_url())


def forget_goals() -> None:
    """Drop the cached list after a change."""
    _goals.clear()


def write_problem(error: Exception) -> str:
    """One sentence for a goal write the app database refused (nothing was changed)."""
    reason = " ".join(str(getattr(error, "orig", error) or error).split())[:300]
    return (
        f"Nothing was changed: the app database refused the write ({reason}). On PostgreSQL the "
        "dashboard's role needs INSERT, UPDATE and DELETE on app_goals and app_audit, or set "
        "CRM_AUTH_DATABASE_URL to a database it may write; `crm-insights goals import FILE` works "
        "on the server meanwhile."
    )


def status_markdown(status: str) -> str:
    """The status coloured for Streamlit markdown: ``:orange[at risk]``."""
    return f":{STATUS_COLOURS.get(status, 'gray')}[{status}]"


def judge(goal: Goal, view: Any) -> kg.Progress:
    """``goal`` judged as of the view's today, within the view's scope."""
    from ui import data

    today = as_of(view.today)
    scope = view.filters.scope
    f = kg.goal_filters(goal, today, scope)
    actual = math.nan if f is None else data.kpi(kg.kpi_value, f, kpi=goal.kpi, freq=goal.period_kind)
    return kg.evaluate(goal, actual, today)


def _matching(kpi_key: str, view: Any) -> list[Goal]:
    try:
        goals = all_goals()
    except Exception:  # goals are an addition: a page never fails because of them
        return []
    return [
        g for g in goals if g.kpi == kpi_key and g.period_kind == view.freq and kg.applies_to(g, view.filters)
    ]


def card_goal_text(kpi_key: str, view: Any, shown: pd.Timestamp | None) -> str | None:
    """The card's goal line(s): "target 250,000 · on track" for the period the card shows
    (``shown``) and for the running period of the range, each named by its period when it
    is not ``shown``; None when neither has a goal."""
    goals = _matching(kpi_key, view)
    if not goals:
        return None
    today = as_of(view.today)
    wanted: list[dt.date] = []
    running = [g.period_start for g in goals if g.period_start < today < g.period_end]
    for start in running:
        if view.filters.start <= start < view.filters.end:
            wanted.append(start)
    if shown is not None and pd.Timestamp(shown).date() not in wanted:
        wanted.append(pd.Timestamp(shown).date())
    lines = []
    for goal in sorted(
        (g for g in goals if g.period_start in wanted), key=lambda g: g.period_start, reverse=True
    ):
        judged = judge(goal, view)
        unit = GOAL_KPIS[goal.kpi].unit
        label = (
            ""
            if shown is not None and pd.Timestamp(shown).date() == goal.period_start
            else (f"{view.period_label(pd.Timestamp(goal.period_start))}: ")
        )
        lines.append(
            f":material/flag: {label}target {fmt_value(goal.target, unit)} · {status_markdown(judged.status)}"
        )
    return "  \n".join(lines) or None


def add_target_line(fig: go.Figure, data: pd.DataFrame | None, kpi_key: str | None, view: Any) -> bool:
    """Add a dashed "Target" trace to ``fig`` for the goals of ``kpi_key`` that apply to the
    view (same period length, exactly the selected filters, periods in the range), when a
    trace of ``fig`` draws the KPI's value column of ``data``. True when one was added."""
    from charts import figures
    from ui.report import match_series

    if not kpi_key or kpi_key not in GOAL_KPIS or data is None or "period" not in data:
        return False
    if figures.period_freq(fig) != getattr(view, "freq", None):
        return False
    goals = [g for g in _matching(kpi_key, view) if view.filters.start <= g.period_start < view.filters.end]
    if not goals:
        return False
    try:
        _function, column = kg._source(kpi_key)
    except KeyError:
        return False
    drawn = False
    for trace in fig.data:
        x = getattr(trace, "x", None)
        y = getattr(trace, "y", None)
        if x is None or y is None or len(x) == 0:
            continue
        try:
            stamps = [pd.Timestamp(v) for v in x]
        except (TypeError, ValueError):
            continue
        found = match_series(data, stamps, y, column)
        if found is not None and found[0] == column and not found[1]:
            drawn = True
            break
    if not drawn:
        return False
    unit = GOAL_KPIS[kpi_key].unit
    xs: list[object] = []
    ys: list[object] = []
    texts: list[object] = []
    for goal in sorted(goals, key=lambda g: g.period_start):
        start, end = pd.Timestamp(goal.period_start), pd.Timestamp(goal.period_end)
        half = (end - start) / 2
        label = f"Target {view.period_label(start)}: {fmt_value(goal.target, unit)}"
        xs += [start - half * 0.9, start + half * 0.9, None]
        ys += [goal.target, goal.target, None]
        texts += [label, label, None]
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines",
            name="Target",
            line={"dash": "dash", "color": NEUTRAL, "width": 2},
            text=texts,
            hovertemplate="%{text}<extra></extra>",
            connectgaps=False,
        )
    )
    return True
