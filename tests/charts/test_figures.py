"""charts.figures: layout decisions that keep labels readable."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from charts import figures
from charts.theme import use_theme


def _groups(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"group": [f"Owner number {i}" for i in range(n)], "churn_rate": [0.01 * i for i in range(n)]}
    )


def test_horizontal_bars_get_one_label_row_per_category():
    use_theme()
    few = figures.bars(_groups(3), "group", ["churn_rate"], "ratio", horizontal=True)
    many = figures.bars(_groups(30), "group", ["churn_rate"], "ratio", horizontal=True)
    assert few.layout.height == 360  # the usual height for a handful of bars
    # 30 owners: 30 × 22 px + 170 px = 830 px, so Plotly does not skip every other name
    assert many.layout.height == 830
    assert many.layout.yaxis.autorange == "reversed"


def test_vertical_bars_keep_the_default_height_and_money_ticks_are_compact():
    fig = figures.bars(
        pd.DataFrame({"stage": ["Lead", "Proposal"], "amount": [5.7e6, 17.6e6]}), "stage", ["amount"], "money"
    )
    assert fig.layout.height is None
    assert fig.layout.yaxis.tickformat == "$.3~s"


def _periods_figure(starts: list[str]) -> go.Figure:
    return go.Figure(go.Scatter(x=pd.to_datetime(starts), y=list(range(len(starts)))))


def test_quarter_ticks_sit_on_quarter_starts_once_each() -> None:
    # Q1–Q4 2026: Plotly's automatic ticks fell between quarters and read "Q1 2026" twice
    fig = _periods_figure(["2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"])
    figures.period_axis(fig, "quarter")
    axis = fig.layout.xaxis
    assert (axis.dtick, axis.tick0, axis.tickformat) == ("M3", "2000-01-01", "Q%q %Y")


def test_month_ticks_thin_out_beyond_twelve_periods() -> None:
    twelve = _periods_figure([f"2026-{m:02d}-01" for m in range(1, 13)])
    figures.period_axis(twelve, "month")
    assert twelve.layout.xaxis.dtick == "M1"
    # 30 months: ceil(30 / 12) = 3 -> every third month
    thirty = _periods_figure([str(p.date()) for p in pd.date_range("2024-01-01", periods=30, freq="MS")])
    figures.period_axis(thirty, "month")
    assert (thirty.layout.xaxis.dtick, thirty.layout.xaxis.tickformat) == ("M3", "%b %Y")


def test_year_ticks_every_year() -> None:
    fig = _periods_figure(["2024-01-01", "2025-01-01", "2026-01-01"])
    figures.period_axis(fig, "year")
    assert (fig.layout.xaxis.dtick, fig.layout.xaxis.tickformat) == ("M12", "%Y")
