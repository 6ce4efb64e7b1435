"""The Theta method (Assimakopoulos & Nikolopoulos) via statsmodels ``ThetaModel``.

With at least 24 training points the series is deseasonalised first (period 12, after
statsmodels' seasonality test; multiplicative when the data are positive, else additive);
shorter series are not. Theta = 2 (the classic method: SES with half the drift). Needs at
least 6 points. Intervals: statsmodels' ``prediction_intervals`` (from the SES state-space
form). Fitting is a few milliseconds, so the backtest refits it at every origin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from statsmodels.tsa.forecasting.theta import ThetaModel

from forecasting.models.base import MIN_SEASONAL_POINTS, SEASON, Prediction, normal_prediction

MIN_POINTS = 6


@dataclass
class FittedTheta:
    results: object  # statsmodels ThetaModelResults
    deseasonalized: bool

    @property
    def label(self) -> str:
        return "Theta (deseasonalised)" if self.deseasonalized else "Theta"

    def predict(self, horizon: int) -> Prediction:
        # statsmodels' prediction_intervals recomputes the forecast on every call; this is
        # its formula, sigma_h^2 = sigma^2 (1 + (h - 1)(1 + (alpha - 1)^2)), on one forecast
        mean = np.asarray(self.results.forecast(horizon), dtype=float)
        alpha = float(np.asarray(self.results.params)[1])
        steps = np.arange(horizon)
        sd = np.sqrt((1 + steps * (1 + (alpha - 1) ** 2)) * float(self.results.sigma2))
        return normal_prediction(mean, sd)

    def extend(self, y: np.ndarray) -> FittedTheta:
        return Theta().fit(y)


class Theta:
    """Theta with theta = 2 (see the module docstring)."""

    name = "theta"
    rank = 1

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= MIN_POINTS and bool(np.ptp(y) > 0)

    def fit(self, y: np.ndarray) -> FittedTheta:
        y = np.asarray(y, dtype=float)
        seasonal = len(y) >= MIN_SEASONAL_POINTS
        model = ThetaModel(y, period=SEASON, deseasonalize=seasonal)
        return FittedTheta(model.fit(), seasonal)
