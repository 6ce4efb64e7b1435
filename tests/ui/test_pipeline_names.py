"""Issue 14 point 3 on the pages: one name, one number. The Sales pipeline and the Forecast
page show the same three pipeline figures under the same names (``ui.pipeline_summary``),
equal to the KPI functions on the demo fixture; the two pipeline figures have two names
and differ; overdue deals are shown apart on both pages and in no month of the forecast."""

from __future__ import annotations

import pytest

import forecasting
import kpis
from charts.theme import fmt_count, fmt_money
from ui.pipeline_summary import EXPECTED_LABEL, OVERDUE_LABEL, WEIGHTED_LABEL

SALES, FORECAST = "pages/1_Sales_pipeline.py", "pages/6_Forecast.py"


def _metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


@pytest.fixture
def both_pages(app) -> tuple[dict[str, str], dict[str, str], object]:
    sales = app(SALES).run()
    assert not sales.exception, sales.exception
    forecast = app(FORECAST).run()
    assert not forecast.exception, forecast.exception
    return _metrics(sales), _metrics(forecast), forecast


def test_the_same_name_shows_the_same_number_on_both_pages(both_pages, demo_engine, default_filters):
    sales, forecast, _ = both_pages
    for label in (WEIGHTED_LABEL, EXPECTED_LABEL, OVERDUE_LABEL):
        assert label in sales and label in forecast, label
        assert sales[label] == forecast[label], label
    weighted = kpis.weighted_pipeline(demo_engine, default_filters)["weighted_amount"].sum()
    pipe = forecasting.pipeline_forecast(demo_engine, default_filters, months=3)
    assert sales[WEIGHTED_LABEL] == fmt_money(weighted)
    assert sales[EXPECTED_LABEL] == fmt_money(pipe.expected_total)
    assert sales[OVERDUE_LABEL] == f"{fmt_count(pipe.overdue_deals)} deals · {fmt_money(pipe.overdue_amount)}"
    # two definitions, two names, two numbers
    assert fmt_money(weighted) != fmt_money(pipe.expected_total)
    # the old unnamed "Pipeline" / "Combined" figures are gone
    assert "Pipeline" not in forecast and "Combined" not in forecast


def test_the_forecast_shows_overdue_deals_apart_from_the_months(both_pages, demo_engine, default_filters):
    _, metrics, at = both_pages
    pipe = forecasting.pipeline_forecast(demo_engine, default_filters, months=3)
    assert pipe.overdue_deals > 0  # the demo's abandoned deals
    chart = next(
        c.proto.spec for c in at.get("plotly_chart") if "Expected pipeline by close month" in c.proto.spec
    )
    import json

    bar = json.loads(chart)["data"][0]
    assert bar["x"][0] == "Overdue (before today)"
    assert len(bar["x"]) == 1 + 3
    # the months hold only deals expected to close from today on; overdue is the first bar
    assert metrics["Next-quarter revenue"] == metrics["Statistical forecast"]
    assert metrics["Overdue deals (not counted)"] == fmt_money(pipe.overdue_expected)
