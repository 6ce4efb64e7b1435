"""Revenue forecasting: statsmodels models chosen by a rolling-origin backtest, and a
pipeline-weighted view of open deals. Plain Python (no Streamlit).

* ``forecast(series, horizon=12, model=None) -> ForecastResult``
* ``revenue_forecast(conn, f, horizon=12, model=None) -> ForecastResult``
* ``pipeline_forecast(conn, f, months=3) -> PipelineForecast``
* ``expected_pipeline(conn, f) -> DataFrame`` (Expected pipeline, learned win rates)
* ``combined_next_quarter(stat, pipe) -> DataFrame``
* ``backtest(series, model, horizon, folds)``, ``MODELS``

The names are loaded on first use (PEP 562): ``import forecasting`` costs nothing, and the
pipeline forecast or the customer models (``forecasting.customer_models``) do not import
statsmodels (≈ 1.1 s of a server's first page view that shows no statistical forecast);
neither do ``MODELS`` (the names), ``ForecastResult`` and a ``revenue_forecast`` read back
from the store beside the database (``forecasting.store``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forecasting.backtest import BacktestResult, backtest, backtest_plan, backtest_table
    from forecasting.pipeline import (
        PipelineForecast,
        combined_next_quarter,
        expected_pipeline,
        pipeline_forecast,
    )
    from forecasting.result import MODELS, ForecastResult
    from forecasting.revenue import revenue_forecast
    from forecasting.selection import forecast, prepare_series

#: name -> the module that defines it.
_HOMES = {
    "BacktestResult": "forecasting.backtest",
    "backtest": "forecasting.backtest",
    "backtest_plan": "forecasting.backtest",
    "backtest_table": "forecasting.backtest",
    "MODELS": "forecasting.result",  # the names only: no statsmodels
    "PipelineForecast": "forecasting.pipeline",
    "combined_next_quarter": "forecasting.pipeline",
    "expected_pipeline": "forecasting.pipeline",
    "pipeline_forecast": "forecasting.pipeline",
    "revenue_forecast": "forecasting.revenue",
    "ForecastResult": "forecasting.result",
    "forecast": "forecasting.selection",
    "prepare_series": "forecasting.selection",
}

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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'forecasting' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
