"""The PowerPoint downloads: a page's "Download this page as PowerPoint" (next to the PDF, built
only when clicked, audited) and the Overview as one slide of cards.

AppTest exposes no download bytes, so the deferred callables Streamlit registers for the
buttons are recorded and called here, exactly as a click would. The expected numbers are the
KPI functions' own on the same demo database and filters."""

from __future__ import annotations

import io
import math

import pytest
from pptx import Presentation
from pptx.enum.chart import XL_CHART_TYPE
from streamlit.runtime.media_file_manager import MediaFileManager

from charts import export

PAGE = "pages/2_Customers_and_churn.py"


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """file name -> the callable a download button would run when clicked."""
    recorded: dict[str, object] = {}
    original = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        recorded[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    return recorded


def _labels(at) -> list[str]:
    return [b.proto.label for b in at.get("download_button")]


def test_page_deck_is_offered_and_holds_the_pages_numbers(app, deferred, demo_engine, default_filters):
    import kpis

    at = app(PAGE).run()
    assert not at.exception
    charts = len(at.get("plotly_chart"))
    assert f"Download this page as PowerPoint ({charts} charts)" in _labels(at)
    deck = Presentation(io.BytesIO(deferred["customers-churn.pptx"]()))
    titles = [slide.shapes.title.text for slide in deck.slides]
    assert titles[0] == "Customers & churn"
    assert titles[1] == "Churn rate per month"
    assert len([t for t in titles if not t.startswith("Data: ")]) >= 1 + charts
    chart = next(shape.chart for shape in deck.slides[1].shapes if shape.has_chart)
    assert chart.chart_type == XL_CHART_TYPE.LINE_MARKERS
    expected = list(kpis.churn_rate(demo_engine, default_filters, "month")["churn_rate"])
    got = list(next(iter(chart.plots[0].series)).values)
    assert len(got) == len(expected)
    for value, want in zip(got, expected, strict=True):
        assert (value is None and math.isnan(want)) or value == pytest.approx(want)
    notes = deck.slides[1].notes_slide.notes_text_frame.text
    assert "Data source: CRM Insights database (duckdb: demo.duckdb)" in notes


def test_page_deck_is_offered_without_chromium(app, monkeypatch):
    monkeypatch.setattr(export, "chromium_available", lambda: False)
    at = app(PAGE).run()
    assert not at.exception
    labels = _labels(at)
    assert not any(label.startswith("Download this page as PDF") for label in labels)
    assert any(label.startswith("Download this page as PowerPoint") for label in labels)


def test_overview_is_one_slide_with_the_cards_numbers(app, deferred, demo_engine, default_filters):
    from ui.cards import latest

    at = app("dashboard.py").run()
    assert not at.exception
    assert "Download the Overview as PowerPoint (one slide)" in _labels(at)
    deck = Presentation(io.BytesIO(deferred["overview.pptx"]()))
    assert len(deck.slides) == 1
    text = "\n".join(s.text_frame.text for s in deck.slides[0].shapes if s.has_text_frame)
    import kpis
    from charts.theme import fmt_value

    frame = kpis.win_rate(demo_engine, default_filters, "month")
    numbers = latest(frame, "win_rate", "month", end=default_filters.end, today=_data_today(demo_engine))
    assert "Win rate" in text
    assert fmt_value(numbers.value, "ratio") in text


def _data_today(engine):
    from kpis.filters import data_date_range
    from ui.filters import data_today

    return data_today(data_date_range(engine))
