"""AppTest for the Service, Customer feedback, Marketing & retention cost and Forecast pages on
the demo database: they render, the numbers drawn are exactly what ``kpis`` / ``forecasting``
return for the same filters, filters come back from the URL, empty selections say so, and a
hostile URL value changes nothing.

Charts are read back from the Plotly JSON Streamlit sends to the browser (numpy arrays arrive
base64-encoded as ``{"dtype", "bdata"}``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import forecasting
import kpis
from charts.theme import readable
from crm_data import schema
from kpis.filters import Filters, data_date_range

SERVICE = "pages/3_Service.py"
FEEDBACK = "pages/4_Customer_feedback.py"
MARKETING = "pages/5_Marketing_and_retention_cost.py"
FORECAST = "pages/6_Forecast.py"
HOSTILE = "' OR 1=1 --"


def plotly_values(value: object) -> np.ndarray:
    """A Plotly data array as numbers (plain list, or plotly.py's base64 typed array)."""
    if isinstance(value, dict) and "bdata" in value:
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"])).astype(float)
    return np.array([np.nan if v is None else v for v in value], dtype=float)


def figures(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def trace(at, name: str) -> dict:
    """The first trace called ``name`` in any chart of the page."""
    for figure in figures(at):
        for candidate in figure["data"]:
            if candidate.get("name") == name:
                return candidate
    raise AssertionError(
        f"no trace named {name!r}; charts: {[[t.get('name') for t in f['data']] for f in figures(at)]}"
    )


def assert_same(drawn: np.ndarray, expected: pd.Series) -> None:
    np.testing.assert_allclose(drawn, expected.to_numpy(dtype=float), rtol=1e-9, equal_nan=True)


def download_labels(at) -> list[str]:
    return [button.proto.label for button in at.get("download_button")]


def infos(at) -> list[str]:
    return [str(element.value) for element in at.info]


@pytest.fixture(scope="module")
def segment(demo_engine) -> str:
    """The segment with the fewest accounts: filtering by it changes every number."""
    return kpis.dimension_values(demo_engine)["segments"][0]


# --- every page ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "charts"),
    [(SERVICE, 4), (FEEDBACK, 3), (MARKETING, 6), (FORECAST, 4)],
)
def test_page_renders_its_charts_with_exports_and_the_page_pdf(app, script, charts):
    at = app(script).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == charts
    labels = download_labels(at)
    assert any(label.startswith("Download this page as PDF") for label in labels)
    assert labels.count("CSV (data)") == charts  # every chart exports its data
    assert labels.count("XLSX (data)") == charts


# --- Service ---------------------------------------------------------------------------------


def test_service_numbers_follow_the_segment_filter_exactly(app, demo_engine, default_filters, segment):
    at = app(SERVICE).run()
    everyone = kpis.first_contact_resolution(demo_engine, default_filters, "month")
    assert_same(plotly_values(trace(at, "First-contact resolution")["y"]), everyone["fcr_rate"])

    at.sidebar.multiselect(key="segment").set_value([segment]).run()
    assert not at.exception
    chosen = default_filters.replace(segments=(segment,))
    fcr = kpis.first_contact_resolution(demo_engine, chosen, "month")
    drawn = plotly_values(trace(at, "First-contact resolution")["y"])
    assert_same(drawn, fcr["fcr_rate"])
    assert not np.allclose(drawn, everyone["fcr_rate"].to_numpy(dtype=float), equal_nan=True)

    times = kpis.resolution_times(demo_engine, chosen, "month")
    assert_same(plotly_values(trace(at, "Median hours to resolve")["y"]), times["median_hours_to_resolve"])


def test_service_ticket_breakdown_switches_dimension(app, demo_engine, default_filters):
    at = app(SERVICE).run()
    at.radio(key="service_breakdown").set_value("channel").run()
    assert not at.exception
    expected = kpis.ticket_breakdown(demo_engine, default_filters, by="channel", freq="month")
    tickets = next(f for f in figures(at) if f["layout"]["title"]["text"] == "Tickets by channel")
    legend = {readable(group): group for group in expected["group"].unique()}  # "phone" -> "Phone"
    assert sorted(t["name"] for t in tickets["data"]) == sorted(legend)
    for drawn in tickets["data"]:
        rows = expected[expected["group"] == legend[drawn["name"]]]
        assert_same(plotly_values(drawn["y"]), rows["tickets"])


@pytest.mark.parametrize("by", ["category", "product"])
def test_service_ticket_legend_shows_names_not_codes(app, demo_engine, default_filters, by):
    """Categories read as words (return_exchange -> Return exchange); products keep their
    names as written."""
    at = app(SERVICE).run()
    at.radio(key="service_breakdown").set_value(by).run()
    assert not at.exception
    title = f"Tickets by {by}"
    tickets = next(f for f in figures(at) if f["layout"]["title"]["text"] == title)
    names = {t["name"] for t in tickets["data"]}
    groups = set(kpis.ticket_breakdown(demo_engine, default_filters, by=by, freq="month")["group"])
    if by == "product":
        with demo_engine.connect() as conn:
            product_names = set(conn.execute(sa.select(schema.products.c.name)).scalars())
        assert names == groups and names - {"(not set)"} <= product_names
    else:
        assert names == {readable(g) for g in groups}
        assert all("_" not in name for name in names)


def test_service_lists_the_complaint_spike_evidence(app, demo_engine, default_filters):
    at = app(SERVICE).run()
    spikes = kpis.complaint_spikes(demo_engine, default_filters)
    flagged = spikes[spikes["is_spike"].astype(bool)]
    assert len(flagged) > 0, "the demo data should hold at least one complaint spike"
    evidence = next(df.value for df in at.dataframe if "Complaints observed" in df.value.columns)
    assert len(evidence) == len(flagged)
    assert sorted(evidence["Complaints observed"]) == sorted(flagged["observed"])
    assert sorted(evidence["p-value"]) == pytest.approx(sorted(flagged["p_value"]))
    assert any(f"{len(flagged)} week(s) with a complaint spike" in w.value for w in at.warning)


# --- Customer feedback -----------------------------------------------------------------------


def test_feedback_restores_segment_and_period_from_the_url(app, demo_engine, default_filters, segment):
    at = app(FEEDBACK, query_params={"segment": [segment], "period": "quarter"}).run()
    assert not at.exception
    assert at.sidebar.multiselect(key="segment").value == [segment]
    assert at.sidebar.radio(key="freq").value == "quarter"
    chosen = default_filters.replace(segments=(segment,))
    nps = kpis.nps(demo_engine, chosen, "quarter")
    assert_same(plotly_values(trace(at, "NPS")["y"]), nps["nps"])

    comments = kpis.latest_comments(demo_engine, chosen, limit=20)
    table = next(df.value for df in at.dataframe if "Comment" in df.value.columns)
    assert table["Comment"].tolist() == comments["comment"].tolist()


def test_feedback_ces_measure_switch_shows_share_easy(app, demo_engine, default_filters):
    at = app(FEEDBACK).run()
    at.radio(key="feedback_ces_measure").set_value("share_easy").run()
    assert not at.exception
    ces = kpis.ces(demo_engine, default_filters, "month")
    figure = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("CES per touchpoint"))
    lines = [t for t in figure["data"] if t.get("mode") == "lines+markers"]
    touchpoints = [t for t, rows in ces.groupby("touchpoint", sort=True) if rows["responses"].sum() > 0]
    assert len(lines) == len(touchpoints)
    for line, touchpoint in zip(lines, touchpoints, strict=True):
        assert_same(plotly_values(line["y"]), ces.loc[ces["touchpoint"] == touchpoint, "share_easy"])


# --- Marketing & retention cost --------------------------------------------------------------


def test_marketing_tables_and_retention_cost_match_kpis(app, demo_engine, default_filters, segment):
    at = app(MARKETING).run()
    at.sidebar.multiselect(key="segment").set_value([segment]).run()
    assert not at.exception
    chosen = default_filters.replace(segments=(segment,))

    campaigns = kpis.campaign_funnel(demo_engine, chosen)
    table = next(
        df.value for df in at.dataframe if "cost_per_conversion" in df.value.columns and "sent" in df.value
    )
    assert sorted(table["name"]) == sorted(campaigns["name"])
    assert table["sent"].sum() == campaigns["sent"].sum()

    cost = kpis.retention_cost(demo_engine, chosen, "month")
    assert_same(
        plotly_values(trace(at, "Cost per retained customer")["y"]), cost["cost_per_retained_customer"]
    )

    profit = kpis.customer_profitability(demo_engine, chosen).sort_values("profit", ascending=False)
    top = next(df.value for df in at.dataframe if "profit" in df.value.columns)
    assert top["account_id"].tolist() == profit["account_id"].head(10).tolist()
    bottom = [df.value for df in at.dataframe if "profit" in df.value.columns][1]
    assert bottom["account_id"].tolist() == profit["account_id"].tail(10)[::-1].tolist()
    # the count is the whole ranking's, though only its ends leave the database
    assert any(f"{len(profit):,} accounts with payments or costs" in c.value for c in at.caption)


# --- Forecast --------------------------------------------------------------------------------


def full_history(engine, f: Filters) -> Filters:
    first, _last = data_date_range(engine)
    return f.replace(start=first.replace(day=1))


def test_forecast_shows_the_chosen_model_its_backtest_and_the_combined_quarter(
    app, demo_engine, default_filters
):
    at = app(FORECAST).run()
    assert not at.exception
    result = forecasting.revenue_forecast(demo_engine, full_history(demo_engine, default_filters), horizon=12)
    assert any(result.reason in str(info) for info in infos(at))
    backtest = next(df.value for df in at.dataframe if "coverage80" in df.value.columns)
    assert len(backtest) == len(result.backtest)
    assert backtest["mase"].tolist() == pytest.approx(result.backtest["mase"].tolist())
    assert backtest.loc[backtest["chosen"], "mase"].tolist() == pytest.approx(
        result.backtest.loc[result.backtest["model"] == result.model, "mase"].tolist()
    )
    label = {"seasonal_naive": "Seasonal naive (baseline)", "theta": "Theta", "ets": "ETS (exponential smoothing)",
             "sarimax": "SARIMAX"}[result.model]  # fmt: skip
    assert result.reliable, result.reliability  # the demo's whole revenue is forecast well
    drawn = trace(at, f"Forecast ({label})")
    assert_same(plotly_values(drawn["y"])[1:], result.forecast["mean"])  # [0] joins the last actual month
    assert_same(plotly_values(trace(at, "80 % interval")["y"]), pd.concat([result.forecast["hi80"],
                result.forecast["lo80"][::-1]]))  # fmt: skip
    # the calibrated intervals' held-out coverage is stated beside the chart
    assert result.calibrated and result.held_out.points > 0
    assert any(result.intervals in str(c.value) for c in at.caption)
    assert not at.warning

    pipe = forecasting.pipeline_forecast(demo_engine, default_filters, months=3)
    combined = forecasting.combined_next_quarter(result, pipe)
    parts = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Next quarter"))
    assert_same(plotly_values(parts["data"][0]["y"]), combined["amount"])


def test_forecast_horizon_and_model_override(app, demo_engine, default_filters):
    at = app(FORECAST).run()
    at.slider(key="forecast_horizon").set_value(6)
    at.selectbox(key="forecast_model").set_value("seasonal_naive")
    at.toggle(key="forecast_full_history").set_value(False)
    at.run()
    assert not at.exception
    result = forecasting.revenue_forecast(demo_engine, default_filters, horizon=6, model="seasonal_naive")
    assert result.model == "seasonal_naive"
    assert any("override" in info for info in infos(at))
    if result.reliable:
        drawn = trace(at, "Forecast (Seasonal naive (baseline))")
        assert len(plotly_values(drawn["y"])) == 6 + 1
        assert_same(plotly_values(drawn["y"])[1:], result.forecast["mean"])
    else:
        assert_not_drawn_as_a_forecast(at, result)


def assert_not_drawn_as_a_forecast(at, result: forecasting.ForecastResult) -> None:
    """The page warns with the result's own reason and draws the history alone."""
    assert any(result.reliability in str(w.value) for w in at.warning), [w.value for w in at.warning]
    chart = next(f for f in figures(at) if f["layout"]["title"]["text"].startswith("Revenue"))
    assert chart["layout"]["title"]["text"] == "Revenue: history (no reliable forecast)"
    assert [t.get("name") for t in chart["data"]] == ["Revenue"]
    assert_same(plotly_values(trace(at, "Revenue")["y"]), result.history)


def test_an_unreliable_forecast_warns_and_draws_no_line(app, demo_engine, default_filters):
    # ETS forced on the demo's whole revenue (generated for DEMO_TODAY): backtest MASE 2.07,
    # worse than seasonal naive's 0.64
    at = app(FORECAST).run()
    at.selectbox(key="forecast_model").set_value("ets")
    at.run()
    assert not at.exception
    result = forecasting.revenue_forecast(demo_engine, full_history(demo_engine, default_filters), horizon=12,
                                          model="ets")  # fmt: skip
    assert not result.reliable, result.reliability
    assert_not_drawn_as_a_forecast(at, result)


# --- empty and hostile selections --------------------------------------------------------------


@pytest.mark.parametrize("script", [SERVICE, FEEDBACK, MARKETING, FORECAST])
def test_a_range_before_any_data_shows_the_no_data_message(app, demo_engine, script):
    first, _last = data_date_range(demo_engine)
    empty_start, empty_last = dt.date(first.year, 1, 1), first - dt.timedelta(days=1)
    assert empty_last >= empty_start, "the demo data should start after 1 January"
    at = app(script, query_params={"from": empty_start.isoformat(), "to": empty_last.isoformat()}).run()
    assert not at.exception
    assert any("No " in message for message in infos(at)), infos(at)


def test_a_hostile_segment_in_the_url_is_ignored(app, demo_engine, default_filters):
    at = app(SERVICE, query_params={"segment": [HOSTILE]}).run()
    assert not at.exception
    assert at.sidebar.multiselect(key="segment").value == []
    assert any("Ignored unknown segment" in w.value for w in at.sidebar.warning)
    everyone = kpis.first_contact_resolution(demo_engine, default_filters, "month")
    assert_same(plotly_values(trace(at, "First-contact resolution")["y"]), everyone["fcr_rate"])
