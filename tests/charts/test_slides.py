"""charts.slides: a page as a PPTX deck (native charts from the KPI frames, notes, appendix)
and the Overview as one slide of cards; the decks open with python-pptx and render with
LibreOffice headless (one conversion per session: it takes seconds).

The numbers: the hand-written CRM of tests/kpis/fixtures.py (worked out in tests/kpis/test_sales.py):
win rate by closed_at, Jan–Apr 2024 per month = 1/1, 3/4, 0/1, none -> [1.0, 0.75, 0.0, NaN];
deals created Jan–Apr 2024 per segment: Enterprise D1 won, D2 and D6 lost, D8 open -> 1/3;
SMB D3 won, D5 open -> 1/1; no account D4 won -> 1/1.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import pytest
from pptx import Presentation
from pptx.enum.chart import XL_CHART_TYPE
from pptx.enum.dml import MSO_LINE_DASH_STYLE
from pptx.enum.shapes import MSO_SHAPE_TYPE

from charts import export, figures, slides
from charts.export import ReportItem
from kpis import Filters, registry, win_rate
from kpis.pipeline import win_rate_by
from tests.kpis import fixtures

IN_CI = os.environ.get("CI", "").lower() == "true"
JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
CUT = dt.date(2024, 4, 15)  # the data's "today": April is a period still running
GENERATED = dt.datetime(2024, 4, 15, 7, 30, tzinfo=dt.UTC)
CONTEXT = "01 Jan 2024 – 30 Apr 2024 · per month · Segment: Enterprise, SMB"
SOURCE = "CRM Insights database (duckdb: crm.duckdb)"
NOT_SET = "(not set)"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: required)")
    pytest.skip(reason)


def _monthly_item(engine) -> ReportItem:
    frame = win_rate(engine, JAN_TO_APR, "month")
    fig = figures.trend(frame, ["win_rate"], "ratio", "month", names=["Win rate"])
    figures.mark_periods(fig, CUT)
    return ReportItem("Win rate per month", fig, registry.get("win_rate").definition, frame)


def _segment_item(engine) -> ReportItem:
    frame = win_rate_by(engine, JAN_TO_APR, "segment")
    fig = figures.bars(frame, "group", ["win_rate"], "ratio", horizontal=True, errors=("ci_low", "ci_high"))
    return ReportItem("Win rate by segment", fig, "won ÷ (won + lost) per segment", frame)


def _funnel_item() -> ReportItem:
    frame = pd.DataFrame(
        {"stage": ["Lead", "Qualified", "Won"], "reached": [40, 22, 9], "cumulative": [1, 0.55, 0.225]}
    )
    fig = figures.funnel(frame, "reached", "stage", "cumulative")
    return ReportItem("Deals per stage", fig, "Deals that reached each stage", None)


def _pie_item() -> ReportItem:
    fig = go.Figure(go.Pie(labels=["Email", "Phone", "Chat"], values=[12, 6, 2], name="Tickets"))
    return ReportItem("Tickets per channel", fig, "Tickets opened per channel", None)


@pytest.fixture(scope="session")
def crm(tmp_path_factory):
    from crm_data import schema
    from crm_data.engines import make_engine

    engine = make_engine(f"duckdb:///{tmp_path_factory.mktemp('slides') / 'crm.duckdb'}")
    schema.create_schema(engine)
    fixtures.load(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def items(crm) -> list[ReportItem]:
    return [_monthly_item(crm), _segment_item(crm), _funnel_item(), _pie_item()]


@pytest.fixture(scope="session")
def deck_bytes(items) -> bytes:
    return slides.page_deck("Sales pipeline", CONTEXT, items, source=SOURCE, generated=GENERATED)


@pytest.fixture(scope="session")
def deck(deck_bytes):
    return Presentation(io.BytesIO(deck_bytes))


def _texts(slide) -> str:
    parts = []
    for shape in slide.shapes:
        if shape.has_text_frame:
            parts.append(shape.text_frame.text)
        if shape.has_table:
            parts += [cell.text for row in shape.table.rows for cell in row.cells]
    return "\n".join(parts)


def _chart(slide):
    charts = [shape.chart for shape in slide.shapes if shape.has_chart]
    assert len(charts) == 1, f"expected one chart on {slide.shapes.title.text!r}"
    return charts[0]


def _values(series) -> list[float | None]:
    return [None if v is None else float(v) for v in series.values]


# --- the deck as python-pptx reads it --------------------------------------------------------


def test_slide_count_title_slide_and_one_slide_per_chart(deck):
    # title + 4 charts + appendix divider + 2 data tables (the funnel and pie items have no frame)
    assert len(deck.slides) == 1 + 4 + 1 + 2
    first = _texts(deck.slides[0])
    assert "Sales pipeline" in first and CONTEXT in first
    assert "Generated 15 Apr 2024, 07:30 UTC" in first
    titles = [slide.shapes.title.text for slide in list(deck.slides)[1:5]]
    assert titles == ["Win rate per month", "Win rate by segment", "Deals per stage", "Tickets per channel"]


def test_line_chart_is_native_with_the_kpi_frames_numbers(deck, crm):
    chart = _chart(deck.slides[1])
    assert chart.chart_type == XL_CHART_TYPE.LINE_MARKERS
    plot = chart.plots[0]
    assert list(plot.categories) == ["Jan 2024", "Feb 2024", "Mar 2024", "Apr 2024 (to 14 Apr)"]
    (series,) = list(plot.series)
    assert series.name == "Win rate"
    # 1/1, 3/4, 0/1 and no closed deal in April (an empty point, not a zero)
    assert _values(series) == [1.0, 0.75, 0.0, None]
    expected = win_rate(crm, JAN_TO_APR, "month")["win_rate"]
    assert _values(series)[:3] == pytest.approx(list(expected)[:3])
    assert chart.value_axis.tick_labels.number_format == "0.0%"
    # April is still running: the line into it is dotted, as on the dashboard
    assert series.points[3].format.line.dash_style == MSO_LINE_DASH_STYLE.ROUND_DOT
    assert series.points[2].format.line.dash_style is None


def test_horizontal_bars_are_a_native_bar_chart_per_segment(deck):
    chart = _chart(deck.slides[2])
    assert chart.chart_type == XL_CHART_TYPE.BAR_CLUSTERED
    plot = chart.plots[0]
    values = dict(zip(plot.categories, _values(next(iter(plot.series))), strict=True))
    assert values == pytest.approx({"Enterprise": 1 / 3, "SMB": 1.0, NOT_SET: 1.0})
    assert chart.category_axis.reverse_order  # first category on top, as on the dashboard


def test_funnel_falls_back_to_a_picture(deck):
    slide = deck.slides[3]
    assert not any(shape.has_chart for shape in slide.shapes)
    pictures = [shape for shape in slide.shapes if shape.shape_type == MSO_SHAPE_TYPE.PICTURE]
    if not export.chromium_available():
        assert "could not be drawn" in _texts(slide)
        _unavailable(export.MISSING_CHROMIUM_HELP)
    assert len(pictures) == 1
    assert pictures[0].image.content_type == "image/png"


def test_pie_is_native(deck):
    chart = _chart(deck.slides[4])
    assert chart.chart_type == XL_CHART_TYPE.PIE
    assert list(chart.plots[0].categories) == ["Email", "Phone", "Chat"]
    assert _values(next(iter(chart.plots[0].series))) == [12.0, 6.0, 2.0]


def test_notes_hold_definition_source_and_filters(deck):
    notes = deck.slides[1].notes_slide.notes_text_frame.text
    assert f"Definition: {registry.get('win_rate').definition}" in notes
    assert f"Data source: {SOURCE}" in notes
    assert CONTEXT in notes
    assert "native PowerPoint chart" in notes
    bars = deck.slides[2].notes_slide.notes_text_frame.text
    assert "error bars are not drawn" in bars  # the Wilson interval is in the appendix
    assert "picture" in deck.slides[3].notes_slide.notes_text_frame.text


def test_appendix_tables_hold_the_frames(deck, crm):
    assert deck.slides[5].shapes.title.text == "Appendix: the data behind the charts"
    monthly = deck.slides[6]
    assert monthly.shapes.title.text == "Data: Win rate per month"
    table = next(shape.table for shape in monthly.shapes if shape.has_table)
    frame = win_rate(crm, JAN_TO_APR, "month")
    shown = list(frame.columns)[: slides.APPENDIX_COLUMNS]
    assert [table.cell(0, c).text for c in range(len(shown))] == [figures_readable(c) for c in shown]
    assert len(table.rows) == 1 + len(frame)  # 4 rows: all shown
    assert [table.cell(r, 0).text for r in range(1, 5)] == ["Jan 2024", "Feb 2024", "Mar 2024", "Apr 2024"]
    rate = shown.index("win_rate")
    assert [table.cell(r, rate).text for r in range(1, 5)] == ["100.0%", "75.0%", "0.0%", ""]
    assert len(frame.columns) == 9  # one more than a slide shows
    assert "Showing all 4 rows; 1 column left out: win_rate_all_deals." in _texts(monthly)


def figures_readable(name: str) -> str:
    from charts.theme import readable

    return readable(name)


def test_appendix_caps_rows_and_says_how_many_were_left_out():
    periods = pd.date_range("2022-01-01", periods=30, freq="MS")
    frame = pd.DataFrame({"period": periods, "revenue": [1000.0 * (i + 1) for i in range(30)]})
    fig = figures.trend(frame, ["revenue"], "money", "month")
    deck = Presentation(
        io.BytesIO(
            slides.page_deck("Forecast", "all data", [ReportItem("Revenue", fig, "sum of payments", frame)])
        )
    )
    data_slide = deck.slides[3]
    table = next(shape.table for shape in data_slide.shapes if shape.has_table)
    assert len(table.rows) == 1 + slides.APPENDIX_ROWS  # 18 of 30
    # the latest periods: Jan 2022 + 12 .. + 29 months -> Jan 2023 .. Jun 2024
    assert table.cell(1, 0).text == "Jan 2023" and table.cell(18, 0).text == "Jun 2024"
    assert table.cell(18, 1).text == "$30.0k"
    assert "the latest 18 of 30 rows (12 left out)" in _texts(data_slide)
    native = _chart(deck.slides[1])
    assert _values(next(iter(native.plots[0].series)))[-1] == 30000.0
    assert native.value_axis.tick_labels.number_format == '"$"#,##0'


def test_a_second_axis_or_mixed_traces_become_a_picture_not_a_wrong_chart():
    mixed = go.Figure([go.Bar(x=["a", "b"], y=[1, 2]), go.Scatter(x=["a", "b"], y=[3, 4])])
    assert slides.native_chart(mixed) is None
    second = go.Figure(
        [go.Scatter(x=["a", "b"], y=[1, 2]), go.Scatter(x=["a", "b"], y=[0.1, 0.2], yaxis="y2")]
    )
    assert slides.native_chart(second) is None
    heat = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]))
    assert slides.native_chart(heat) is None
    # a category twice in one trace: Plotly draws both (stacked); one native point would lose one
    twice = go.Figure(go.Bar(x=["SMB", "SMB", "Enterprise"], y=[3, 4, 5]))
    assert slides.native_chart(twice) is None
    counted = go.Figure(go.Pie(labels=["Email", "Email", "Chat"]))  # Plotly counts the labels itself
    assert slides.native_chart(counted) is None
    scatter = go.Figure(go.Scatter(x=[1.5, 2.5, 4.0], y=[10, 20, 15], mode="markers", name="accounts"))
    native = slides.native_chart(scatter)
    assert native is not None and native.chart_type == XL_CHART_TYPE.XY_SCATTER


@pytest.mark.parametrize(
    ("d3", "suffix", "expected"),
    [
        (".1%", "", "0.0%"),
        (".1~%", "", "0.0%"),
        ("$,.0f", "", '"$"#,##0'),
        (",.1f", " d", '#,##0.0" d"'),
        ("+.1f", "", "+0.0;-0.0;0.0"),
        (".2f", "", "0.00"),
        ("", "", None),
    ],
)
def test_excel_number_formats_from_plotly_formats(d3, suffix, expected):
    assert slides.excel_number_format(d3, suffix) == expected


def test_no_title_is_a_clear_error():
    with pytest.raises(slides.SlideError, match="needs a title"):
        slides.page_deck("", "x", [])


# --- the Overview slide ------------------------------------------------------------------------

CARDS = [
    slides.SlideCard("Churn rate", 0.02, "ratio", 0.005, False, "Mar 2024 vs Feb 2024", (0.01, 0.015, 0.02)),
    slides.SlideCard("Win rate", 0.75, "ratio", -0.25, True, "Mar 2024 vs Feb 2024", (1.0, 0.75)),
    slides.SlideCard("NPS", None, "nps", error="could not be computed (OperationalError: gone)"),
]


@pytest.fixture(scope="session")
def overview_bytes() -> bytes:
    return slides.overview_deck(CONTEXT, CARDS, generated=GENERATED)


def test_overview_is_one_slide_of_cards(overview_bytes):
    deck = Presentation(io.BytesIO(overview_bytes))
    assert len(deck.slides) == 1
    text = _texts(deck.slides[0])
    assert "Overview" in text and CONTEXT in text and "Generated 15 Apr 2024, 07:30 UTC" in text
    for shown in (
        "Churn rate",
        "2.0%",
        "+0.5 pp",
        "Win rate",
        "75.0%",
        "-25.0 pp",
        "NPS",
        "could not be computed",
    ):
        assert shown in text, shown
    sparklines = [shape.chart for shape in deck.slides[0].shapes if shape.has_chart]
    assert [_values(next(iter(c.plots[0].series))) for c in sparklines] == [[0.01, 0.015, 0.02], [1.0, 0.75]]


def test_card_delta_colours_follow_higher_is_better():
    from charts.theme import BAD, GOOD

    # churn up (+0.5 pp) is bad; win rate down is bad; win rate up is good
    assert str(slides.card_delta_colour(CARDS[0])) == BAD.lstrip("#").upper()
    assert str(slides.card_delta_colour(CARDS[1])) == BAD.lstrip("#").upper()
    up = slides.SlideCard("Win rate", 0.8, "ratio", 0.05, True)
    assert str(slides.card_delta_colour(up)) == GOOD.lstrip("#").upper()


def test_overview_without_cards_is_a_clear_error():
    with pytest.raises(slides.SlideError, match="at least one card"):
        slides.overview_deck(CONTEXT, [])


# --- rendered by LibreOffice -------------------------------------------------------------------


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, deck_bytes, overview_bytes) -> dict[str, Path]:
    """The page deck and the Overview converted to PDF by LibreOffice headless, once per session."""
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if soffice is None or shutil.which("pdftotext") is None:
        _unavailable("LibreOffice (libreoffice-impress) and poppler-utils are needed: apt-get install them")
    folder = tmp_path_factory.mktemp("lo")
    sources = {"deck": deck_bytes, "overview": overview_bytes}
    for name, content in sources.items():
        (folder / f"{name}.pptx").write_bytes(content)
    profile = (folder / "profile").as_uri()
    subprocess.run(
        [
            soffice,
            f"-env:UserInstallation={profile}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(folder),
            *(str(folder / f"{name}.pptx") for name in sources),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    out = {name: folder / f"{name}.pdf" for name in sources}
    for path in out.values():
        assert path.is_file(), f"LibreOffice wrote no {path.name}"
    return out


def _pdf_text(path: Path) -> str:
    """The PDF's text with whitespace collapsed (a line wrapped by the renderer reads as one)."""
    text = subprocess.run(["pdftotext", str(path), "-"], check=True, capture_output=True, text=True)
    return " ".join(text.stdout.split())


def _pdf_pages(path: Path) -> int:
    info = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True).stdout
    return int(re.search(r"Pages:\s+(\d+)", info).group(1))


def test_libreoffice_renders_every_slide_with_titles_and_filters(rendered):
    text = _pdf_text(rendered["deck"])
    assert _pdf_pages(rendered["deck"]) == 8
    for title in ("Sales pipeline", "Win rate per month", "Win rate by segment", "Deals per stage",
                  "Tickets per channel", "Appendix: the data behind the charts"):  # fmt: skip
        assert title in text, title
    assert text.count(CONTEXT) >= 8  # the title slide and every slide's footer
    # the native chart's axis and categories are drawn from its own numbers
    assert "Apr 2024 (to 14 Apr)" in text and "Enterprise" in text and "75.0%" in text


def test_libreoffice_renders_the_overview_slide(rendered):
    text = _pdf_text(rendered["overview"])
    assert _pdf_pages(rendered["overview"]) == 1
    for shown in ("Overview", "Churn rate", "2.0%", "+0.5 pp", CONTEXT.split(" · ")[0]):
        assert shown in text, shown
