"""What every forecasting model provides, and the interval rules they share.

A *model* (``ForecastModel``) knows when it applies to a series and how to choose its
specification and estimate its parameters on a training series (``fit``). A *fitted model*
(``FittedModel``) forecasts ``h`` steps past the end of its training data with a mean and
80 % / 95 % intervals, and can re-run its filter through a longer series that starts at the
same point without re-estimating anything (``extend``) — what the rolling-origin backtest
uses for the expensive models (statsforecast's ``refit=False``).

Series are plain ``numpy`` float arrays of consecutive months here; calendar handling
lives in ``forecasting.selection``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

#: Standard-normal quantiles for two-sided 80 % and 95 % intervals.
Z80 = 1.2815515655446004
Z95 = 1.959963984540054
#: Months in a season.
SEASON = 12
#: Seasonal terms (ETS seasonality, seasonal-naive lag 12, Theta deseasonalising) need at
#: least two full years of training data.
MIN_SEASONAL_POINTS = 2 * SEASON


@dataclass
class Prediction:
    """A forecast path: mean and the 80 % / 95 % interval bounds, one value per step."""

    mean: np.ndarray
    lo80: np.ndarray
    hi80: np.ndarray
    lo95: np.ndarray
    hi95: np.ndarray

    def tidy(self, non_negative: bool) -> Prediction:
        """Clip at 0 when ``non_negative`` (the history has no negative value), then enforce
        ``lo95 <= lo80 <= mean <= hi80 <= hi95`` by widening the outer bounds where needed;
        NaN/inf values (a failed interval) collapse onto the mean."""
        mean = np.asarray(self.mean, dtype=float)
        bounds = []
        for values in (self.lo80, self.hi80, self.lo95, self.hi95):
            values = np.asarray(values, dtype=float)
            bounds.append(np.where(np.isfinite(values), values, mean))
        lo80, hi80, lo95, hi95 = bounds
        if non_negative:
            mean, lo80, hi80, lo95, hi95 = (np.clip(v, 0.0, None) for v in (mean, lo80, hi80, lo95, hi95))
        lo80 = np.minimum(lo80, mean)
        lo95 = np.minimum(lo95, lo80)
        hi80 = np.maximum(hi80, mean)
        hi95 = np.maximum(hi95, hi80)
        return Prediction(mean, lo80, hi80, lo95, hi95)


def model_sd(prediction: Prediction) -> np.ndarray:
    """The model's own standard deviation per step, read from its (unclipped) 80 % interval:
    ``(hi80 − lo80) / (2 · Z80)``."""
    return (np.asarray(prediction.hi80, dtype=float) - np.asarray(prediction.lo80, dtype=float)) / (2 * Z80)


def normal_prediction(mean: np.ndarray, sd: np.ndarray) -> Prediction:
    """Symmetric normal intervals ``mean ± z·sd``."""
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    return Prediction(mean, mean - Z80 * sd, mean + Z80 * sd, mean - Z95 * sd, mean + Z95 * sd)


class FittedModel(Protocol):
    """A model with its specification chosen and parameters estimated."""

    #: Human-readable specification, e.g. ``"ETS(A,Ad,A)"``.
    label: str

    def predict(self, horizon: int) -> Prediction:
        """Forecast ``horizon`` months past the end of the training data."""
        ...

    def extend(self, y: np.ndarray) -> FittedModel:
        """The same specification and parameters run through ``y`` (which starts where the
        training data started and is at least as long); models cheap to fit may refit."""
        ...


class ForecastModel(Protocol):
    """A forecasting method over a monthly series."""

    #: Name used in ``forecasting.MODELS``, the backtest table and ``model=`` overrides.
    name: str
    #: Simplicity rank: ties in the backtest go to the lower rank.
    rank: int

    def applicable(self, y: np.ndarray) -> bool:
        """Whether this model can be fitted to ``y`` (length, positivity, ...)."""
        ...

    def fit(self, y: np.ndarray) -> FittedModel:
        """Choose the specification (by AIC where there is a choice) and estimate it on ``y``."""
        ...


Fitted = TypeVar("Fitted")


def fit_lowest_aic(
    specs: Iterable[Any],
    y: np.ndarray,
    wrap: Callable[[Any, Any], Fitted],
    what: str,
    fit_kwargs: dict[str, Any] | None = None,
) -> Fitted:
    """Fit ``spec.model(y)`` (with ``fit_kwargs``) for every candidate spec and keep the
    one with the lowest finite AIC, wrapped as ``wrap(spec, results)``; specs that fail to
    fit are skipped, and when none fits a ``ValueError`` lists why (``what`` names the
    model family)."""
    best: Fitted | None = None
    best_aic = np.inf
    errors: list[str] = []
    for spec in specs:
        try:
            results = spec.model(y).fit(disp=False, **(fit_kwargs or {}))
        except (ValueError, np.linalg.LinAlgError) as error:
            errors.append(f"{spec.label}: {error}")
            continue
        aic = float(results.aic)
        if np.isfinite(aic) and aic < best_aic:
            best, best_aic = wrap(spec, results), aic
    if best is None:
        raise ValueError(f"no {what} could be fitted: " + "; ".join(errors))
    return best
