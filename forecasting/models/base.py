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

import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
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


#: A forecast step is "far outside the history" when it lies more than this many times
#: the last season's range below its minimum or above its maximum (``degenerate``).
FAR_OUTSIDE = 3.0


def degenerate(y: np.ndarray, prediction: Prediction) -> str | None:
    """Why a forecast of ``y`` cannot be trusted, or None when it can. Degenerate when

    * a mean or interval bound is not finite;
    * every step's 95 % interval has zero width (``hi95 − lo95 ≤ 1e-9 · max|y|``) while the
      history varies (``ptp(y) > 0``);
    * a step's mean lies outside ``[lo − 3·r, hi + 3·r]``, where ``lo``/``hi``/``r`` are the
      minimum, maximum and range of the last 12 months (the whole history's range when
      those 12 are constant): a forecast collapsing far from the level it continues
      (measured: an unconverged SARIMAX forecast revenue ≈ 0 after months at 1.8e8)."""
    y = np.asarray(y, dtype=float)
    parts = [np.asarray(v, dtype=float) for v in (prediction.mean, prediction.lo80, prediction.hi80)]
    parts += [np.asarray(v, dtype=float) for v in (prediction.lo95, prediction.hi95)]
    if not all(np.isfinite(v).all() for v in parts):
        return "its forecast or intervals are not finite"
    mean, lo95, hi95 = parts[0], parts[3], parts[4]
    span = float(np.ptp(y)) if len(y) else 0.0
    if span > 0 and np.all(hi95 - lo95 <= 1e-9 * float(np.max(np.abs(y)))):
        return "its intervals have zero width although the history varies"
    recent = y[-SEASON:]
    width = float(np.ptp(recent)) or span
    low, high = float(recent.min()) - FAR_OUTSIDE * width, float(recent.max()) + FAR_OUTSIDE * width
    outside = (mean < low) | (mean > high)
    if width > 0 and outside.any():
        step = int(np.argmax(outside))
        return (
            f"its forecast ({mean[step]:.4g} at step {step + 1}) is far outside the last months' range "
            f"({recent.min():.4g} to {recent.max():.4g})"
        )
    return None


_T = TypeVar("_T")

#: Inside :func:`sharing_fits`: every estimate made, by (what was fitted, the training
#: data bit for bit), with the warnings its fit raised.
_FITS: ContextVar[dict[tuple, tuple[Any, list[warnings.WarningMessage]]] | None] = ContextVar(
    "forecasting_shared_fits", default=None
)


#: Warnings that are not the fit's own: a finaliser the garbage collector runs during a fit
#: (an unclosed database connection elsewhere in the process, say) raises them wherever it
#: happens to run, inside a fit's ``catch_warnings`` too.
FOREIGN_WARNINGS: tuple[type[Warning], ...] = (ResourceWarning,)


def fits_own(caught: Iterable[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    """The warnings of ``caught`` that the fit raised; the :data:`FOREIGN_WARNINGS` among
    them are raised again as they came (outside the capture), not kept as the fit's."""
    own = []
    for w in caught:
        if issubclass(w.category, FOREIGN_WARNINGS):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        else:
            own.append(w)
    return own


@contextmanager
def sharing_fits() -> Iterator[None]:
    """Within the block, a fit of the same specification to the same data (:func:`fit_once`)
    is made once: ``forecasting.selection.forecast`` wraps each forecast in it, whose
    backtests and final fit may fit one specification to one training window twice (the
    reliability backtest of the specification used re-fits it at the selection backtest's
    first origin; the calibration backtest of a model that refits at every origin repeats
    the selection backtest's origins). A fit is deterministic, so the kept one is the one a
    second fit would give; the block's end forgets them."""
    token = _FITS.set({})
    try:
        yield
    finally:
        _FITS.reset(token)


def fit_once(what: Hashable, y: np.ndarray, fit: Callable[[], _T]) -> _T:
    """``fit()`` — the estimate of ``what`` (a specification, with the fit's options) on
    ``y`` — or, inside :func:`sharing_fits`, the one already made for the same ``what`` and
    the same data, its warnings raised again (so the notes they become are the same). A
    fit that raises is not kept."""
    shared = _FITS.get()
    if shared is None:
        return fit()
    data = np.ascontiguousarray(y, dtype=float)
    key = (what, data.shape, data.tobytes())
    if key not in shared:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fit()
        shared[key] = (result, fits_own(caught))
    result, raised = shared[key]
    for w in raised:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return result


class RejectedFitWarning(UserWarning):
    """A lower-AIC specification was rejected (not converged, or a degenerate forecast);
    ``forecasting.selection`` turns it into a note."""


def converged(results: Any) -> bool:
    """Whether a statsmodels fit says its optimiser converged (``mle_retvals['converged']``;
    True when the fit reports nothing)."""
    retvals = getattr(results, "mle_retvals", None)
    if not isinstance(retvals, dict):
        return True
    return bool(retvals.get("converged", True))


def _fit_spec(spec: Any, y: np.ndarray, kwargs: dict[str, Any]) -> Any:
    """The statsmodels fit of ``spec`` on ``y``."""
    return spec.model(y).fit(disp=False, **kwargs)


def fit_lowest_aic(
    specs: Iterable[Any],
    y: np.ndarray,
    wrap: Callable[[Any, Any], Fitted],
    what: str,
    fit_kwargs: dict[str, Any] | None = None,
) -> Fitted:
    """Fit ``spec.model(y)`` (with ``fit_kwargs``) for every candidate spec and keep the
    one with the lowest finite AIC that is trustworthy, wrapped as ``wrap(spec, results)``:
    a fit whose optimiser did not converge (``converged``) or whose 12-month forecast is
    degenerate (``degenerate``) is rejected for the next-lowest AIC. Specs that fail to fit
    are skipped; when none is left a ``ValueError`` lists why (``what`` names the model
    family). Ties in AIC keep the earlier spec."""
    fits: list[tuple[float, int, Any, Any]] = []
    errors: list[str] = []
    for order, spec in enumerate(specs):
        try:
            kwargs = fit_kwargs or {}
            results = fit_once((spec, tuple(sorted(kwargs.items()))), y, partial(_fit_spec, spec, y, kwargs))
        except (ValueError, np.linalg.LinAlgError) as error:
            errors.append(f"{spec.label}: {error}")
            continue
        aic = float(results.aic)
        if np.isfinite(aic):
            fits.append((aic, order, spec, results))
        else:
            errors.append(f"{spec.label}: its AIC is not finite")
    skipped = len(errors)  # specs that failed to fit are not news; rejected ones are
    for _aic, _order, spec, results in sorted(fits, key=lambda item: (item[0], item[1])):
        if not converged(results):
            errors.append(f"{spec.label}: the likelihood optimisation did not converge")
            continue
        fitted = wrap(spec, results)
        why = degenerate(y, fitted.predict(SEASON))  # type: ignore[attr-defined]
        if why is not None:
            errors.append(f"{spec.label}: {why}")
            continue
        for rejected in errors[skipped:]:
            warnings.warn(f"rejected {rejected}", RejectedFitWarning, stacklevel=2)
        return fitted
    raise ValueError(f"no {what} could be fitted: " + "; ".join(errors))


class Pinned:
    """A model restricted to one specification (``model.fit(y, specs=[spec])``): what the
    final fit chose, backtested on its own so that reliability and calibration judge the
    model actually used."""

    def __init__(self, model: Any, spec: Any) -> None:
        self.model = model
        self.spec = spec
        self.name: str = model.name
        self.rank: int = model.rank

    def applicable(self, y: np.ndarray) -> bool:
        return bool(self.model.applicable(y))

    def fit(self, y: np.ndarray) -> Any:
        return self.model.fit(y, specs=[self.spec])
