"""Drill-down in a real browser: a click on a bar of the win rate by segment lists the deals
behind it — as many as the bar counts, with account and owner names — in a table
(``st.dataframe``: sorted by a click on a column header) with an XLSX download. The screenshot goes to ``test-artifacts/screenshots``.
"""

from __future__ import annotations

import io
from pathlib import Path

import openpyxl
import pytest
import sqlalchemy as sa

import kpis
from crm_data.engines import make_engine
from tests.browser.test_dashboard_browser import assert_no_exception, open_page, rerun_after
from ui.drilldown import HINT

pytestmark = pytest.mark.browser

PIPELINE = "/Sales_pipeline"
BY_SEGMENT = "Win rate and lead conversion by segment"


def _chart(page, title: str):
    return (
        page.locator('[data-testid="stPlotlyChart"]')
        .filter(has=page.locator(".gtitle", has_text=title))
        .first
    )


def _click_first_bar(page, chart) -> None:
    """A real mouse click in the middle of the chart's first bar (Plotly hit-tests the drag layer)."""
    chart.scroll_into_view_if_needed()
    box = chart.locator(".barlayer .point path").first.bounding_box()
    assert box is not None
    rerun_after(page, lambda: page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))


def test_clicking_a_bar_lists_its_deals_with_names(page, browser_demo_url, screenshot_dir):
    open_page(page, PIPELINE)
    chart = _chart(page, BY_SEGMENT)
    assert page.get_by_text(HINT).count() >= 5  # under every drillable chart of the page
    segment = chart.locator(".xtick text").first.text_content()
    _click_first_bar(page, chart)
    assert_no_exception(page, "Sales pipeline")
    title = page.get_by_text(f"Deals of segment {segment}", exact=True)
    title.wait_for(timeout=60_000)

    engine = make_engine(browser_demo_url, read_only=True)
    try:
        from ui.filters import default_range

        start, end = default_range(kpis.data_date_range(engine))
        expected = kpis.win_rate_by(engine, kpis.Filters(start, end), "segment").set_index("group")
        with engine.connect() as conn:
            owner_ids = set(conn.execute(sa.text("select user_id from users")).scalars())
            owner_names = set(conn.execute(sa.text("select name from users")).scalars())
    finally:
        engine.dispose()
    created = int(expected.loc[segment, "created"])
    assert page.get_by_text(f"{created:,} records").count() == 1

    # the table's XLSX download: the same rows, owners by name
    button = page.locator('[data-testid="stDownloadButton"] button').filter(has_text="Download XLSX")
    with page.expect_download(timeout=90_000) as download:
        button.first.click()
    book = openpyxl.load_workbook(io.BytesIO(Path(download.value.path()).read_bytes()))
    sheet = book.worksheets[0]
    header = [c.value for c in sheet[1]]
    rows = [dict(zip(header, (c.value for c in row), strict=True)) for row in sheet.iter_rows(min_row=2)]
    assert len(rows) == min(created, 1000)
    assert {row["segment"] for row in rows} == {segment}
    owners = {row["owner"] for row in rows}
    assert owners <= owner_names and not owners & owner_ids

    chart.evaluate("element => element.scrollIntoView({block: 'start'})")  # the chart, then its records
    page.wait_for_timeout(500)
    target = screenshot_dir / "drilldown.png"
    page.screenshot(path=str(target))
    print(f"\nDrill-down screenshot written to {target.resolve()}")
