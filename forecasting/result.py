"""What ``forecast()`` returns, and the forecasts kept in this process — without statsmodels.

The result's types (:class:`ForecastResult`, :class:`HeldOutCoverage`), the model names
(:data:`MODELS`, simplest first) and the process's kept forecasts (:data:`FORECASTS`,
keyed by :func:`forecast_key`) live here, apart from the models and the selection, so that
a forecast read back (:mod:`forecasting.store`) or named on a page (the Forecast page's
model list) imports no statsmodels (≈ 0.8 s of a server's first view).
:mod:`forecasting.selection` and :mod:`forecasting.calibration` re-export them.
"""

from __future__ import annotations

import copy
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Every model's name, simplest first: seasonal_naive < theta < ets < sarimax (the order
#: ties are broken in; ``forecasting.models.MODELS`` is the same tuple, with the models).
MODELS: tuple[str, ...] = ("seasonal_naive", "theta", "ets", "sarimax")
FORECAST_COLUMNS = ["period", "mean", "lo80", "hi80", "lo95", "hi95"]


@dataclass(frozen=True)
class HeldOutCoverage:
    """Coverage of the calibrated intervals on folds calibrated without them
    (``forecasting.calibration``), and of the model's own intervals on the same points."""

    coverage80: float
    coverage95: float
    model80: float
    model95: float
    points: int
    folds: int


NO_HELD_OUT = HeldOutCoverage(math.nan, math.nan, math.nan, math.nan, 0, 0)


@dataclass
class ForecastResult:
    """What ``forecast()`` returns.

    * ``model``: the chosen model's name (one of ``MODELS``; ``"none"`` without data);
    * ``forecast``: period (month start), mean, lo80, hi80, lo95, hi95;
    * ``backtest``: one row per model tried — model, mae, rmse, mape, mase, coverage80,
      coverage95, folds, horizon, spec;
    * ``history``: the cleaned monthly series the models saw;
    * ``notes``: every adjustment, fallback and warning, one sentence each;
    * ``reason``: one sentence saying why this model was chosen;
    * ``spec``: the chosen model's specification in the final fit, e.g. ``ETS(A,Ad,A)``;
    * ``reliable``: False when the forecast should not be shown as one (rules in
      ``forecasting.selection``'s docstring); ``reliability``: one sentence saying why or why not;
    * ``calibrated``: whether the intervals were calibrated on the backtest's errors;
      ``held_out``: the chosen model's held-out coverage of the calibrated intervals (and of
      its own, on the same points); ``intervals``: one sentence stating both.
    """

    model: str
    forecast: pd.DataFrame
    backtest: pd.DataFrame
    history: pd.Series
    notes: list[str] = field(default_factory=list)
    reason: str = ""
    spec: str = ""
    reliable: bool = False
    reliability: str = ""
    calibrated: bool = False
    held_out: HeldOutCoverage = NO_HELD_OUT
    intervals: str = ""


def forecast_key(series: pd.Series, horizon: int, model: str | None, folds: int, refit: bool) -> bytes | None:
    """The key of ``forecast(series, horizon, model, folds=folds, refit=refit)``: a hash of
    the series (dates and values bit for bit, and its name) and the arguments; None when
    the series cannot be hashed. The one definition, for :data:`FORECASTS` and the store."""
    return ForecastCache.key(series, horizon, model, folds, refit)


class ForecastCache:
    """The last ``maxsize`` results of ``forecast()`` in this process, keyed by a hash of
    the series (its dates and values, bit for bit, and its name) and the arguments;
    least recently used first out. A result depends on nothing else (``forecast`` is
    pure), so a hit is the same result; each caller gets its own deep copy.
    ``cache_clear()`` forgets them (the benchmarks do, to time a new selection)."""

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = maxsize
        self._results: OrderedDict[bytes, ForecastResult] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(series: pd.Series, *arguments: object) -> bytes | None:
        """The key of ``series`` and ``arguments``; None when the series cannot be hashed
        (then nothing is cached)."""
        try:
            values = np.ascontiguousarray(pd.to_numeric(pd.Series(series), errors="coerce"), dtype=float)
            index = pd.Index(series.index).astype(str).to_numpy(dtype=str)
        except (AttributeError, TypeError, ValueError):
            return None
        digest = hashlib.blake2b(digest_size=20)
        digest.update(values.tobytes())
        digest.update("\x1f".join(index).encode())
        digest.update(repr((getattr(series, "name", None), arguments)).encode())
        return digest.digest()

    def get(self, key: bytes | None) -> ForecastResult | None:
        if key is None:
            return None
        with self._lock:
            result = self._results.get(key)
            if result is None:
                return None
            self._results.move_to_end(key)
        return copy.deepcopy(result)

    def put(self, key: bytes | None, result: ForecastResult) -> None:
        if key is None:
            return
        with self._lock:
            self._results[key] = copy.deepcopy(result)
            while len(self._results) > self.maxsize:
                self._results.popitem(last=False)

    def cache_clear(self) -> None:
        with self._lock:
            self._results.clear()

    def __len__(self) -> int:
        return len(self._results)


#: The process's forecasts (see :class:`ForecastCache`).
FORECASTS = ForecastCache()
