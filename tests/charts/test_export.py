"""charts.export: image files rendered by the warm Chromium, HTML, CSV, XLSX and the page PDF.

Image tests need Debian's chromium: they skip without it on a user's machine and fail under CI=true.
"""

from __future__ import annotations

import io
import os
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from datetime import date

import openpyxl
import pandas as pd
import plotly.graph_objects as go
import pytest

from charts import export

IN_CI = os.environ.get("CI", "").lower() == "true"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def needs_chromium() -> None:
    if not export.chromium_available():
        if IN_CI:
            pytest.fail("chromium is required under CI=true: " + export.MISSING_CHROMIUM_HELP)
        pytest.skip(export.MISSING_CHROMIUM_HELP)


@pytest.fixture
def fcr_figure() -> go.Figure:
    fig = go.Figure(
        go.Scatter(x=["2026-01-01", "2026-02-01", "2026-03-01"], y=[0.71, 0.74, 0.69], name="FCR")
    )
    fig.update_layout(title_text="First-contact resolution")
    return fig


@pytest.fixture
def fcr_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "period": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"]),
            "resolved": [120, 95, 1310],
            "first_contact": [85, 70, 904],
            "fcr_rate": [85 / 120, 70 / 95, 904 / 1310],
            "ci_low": [0.62, 0.64, 0.66],
            "ci_high": [0.78, 0.82, 0.71],
            "low_sample": [False, False, False],
        }
    )


def pdf_page_count(pdf: bytes) -> int:
    """Page objects in a PDF: ``/Type /Page`` entries (``/Pages`` is the page tree, not a page)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


# --- static images --------------------------------------------------------------------------


def test_png_has_signature_and_the_default_size_at_scale_two(needs_chromium, fcr_figure):
    png = export.figure_bytes(fcr_figure, "png")
    assert png[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", png[16:24])  # IHDR: width and height, big-endian
    # default 1000 x 500 px rendered at scale 2
    assert (width, height) == (2000, 1000)


def test_png_honours_the_figure_layout_size(needs_chromium, fcr_figure):
    fcr_figure.update_layout(width=640, height=320)
    png = export.figure_bytes(fcr_figure, "png", scale=1)
    assert struct.unpack(">II", png[16:24]) == (640, 320)


def test_svg_root_element_is_svg_and_holds_the_title(needs_chromium, fcr_figure):
    svg = export.figure_bytes(fcr_figure, "svg")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "First-contact resolution" in svg.decode("utf-8")


def test_pdf_has_header_and_one_page(needs_chromium, fcr_figure):
    pdf = export.figure_bytes(fcr_figure, "pdf")
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert pdf_page_count(pdf) == 1


def test_the_browser_stays_warm_between_exports(needs_chromium, fcr_figure):
    export.figure_bytes(fcr_figure, "svg")
    assert export.server_running()
    export.figure_bytes(fcr_figure, "png")
    assert export.server_running()


def test_unknown_format_is_rejected(fcr_figure):
    with pytest.raises(ValueError, match="jpeg"):
        export.figure_bytes(fcr_figure, "jpeg")  # type: ignore[arg-type]


# --- page PDF ---------------------------------------------------------------------------------


def test_page_pdf_has_one_page_per_chart_with_title_filters_and_definitions(needs_chromium, fcr_figure):
    bar = go.Figure(go.Bar(x=["billing", "defect"], y=[14, 9]))
    items = [
        ("FCR trend", fcr_figure, "Tickets resolved with one contact ÷ all resolved tickets."),
        ("Tickets by category", bar, "Tickets by opened_at, grouped by category."),
        ("Tickets again", bar, ""),
    ]
    pdf = export.page_pdf("Service", "Segment: SMB · Period: month", items)
    assert pdf.startswith(b"%PDF-")
    assert pdf_page_count(pdf) == 3  # each chart starts a new A4-landscape page


def test_page_pdf_without_charts_is_a_single_page(needs_chromium):
    pdf = export.page_pdf("Forecast", "all data", [])
    assert pdf_page_count(pdf) == 1


def test_report_html_escapes_text_and_shows_filters_and_definitions():
    page = export.report_html(
        "Service <b>",
        "Segment: SMB & Mid-market",
        [("FCR", '<svg width="700" height="500"></svg>', "resolved < 24 h")],
    )
    assert "Service &lt;b&gt;" in page
    assert "Segment: SMB &amp; Mid-market" in page
    assert "resolved &lt; 24 h" in page
    # the fixed pixel size is replaced by a viewBox so the chart scales to the page
    assert '<svg viewBox="0 0 700 500">' in page


# --- without chromium -------------------------------------------------------------------------


def test_without_chromium_images_raise_a_clear_error_and_data_exports_still_work(
    monkeypatch, fcr_figure, fcr_frame
):
    monkeypatch.setattr(export, "chromium_path", lambda: None)
    assert not export.chromium_available()
    for fmt in ("png", "svg", "pdf"):
        with pytest.raises(export.ChromiumMissingError, match="apt-get install chromium"):
            export.figure_bytes(fcr_figure, fmt)
    with pytest.raises(export.ChromiumMissingError, match="apt-get install chromium"):
        export.page_pdf("Service", "all", [("FCR", fcr_figure, "d")])
    assert export.figure_html(fcr_figure).lower().startswith(b"<!doctype html>")
    assert export.frame_csv(fcr_frame).startswith(b"period,")
    assert export.frame_xlsx({"FCR": fcr_frame})[:2] == b"PK"


def test_chromium_lookup_follows_the_environment_and_reports_absence(monkeypatch, tmp_path):
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setattr(export, "CHROMIUM_CANDIDATES", ())
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("CRM_CHROMIUM_PATH", str(tmp_path / "missing"))
    assert export.chromium_path() is None
    assert not export.chromium_available()
    monkeypatch.setenv("CRM_CHROMIUM_PATH", str(fake))
    assert export.chromium_path() == str(fake)


# --- HTML -------------------------------------------------------------------------------------


def test_figure_html_is_self_contained_and_interactive(fcr_figure):
    page = export.figure_html(fcr_figure, title="FCR <trend>").decode("utf-8")
    assert "<title>FCR &lt;trend&gt;</title>" in page
    assert "Plotly.newPlot" in page
    assert not re.search(r"<script[^>]*\ssrc=", page)  # plotly.js is embedded, works offline
    assert len(page) > 1_000_000
    assert "First-contact resolution" in page


# --- CSV --------------------------------------------------------------------------------------


def test_csv_round_trip_keeps_columns_values_and_dates(fcr_frame):
    frame = fcr_frame.assign(comment=["fast, friendly", 'said "thanks"', "ünïcode"])
    back = pd.read_csv(io.BytesIO(export.frame_csv(frame)), parse_dates=["period"])
    assert list(back.columns) == list(frame.columns)
    assert back["period"].dt.date.tolist() == [date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1)]
    assert back["resolved"].tolist() == [120, 95, 1310]
    assert back["fcr_rate"].tolist() == pytest.approx(frame["fcr_rate"].tolist())
    assert back["comment"].tolist() == ["fast, friendly", 'said "thanks"', "ünïcode"]


# --- XLSX -------------------------------------------------------------------------------------


def test_xlsx_has_one_sheet_per_frame_formatted_and_an_about_sheet(fcr_frame):
    by_category = pd.DataFrame({"group": ["billing", "defect"], "tickets": [14, 9]})
    meta = {"Definition": "FCR = first-contact ÷ resolved", "Filters": "Segment: SMB"}
    workbook = openpyxl.load_workbook(
        io.BytesIO(export.frame_xlsx({"FCR trend": fcr_frame, "By category": by_category}, meta))
    )
    assert workbook.sheetnames == ["FCR trend", "By category", "About"]

    fcr = workbook["FCR trend"]
    assert [c.value for c in fcr[1]] == list(fcr_frame.columns)
    assert fcr["A2"].value.date() == date(2026, 1, 1)
    assert fcr["B4"].value == 1310
    assert fcr["B4"].number_format == "#,##0"
    assert fcr["D2"].value == pytest.approx(85 / 120)
    assert fcr["D2"].number_format == "0.0%"
    assert fcr["E2"].number_format == "0.0%"  # ci_low bounds a rate here
    assert fcr.max_row == 4

    categories = workbook["By category"]
    assert [[c.value for c in row] for row in categories.iter_rows()] == [
        ["group", "tickets"],
        ["billing", 14],
        ["defect", 9],
    ]

    about = {row[0].value: row[1].value for row in workbook["About"].iter_rows()}
    assert about["Definition"] == "FCR = first-contact ÷ resolved"
    assert about["Filters"] == "Segment: SMB"
    assert about["Exported"].endswith("UTC")


def test_xlsx_nps_intervals_are_points_not_percent():
    nps = pd.DataFrame(
        {"period": pd.to_datetime(["2026-01-01"]), "nps": [32.5], "ci_low": [20.1], "ci_high": [44.9]}
    )
    sheet = openpyxl.load_workbook(io.BytesIO(export.frame_xlsx({"NPS": nps})))["NPS"]
    assert sheet["B2"].number_format == "0.0"
    assert sheet["C2"].number_format == "0.0"


def test_xlsx_sheet_names_are_made_valid_and_unique():
    frame = pd.DataFrame({"a": [1]})
    data = export.frame_xlsx(
        {"Costs / retained [€]": frame, "About": frame, "x" * 40: frame, "x" * 45: frame}
    )
    names = openpyxl.load_workbook(io.BytesIO(data)).sheetnames
    assert names[0] == "Costs   retained  €"
    assert names[1] == "About (2)"
    assert names[2] == "x" * 31
    assert names[3] == "x" * 27 + " (2)"
    assert names[4] == "About"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert "xl/workbook.xml" in archive.namelist()


def test_xlsx_handles_empty_frames_missing_values_and_time_zones():
    frame = pd.DataFrame(
        {
            "responded_at": pd.to_datetime(["2026-03-01 10:30"]).tz_localize("UTC"),
            "score": [None],
            "comment": [None],
        }
    )
    book = openpyxl.load_workbook(
        io.BytesIO(export.frame_xlsx({"Comments": frame, "Empty": pd.DataFrame(columns=["x"])}))
    )
    assert book["Comments"]["A2"].value.hour == 10
    assert book["Comments"]["B2"].value is None
    assert [c.value for c in book["Empty"][1]] == ["x"]
