"""Forecasting models, simplest first (the order ties are broken in)."""

from __future__ import annotations

from forecasting.models.base import FittedModel, ForecastModel, Prediction
from forecasting.models.ets import Ets
from forecasting.models.sarimax import Sarimax
from forecasting.models.seasonal_naive import SeasonalNaive
from forecasting.models.theta import Theta

#: Every model, simplest first: seasonal_naive < theta < ets < sarimax.
REGISTRY: dict[str, ForecastModel] = {
    model.name: model for model in (SeasonalNaive(), Theta(), Ets(), Sarimax())
}
MODELS: tuple[str, ...] = tuple(REGISTRY)

__all__ = ["MODELS", "REGISTRY", "FittedModel", "ForecastModel", "Prediction"]
