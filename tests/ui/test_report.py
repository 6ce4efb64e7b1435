"""ui.report on a real page: every chart has PNG/SVG/PDF/HTML/CSV/XLSX downloads built only
when clicked, the whole-page PDF is offered, and without Chromium a note replaces the
image buttons while HTML/CSV/XLSX remain.

AppTest exposes no download bytes, so the deferred callables Streamlit registers for the
buttons are recorded and called here, exactly as a click would."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest
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


def test_every_chart_offers_all_formats_and_the_page_pdf(app, deferred):
    at = app(PAGE).run()
    assert not at.exception
    charts = len(at.get("plotly_chart"))
    labels = _labels(at)
    for label in ("PNG", "SVG", "PDF", "HTML (interactive)", "CSV (data)", "XLSX (data)"):
        assert labels.count(label) == charts, label
    assert any(label.startswith("Download this page as PDF") for label in labels)
    assert "churn-rate-per-month.png" in deferred  # registered, not yet built


def test_data_downloads_build_real_files_when_clicked(app, deferred, demo_engine, default_filters):
    import kpis

    app(PAGE).run()
    csv = deferred["churn-rate-per-month.csv"]()
    frame = pd.read_csv(io.BytesIO(csv if isinstance(csv, bytes) else csv.encode()))
    expected = kpis.churn_rate(demo_engine, default_filters, "month")
    assert list(frame["churned"]) == list(expected["churned"])
    xlsx = deferred["churn-rate-per-month.xlsx"]()
    assert zipfile.is_zipfile(io.BytesIO(xlsx))
    html = deferred["churn-rate-per-month.html"]()
    assert b"plotly" in html.lower()


@pytest.mark.skipif(not export.chromium_available(), reason="Chromium is not installed")
def test_png_download_is_a_png(app, deferred):
    app(PAGE).run()
    png = deferred["churn-rate-per-month.png"]()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_chromium_image_buttons_give_way_to_a_note(app, monkeypatch):
    monkeypatch.setattr(export, "chromium_available", lambda: False)
    at = app(PAGE).run()
    assert not at.exception
    labels = _labels(at)
    assert "PNG" not in labels and "SVG" not in labels and "PDF" not in labels
    assert labels.count("XLSX (data)") == len(at.get("plotly_chart"))
    assert labels.count("HTML (interactive)") == len(at.get("plotly_chart"))
    assert any(export.MISSING_CHROMIUM_HELP in c.value for c in at.caption)
