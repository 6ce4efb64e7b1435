"""The Alerts page in a real browser (the session's dashboard server, anonymous on
127.0.0.1, so an admin): add a rule, evaluate it, see it fire in the history, and the alert
arrive at a local webhook server."""

from __future__ import annotations

import pytest

from tests.browser.test_dashboard_browser import (
    APP_IDLE,
    assert_no_exception,
    open_page,
    rerun_after,
)
from tests.delivery.servers import webhook_server

pytestmark = pytest.mark.browser

MAIN = '[data-testid="stMain"]'


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (inside a form: no rerun)."""
    box = page.locator(f'{MAIN} [data-testid="stSelectbox"]').filter(has_text=label).first
    box.click()
    page.get_by_role("option", name=option, exact=True).click()


def test_add_a_rule_evaluate_it_and_see_it_fire(page, screenshot_dir) -> None:
    with webhook_server() as (base, hooks):
        open_page(page, "/Alerts")
        assert_no_exception(page, "Alerts")
        expander = page.locator(f'{MAIN} [data-testid="stExpander"]').filter(has_text="Add a rule")
        if not expander.locator('[data-testid="stForm"]').is_visible():
            expander.locator("summary").click()
        choose(page, "KPI", "Active customers")
        choose(page, "Condition", "above a line")
        page.get_by_role("textbox", name="Threshold").fill("0")
        page.get_by_role("textbox", name="Name (optional)").fill("Browser alert")
        page.get_by_role("textbox", name="Tell (one e-mail address or webhook URL per line)").fill(
            f"{base}/browser-hook"
        )
        rerun_after(page, lambda: page.get_by_role("button", name="Add rule").click())
        assert_no_exception(page, "Alerts after adding")
        # "Add rule" runs the script twice (st.rerun): the button appears in the second run
        page.get_by_role("button", name="Evaluate now").wait_for(timeout=60_000)
        page.wait_for_selector(APP_IDLE, timeout=120_000)
        rerun_after(page, lambda: page.get_by_role("button", name="Evaluate now").click())
        assert_no_exception(page, "Alerts after evaluating")
        fired = page.locator(f'{MAIN} [data-testid="stAlertContentWarning"]').filter(has_text="Fired:")
        assert "Active customers" in fired.first.inner_text()
        history = page.locator(f"{MAIN} p").filter(has_text="alert(s).").first.inner_text()
        assert "Newest, rule" in history and "Active customers" in history and "is above 0" in history
        page.screenshot(path=str(screenshot_dir / "Alerts-fired.png"), full_page=True)
    assert [body["text"].splitlines()[0] for body in hooks.bodies] == ["*Browser alert*"]
    assert hooks.paths == ["/browser-hook"]
