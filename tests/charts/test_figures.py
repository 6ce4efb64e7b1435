"""charts.figures: layout decisions that keep labels readable."""

from __future__ import annotations

import pandas as pd

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
