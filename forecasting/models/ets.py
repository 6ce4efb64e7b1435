"""ETS (error, trend, seasonal) exponential smoothing via statsmodels ``ETSModel``.

Specification search, by AIC (statsmodels' ``aic`` of the maximum-likelihood fit; the
likelihoods of additive- and multiplicative-error models are both on the data scale, so
their AICs compare):

* error: additive; also multiplicative when every value is strictly positive;
* trend: none, or additive damped (``Ad``);
* seasonality (period 12) only with at least 24 training points: additive with additive
  errors, multiplicative with multiplicative errors; the non-seasonal variants are always
  tried too.

That is 2–8 configurations. Needs at least 10 points. Initial states come from statsmodels'
heuristic (a decomposition of the first years) rather than being estimated: measured here
that is 5–20× faster and gave a higher likelihood (the estimated initial seasonal states
often stopped short of the optimum); the smoothing parameters are estimated by maximum
likelihood. ``extend`` keeps both the initial states and the parameters. Intervals: statsmodels' analytic
prediction intervals for additive models, simulated (1,000 paths, fixed seed, so results
are reproducible) for multiplicative ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from statsmodels.tsa.exponential_smoothing.ets import ETSModel

from forecasting.models.base import MIN_SEASONAL_POINTS, SEASON, Prediction, fit_lowest_aic

MIN_POINTS = 10
SIMULATION_SEED = 20261130


@dataclass(frozen=True)
class EtsSpec:
    """One ETS configuration."""

    error: str  # "add" | "mul"
    trend: str | None  # None | "add"
    damped: bool
    seasonal: str | None  # None | "add" | "mul"

    @property
    def label(self) -> str:
        error = {"add": "A", "mul": "M"}[self.error]
        trend = "N" if self.trend is None else ("Ad" if self.damped else "A")
        seasonal = {None: "N", "add": "A", "mul": "M"}[self.seasonal]
        return f"ETS({error},{trend},{seasonal})"

    def model(self, y: np.ndarray, initial: dict[str, object] | None = None) -> ETSModel:
        """The statsmodels model on ``y``: initial states from the heuristic, or ``initial``
        (``initial_level``/``initial_trend``/``initial_seasonal``) when given."""
        init = (
            {"initialization_method": "heuristic"}
            if initial is None
            else {"initialization_method": "known", **initial}
        )
        # statsmodels 0.15 needs a pandas input for get_prediction (numpy input fails there)
        return ETSModel(
            pd.Series(np.asarray(y, dtype=float)),
            error=self.error,
            trend=self.trend,
            damped_trend=self.damped,
            seasonal=self.seasonal,
            seasonal_periods=SEASON if self.seasonal else None,
            **init,
        )


def candidate_specs(y: np.ndarray) -> list[EtsSpec]:
    """The configurations tried on ``y`` (see the module docstring)."""
    errors = ["add", "mul"] if np.all(y > 0) else ["add"]
    seasonal_ok = len(y) >= MIN_SEASONAL_POINTS
    specs = []
    for error in errors:
        for trend, damped in ((None, False), ("add", True)):
            specs.append(EtsSpec(error, trend, damped, None))
            if seasonal_ok:
                specs.append(EtsSpec(error, trend, damped, error))
    return specs


@dataclass
class FittedEts:
    spec: EtsSpec
    results: object  # statsmodels ETSResults
    n: int

    @property
    def label(self) -> str:
        return self.spec.label

    def predict(self, horizon: int) -> Prediction:
        prediction = self.results.get_prediction(
            start=self.n, end=self.n + horizon - 1, rng=np.random.RandomState(SIMULATION_SEED)
        )
        mean = np.asarray(prediction.predicted_mean, dtype=float)
        lo80, hi80 = np.asarray(prediction.pred_int(alpha=0.20), dtype=float).T
        lo95, hi95 = np.asarray(prediction.pred_int(alpha=0.05), dtype=float).T
        return Prediction(mean, lo80, hi80, lo95, hi95)

    def extend(self, y: np.ndarray) -> FittedEts:
        initial: dict[str, object] = {"initial_level": self.results.initial_level}
        if self.spec.trend:
            initial["initial_trend"] = self.results.initial_trend
        if self.spec.seasonal:
            initial["initial_seasonal"] = np.asarray(self.results.initial_seasonal)
        results = self.spec.model(y, initial).smooth(np.asarray(self.results.params))
        return FittedEts(self.spec, results, len(y))


class Ets:
    """ETS with the configuration chosen by AIC (see the module docstring)."""

    name = "ets"
    rank = 2

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= MIN_POINTS and bool(np.ptp(y) > 0)

    def fit(self, y: np.ndarray, specs: list[EtsSpec] | None = None) -> FittedEts:
        """The lowest-AIC trustworthy configuration of ``candidate_specs(y)`` (or of ``specs``)."""
        y = np.asarray(y, dtype=float)
        return fit_lowest_aic(
            candidate_specs(y) if specs is None else specs,
            y,
            lambda spec, results: FittedEts(spec, results, len(y)),
            "ETS configuration",
        )
