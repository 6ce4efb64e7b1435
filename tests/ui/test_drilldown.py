"""Drill-down in AppTest: selecting a point of a chart lists the records behind it — the
records ``kpis.records`` returns, as many as the KPI counts, with account and owner names —
and a viewer gets the note instead of the rows.

AppTest has no plotly-chart widget to click, so :func:`select_point` sends the selection
the browser sends (the chart's widget state, JSON ``{"selection": {"points": [...]}}``)
with the next run; tests/browser/test_drilldown_browser.py clicks a real bar.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetStates
from streamlit.testing.v1 import AppTest

import kpis
from tests.ui.test_auth import accounts, sign_in  # noqa: F401  (the accounts fixture)
from tests.ui.test_pages import _array, _figure
from ui.drilldown import HINT


def _chart(at: AppTest, title_part: str):
    for chart in at.get("plotly_chart"):
        title = json.loads(chart.proto.spec).get("layout", {}).get("title", {}).get("text", "")
        if title_part in title:
            return chart
    raise AssertionError(f"no chart titled like {title_part!r}")


def select_point(at: AppTest, title_part: str, curve: int, index: int) -> AppTest:
    """Run ``at`` again as if the user had clicked point ``index`` of trace ``curve`` of the
    chart titled like ``title_part`` (the widget state the browser sends)."""
    chart = _chart(at, title_part)
    trace = json.loads(chart.proto.spec)["data"][curve]
    x, y = _array(trace["x"])[index], _array(trace["y"])[index]
    point = {"curve_number": curve, "point_number": index, "point_index": index, "x": x, "y": y}
    states: WidgetStates = at._tree.get_widget_states()
    state = states.widgets.add()
    state.id = chart.proto.id
    state.string_value = json.dumps(
        {"selection": {"points": [point], "point_indices": [index], "box": [], "lasso": []}}
    )
    return at._run(states)  # AppTest's own run with one more widget state


def _trace_index(spec: dict, name: str) -> int:
    return next(i for i, trace in enumerate(spec["data"]) if trace.get("name") == name)


def test_clicking_a_win_rate_point_lists_its_deals_with_names(app, demo_engine, default_filters):
    at = app("pages/1_Sales_pipeline.py").run()
    assert not at.exception
    assert any(HINT in c.value for c in at.caption)
    tables = len(at.dataframe)
    spec = _figure(at, "Win rate per month")
    curve = _trace_index(spec, "Win rate")
    periods = [pd.Timestamp(x) for x in _array(spec["data"][curve]["x"])]
    index = len(periods) - 2  # the last complete month
    at = select_point(at, "Win rate per month", curve, index)
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.dataframe) == tables + 1
    rate = kpis.win_rate(demo_engine, default_filters, "month").set_index("period")
    expected = rate.loc[periods[index]]
    shown = next(d.value for d in at.dataframe if "deal_id" in d.value and "cycle_days" in d.value)
    assert len(shown) == expected["won"] + expected["lost"] > 0
    assert set(shown["status"]) <= {"Won", "Lost"}  # codes shown as words
    assert (shown["status"] == "Won").sum() == expected["won"]
    closed = pd.to_datetime(shown["closed_at"])
    assert closed.min() >= periods[index] and closed.max() < periods[index] + pd.DateOffset(months=1)
    # names, never user ids like "U013"
    owners = kpis.dimension_values(demo_engine)["owners"]
    assert shown["owner"].notna().all() and not set(shown["owner"]) & set(owners)
    assert shown["account"].notna().any()
    assert any(f"{len(shown):,} records" in c.value for c in at.caption)


def test_clicking_a_churn_by_bar_and_an_nps_point(app, demo_engine, default_filters):
    at = app("pages/2_Customers_and_churn.py").run()
    spec = _figure(at, "Monthly churn rate by segment")
    groups = _array(spec["data"][0]["y"])  # horizontal bars: groups on y
    at = select_point(at, "Monthly churn rate by segment", 0, 0)
    assert not at.exception
    by_group = kpis.churn_by(demo_engine, default_filters, "segment").set_index("group")
    shown = next(d.value for d in at.dataframe if "churned" in d.value and "month" in d.value)
    assert len(shown) == min(by_group.loc[groups[0], "customers_at_start"], 1000)
    assert set(shown["segment"]) == {groups[0]}

    at = app("pages/4_Customer_feedback.py").run()
    spec = _figure(at, "NPS per period")
    curve = _trace_index(spec, "NPS")
    periods = [pd.Timestamp(x) for x in _array(spec["data"][curve]["x"])]
    at = select_point(at, "NPS per period", curve, 0)
    assert not at.exception
    nps = kpis.nps(demo_engine, default_filters, "month").set_index("period").loc[periods[0]]
    shown = next(d.value for d in at.dataframe if "response_id" in d.value)
    assert len(shown) == nps["responses"] > 0
    assert (shown["category"] == "Promoter").sum() == nps["promoters"]
    assert not shown["touchpoint"].dropna().str.contains("_").any()  # no raw codes like website_visit


@pytest.mark.usefixtures("accounts")
def test_a_viewer_gets_the_note_not_the_records(app):
    at = app("dashboard.py").run()
    sign_in(at, "rm-a")  # a viewer
    at.switch_page("pages/1_Sales_pipeline.py").run()
    assert not at.exception
    tables = len(at.dataframe)
    notes = sum("Record-level detail" in i.value for i in at.info)
    spec = _figure(at, "Win rate per month")
    at = select_point(at, "Win rate per month", _trace_index(spec, "Win rate"), 0)
    assert not at.exception
    assert sum("Record-level detail" in i.value for i in at.info) == notes + 1
    assert len(at.dataframe) == tables


#: page -> how many of its charts have a drill-down (point selection) on the demo data
DRILLABLE = {
    "pages/1_Sales_pipeline.py": 8,  # funnel, win rate, lead conversion, by group, cycle, stages, pipeline, aging
    "pages/2_Customers_and_churn.py": 5,  # churn, new / churned, NRR, by segment, cohorts
    "pages/3_Service.py": 4,  # FCR, tickets, resolution times, weekly complaints
    "pages/4_Customer_feedback.py": 3,  # NPS, score distribution, CES
    "pages/5_Marketing_and_retention_cost.py": 4,  # campaign funnel, cost per conversion, retention cost, profitability
    "pages/6_Forecast.py": 1,  # revenue history
}


def _clickable_trace(spec: dict) -> tuple[int, int]:
    """(trace, point) to click: a trace with points that is not a band or helper line, its
    middle non-zero point (a heatmap's invisible cell markers included)."""
    for curve, trace in enumerate(spec["data"]):
        meta = trace.get("meta") if isinstance(trace.get("meta"), dict) else {}
        if trace.get("hoverinfo") == "skip" or meta.get("partial_helper") or "x" not in trace:
            continue
        if trace.get("type") == "heatmap" or trace.get("fill") == "toself":
            continue
        ys = _array(trace.get("x" if trace.get("type") == "funnel" else "y", []))  # a funnel's values are x
        points = [i for i, y in enumerate(ys) if y is not None and y == y and y != 0]  # records behind it
        if points:
            return curve, points[len(points) // 2]
    raise AssertionError("no clickable trace")


@pytest.mark.parametrize("page", list(DRILLABLE))
def test_every_drillable_chart_lists_records(app, page):
    at = app(page).run()
    assert not at.exception
    charts = [c for c in at.get("plotly_chart") if list(c.proto.selection_mode)]
    assert len(charts) == DRILLABLE[page]
    assert sum(HINT in c.value for c in at.caption) == DRILLABLE[page]
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    for title in titles:
        at = app(page).run()
        spec = json.loads(_chart(at, title).proto.spec)
        curve, index = _clickable_trace(spec)
        tables = len(at.dataframe)
        at = select_point(at, title, curve, index)
        assert not at.exception, (title, [e.value for e in at.exception])
        assert len(at.dataframe) == tables + 1, title
