"""Goals in a real browser: set a goal on the Goals page, then see its target and status on
the Overview's card (the session's shared server; the goal is removed afterwards so the
other browser tests see the dashboard without goals)."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from charts.theme import fmt_value
from crm_data.engines import make_engine
from crm_data.goals import GoalStore
from kpis import Filters
from kpis import goals as kg
from kpis.filters import data_date_range
from tests.browser.test_dashboard_browser import assert_no_exception, open_page, wait_for_app
from ui.filters import data_today

pytestmark = pytest.mark.browser


@pytest.fixture
def goal_store(browser_demo_url: str):
    store = GoalStore.open(browser_demo_url)
    yield store
    for goal in store.goals():
        store.remove(goal.goal_id, actor="test cleanup")
    store.dispose()


def test_a_goal_set_on_the_goals_page_shows_on_the_overview_card(page, goal_store, browser_demo_url) -> None:
    engine = make_engine(browser_demo_url, read_only=True)
    try:
        today = data_today(data_date_range(engine))
        # the month the Overview cards show: the last complete one
        month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
        actual = kg.kpi_value(engine, Filters(month, today.replace(day=1)), "revenue", "month")
    finally:
        engine.dispose()
    target = int(actual * 2) + 1000  # twice last month's revenue: missed
    open_page(page, "/Goals")
    assert_no_exception(page, "Goals")
    assert page.get_by_text("No goals yet").count() == 1
    main = page.locator('[data-testid="stMain"]')
    main.get_by_role("textbox", name="Period").fill(f"{month.year}-{month.month:02d}")
    main.get_by_role("textbox", name="Target", exact=True).fill(str(target))
    main.get_by_role("button", name="Save goal").click()
    page.get_by_text("Saved goal 1: Revenue").wait_for(timeout=60_000)
    wait_for_app(page)
    assert_no_exception(page, "Goals after saving")
    assert [(g.kpi, g.target) for g in goal_store.goals()] == [("revenue", float(target))]

    open_page(page, "/")
    assert_no_exception(page, "Overview")
    text = card_text(page, "Revenue")
    assert f"target {fmt_value(target, 'money')}" in text and "missed" in text, text
    assert "target" not in card_text(page, "Churn rate")  # a card without a goal: no target line


def card_text(page, label: str) -> str:
    """The text of the Overview card whose metric is labelled exactly ``label``."""
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(f"^{re.escape(label)}$"))
    )
    return metric.first.locator("xpath=ancestor::div[@data-testid='stVerticalBlock'][1]").inner_text()
