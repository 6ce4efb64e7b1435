"""ui-core's pages on the demo database: Sales pipeline, Customers & churn, Data quality.
Each renders without exception, reacts to filters, shows the no-data message for an empty
selection, and its drill-downs list exactly the records ``kpis`` returns."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

import kpis
from crm_data.quality import check_database
from kpis.filters import dimension_values
from tests.ui.test_dashboard import _empty_region_country
from ui.report import NO_DATA

PAGES = ["pages/1_Sales_pipeline.py", "pages/2_Customers_and_churn.py", "pages/7_Data_quality.py"]


def _charts(at) -> int:
    return len(at.get("plotly_chart"))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_on_demo_data(app, page):
    at = app(page).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert at.title


@pytest.mark.parametrize("page", PAGES[:2])
def test_page_renders_with_a_segment_and_per_quarter(app, demo_engine, page):
    segment = dimension_values(demo_engine)["segments"][0]
    at = app(page, query_params={"segment": segment, "period": "quarter"}).run()
    assert not at.exception
    assert _charts(at) >= 3
    assert any(f"Segment: {segment}" in c.value for c in at.caption)


@pytest.mark.parametrize("page", PAGES[:2])
def test_empty_selection_shows_no_data_not_a_traceback(app, demo_engine, page):
    region, country = _empty_region_country(demo_engine)
    at = app(page, query_params={"region": region, "country": country}).run()
    assert not at.exception
    assert not at.error
    assert _charts(at) == 0
    assert any(NO_DATA in i.value or "No " in i.value for i in at.info)


def test_sales_pipeline_draws_every_section(app):
    at = app("pages/1_Sales_pipeline.py").run()
    headers = [h.value for h in at.main.header]
    assert headers == [
        "Funnel",
        "Win rate and lead conversion",
        "Sales cycle",
        "Time in each phase",
        "Open pipeline",
    ]
    assert _charts(at) >= 8  # funnel, win rate, lead conversion, by group, cycle, stages, pipeline, aging


def test_funnel_toggle_and_breakdown_show_kpis_numbers(app, demo_engine, default_filters):
    funnel = kpis.funnel(demo_engine, default_filters)
    at = app("pages/1_Sales_pipeline.py").run()
    shown = _figure(at, "Pipeline funnel")["data"][0]
    assert _array(shown["x"]) == funnel["reached_in_order"].tolist()
    at.segmented_control(key="funnel_counting").set_value("any").run()
    assert not at.exception
    shown = _figure(at, "any stage reached")["data"][0]
    assert _array(shown["x"]) == funnel["reached_any"].tolist()
    assert funnel["reached_any"].tolist() != funnel["reached_in_order"].tolist()  # skipped stages exist

    at.selectbox(key="win_rate_by").set_value("lead_source").run()
    assert not at.exception
    expected = kpis.win_rate_by(demo_engine, default_filters, "lead_source")
    bars = _figure(at, "by lead source")["data"]
    assert _array(bars[0]["x"]) == expected["group"].astype(str).tolist()
    assert _array(bars[0]["y"]) == pytest.approx(expected["win_rate"].tolist(), nan_ok=True)
    assert _array(bars[1]["y"]) == pytest.approx(expected["lead_conversion"].tolist(), nan_ok=True)


def _figure(at, title_part: str) -> dict:
    """The Plotly figure (as a dict) whose title contains ``title_part``."""
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("layout", {}).get("title", {}).get("text", "")
        if title_part in title:
            return spec
    raise AssertionError(f"no chart titled like {title_part!r}")


def _array(value) -> list:
    """A Plotly JSON array: a plain list, or plotly's base64 typed array ``{dtype, bdata}``."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).tolist()
    return list(value)


def test_stuck_deals_drill_down_lists_kpis_records(app, demo_engine, default_filters):
    at = app("pages/1_Sales_pipeline.py").run()
    stage = at.selectbox(key="stuck_stage").value
    at.number_input(key="stuck_min_days").set_value(0).run()
    assert not at.exception
    expected = kpis.stuck_deals(demo_engine, default_filters, stage=stage, min_days=0, limit=2000)
    assert len(expected) > 0
    shown = at.dataframe[-1].value
    assert sorted(shown["deal_id"]) == sorted(expected["deal_id"])


def test_churned_accounts_drill_down(app, demo_engine, default_filters):
    at = app("pages/2_Customers_and_churn.py").run()
    chosen = pd.Timestamp(at.selectbox(key="churn_drill_period").value)
    expected = kpis.churned_accounts(demo_engine, default_filters, chosen.date(), "month")
    assert len(expected) > 0
    shown = at.dataframe[0].value
    assert sorted(shown["account_id"]) == sorted(expected["account_id"])


def test_churn_by_dimension_matches_kpis(app, demo_engine, default_filters):
    at = app("pages/2_Customers_and_churn.py").run()
    at.selectbox(key="churn_by_dimension").set_value("company_size").run()
    assert not at.exception
    expected = kpis.churn_by(demo_engine, default_filters, "company_size")
    assert len(expected) > 0
    bars = _figure(at, "by company size")["data"][0]
    shown = dict(zip(_array(bars["y"]), _array(bars["x"]), strict=True))
    assert shown == pytest.approx(dict(zip(expected["group"], expected["churn_rate"], strict=True)))


def test_data_quality_lists_every_check_with_its_count(app, demo_engine):
    at = app("pages/7_Data_quality.py").run()
    with demo_engine.connect() as conn:
        report = check_database(conn, stale_days=90)
    summary = at.dataframe[0].value
    assert dict(zip(summary["check"], summary["records"], strict=True)) == {
        f.title: f.count for f in report.findings
    }
    assert list(summary["records"]) == sorted(summary["records"], reverse=True)  # problems first
    problems = sorted((f for f in report.findings if f.count), key=lambda f: -f.count)
    assert len(at.expander) == len(problems)
    listed = [f for f in problems if not f.records.empty]
    tables = at.dataframe[1:]  # one records table (with its CSV download) per listed finding
    assert [len(t.value) for t in tables] == [len(f.records) for f in listed]
    assert [b.proto.label for b in at.get("download_button")] == [
        f"Download CSV ({len(f.records):,} rows)" for f in listed
    ]


def test_churn_chart_shows_the_kpis_interval(app, demo_engine, default_filters):
    at = app("pages/2_Customers_and_churn.py").run()
    assert not at.exception
    expected = kpis.churn_rate(demo_engine, default_filters, "month")
    traces = {trace.get("name"): trace for trace in _figure(at, "Churn rate per month")["data"]}
    assert _array(traces["95 % interval"]["y"]) == pytest.approx(expected["ci_low"].tolist(), nan_ok=True)
    assert _array(traces["Churn rate"]["y"]) == pytest.approx(expected["churn_rate"].tolist(), nan_ok=True)
    at.selectbox(key="churn_by_dimension").set_value("segment").run()
    by_group = kpis.churn_by(demo_engine, default_filters, "segment")
    by_group = by_group.sort_values("churn_rate", ascending=False)
    bars = _figure(at, "by segment")["data"][0]
    high = (by_group["ci_high"] - by_group["churn_rate"]).tolist()
    assert _array(bars["error_x"]["array"]) == pytest.approx(high)
