"""The date range applies at once in a real browser (issue 14, point 10).

Measured with streamlit 1.67 in chromium: a range picked in the calendar applies on the second
click; a TYPED date was applied by Streamlit only when the calendar closed (Esc or a click
elsewhere). ``ui.filters.DATE_TYPING_SCRIPT`` closes it on a complete end date (and on Enter).
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

from tests.browser.test_dashboard_browser import SIDEBAR, open_page, rerun_after

DATE_FIELD = f'{SIDEBAR} [data-testid="stDateInputField"]'


def url_range(page) -> tuple[dt.date, dt.date]:
    query = parse_qs(urlparse(page.url).query)
    return dt.date.fromisoformat(query["from"][0]), dt.date.fromisoformat(query["to"][0])


def test_a_typed_end_date_applies_without_a_click_elsewhere(page):
    open_page(page, "/")
    start, last = url_range(page)
    wanted = start + dt.timedelta(days=40)
    assert wanted < last
    end_year = page.locator(f'{DATE_FIELD} [data-range-field="end"] [role="spinbutton"]').first

    def type_end() -> None:
        end_year.click()
        page.keyboard.type(wanted.strftime("%Y%m%d"))  # no Enter, no Esc, no click elsewhere

    rerun_after(page, type_end)
    assert url_range(page) == (start, wanted)
    assert page.locator('[role="grid"]').count() == 0  # the calendar closed by itself


def test_a_range_picked_in_the_calendar_applies_on_the_second_click(page):
    open_page(page, "/")
    before = url_range(page)
    page.locator(f'{DATE_FIELD} [data-range-field="start"] [role="spinbutton"]').first.click()
    days = page.locator('[role="grid"] [role="gridcell"]:not([aria-disabled="true"])')
    days.filter(has_text="10").first.click()
    page.wait_for_timeout(1500)
    assert url_range(page) == before  # half picked: the last full range still applies
    rerun_after(page, lambda: days.filter(has_text="20").first.click())
    start, last = url_range(page)
    assert (start.day, last.day, last - start) == (10, 20, dt.timedelta(days=10))
