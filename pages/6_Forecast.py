"""Forecast: next months' revenue from the model that did best in a rolling-origin backtest,
with 80 % / 95 % intervals, the track record of every model, the open pipeline's expected value
(learned win rates; overdue deals apart) and the next quarter.

Thin page: the numbers come from ``forecasting`` (cached per filters, model and horizon through
``ui.data``); this script only draws them. Every chart has its definition and exports.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import forecasting
from charts.theme import NEUTRAL, PALETTE, axis_format, fmt_money
from kpis.filters import Filters
from ui.currency import currency_warning
from ui.data import data_date_range, database_url, kpi
from ui.drilldown import Drill, Point, records
from ui.filters import View, global_filters
from ui.pipeline_summary import EXPECTED_LABEL, pipeline_metrics
from ui.pipeline_summary import pipeline_forecast as summary_forecast
from ui.report import PageReport, is_empty, no_data, show_dataframe

st.set_page_config(page_title="CRM Insights — Forecast", page_icon=":material/trending_up:", layout="wide")
view = global_filters()
report = PageReport("Forecast", view)
currency_warning(view)  # amounts in currencies without exchange rates

AUTOMATIC = "automatic"
MODEL_NAMES = {
    AUTOMATIC: "Automatic (best backtest)",
    "seasonal_naive": "Seasonal naive (baseline)",
    "theta": "Theta",
    "ets": "ETS (exponential smoothing)",
    "sarimax": "SARIMAX",
}
FORECAST_DEFINITION = (
    "Monthly revenue (payments net of refunds) for the selected segments, up to the end of the date range; "
    "forecast by the model with the lowest rolling-origin backtest error (MASE; a simpler model wins ties "
    "within 1 %). Shaded: 80 % (dark) and 95 % (light) prediction intervals, calibrated on the model's own "
    "backtest errors. A model whose backtest error is above the seasonal-naive baseline's (MASE above 1) "
    "is not reliable: its forecast line is not drawn."
)
BACKTEST_DEFINITION = (
    "Rolling-origin backtest: each model is trained on the months before an origin and forecasts the "
    "months after it, for several origins. MAE, RMSE, MAPE and MASE (error relative to the in-sample "
    "seasonal-naive error; below 1 beats the baseline) are averaged over the folds; coverage is the share "
    "of actual values inside each model's own 80 % / 95 % intervals, before calibration — close to "
    "0.80 / 0.95 means honest intervals. The forecast's intervals are calibrated; their coverage on "
    "held-out folds is stated under the forecast chart."
)
COMPONENT_NAMES = {
    "statistical": "Statistical forecast",
    "pipeline": "Expected pipeline, next quarter",
    "overdue": "Overdue deals (not counted)",
    "next_quarter": "Next-quarter revenue",
}
COMBINED_DEFINITION = (
    "Next quarter = the next three months from the current one. Next-quarter revenue = the statistical "
    "forecast (the sum of its mean over those months). Beside it, not added: the expected value (amount × "
    "learned win rate) of the open deals expected to close in those months, as a share of the forecast — "
    "the forecast already carries the new business usually won each quarter, and a deal's amount is its "
    "contract value, which arrives as revenue over many months, so adding it would count new business twice. "
    "Overdue deals (expected close before today, still open) are in neither figure: they are shown apart, "
    "with their count and amount, to be followed up."
)
PIPELINE_DEFINITION = (
    f"{EXPECTED_LABEL}, by the month each deal is expected to close: open deals × the win rate learned for "
    "their stage from closed deals (the stage table's probability below 30 closed deals), placed in the month "
    "of their current stage's entry + the typical days from that stage to a win. Overdue: deals whose "
    "expected close is before today and that are still open — in no month."
)
OVERDUE_BAR = "Overdue (before today)"


def model_label(name: str) -> str:
    return MODEL_NAMES.get(name, name)


def controls() -> tuple[int, str | None, bool]:
    horizon_column, model_column, history_column = st.columns([2, 1, 1], vertical_alignment="bottom")
    with horizon_column:
        horizon = st.slider(
            "Horizon (months)", min_value=3, max_value=24, value=12, step=1, key="forecast_horizon"
        )
    with model_column:
        choice = st.selectbox(
            "Model", [AUTOMATIC, *forecasting.MODELS], format_func=model_label, key="forecast_model"
        )
    with history_column:
        full_history = st.toggle(
            "All history",
            value=True,
            key="forecast_full_history",
            help="On: learn from every month since the first payment, up to the end of the date range "
            "(models need two years for seasonality). Off: only the months of the date range.",
        )
    return int(horizon), None if choice == AUTOMATIC else choice, bool(full_history)


def history_filters(view: View, full_history: bool) -> Filters:
    """The filters the revenue series is read with: the view's, from the first day with data when
    ``full_history`` (segments and the end of the range unchanged)."""
    bounds = data_date_range(database_url())
    if not full_history or bounds is None or bounds[0] >= view.filters.start:
        return view.filters
    return view.filters.replace(start=bounds[0].replace(day=1))


def forecast_figure(result: forecasting.ForecastResult) -> go.Figure:
    """History, and the forecast with its intervals only when the forecast is reliable."""
    history = result.history
    ahead = result.forecast
    fig = go.Figure()
    # markers: a click on a month lists its payments (drill-down)
    actual = go.Scatter(
        x=history.index,
        y=history.values,
        name="Revenue",
        mode="lines+markers",
        marker={"size": 4},
        line={"color": "#1F2937"},
    )
    if not result.reliable:
        fig.add_trace(actual)
        fig.update_yaxes(
            **axis_format("money"), title_text="revenue per month", rangemode="tozero", automargin=True
        )
        return fig
    periods = list(ahead["period"])
    for low, high, colour, name in (
        ("lo95", "hi95", "rgba(0,114,178,0.12)", "95 % interval"),
        ("lo80", "hi80", "rgba(0,114,178,0.28)", "80 % interval"),
    ):
        fig.add_trace(
            go.Scatter(
                x=periods + periods[::-1],
                y=list(ahead[high]) + list(ahead[low])[::-1],
                fill="toself",
                fillcolor=colour,
                line={"width": 0},
                name=name,
                hoverinfo="skip",
            )
        )
    fig.add_trace(actual)  # over the interval bands
    # join the forecast to the last actual month so the line is continuous
    joined_x = [history.index[-1], *periods] if len(history) else periods
    joined_y = [history.values[-1], *ahead["mean"]] if len(history) else list(ahead["mean"])
    fig.add_trace(
        go.Scatter(
            x=joined_x,
            y=joined_y,
            name=f"Forecast ({model_label(result.model)})",
            mode="lines+markers",
            line={"color": PALETTE[0], "dash": "dash"},
        )
    )
    fig.update_yaxes(
        **axis_format("money"), title_text="revenue per month", rangemode="tozero", automargin=True
    )
    return fig


def coverage_figure(backtest: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    names = [model_label(m) for m in backtest["model"]]
    fig.add_trace(go.Bar(x=names, y=backtest["coverage80"], name="80 % interval", marker_color=PALETTE[0]))
    fig.add_trace(go.Bar(x=names, y=backtest["coverage95"], name="95 % interval", marker_color=PALETTE[4]))
    fig.add_hline(y=0.80, line={"color": PALETTE[0], "dash": "dot"}, annotation_text="target 80 %")
    fig.add_hline(y=0.95, line={"color": PALETTE[4], "dash": "dot"}, annotation_text="target 95 %")
    fig.update_layout(barmode="group")
    fig.update_yaxes(
        **axis_format("ratio"), range=[0, 1.05], title_text="share of actuals inside the interval"
    )
    return fig


def statistical(
    view: View, horizon: int, model: str | None, full_history: bool
) -> forecasting.ForecastResult | None:
    st.subheader("Revenue forecast")
    result = kpi(
        forecasting.revenue_forecast, history_filters(view, full_history), horizon=horizon, model=model
    )
    if result.model == "none" or is_empty(result.forecast):
        no_data("No revenue in this selection to forecast.")
        for note in result.notes:
            st.caption(f":material/info: {note}")
        return None
    spec = (
        f" — fitted as {result.spec}" if result.spec and result.spec.lower() != result.model.lower() else ""
    )
    chosen = model_label(result.model) + spec
    st.markdown(f"**Model used:** {chosen}")
    st.info(result.reason or "No reason given.", icon=":material/psychology:")
    history_view = history_filters(view, full_history)

    def month_payments(point: Point) -> Drill | None:
        if point.trace != "Revenue" or point.x is None:
            return None  # the forecast and its intervals have no records yet
        month = pd.Timestamp(point.x).to_period("M").start_time
        return Drill(
            f"Payments in {month:%b %Y}",
            records("revenue", view, month, filters=history_view, freq="month"),
            "revenue = the sum of the amounts (refunds negative); largest first",
        )

    if result.reliable:
        report.chart(
            forecast_figure(result),
            result.forecast,
            "Revenue: history and forecast",
            definition=FORECAST_DEFINITION,
            drill=month_payments,
        )
        st.caption(f":material/verified: {result.intervals}")
    else:
        st.warning(
            f"{result.reliability} No forecast line is drawn; the history is shown alone.",
            icon=":material/warning:",
        )
        history = result.history.rename("revenue").rename_axis("period").reset_index()
        report.chart(
            forecast_figure(result),
            history,
            "Revenue: history (no reliable forecast)",
            definition=FORECAST_DEFINITION,
            drill=month_payments,
        )

    st.markdown("**How each model did in the backtest**")
    backtest = result.backtest
    if is_empty(backtest):
        st.caption("There were too few months to backtest any model, so the forecast's accuracy is unknown.")
    else:
        table = backtest.assign(chosen=backtest["model"] == result.model)
        table["model"] = table["model"].map(model_label)
        first = ["model", "chosen", "mase", "mae", "rmse", "mape", "coverage80", "coverage95"]
        table = table[[c for c in first if c in table] + [c for c in table if c not in first]]
        show_dataframe(
            table,
            column_config={
                "mae": st.column_config.NumberColumn("MAE", format="dollar"),
                "rmse": st.column_config.NumberColumn("RMSE", format="dollar"),
                "mape": st.column_config.NumberColumn("MAPE", format="percent", step=0.001),
                "mase": st.column_config.NumberColumn("MASE", format="%.3f"),
                "coverage80": st.column_config.NumberColumn("Coverage 80 %", format="percent"),
                "coverage95": st.column_config.NumberColumn("Coverage 95 %", format="percent"),
                "chosen": st.column_config.CheckboxColumn("Chosen"),
            },
            key="forecast_backtest_table",
        )
        st.caption(BACKTEST_DEFINITION)
        report.chart(
            coverage_figure(backtest),
            backtest,
            "Interval coverage in the backtest",
            definition=BACKTEST_DEFINITION,
        )
    if result.notes:
        with st.expander(f"Notes on the data and the models ({len(result.notes)})", icon=":material/info:"):
            for note in result.notes:
                st.markdown(f"- {note}")
    return result


def pipeline_by_month(pipe: forecasting.PipelineForecast) -> pd.DataFrame:
    """The chart's bars: the overdue deals first, then the months (bucket, expected_revenue,
    deals, amount)."""
    overdue = pd.DataFrame(
        {"bucket": [OVERDUE_BAR], "expected_revenue": [pipe.overdue_expected], "deals": [pipe.overdue_deals],
         "amount": [pipe.overdue_amount]}
    )  # fmt: skip
    months = pipe.by_month.assign(bucket=[f"{p:%b %Y}" for p in pd.to_datetime(pipe.by_month["period"])])
    return pd.concat([overdue, months[overdue.columns]], ignore_index=True)


def pipeline(view: View) -> forecasting.PipelineForecast:
    st.subheader("Pipeline: expected value of the open deals")
    pipe = summary_forecast(view)
    pipeline_metrics(view)  # the same three figures as on the Sales pipeline page
    # the chart above the table: beside it, half a 1440 px screen cuts the table's columns off
    left, right = st.container(), st.container()
    with left:
        bars = pipeline_by_month(pipe)
        if is_empty(bars, ["expected_revenue", "deals"]):
            no_data("No open deals in this selection.")
        else:
            fig = go.Figure(
                go.Bar(
                    x=bars["bucket"],
                    y=bars["expected_revenue"],
                    marker_color=[NEUTRAL, *[PALETTE[2]] * (len(bars) - 1)],
                    marker_pattern_shape=["/", *[""] * (len(bars) - 1)],
                    customdata=bars[["deals", "amount"]],
                    hovertemplate="%{x}: %{y:$,.0f} expected from %{customdata[0]:,} deals "
                    "(amount %{customdata[1]:$,.0f})<extra></extra>",
                )
            )
            fig.update_yaxes(**axis_format("money"), title_text="expected value", automargin=True)
            fig.update_xaxes(type="category")
            report.chart(
                fig,
                bars,
                "Expected pipeline by close month",
                definition=PIPELINE_DEFINITION,
            )
    with right:
        if not is_empty(pipe.by_stage):
            report.table(pipe.by_stage, "Open deals by stage")  # money, % and days formatted by the table
        for note in pipe.notes:
            st.caption(f":material/info: {note}")
    return pipe


def next_quarter(result: forecasting.ForecastResult | None, pipe: forecasting.PipelineForecast) -> None:
    st.subheader("Next quarter")
    if result is None:
        no_data("The combined next-quarter figure needs a revenue forecast.")
        return
    combined = forecasting.combined_next_quarter(result, pipe)
    if is_empty(combined):
        no_data("No next-quarter figure for this selection.")
        return
    if not result.reliable:
        st.warning(
            "The statistical part below comes from a forecast that is not reliable (see above).",
            icon=":material/warning:",
        )
    for card, row in zip(st.columns(len(combined)), combined.itertuples(), strict=True):
        with card, st.container(border=True):
            st.metric(COMPONENT_NAMES.get(str(row.component), str(row.component)), fmt_money(row.amount))
            if row.component in ("pipeline", "overdue"):
                st.caption(f"{int(row.deals):,} deal(s)")
            st.caption(str(row.detail))
    fig = go.Figure(
        go.Bar(
            x=[COMPONENT_NAMES.get(str(c), str(c)) for c in combined["component"]],
            y=combined["amount"],
            marker_color=PALETTE[: len(combined)],
            hovertemplate="%{x}: %{y:$,.0f}<extra></extra>",
        )
    )
    fig.update_yaxes(**axis_format("money"), automargin=True)
    fig.update_layout(height=340)
    report.chart(
        fig, combined, "Next quarter: the forecast and the pipeline beside it", definition=COMBINED_DEFINITION
    )


horizon, model, full_history = controls()
forecast_result = statistical(view, horizon, model, full_history)
next_quarter(forecast_result, pipeline(view))
report.finish()
