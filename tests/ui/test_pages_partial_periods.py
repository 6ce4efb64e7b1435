"""Partial periods on real pages: with a date range ending mid-month the last period is marked on
the chart, its exports carry ``partial``, its hover compares it with the same days last year
(the numbers ``kpis`` gives for those days, by hand), and the Overview cards skip it."""

from __future__ import annotations

import datetime as dt
import io
import json

import openpyxl
import pandas as pd

import kpis
from kpis.filters import Filters
from tests.ui.test_report import deferred  # noqa: F401  (fixture)
from ui.report import match_series

PAGE = "pages/2_Customers_and_churn.py"
#: 1 Jan – 15 Jun 2025 (inclusive): June holds 15 of its 30 days.
CUT_MID_JUNE = {"from": "2025-01-01", "to": "2025-06-15"}


def _figure(at, title_part: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if title_part in spec.get("layout", {}).get("title", {}).get("text", ""):
            return spec
    raise AssertionError(f"no chart titled like {title_part!r}")


def _trace(spec: dict, name: str) -> dict:
    return next(t for t in spec["data"] if t.get("name") == name)


def _pp(change: float) -> str:
    return f"{'+' if change >= 0 else '−'}{abs(100 * change):,.1f} pp"


def test_a_month_cut_by_the_range_is_marked_on_the_chart_and_in_its_exports(app, deferred):  # noqa: F811
    at = app(PAGE, query_params={**CUT_MID_JUNE, "period": "month"}).run()
    assert not at.exception, [e.value for e in at.exception]
    churn = _figure(at, "Churn rate per month")
    assert churn["layout"]["meta"]["partial_periods"] == ["2025-06-01"]
    assert churn["layout"]["xaxis"]["ticktext"][-1] == "Jun 2025<br>(to 15 Jun)"
    line = _trace(churn, "Churn rate")
    assert line["marker"]["symbol"][-1] == "circle-open"
    assert set(line["marker"]["symbol"][:-1]) == {"circle"}
    assert line["hovertext"][-1].startswith("to date (to 15 Jun)")
    assert "vs May 2025" not in line["hovertext"][-1]  # not compared with the month before
    dotted = [t for t in churn["data"] if t.get("meta", {}).get("partial_helper") == "to date"]
    assert len(dotted) == 1 and dotted[0]["line"]["dash"] == "dot"
    # the other period charts of the page too: new and churned customers (bars), revenue retention
    flows = _figure(at, "New and churned customers")
    assert flows["layout"]["meta"]["partial_periods"] == ["2025-06-01"]
    assert [t["marker"]["pattern"]["shape"][-1] for t in flows["data"]] == ["/", "/"]
    assert _figure(at, "Net revenue retention")["layout"]["meta"]["partial_periods"] == ["2025-06-01"]
    assert any("Jun 2025 (to 15 Jun): not a complete month" in c.value for c in at.caption)

    csv = deferred["churn-rate-per-month.csv"]()
    frame = pd.read_csv(io.BytesIO(csv))
    assert frame["partial"].tolist() == [False] * 5 + [True]
    book = openpyxl.load_workbook(io.BytesIO(deferred["churn-rate-per-month.xlsx"]()))
    sheet = book[book.sheetnames[0]]
    header = [c.value for c in sheet[1]]
    assert [row[header.index("partial")] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        False
    ] * 5 + [True]
    about = {row[0]: row[1] for row in book["About"].iter_rows(values_only=True)}
    assert about["Partial period"].startswith("Jun 2025 (to 15 Jun): not a complete month")


def test_the_hover_compares_with_the_same_days_last_year(app, demo_engine):
    at = app(PAGE, query_params=CUT_MID_JUNE).run()
    assert not at.exception
    hover = _trace(_figure(at, "Churn rate per month"), "Churn rate")["hovertext"]
    this_year = kpis.churn_rate(
        demo_engine, Filters(start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 16)), "month"
    )
    # last year, cut the same way: 1 Jan – 15 Jun 2024, June 2024 to 15 Jun
    last_year = kpis.churn_rate(
        demo_engine, Filters(start=dt.date(2024, 1, 1), end=dt.date(2024, 6, 16)), "month"
    )
    now, then = this_year["churn_rate"].tolist(), last_year["churn_rate"].tolist()
    assert hover[-1] == f"to date (to 15 Jun)<br>vs Jun 2024 (to 15 Jun): {_pp(now[-1] - then[-1])}"
    # May 2025 is complete: its change on April 2025 and on May 2024
    assert hover[-2] == f"vs Apr 2025: {_pp(now[-2] - now[-3])}<br>vs May 2024: {_pp(now[-2] - then[-2])}"


def test_per_quarter_the_cut_quarter_is_marked(app):
    at = app(PAGE, query_params={**CUT_MID_JUNE, "period": "quarter"}).run()
    assert not at.exception
    churn = _figure(at, "Churn rate per quarter")
    assert churn["layout"]["meta"]["partial_periods"] == ["2025-04-01"]
    assert churn["layout"]["xaxis"]["ticktext"][-1] == "Q2 2025<br>(to 15 Jun)"


def test_the_overview_cards_show_the_last_complete_month_of_the_range(app):
    at = app("dashboard.py", query_params=CUT_MID_JUNE).run()
    assert not at.exception
    assert any(
        "Cards show May 2025, the last complete month in the range and its change on Apr 2025" in c.value
        for c in at.caption
    )


def test_a_trace_is_matched_to_its_series_of_a_kpi_frame():
    months = list(pd.date_range("2025-01-01", periods=3, freq="MS"))
    grouped = pd.DataFrame(
        {
            "period": months * 2,
            "group": pd.array(["Billing"] * 3 + ["Defect"] * 3, dtype="string"),
            "tickets": [4, 5, 6, 4, 7, 1],
        }
    )
    assert match_series(grouped, months, [4, 7, 1]) == ("tickets", {"group": "Defect"})
    plain = pd.DataFrame({"period": months, "sessions": [10, 20, 30], "ctr": [0.1, 0.2, 0.3]})
    assert match_series(plain, months, (0.1, 0.2, 0.3)) == ("ctr", {})
    assert match_series(plain, months, [10, 20, 30], "sessions") == ("sessions", {})
    assert match_series(plain, months, [1.0, 2.0, 3.0]) is None  # a value the page computed
    assert match_series(plain, months, [0, 0, 0]) is None  # zeros would match any empty column
