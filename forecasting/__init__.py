"""Revenue forecasting: statsmodels models chosen by a rolling-origin backtest, and a
pipeline-weighted view of open deals. Plain Python (no Streamlit).

* ``forecast(series, horizon=12, model=None) -> ForecastResult``
* ``revenue_forecast(conn, f, horizon=12, model=None) -> ForecastResult``
* ``pipeline_forecast(conn, f, months=3) -> PipelineForecast``
* ``expected_pipeline(conn, f) -> DataFrame`` (Expected pipeline, learned win rates)
* ``combined_next_quarter(stat, pipe) -> DataFrame``
* ``backtest(series, model, horizon, folds)``, ``MODELS``
"""

from __future__ import annotations

from forecasting.backtest import BacktestResult, backtest, backtest_plan, backtest_table
from forecasting.models import MODELS
from forecasting.pipeline import PipelineForecast, combined_next_quarter, expected_pipeline, pipeline_forecast
from forecasting.revenue import revenue_forecast
from forecasting.selection import ForecastResult, forecast, prepare_series

__all__ = [
    "MODELS",
    "BacktestResult",
    "ForecastResult",
    "PipelineForecast",
    "backtest",
    "backtest_plan",
    "backtest_table",
    "combined_next_quarter",
    "expected_pipeline",
    "forecast",
    "pipeline_forecast",
    "prepare_series",
    "revenue_forecast",
]
