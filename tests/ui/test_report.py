"""ui.report on a real page: every chart has PNG/SVG/PDF/HTML/CSV/XLSX downloads built only
when clicked, the whole-page PDF is offered, and without Chromium a note replaces the
image buttons while HTML/CSV/XLSX remain.

AppTest exposes no download bytes, so the deferred callables Streamlit registers for the
buttons are recorded and called here, exactly as a click would."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from charts import export

PAGE = "pages/2_Customers_and_churn.py"


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """file name -> the callable a download button would run when clicked. File names carry
    the filters after the first ``_`` (``churn-rate-per-month_2025-12-01_2026-12-31.csv``,
    ``charts.export.file_name``); each is recorded under that name and under its stem without
    them (``churn-rate-per-month.csv``)."""
    recorded: dict[str, object] = {}
    original = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        recorded[file_name] = data_callable
        if file_name and "_" in file_name:
            stem, extension = file_name.rsplit(".", 1)
            recorded.setdefault(f"{stem.split('_', 1)[0]}.{extension}", data_callable)
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


def _column_formats(table) -> dict[str, str]:
    """column name -> the number format the browser applies (from the element's column config)."""
    import json

    config = json.loads(table.proto.columns or "{}")
    return {
        name.removeprefix("col:name:"): spec.get("type_config", {}).get("format")
        for name, spec in config.items()
        if spec.get("type_config", {}).get("format")
    }


def test_tables_format_rates_money_days_and_counts(app):
    at = app("pages/5_Marketing_and_retention_cost.py").run()
    assert not at.exception
    campaigns = next(t for t in at.dataframe if "cost_per_conversion" in t.value.columns)
    formats = _column_formats(campaigns)
    assert formats["open_rate"] == formats["conversion_rate"] == "percent"
    assert formats["cost"] == formats["cost_per_conversion"] == "dollar"
    assert formats["sent"] == formats["converted"] == "%,d"
    assert "name" not in formats
    # the values stay raw: sorting and the CSV download see the numbers, not text
    assert campaigns.value["open_rate"].dtype.kind == "f"


def test_the_forecast_stage_table_is_formatted_not_rounded(app, demo_engine, default_filters):
    import forecasting

    at = app("pages/6_Forecast.py").run()
    assert not at.exception
    stages = next(t for t in at.dataframe if "win_probability" in t.value.columns)
    formats = _column_formats(stages)
    assert formats["win_probability"] == "percent"
    assert formats["expected_revenue"] == formats["amount"] == "dollar"
    assert formats["median_days_to_close"] == "%,.1f"
    expected = forecasting.pipeline_forecast(demo_engine, default_filters, months=3).by_stage
    # the kpis numbers, not rounded to cents by hand (the format does the display); rel 1e-12
    # allows only DuckDB's parallel summation order (~1e-6 here), far below a cent
    assert stages.value["expected_revenue"].tolist() == pytest.approx(
        expected["expected_revenue"].tolist(), rel=1e-12
    )
    assert any(abs(round(v, 2) - v) > 1e-4 for v in expected["expected_revenue"])  # so rounding would show


# --- the export browser warms up in the background ------------------------------------------


@pytest.fixture
def fresh_warmup(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Forget this process's warm-up thread; record ``export.warm_up`` calls (thread names)."""
    import threading

    from ui import report

    monkeypatch.setattr(report, "_warmup_thread", None)
    monkeypatch.delenv(report.WARMUP_VARIABLE, raising=False)
    calls: list[str] = []
    monkeypatch.setattr(export, "warm_up", lambda: calls.append(threading.current_thread().name))
    monkeypatch.setattr(export, "chromium_available", lambda: True)
    return calls


def test_the_export_browser_is_warmed_once_per_process_in_a_daemon_thread(fresh_warmup):
    from ui.report import warm_export_server

    first = warm_export_server()
    assert first is not None and first.daemon
    first.join(10)
    assert warm_export_server() is first  # later page runs start nothing
    assert fresh_warmup == ["crm-export-warmup"]


def test_no_warm_up_without_chromium_or_when_switched_off(fresh_warmup, monkeypatch):
    from ui.report import WARMUP_VARIABLE, warm_export_server

    monkeypatch.setattr(export, "chromium_available", lambda: False)
    assert warm_export_server() is None
    monkeypatch.setattr(export, "chromium_available", lambda: True)
    monkeypatch.setenv(WARMUP_VARIABLE, "0")
    assert warm_export_server() is None
    assert fresh_warmup == []


def test_opening_the_overview_starts_the_warm_up(app, fresh_warmup):
    from ui import report

    at = app("dashboard.py").run()
    assert not at.exception
    assert report._warmup_thread is not None
    report._warmup_thread.join(10)
    assert fresh_warmup == ["crm-export-warmup"]


@pytest.mark.skipif(not export.chromium_available(), reason="Chromium is not installed")
def test_the_warm_up_really_opens_the_export_browser(monkeypatch):
    from ui import report

    monkeypatch.setattr(report, "_warmup_thread", None)
    monkeypatch.delenv(report.WARMUP_VARIABLE, raising=False)
    thread = report.warm_export_server()
    thread.join(90)
    assert not thread.is_alive()
    assert export.server_running()


def test_download_file_names_carry_the_date_range_and_filters(app, deferred, default_filters):
    at = app(PAGE, query_params={"segment": ["Enterprise"]}).run()
    assert not at.exception
    first, last = default_filters.start, default_filters.end - dt.timedelta(days=1)
    tag = f"{first:%Y-%m-%d}_{last:%Y-%m-%d}_segment-enterprise"
    for extension in ("png", "svg", "pdf", "html", "csv", "xlsx"):
        assert f"churn-rate-per-month_{tag}.{extension}" in deferred, extension
    assert f"customers-churn_{tag}.pdf" in deferred  # the whole page ("Customers & churn")


@pytest.mark.skipif(not export.chromium_available(), reason="Chromium is not installed")
def test_the_exported_svg_states_the_filters(app, deferred):
    at = app(PAGE, query_params={"segment": ["Enterprise"]}).run()
    assert not at.exception
    svg = deferred["churn-rate-per-month.svg"]().decode("utf-8")
    assert "Segment: Enterprise" in svg
    assert "Segment: Enterprise" not in json.dumps(at.get("plotly_chart")[0].proto.spec)  # not on screen


@pytest.mark.skipif(not export.chromium_available(), reason="Chromium is not installed")
def test_the_page_pdf_states_the_filters_on_every_printed_page(app, deferred, tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    at = app("pages/3_Service.py", query_params={"segment": ["Enterprise"], "period": "quarter"}).run()
    assert not at.exception
    path = tmp_path / "service.pdf"
    path.write_bytes(deferred["service.pdf"]())
    info = subprocess.run(["pdfinfo", str(path)], capture_output=True, text=True, check=True).stdout
    pages = int(next(line.split()[-1] for line in info.splitlines() if line.startswith("Pages:")))
    assert pages >= 2
    for number in range(1, pages + 1):
        text = subprocess.run(
            ["pdftotext", "-f", str(number), "-l", str(number), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        flat = " ".join(text.split())
        assert "Segment: Enterprise" in flat and "per quarter" in flat, number
        assert f"page {number} of {pages}" in flat, number
