"""Seasonal ARIMA via statsmodels ``SARIMAX`` with a small order search by AIC.

Grid (kept small so a first forecast of a 60-month series stays under a second):

* non-seasonal order (p, 1, q) with (p, q) in {(0, 1), (1, 0), (1, 1)};
* with at least 36 training points also the seasonal order (P, 1, Q, 12) with
  (P, Q) in {(0, 1), (1, 0)} — 6 fits; below 36 points no seasonal part — 3 fits.

Differencing is fixed (d = 1, D = 1 when seasonal) so that every candidate's likelihood is
computed on the same differenced data and their AICs compare. Needs at least 12 points.
Intervals: statsmodels' Gaussian forecast intervals (``get_forecast().conf_int``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from statsmodels.tsa.statespace.kalman_filter import MEMORY_NO_SMOOTHING
from statsmodels.tsa.statespace.sarimax import SARIMAX

from forecasting.models.base import SEASON, Prediction, fit_lowest_aic

MIN_POINTS = 12
MIN_SEASONAL_POINTS = 3 * SEASON
ORDERS = ((0, 1, 1), (1, 1, 0), (1, 1, 1))
SEASONAL_ORDERS = ((0, 1, 1, SEASON), (1, 1, 0, SEASON))


@dataclass(frozen=True)
class SarimaxSpec:
    order: tuple[int, int, int]
    seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def label(self) -> str:
        p, d, q = self.order
        if self.seasonal_order[3]:
            sp, sd, sq, s = self.seasonal_order
            return f"SARIMA({p},{d},{q})({sp},{sd},{sq}){s}"
        return f"ARIMA({p},{d},{q})"

    def model(self, y: np.ndarray) -> SARIMAX:
        """The statsmodels model on ``y``, set to keep no smoother output: its fit then ends
        with a Kalman filter run instead of a filter-and-smoother run (nothing here reads
        smoothed states; forecasts come from the filter), and so does ``extend``'s ``apply``."""
        model = SARIMAX(np.asarray(y, dtype=float), order=self.order, seasonal_order=self.seasonal_order)
        model.ssm.set_conserve_memory(MEMORY_NO_SMOOTHING)
        return model


def candidate_specs(y: np.ndarray) -> list[SarimaxSpec]:
    """The orders tried on ``y`` (see the module docstring)."""
    if len(y) >= MIN_SEASONAL_POINTS:
        return [SarimaxSpec(order, seasonal) for seasonal in SEASONAL_ORDERS for order in ORDERS]
    return [SarimaxSpec(order) for order in ORDERS]


@dataclass
class FittedSarimax:
    spec: SarimaxSpec
    results: object  # statsmodels SARIMAXResults

    @property
    def label(self) -> str:
        return self.spec.label

    def predict(self, horizon: int) -> Prediction:
        forecast = self.results.get_forecast(horizon)
        mean = np.asarray(forecast.predicted_mean, dtype=float)
        lo80, hi80 = np.asarray(forecast.conf_int(alpha=0.20), dtype=float).T
        lo95, hi95 = np.asarray(forecast.conf_int(alpha=0.05), dtype=float).T
        return Prediction(mean, lo80, hi80, lo95, hi95)

    def extend(self, y: np.ndarray) -> FittedSarimax:
        """The same parameters run through ``y`` (statsmodels' ``apply(y, refit=False)``:
        the model on ``y``, filtered at those parameters), without a smoother run."""
        results = self.spec.model(np.asarray(y, dtype=float)).filter(self.results.params, cov_type="none")
        return FittedSarimax(self.spec, results)


class Sarimax:
    """SARIMAX with the orders chosen by AIC (see the module docstring)."""

    name = "sarimax"
    rank = 3

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= MIN_POINTS and bool(np.ptp(y) > 0)

    def fit(self, y: np.ndarray, specs: list[SarimaxSpec] | None = None) -> FittedSarimax:
        """The lowest-AIC trustworthy order of ``candidate_specs(y)`` (or of ``specs``)."""
        y = np.asarray(y, dtype=float)
        # cov_type="none": no numerical Hessian for the parameters' covariance, which
        # nothing here reads (forecast intervals come from the state space, not from it)
        return fit_lowest_aic(
            candidate_specs(y) if specs is None else specs,
            y,
            FittedSarimax,
            "SARIMAX order",
            fit_kwargs={"cov_type": "none"},
        )
