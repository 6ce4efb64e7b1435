"""Partial periods: the one definition (``kpis.core.is_partial``), how a figure over periods
marks them (``charts.figures.mark_periods``) and the changes its hover shows — on the previous
complete period and on the same period last year — computed by hand on small frames."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import plotly.graph_objects as go
import pytest

from charts import figures
from kpis.core import is_partial
from kpis.filters import Filters
from ui.filters import View, data_today

TODAY = dt.date(2026, 12, 7)  # data up to and including 6 Dec 2026
FAR = dt.date(2027, 1, 1)  # the default range end: the month after the current one


# --- the definition ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("period", "freq", "end", "today", "partial"),
    [
        ("2026-12-01", "month", FAR, TODAY, True),  # the current month, 6 days in
        ("2026-11-01", "month", FAR, TODAY, False),
        ("2026-11-01", "month", FAR, dt.date(2026, 12, 1), False),  # ended today: complete
        ("2026-11-01", "month", FAR, dt.date(2026, 11, 30), True),
        ("2026-10-01", "quarter", FAR, TODAY, True),  # Q4 2026
        ("2026-07-01", "quarter", FAR, TODAY, False),
        ("2026-01-01", "year", FAR, TODAY, True),
        ("2025-06-01", "month", dt.date(2025, 6, 16), TODAY, True),  # cut by the range end
        ("2025-05-01", "month", dt.date(2025, 6, 16), TODAY, False),
        ("2025-04-01", "quarter", dt.date(2025, 6, 16), TODAY, True),
        ("2027-02-01", "month", dt.date(2027, 6, 1), TODAY, True),  # not started yet
    ],
)
def test_is_partial(period, freq, end, today, partial):
    assert is_partial(pd.Timestamp(period), freq, end, today) is partial


def test_the_view_cuts_at_the_range_end_or_the_datas_today():
    month = Filters(start=dt.date(2025, 12, 1), end=FAR)
    view = View(month, "month", today=TODAY)
    assert view.cut == TODAY
    assert view.is_partial("2026-12-01") and not view.is_partial("2026-11-01")
    cut_by_range = View(Filters(start=dt.date(2025, 1, 1), end=dt.date(2025, 6, 16)), "month", today=TODAY)
    assert cut_by_range.cut == dt.date(2025, 6, 16)
    assert cut_by_range.is_partial("2025-06-01") and not cut_by_range.is_partial("2025-05-01")
    # the data's today: the day after the last day with data, unless that is later than today
    assert data_today((dt.date(2019, 1, 1), dt.date(2019, 3, 15)), today=TODAY) == dt.date(2019, 3, 16)
    assert data_today((dt.date(2019, 1, 1), dt.date(2026, 12, 6)), today=TODAY) == TODAY
    assert data_today((dt.date(2019, 1, 1), dt.date(2027, 3, 1)), today=TODAY) == TODAY  # scheduled rows
    assert data_today(None, today=TODAY) == TODAY


# --- marking a figure ---------------------------------------------------------------------------

MONTHS = pd.date_range("2025-12-01", "2026-12-01", freq="MS")  # 13 months, the last one partial
CHURN = [0.020, 0.021, 0.025, 0.022, 0.019, 0.020, 0.023, 0.024, 0.022, 0.021, 0.020, 0.024, 0.0069]


def _churn() -> pd.DataFrame:
    return pd.DataFrame({"period": MONTHS, "churn_rate": CHURN, "ci_low": 0.01, "ci_high": 0.035})


def _hover(trace) -> list[str]:
    return list(trace.hovertext)


def test_a_partial_point_is_an_open_marker_at_the_end_of_a_dotted_line():
    fig = figures.trend(
        _churn(), ["churn_rate"], "ratio", "month", names=["Churn rate"], interval=("ci_low", "ci_high")
    )
    partial = figures.mark_periods(fig, TODAY)
    assert partial == [pd.Timestamp("2026-12-01")]

    churn = next(t for t in fig.data if t.name == "Churn rate")
    assert list(churn.y) == pytest.approx(CHURN)  # the series itself is untouched
    assert churn.mode == "lines+markers" and churn.line.width == 0  # its line: the two helpers
    assert list(churn.marker.symbol) == ["circle"] * 12 + ["circle-open"]
    solid, dotted = (t for t in fig.data if isinstance(t.meta, dict) and t.meta.get("partial_helper"))
    assert solid.line.dash is None and dotted.line.dash == "dot"
    assert list(solid.y) == [*CHURN[:12], None]  # the solid line stops at November
    assert list(dotted.y) == [None] * 11 + [0.024, 0.0069]  # November to December, dotted
    assert solid.hoverinfo == dotted.hoverinfo == "skip"
    assert solid.legendgroup == dotted.legendgroup == churn.legendgroup
    assert solid.line.color == dotted.line.color == churn.marker.color
    # the band is left as it is
    band = next(t for t in fig.data if t.name == "95 % interval")
    assert band.hoverinfo == "skip" and band.hovertext is None

    # the axis says how far the month goes, and the last period is always labelled
    assert fig.layout.xaxis.ticktext[-1] == "Dec 2026<br>(to 6 Dec)"
    assert pd.Timestamp(fig.layout.xaxis.tickvals[-1]) == pd.Timestamp("2026-12-01")
    assert fig.layout.meta["partial_periods"] == ["2026-12-01"]
    assert fig.layout.meta["period_freq"] == "month"


def test_the_hover_says_to_date_and_never_compares_a_partial_period_with_the_one_before():
    fig = figures.trend(_churn(), ["churn_rate"], "ratio", "month", names=["Churn rate"])
    figures.mark_periods(fig, TODAY)
    hover = _hover(fig.data[0])
    # December is to date: no "vs Nov 2026" (0.69 % against 2.4 % is not a drop)
    assert hover[-1] == "to date (to 6 Dec)"
    # November is complete: 2.4 % - 2.0 % = +0.4 pp on October; a year back, Nov 2025 is
    # not in the chart, so no year-on-year line
    assert hover[-2] == "vs Oct 2026: +0.4 pp"
    # December 2025 is the first point: nothing before it
    assert hover[0] == ""


def test_year_on_year_by_hand_from_last_years_numbers():
    # last year's numbers as ui.report passes them: this year's period -> the same period a
    # year earlier; December 2025 cut at the same day (1-6 Dec) like December 2026.
    last_year = {0: {pd.Timestamp("2026-11-01"): 0.030, pd.Timestamp("2026-12-01"): 0.0081}}
    fig = figures.trend(_churn(), ["churn_rate"], "ratio", "month", names=["Churn rate"])
    figures.mark_periods(fig, TODAY, last_year)
    hover = _hover(fig.data[0])
    # Nov 2026 2.4 % - Nov 2025 3.0 % = -0.6 pp; Dec 2026 to date 0.69 % - Dec 2025 to 6 Dec 0.81 % = -0.12 pp
    assert hover[-2] == "vs Oct 2026: +0.4 pp<br>vs Nov 2025: −0.6 pp"
    assert hover[-1] == "to date (to 6 Dec)<br>vs Dec 2025 (to 6 Dec): −0.1 pp"


def test_year_on_year_from_the_chart_itself_for_complete_periods_only():
    # two years of money: Nov 2026 $225 against Nov 2025 $200 -> +$25 (+12.5 %); the partial
    # December is not compared with the whole of December 2025
    months = pd.date_range("2024-12-01", "2026-12-01", freq="MS")
    values = [200.0] * 12 + [210.0] * 11 + [225.0, 12.78]
    frame = pd.DataFrame({"period": months, "cost": values})
    fig = figures.trend(frame, ["cost"], "money", "month", names=["Cost"])
    figures.mark_periods(fig, TODAY)
    hover = _hover(fig.data[0])
    assert hover[-2] == "vs Oct 2026: +$15.00 (+7.1 %)<br>vs Nov 2025: +$25.00 (+12.5 %)"
    assert hover[-1] == "to date (to 6 Dec)"
    # 25 periods: every 3rd is labelled, counted back from the partial one
    assert fig.layout.xaxis.ticktext[-1] == "Dec 2026<br>(to 6 Dec)"
    assert len(fig.layout.xaxis.tickvals) == 9


def test_a_partial_bar_is_lighter_and_hatched_and_a_quarter_is_labelled_to_date():
    quarters = pd.date_range("2025-07-01", "2026-10-01", freq="QS")
    frame = pd.DataFrame({"period": quarters, "churn_rate": [0.070, 0.06, 0.07, 0.065, 0.071, 0.053]})
    fig = figures.trend(frame, ["churn_rate"], "ratio", "quarter", kind="bar", names=["Churn rate"])
    figures.mark_periods(fig, TODAY)
    bar = fig.data[0]
    assert list(bar.marker.opacity) == [1.0] * 5 + [figures.PARTIAL_OPACITY]
    assert list(bar.marker.pattern.shape) == [""] * 5 + [figures.PARTIAL_PATTERN]
    assert list(bar.y) == pytest.approx([0.070, 0.06, 0.07, 0.065, 0.071, 0.053])
    assert fig.layout.xaxis.ticktext[-1] == "Q4 2026<br>(to 6 Dec)"
    # Q3 2026 on Q2: 7.1 % - 6.5 % = +0.6 pp; on Q3 2025 (in the chart): 7.1 % - 7.0 % = +0.1 pp;
    # Q4 2026 to date (5.3 %): not compared with Q3 (7.1 %), nor with the whole of Q4 2025
    assert bar.hovertext[-2] == "vs Q2 2026: +0.6 pp<br>vs Q3 2025: +0.1 pp"
    assert bar.hovertext[-1] == "to date (to 6 Dec)"


def test_a_custom_hover_template_gets_the_lines_before_its_extra_part():
    fig = go.Figure(
        go.Scatter(
            x=MONTHS[-3:],
            y=[0.02, 0.024, 0.0069],
            name="Facebook",
            mode="lines+markers",
            hovertemplate="%{y:.2%}<extra>%{fullData.name}</extra>",
        )
    )
    figures.period_axis(fig, "month")
    figures.mark_periods(fig, TODAY)
    templates = list(fig.data[0].hovertemplate)
    assert templates[0] == "%{y:.2%}<extra>%{fullData.name}</extra>"
    assert templates[1] == "%{y:.2%}<br>vs Oct 2026: +0.4 pp<extra>%{fullData.name}</extra>"
    assert templates[2] == "%{y:.2%}<br>to date (to 6 Dec)<extra>%{fullData.name}</extra>"
    assert fig.data[0].marker.symbol[-1] == "circle-open"


def test_a_line_without_markers_gets_one_for_the_partial_period():
    fig = go.Figure(go.Scatter(x=MONTHS[-3:], y=[1.0, 2.0, 0.5], name="Hours", mode="lines"))
    figures.period_axis(fig, "month")
    figures.mark_periods(fig, TODAY)
    assert fig.data[0].mode == "lines+markers"
    assert list(fig.data[0].marker.size) == [0, 0, 9]
    assert len(fig.data) == 3  # the solid and the dotted line


def test_nothing_changes_without_a_partial_period_or_a_period_axis():
    frame = _churn().iloc[:12]
    fig = figures.trend(frame, ["churn_rate"], "ratio", "month", names=["Churn rate"])
    assert figures.mark_periods(fig, TODAY) == []
    assert fig.data[0].mode == "lines+markers" and len(fig.data) == 1
    assert fig.layout.xaxis.ticktext is None  # period_axis's own ticks
    by_group = figures.bars(
        pd.DataFrame({"group": ["SMB", "Enterprise"], "churn_rate": [0.02, 0.01]}),
        "group",
        ["churn_rate"],
        "ratio",
    )
    before = by_group.to_json()
    assert figures.mark_periods(by_group, TODAY) == []
    assert by_group.to_json() == before


def test_weeks_on_a_period_figure_are_not_periods():
    weeks = pd.date_range("2026-11-02", periods=6, freq="W-MON")
    fig = go.Figure(go.Bar(x=weeks, y=[1, 2, 3, 4, 5, 6]))
    figures.period_axis(fig, "month")
    assert figures.mark_periods(fig, TODAY) == []
    assert fig.data[0].marker.opacity is None


def test_new_and_churned_customers_on_a_period_axis():
    frame = pd.DataFrame({"period": MONTHS[-3:], "new_customers": [10, 12, 3], "churned": [5, 6, 1]})
    fig = figures.good_bad_bars(frame, "period", "new_customers", "churned", ("New", "Churned"), "month")
    assert figures.mark_periods(fig, TODAY) == [pd.Timestamp("2026-12-01")]
    assert [list(t.marker.pattern.shape) for t in fig.data] == [["", "", "/"], ["", "", "/"]]
    assert fig.data[0].hovertext[1] == "vs Oct 2026: +2 (+20.0 %)"


def test_partial_labels():
    assert figures.partial_label("2026-12-01", "month", TODAY) == "Dec 2026 (to 6 Dec)"
    assert figures.partial_label("2026-10-01", "quarter", TODAY) == "Q4 2026 (to 6 Dec)"
    assert figures.partial_label("2026-01-01", "year", TODAY) == "2026 (to 6 Dec)"
    assert figures.partial_note("2027-01-01", TODAY) == "no data yet"
