"""Seasonal naive: next January = last January. The baseline every other model must beat.

Rules:

* lag 12 (seasonal naive) when the training series has at least 24 points (two full years,
  so that at least 12 seasonal residuals exist), otherwise lag 1 (naive: the last value);
* forecast for step ``h``: the value ``lag · k`` months back, ``k = ceil(h / lag)``;
* intervals are empirical: the 80 % / 95 % quantiles of the absolute in-sample residuals
  ``|y_t − y_{t−lag}|``, widened by ``sqrt(k)`` (the k-th seasonal step accumulates k
  independent residuals), applied symmetrically around the mean. With no residual (one
  point) the interval has zero width.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasting.models.base import MIN_SEASONAL_POINTS, SEASON, Prediction


def naive_lag(n: int) -> int:
    """The lag the baseline uses for a training series of ``n`` points (12, else 1)."""
    return SEASON if n >= MIN_SEASONAL_POINTS else 1


def in_sample_mae(y: np.ndarray) -> float:
    """Mean absolute in-sample error of the (seasonal) naive forecast on ``y`` — the MASE
    scale; NaN when ``y`` is too short to have a residual."""
    lag = naive_lag(len(y))
    if len(y) <= lag:
        return float("nan")
    return float(np.mean(np.abs(y[lag:] - y[:-lag])))


@dataclass
class FittedSeasonalNaive:
    """Seasonal naive fitted to a training series (the series is all it needs)."""

    y: np.ndarray

    @property
    def lag(self) -> int:
        return naive_lag(len(self.y))

    @property
    def label(self) -> str:
        return "seasonal naive (lag 12)" if self.lag == SEASON else "naive (last value)"

    def predict(self, horizon: int) -> Prediction:
        y, lag = self.y, self.lag
        steps = np.arange(1, horizon + 1)
        seasons_back = np.ceil(steps / lag).astype(int)
        # step h repeats the last observed season: position n - lag + ((h - 1) mod lag)
        mean = y[len(y) - lag + (steps - 1) % lag].astype(float)
        residuals = np.abs(y[lag:] - y[:-lag]) if len(y) > lag else np.zeros(0)
        if residuals.size:
            q80, q95 = np.quantile(residuals, [0.80, 0.95])
        else:
            q80 = q95 = 0.0
        widen = np.sqrt(seasons_back)
        return Prediction(
            mean, mean - q80 * widen, mean + q80 * widen, mean - q95 * widen, mean + q95 * widen
        )

    def extend(self, y: np.ndarray) -> FittedSeasonalNaive:
        return FittedSeasonalNaive(np.asarray(y, dtype=float))


class SeasonalNaive:
    """The baseline model (see the module docstring)."""

    name = "seasonal_naive"
    rank = 0

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= 1

    def fit(self, y: np.ndarray) -> FittedSeasonalNaive:
        return FittedSeasonalNaive(np.asarray(y, dtype=float))
