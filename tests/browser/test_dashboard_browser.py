"""The dashboard in a real browser: filters change what is drawn, files download, a copied
link restores the view. Every page opening without an exception, and its screenshot in
``test-artifacts/screenshots``, is test_readable_browser.py's walk over the pages (one page
load each for both checks).
"""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import openpyxl
import pytest

from kpis.filters import dimension_values

pytestmark = pytest.mark.browser

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIDEBAR = '[data-testid="stSidebar"]'
SERVICE = "/Service"


def page_paths() -> list[tuple[str, str]]:
    """(name, URL path) of every page: the Overview, then ``pages/*.py`` in sidebar order."""
    pages = [("Overview", "/")]
    for script in sorted((PROJECT_ROOT / "pages").glob("*.py")):
        name = re.sub(r"^\d+_", "", script.stem)
        pages.append((name, f"/{name}"))
    return pages


APP_IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def wait_for_app(page, settle_ms: int = 500) -> None:
    """Wait until the script run has finished and every Plotly chart is drawn.

    The page title first, then "not running": before a fresh page's first run the app also
    reports "not running", and reading widgets then raced the run (seen as a sidebar that
    held only the first page link). The filter bar's last button closes the sidebar.
    """
    page.wait_for_selector('[data-testid="stMain"] h1', timeout=120_000)
    page.wait_for_selector(APP_IDLE, timeout=120_000)
    page.wait_for_selector(f'{SIDEBAR} button:has-text("Reset filters")', timeout=60_000)
    page.wait_for_function(
        """() => {
            const charts = document.querySelectorAll('[data-testid="stPlotlyChart"]');
            const drawn = document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot .main-svg');
            return document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot').length === charts.length
                && drawn.length >= charts.length;
        }""",
        timeout=60_000,
        polling=200,
    )
    page.wait_for_timeout(settle_ms)
    # A script that calls st.rerun() (the Alerts page after "Add rule") is idle for a moment
    # between its two runs: if the second run started within the settle time, wait for it.
    page.wait_for_selector(APP_IDLE, timeout=120_000)


def rerun_after(page, action) -> None:
    """Do ``action`` (a widget change) and wait for the script run it triggers to finish."""
    page.evaluate(
        """() => {
            window.__crmRuns = 0;
            const app = document.querySelector('[data-testid="stApp"]');
            new MutationObserver(() => {
                if (app.getAttribute('data-test-script-state') === 'running') window.__crmRuns += 1;
            }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
        }"""
    )
    action()
    # A click that lands while a run is under way (a button that appears only in that run)
    # restarts the run without the state leaving "running": that run takes the action in.
    page.evaluate(
        """() => {
            const app = document.querySelector('[data-testid="stApp"]');
            if (app.getAttribute('data-test-script-state') === 'running') window.__crmRuns += 1;
        }"""
    )
    page.wait_for_function("() => window.__crmRuns > 0", timeout=60_000, polling=100)
    wait_for_app(page)


def open_page(page, path: str) -> None:
    page.goto(path)
    wait_for_app(page)


def assert_no_exception(page, name: str) -> None:
    errors = page.locator('[data-testid="stException"]')
    assert errors.count() == 0, f"{name}: {errors.first.inner_text()[:800]}"


def full_screenshot(page, target: Path) -> None:
    """The whole page (Streamlit scrolls inside its main area, so grow the viewport to fit)."""
    height = page.evaluate(
        """() => {
            const main = document.querySelector('[data-testid="stMain"]');
            return Math.max(main ? main.scrollHeight : 0, document.body.scrollHeight);
        }"""
    )
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": min(max(int(height), size["height"]), 8000)})
    # only the height changes (the charts keep their width): give the layout two frames
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.screenshot(path=str(target), full_page=True)
    page.set_viewport_size(size)


def choose_in_multiselect(page, label: str, option: str) -> None:
    """Pick ``option`` in the sidebar multiselect labelled ``label``."""
    widget = page.locator(f'{SIDEBAR} [data-testid="stMultiSelect"]').filter(has_text=label).first
    widget.locator("input").click()

    def pick() -> None:
        page.get_by_role("option", name=option, exact=True).click()
        page.keyboard.press("Escape")

    rerun_after(page, pick)


def multiselect_tags(page, label: str) -> list[str]:
    widget = page.locator(f'{SIDEBAR} [data-testid="stMultiSelect"]').filter(has_text=label).first
    tags = widget.locator('[data-testid="stMultiSelectTagsContainer"] [data-tag]')
    return tags.evaluate_all("tags => tags.map(tag => tag.getAttribute('aria-label'))")


def first_chart_y(page) -> list[float | None]:
    """The y values of the first plotted line of the first chart (read from Plotly's own data)."""
    page.wait_for_selector(".js-plotly-plot", timeout=60_000)
    return page.evaluate(
        """() => {
            const plot = document.querySelector('.js-plotly-plot');
            // _fullData holds the decoded arrays (data may carry plotly.py's base64 typed arrays)
            const traces = plot._fullData.filter(t => (t.mode || '').includes('markers') || t.type === 'bar');
            return Array.from((traces[0] || plot._fullData[0]).y);
        }"""
    )


@pytest.fixture(scope="module")
def segments(browser_demo_url: str) -> list[str]:
    from crm_data.engines import make_engine

    engine = make_engine(browser_demo_url, read_only=True)
    try:
        values = dimension_values(engine)["segments"]
    finally:
        engine.dispose()
    assert values, "the demo database has no segments"
    return values


#: Text elements inside the Overview's card titles that are cut short (an ellipsis).
CUT_TITLES = """() => [...document.querySelectorAll('[data-testid="stMetricLabel"]')]
    .filter(label => [label, ...label.querySelectorAll('*')].some(e => e.scrollWidth > e.clientWidth + 1))
    .map(label => label.innerText.trim())"""


def test_no_overview_card_title_is_cut_short(page):
    """At the browser tests' viewport every card shows its whole title (the full KPI name
    is in the card's help)."""
    open_page(page, "/")
    assert page.locator('[data-testid="stMetricLabel"]').count() == 10
    assert page.evaluate(CUT_TITLES) == []


def test_changing_a_filter_updates_the_overview_metrics_and_the_url(page, segments):
    open_page(page, "/")
    before = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert before, "the Overview shows no metric"
    choose_in_multiselect(page, "Segment", segments[0])
    after = page.locator('[data-testid="stMetricValue"]').all_inner_texts()
    assert multiselect_tags(page, "Segment") == [segments[0]]
    assert parse_qs(urlparse(page.url).query).get("segment") == [segments[0]]
    assert after != before, "selecting a segment changed no Overview number"
    assert_no_exception(page, "Overview")


def test_changing_a_filter_updates_a_chart(page, segments):
    open_page(page, SERVICE)
    before = first_chart_y(page)
    choose_in_multiselect(page, "Segment", segments[-1])
    after = first_chart_y(page)
    assert len(after) == len(before)
    assert after != before, "the first-contact-resolution chart did not change with the segment"
    assert_no_exception(page, "Service")


def _download(page, label: str) -> bytes:
    """Open the first chart's Export popover and download the file behind ``label``."""
    button = page.locator('[data-testid="stDownloadButton"] button').filter(
        has_text=re.compile(rf"(^|download|\s){re.escape(label)}\s*$")  # after the icon's ligature text
    )
    if not button.first.is_visible():
        page.locator('[data-testid="stPopover"] button').filter(has_text="Export").first.click()
    with page.expect_download(timeout=90_000) as download:
        button.first.click()
    return Path(download.value.path()).read_bytes()


def test_chart_downloads_png_and_xlsx_and_the_whole_page_pdf(page, segments):
    open_page(page, f"{SERVICE}?segment={segments[0]}")
    png = _download(page, "PNG")
    assert png[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", png[16:24])
    assert width > 500 and height > 200

    xlsx = _download(page, "XLSX (data)")
    book = openpyxl.load_workbook(io.BytesIO(xlsx))
    data_sheet, about = book.worksheets[0], book["About"]
    header = [c.value for c in data_sheet[1]]
    assert {"period", "resolved", "first_contact", "fcr_rate"} <= set(header)
    assert data_sheet.max_row > 1
    meta = {row[0].value: row[1].value for row in about.iter_rows()}
    assert meta["Page"] == "Service"
    assert f"Segment: {segments[0]}" in meta["Filters"]
    assert "first" in meta["Definition"].lower()

    pdf_button = page.locator('[data-testid="stDownloadButton"] button').filter(has_text="this page as PDF")
    with page.expect_download(timeout=120_000) as download:
        pdf_button.first.click()
    assert Path(download.value.path()).read_bytes().startswith(b"%PDF-")
    assert_no_exception(page, "Service")


def test_a_copied_link_restores_the_same_filters(page, browser, dashboard_url, segments):
    open_page(page, SERVICE)
    choose_in_multiselect(page, "Segment", segments[0])
    rerun_after(
        page,
        lambda: page.locator(f'{SIDEBAR} [data-testid="stRadio"] label').filter(has_text="Quarter").click(),
    )
    copied = page.url
    assert "period=quarter" in copied and "segment=" in copied
    expected_chart = first_chart_y(page)

    fresh = browser.new_context(viewport={"width": 1440, "height": 1000})
    try:
        other = fresh.new_page()
        other.goto(copied)
        wait_for_app(other)
        assert multiselect_tags(other, "Segment") == [segments[0]]
        checked = other.locator(f'{SIDEBAR} [data-testid="stRadio"] label').filter(
            has=other.locator("input:checked")
        )
        assert checked.count() == 1
        assert "Quarter" in checked.first.inner_text()
        assert first_chart_y(other) == expected_chart
        assert_no_exception(other, "Service (copied link)")
    finally:
        fresh.close()


def test_a_hostile_link_value_is_ignored_with_a_notice(page):
    open_page(page, f"{SERVICE}?segment=%27%20OR%201%3D1%20--")
    assert multiselect_tags(page, "Segment") == []
    assert "Ignored unknown segment" in page.locator(SIDEBAR).inner_text()
    assert_no_exception(page, "Service")


NAV_LINK = f'{SIDEBAR} [data-testid="stPageLink-NavLink"]'


def test_the_sidebar_names_the_pages_and_its_links_keep_the_filters(page, segments):
    open_page(page, "/")
    # Streamlit's own list (first entry "dashboard") is switched off; ours names the pages
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0
    texts = page.locator(NAV_LINK).all_inner_texts()
    labels = [text.strip().split("\n")[-1] for text in texts]  # the label follows the icon's ligature
    assert labels[:3] == ["Overview", "Sales pipeline", "Customers & churn"], labels
    assert not any(label.lower() == "dashboard" for label in labels)
    choose_in_multiselect(page, "Segment", segments[0])
    rerun_after(page, lambda: page.locator(NAV_LINK).filter(has_text="Sales pipeline").first.click())
    assert urlparse(page.url).path.endswith("/Sales_pipeline")
    assert page.locator('[data-testid="stMain"] h1').first.inner_text().strip() == "Sales pipeline"
    assert multiselect_tags(page, "Segment") == [segments[0]]
    assert_no_exception(page, "Sales pipeline (from the sidebar link)")
