"""charts.theme: the "crm" template and the number formatters."""

from __future__ import annotations

import plotly.express as px
import plotly.io as pio
import pytest

from charts.theme import (
    PALETTE,
    axis_format,
    column_unit,
    fmt_count,
    fmt_days,
    fmt_delta,
    fmt_money,
    fmt_nps,
    fmt_ratio,
    fmt_value,
    readable,
    use_theme,
)


def test_use_theme_makes_crm_the_default_with_the_okabe_ito_palette():
    use_theme()
    assert pio.templates.default == "crm"
    fig = px.line(x=[1, 2], y=[3, 4])
    assert list(fig.layout.template.layout.colorway) == PALETTE
    assert PALETTE[:3] == ["#0072B2", "#E69F00", "#009E73"]


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1234567, "count", "1,234,567"),
        (0.1234, "ratio", "12.3%"),
        (1, "ratio", "100.0%"),
        (12.34, "days", "12.3 days"),
        (1, "days", "1 day"),
        (345.6, "days", "346 days"),
        (23.4, "nps", "+23"),
        (-7.6, "nps", "-8"),
        (5.234, "score", "5.23"),
        (9876, "money", "$9,876"),
        (12345, "money", "$12.3k"),
        (1234567.8, "money", "$1.23M"),
        (-2500000, "money", "-$2.50M"),
        (12.5, "money", "$12.50"),
        (None, "ratio", "–"),
        (float("nan"), "money", "–"),
    ],
)
def test_fmt_value(value, unit, text):
    assert fmt_value(value, unit) == text


def test_single_formatters_agree_with_fmt_value():
    assert fmt_count(1000) == fmt_value(1000, "count") == "1,000"
    assert fmt_money(1500) == "$1,500"
    assert fmt_ratio(0.5, decimals=0) == "50%"
    assert fmt_days(float("nan")) == "–"
    assert fmt_nps(0) == "+0"


def test_deltas_use_percentage_points_for_ratios_and_an_ascii_sign():
    # 0.12 -> 0.105 is a change of -0.015 = -1.5 percentage points
    assert fmt_delta(0.105 - 0.12, "ratio") == "-1.5 pp"
    assert fmt_delta(250.0, "money") == "+$250"
    assert fmt_delta(-3.0, "days") == "-3.0 days"
    assert fmt_delta(float("nan"), "count") == ""


def test_axis_format_per_unit():
    assert axis_format("ratio")["tickformat"] == ".1~%"
    assert axis_format("money")["tickformat"] == "$.3~s"
    assert axis_format("days")["ticksuffix"] == " d"


@pytest.mark.parametrize(
    ("name", "integer", "unit"),
    [
        ("churn_rate", False, "ratio"),
        ("conversion_rate", False, "ratio"),
        ("lead_conversion", False, "ratio"),
        ("share_easy", False, "ratio"),
        ("net_revenue_retention", False, "ratio"),
        ("revenue_churn_rate", False, "ratio"),  # a rate of revenue: %, not money
        ("coverage80", False, "ratio"),
        ("win_probability", False, "ratio"),
        ("Win rate", False, "ratio"),
        ("amount", False, "money"),
        ("expected_revenue", False, "money"),
        ("cost_per_conversion", False, "money"),  # money, although it names a conversion
        ("payments", False, "money"),
        ("profit", False, "money"),
        ("lost_mrr", False, "money"),
        ("arpa", False, "money"),
        ("loyalty", False, "money"),
        ("median_days", False, "days"),
        ("days_in_stage", False, "days"),
        ("over_90_days", True, "count"),  # deals older than 90 days: a count
        ("sent", True, "count"),
        ("Complaints observed", True, "count"),
        ("position", True, None),
        ("account_id", True, None),
        ("p_value", False, None),
        ("nps", False, "nps"),
    ],
)
def test_column_unit_follows_the_kpis_naming_conventions(name, integer, unit):
    assert column_unit(name, integer=integer) == unit


def test_interval_columns_follow_the_measure_of_their_frame():
    assert column_unit("ci_low", columns=["period", "nps", "ci_low", "ci_high"]) == "nps"
    assert column_unit("ci_high", columns=["period", "win_rate", "ci_low", "ci_high"]) == "ratio"
    assert column_unit("ci_low", columns=["period", "responses", "ci_low"]) is None


def test_the_crm_template_grows_margins_for_long_labels_on_every_axis():
    from plotly.subplots import make_subplots

    use_theme()
    fig = make_subplots(rows=1, cols=2)
    layout = fig.layout.template.layout
    # template axis settings apply to xaxis2 / yaxis2 … too
    assert layout.xaxis.automargin is True and layout.yaxis.automargin is True


def test_money_ticks_are_compact_and_full_beyond_hundreds_of_millions():
    # d3 "$.3~s": 16,000,000 -> "$16M" instead of "$16,000,000"; with steps of 1e8 or more
    # d3 would write "$1G", so those ticks keep the full amount
    money = axis_format("money")
    assert money["tickformat"] == "$.3~s" and money["hoverformat"] == "$,.0f"
    stops = {tuple(s["dtickrange"]): s["value"] for s in money["tickformatstops"]}
    assert stops == {(None, 1e8): "$.3~s", (1e8, None): "$,.0f"}


@pytest.mark.parametrize(
    ("code", "shown"),
    [("return_exchange", "Return / exchange"), ("website_visit", "Website visit"), ("phone", "Phone"),
     ("(not set)", "(not set)"), ("Core plan", "Core plan"), (42, "42")],
)  # fmt: skip
def test_readable_turns_codes_into_words(code: object, shown: str) -> None:
    assert readable(code) == shown
