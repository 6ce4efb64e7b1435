"""The PowerPoint download in the real browser: the deck of a filtered page holds, as a native
chart, the very numbers the browser draws, and the filter on its title slide."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pptx import Presentation

from tests.browser.test_dashboard_browser import (
    SERVICE,
    assert_no_exception,
    first_chart_y,
    open_page,
    segments,
)

__all__ = ["segments"]  # the fixture, shared with the dashboard tests


def test_the_page_deck_holds_the_numbers_the_browser_draws(page, segments):
    open_page(page, f"{SERVICE}?segment={segments[0]}")
    drawn = first_chart_y(page)
    button = page.locator('[data-testid="stDownloadButton"] button').filter(
        has_text="this page as PowerPoint"
    )
    with page.expect_download(timeout=120_000) as download:
        button.first.click()
    assert download.value.suggested_filename == "service.pptx"
    deck = Presentation(io.BytesIO(Path(download.value.path()).read_bytes()))
    first = deck.slides[0]
    assert first.shapes.title.text == "Service"
    assert f"Segment: {segments[0]}" in first.placeholders[1].text
    chart = next(shape.chart for shape in deck.slides[1].shapes if shape.has_chart)
    values = list(next(iter(chart.plots[0].series)).values)
    assert values == pytest.approx(drawn, nan_ok=True)
    assert_no_exception(page, "Service")
