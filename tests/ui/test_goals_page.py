"""The Goals page in AppTest on the demo database: an analyst/admin adds, changes and
removes a goal; the list shows the KPI layer's actual and status; the quota table names
owners; a viewer reads only and a scoped viewer sees only the goals inside the scope; the
Overview card and the chart show the target.

Goals go to a per-test SQLite file (``CRM_AUTH_DATABASE_URL``), so no other UI test sees
them. "Today" is the data's today (``ui.filters.data_today``: the day after the demo
data's last day), which the page uses too.
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest

from charts.theme import fmt_value
from crm_data.accounts import AccountStore
from crm_data.goals import GoalStore, make_goal
from kpis import Filters
from kpis import goals as kg
from kpis.filters import data_date_range, dimension_values
from tests.ui.test_auth import PASSWORD, sign_in
from ui.filters import data_today

SCRIPT = "pages/10_Goals.py"


@pytest.fixture
def goal_db(app_db: str, tmp_path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CRM_AUTH_DATABASE_URL", f"sqlite:///{tmp_path / 'auth.sqlite'}")
    store = GoalStore.open(app_db)
    yield store
    store.dispose()


@pytest.fixture
def today(demo_engine) -> dt.date:
    return data_today(data_date_range(demo_engine))


def _month(day: dt.date) -> str:
    return f"{day.year}-{day.month:02d}"


def _previous_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def _goals_table(at) -> pd.DataFrame:
    tables = [d.value for d in at.dataframe if "status" in d.value.columns and "KPI" in d.value.columns]
    assert tables, "no goals table"
    return tables[0]


def test_an_admin_adds_changes_and_removes_a_goal(app, goal_db, demo_engine, today) -> None:
    at = app(SCRIPT).run()
    assert not at.exception
    assert any("No goals yet" in i.value for i in at.info)
    # last month's revenue (ended): its actual from the KPI layer, target 1 above it -> missed
    month = _previous_month(today)
    actual = kg.kpi_value(demo_engine, Filters(month, today.replace(day=1)), "revenue", "month")
    target = math.floor(actual) + 1
    at.selectbox(key="goal_kpi").set_value("revenue")
    at.text_input(key="goal_period").input(_month(month))
    at.text_input(key="goal_target").input(str(target))
    [save] = [b for b in at.button if b.label == "Save goal"]
    save.click().run()
    assert not at.exception
    assert any("Saved goal 1: Revenue" in s.value for s in at.success), [s.value for s in at.success]
    shown = _goals_table(at)
    assert shown[["id", "KPI", "for", "actual", "target", "status"]].to_dict("records") == [
        {
            "id": 1,
            "KPI": "Revenue",
            "for": "all accounts",
            "actual": fmt_value(actual, "money"),
            "target": fmt_value(target, "money"),
            "status": "missed",
        }
    ]
    # a bad target is refused with the reason, nothing is saved
    at.text_input(key="goal_target").input("a lot")
    [save] = [b for b in at.button if b.label == "Save goal"]
    save.click().run()
    assert any("Not saved: not a number: 'a lot'" in e.value for e in at.error)
    assert len(goal_db.goals()) == 1
    # change the target to the actual's floor: now achieved
    at.selectbox(key="goal_pick").set_value(1)
    at.text_input(key="goal_new_target").input(str(math.floor(actual)))
    at.button(key="goal_change").click().run()
    assert not at.exception
    assert goal_db.get(1).target == math.floor(actual)
    assert list(_goals_table(at)["status"]) == ["achieved"]
    at.button(key="goal_remove").click().run()
    assert goal_db.goals() == []
    assert any("Removed goal 1." in s.value for s in at.success)


def test_quota_table_and_a_viewer_reads_only(app, goal_db, demo_engine, today) -> None:
    owners = dimension_values(demo_engine)["owners"][:2]
    quarter = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    quarter_text = f"{quarter.year}-Q{(quarter.month - 1) // 3 + 1}"
    for owner in owners:
        goal_db.add(make_goal("won_amount", quarter_text, "50000", {"owner": owner}), actor="t")
    regions = dimension_values(demo_engine)["regions"]
    goal_db.add(make_goal("nps", quarter_text, "30", {"region": regions[0]}), actor="t")
    accounts = AccountStore.open(goal_db.engine.url.render_as_string(hide_password=False))
    accounts.add("vw", role="viewer", password=PASSWORD, actor="t")
    accounts.add("rm", role="viewer", scope={"regions": [regions[0]]}, password=PASSWORD, actor="t")
    accounts.dispose()

    at = app(SCRIPT).run()
    sign_in(at, "vw")
    assert not at.exception
    assert len(_goals_table(at)) == 3
    expected = kg.quota_attainment(demo_engine, goal_db.goals(), quarter, today)
    quota = next(d.value for d in at.dataframe if "attainment" in d.value.columns)
    assert list(quota["owner"]) == list(expected["owner"])
    assert list(quota["won amount"]) == [fmt_value(v, "money") for v in expected["won_amount"]]
    assert list(quota["status"]) == list(expected["status"])
    assert not [b for b in at.button if b.label == "Save goal"] and not at.get("file_uploader")
    assert any("set by analysts and admins" in c.value for c in at.caption)

    at = app(SCRIPT).run()
    sign_in(at, "rm")  # scoped to one region: only the goal of that region
    table = _goals_table(at)
    assert list(table["KPI"]) == ["Net Promoter Score"] and list(table["for"]) == [f"region {regions[0]}"]


def test_the_overview_card_and_the_chart_show_the_target(app, goal_db, demo_engine, today) -> None:
    month = _previous_month(today)  # the month the cards show (the last complete one)
    goal_db.add(make_goal("churn_rate", _month(month), "0.5"), actor="t")  # far above any churn: achieved
    at = app("dashboard.py").run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert any(f"target {fmt_value(0.5, 'ratio')}" in c and "achieved" in c for c in captions), captions
    # the churn chart draws a dashed Target segment over that month
    at.switch_page("pages/2_Customers_and_churn.py").run()
    assert not at.exception
    figures = [c.proto.spec for c in at.get("plotly_chart")]
    assert any(
        '"name":"Target"' in spec.replace(" ", "") and '"dash":"dash"' in spec.replace(" ", "")
        for spec in figures
    )


def test_a_csv_import_on_the_page_is_all_or_nothing(app, goal_db, demo_engine, today) -> None:
    owner = dimension_values(demo_engine)["owners"][0]
    at = app(SCRIPT).run()
    bad = f"kpi,period,target,owner\nrevenue,2026-12,100,\nwon_amount,2026-Q4,lots,{owner}\n".encode()
    at.file_uploader(key="goals_upload").set_value(("q4.csv", bad, "text/csv")).run()
    at.button(key="goals_import").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(
        "1 problem(s) in q4.csv; nothing imported" in e and "q4.csv:3:target: not a number" in e
        for e in errors
    )
    assert goal_db.goals() == []
    good = f"kpi,period,target,owner\nrevenue,2026-12,100,\nwon_amount,2026-Q4,5000,{owner}\n".encode()
    at.file_uploader(key="goals_upload").set_value(("q4.csv", good, "text/csv")).run()
    at.button(key="goals_import").click().run()
    assert not at.exception
    assert any("Imported q4.csv: 2 goal(s) added, 0 changed." in s.value for s in at.success)
    assert sorted((g.kpi, g.owner) for g in goal_db.goals()) == [("revenue", ""), ("won_amount", owner)]


def test_a_scoped_analyst_may_set_goals_only_inside_the_scope(app, goal_db, demo_engine) -> None:
    regions = dimension_values(demo_engine)["regions"]
    accounts = AccountStore.open(goal_db.engine.url.render_as_string(hide_password=False))
    accounts.add("an", role="analyst", scope={"regions": [regions[0]]}, password=PASSWORD, actor="t")
    accounts.dispose()
    at = app(SCRIPT).run()
    sign_in(at, "an")
    at.selectbox(key="goal_kpi").set_value("nps")
    at.text_input(key="goal_period").input("2026")
    at.text_input(key="goal_target").input("30")
    [save] = [b for b in at.button if b.label == "Save goal"]
    save.click().run()  # no region chosen: a company-wide goal, outside the scope
    assert any("outside your scope" in e.value for e in at.error)
    assert goal_db.goals() == []
    at.selectbox(key="goal_region").set_value(regions[0])
    [save] = [b for b in at.button if b.label == "Save goal"]
    save.click().run()
    assert not at.exception
    assert [(g.kpi, g.region) for g in goal_db.goals()] == [("nps", regions[0])]


def test_the_card_also_judges_the_running_month_by_pace(app, goal_db, demo_engine, today) -> None:
    running = today.replace(day=1)  # the month still running (the data's today lies inside it)
    assert running < today, "the demo data's today is the 1st: no running month to judge"
    actual = kg.kpi_value(demo_engine, Filters(running, today), "revenue", "month")
    share = (today - running).days / ((running + dt.timedelta(days=32)).replace(day=1) - running).days
    target = math.ceil(actual / share * 1.25)  # pace needs target × share = 1.25 × actual: at risk
    goal_db.add(make_goal("revenue", _month(running), str(target)), actor="t")
    assert kg.evaluate(goal_db.goals()[0], actual, today).status == "at risk"
    at = app("dashboard.py").run()
    assert not at.exception
    label = pd.Timestamp(running).strftime("%b %Y")
    captions = [c.value for c in at.caption]
    assert any(f"{label}: target {fmt_value(target, 'money')}" in c and "at risk" in c for c in captions), (
        captions
    )
