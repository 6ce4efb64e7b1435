"""Issue 14 point 8: the Overview's cards export as an image (PNG / PDF) and as figures
(CSV / XLSX, one row per card), with the filters in the file name, the image and the
workbook's About sheet."""

from __future__ import annotations

import datetime as dt
import io
import math

import openpyxl
import pandas as pd
import pytest

from charts import export
from charts.theme import fmt_value
from tests.ui.test_report import deferred  # noqa: F401  (fixture)
from ui.cards import CardNumbers
from ui.overview_export import cards_figure, cards_table, interval

CARDS = 10  # dashboard.CARDS


def _tag(filters, *extra: str) -> str:
    last = filters.end - dt.timedelta(days=1)
    return "_".join([f"{filters.start:%Y-%m-%d}", f"{last:%Y-%m-%d}", *extra])


def test_the_overview_offers_the_cards_and_their_figures(app, deferred, default_filters):  # noqa: F811
    at = app("dashboard.py", query_params={"segment": ["SMB"]}).run()
    assert not at.exception
    labels = [b.proto.label for b in at.get("download_button")]
    for label in ("CSV (figures)", "XLSX (figures)"):
        assert label in labels
    if export.chromium_available():
        assert "PNG (cards)" in labels and "PDF (cards)" in labels
    tag = _tag(default_filters, "segment-smb")
    book = openpyxl.load_workbook(io.BytesIO(deferred[f"overview-cards_{tag}.xlsx"]()))
    sheet = book["Overview cards"]
    rows = list(sheet.iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    assert list(header[:8]) == [
        "kpi",
        "period",
        "value",
        "previous_period",
        "previous",
        "change",
        "unit",
        "ci_low",
    ]
    assert len(body) == CARDS  # one row per card
    # each row's value is the number its card shows
    shown = {m.label: m.value for m in at.metric}
    from kpis.registry import get

    by_title = {r[0]: r for r in body}
    for key in ("churn_rate", "win_rate", "revenue"):
        entry = get(key)
        assert shown[entry.card_title] == fmt_value(by_title[entry.title][2], entry.unit), key
    about = {r[0]: r[1] for r in book["About"].iter_rows(values_only=True)}
    assert "Segment: SMB" in about["Filters"]
    csv = pd.read_csv(io.BytesIO(deferred[f"overview-cards_{tag}.csv"]()))
    assert len(csv) == CARDS
    win = csv.set_index("kpi").loc["Win rate"]
    assert win["ci_low"] <= win["value"] <= win["ci_high"]  # the win rate's interval rides along


@pytest.mark.skipif(not export.chromium_available(), reason="Chromium is not installed")
def test_the_cards_image_states_the_filters(app, deferred, default_filters):  # noqa: F811
    at = app("dashboard.py", query_params={"segment": ["SMB"]}).run()
    assert not at.exception
    png = deferred[f"overview-cards_{_tag(default_filters, 'segment-smb')}.png"]()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = deferred["overview-cards.pdf"]()
    assert pdf.startswith(b"%PDF-")


def test_cards_table_by_hand():
    """Hand-made cards: value, previous = value − change, interval from the card's frame."""
    period, before = pd.Timestamp("2026-10-01"), pd.Timestamp("2026-09-01")
    win = CardNumbers(0.25, 0.05, [0.2, 0.25], False, period, before)
    frame = pd.DataFrame({"period": [before, period], "win_rate": [0.2, 0.25], "ci_low": [0.1, 0.15],
                          "ci_high": [0.3, 0.35]})  # fmt: skip
    churn = CardNumbers(0.02, math.nan, [0.02], True, period, None)
    table = cards_table(
        [("win_rate", "win_rate", win, frame), ("churn_rate", "churn_rate", churn, None),
         ("nps", "nps", "could not be computed", None)],
        "month",
    )  # fmt: skip
    assert table["kpi"].tolist() == ["Win rate", "Churn rate", "Net Promoter Score"]
    assert table.loc[0, ["period", "previous_period", "unit"]].tolist() == ["Oct 2026", "Sep 2026", "ratio"]
    assert table.loc[0, ["value", "previous", "change", "ci_low", "ci_high"]].tolist() == pytest.approx(
        [0.25, 0.20, 0.05, 0.15, 0.35]
    )
    assert math.isnan(table.loc[1, "previous"]) and bool(table.loc[1, "low_sample"])
    assert math.isnan(table.loc[2, "value"])  # a failed card keeps its row, empty
    fig = cards_figure(table)
    assert len(fig.data) == 3 and fig.data[0].delta.reference == pytest.approx(0.20)


def test_interval_columns_follow_the_value_column():
    period = pd.Timestamp("2026-10-01")
    frame = pd.DataFrame({"period": [period], "nps": [12.0], "nps_ci_low": [5.0], "nps_ci_high": [19.0],
                          "ces_ci_low": [4.0], "ces_ci_high": [5.0], "net_revenue_retention": [1.01],
                          "nrr_ci_low": [0.9], "nrr_ci_high": [1.1]})  # fmt: skip
    assert interval(frame, "nps", period) == (5.0, 19.0)
    assert interval(frame, "net_revenue_retention", period) == (0.9, 1.1)
    assert all(math.isnan(v) for v in interval(frame, "customers_at_end", period))


def test_arpa_trend_is_on_the_customers_page_with_its_registry_definition(app, demo_engine, default_filters):
    """Issue 14 point 8: ARPA (kpis.revenue's arpa) has a chart of its own with its definition."""
    import kpis
    from kpis.registry import get
    from tests.ui.test_pages_service_feedback_marketing_forecast import assert_same, figures, plotly_values

    at = app("pages/2_Customers_and_churn.py", query_params={"segment": ["SMB"]}).run()
    assert not at.exception
    chart = next(
        f for f in figures(at) if f["layout"]["title"]["text"].startswith("Average revenue per account")
    )
    expected = kpis.revenue(demo_engine, default_filters.replace(segments=("SMB",)), "month")
    assert expected["arpa"].notna().any()
    line = next(t for t in chart["data"] if t.get("name", "").startswith("ARPA"))
    assert_same(plotly_values(line["y"]), expected["arpa"])
    entry = get("arpa")
    assert entry.title == "Average revenue per account (ARPA)" and entry.value_column == "arpa"
    assert any(
        entry.title in str(c.value) and "arpa = revenue ÷ paying_accounts" in str(c.value) for c in at.caption
    )
