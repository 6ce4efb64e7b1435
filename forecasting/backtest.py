"""Rolling-origin backtest: how well a model would have forecast the months we already know.

Plan (``backtest_plan``): horizon ``h = min(requested, 12)``; the first origin leaves at
least ``min_train`` training points (24 when the series has ≥ 36 points, else half the
series, at least 5); short series trade horizon for folds (``h`` is cut to half the months
available after ``min_train``); folds = up to 12 consecutive origins, one month apart, the
last one ending at the last observation. Fold ``k`` trains on ``y[:origin_k]`` and forecasts
``y[origin_k : origin_k + h]``.

Fitting (``backtest``): the model chooses its specification and estimates its parameters
on the first fold's training data; every later fold re-runs the fitted model through its
own longer training data (``FittedModel.extend``: ETS and SARIMAX keep their parameters and
update their state, like statsforecast's ``refit=False``; seasonal naive and Theta are
cheap and refit). ``refit=True`` re-runs the whole fit at every origin instead (slower). No
fold ever sees data after its origin.

Metrics, pooled over every (fold, step) pair; ``e = actual − mean``:

* ``mae`` = mean |e|; ``rmse`` = sqrt(mean e²);
* ``mape`` = mean |e| / |actual| over the actuals that are not 0 (zero actuals are skipped;
  NaN when every actual is 0), as a fraction (0.12 = 12 %);
* ``mase`` = mean |e| / scale, where a fold's scale is the in-sample MAE of the seasonal
  naive forecast on that fold's training window (lag 12, or lag 1 when the window has
  fewer than 24 points); folds whose scale is 0 (a constant window) are skipped; NaN
  when all are;
* ``coverage80`` / ``coverage95`` = share of actuals inside [lo80, hi80] / [lo95, hi95]
  (bounds included), so each is in [0, 1]: the model's own intervals, before the
  calibration of ``forecasting.calibration``.

Intervals are tidied exactly like the final forecast's (ordered; clipped at 0 when the
training window has no negative value). Each row of ``errors`` also keeps the model's own
standard deviation for the step (``sd``, from its unclipped 80 % interval) and whether the
window had no negative value (``non_negative``), which the calibration uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecasting.models import REGISTRY, ForecastModel
from forecasting.models.base import MIN_SEASONAL_POINTS, model_sd
from forecasting.models.seasonal_naive import in_sample_mae
from forecasting.threads import single_threaded_blas

MAX_HORIZON = 12
MAX_FOLDS = 12
METRIC_COLUMNS = ["mae", "rmse", "mape", "mase", "coverage80", "coverage95"]
TABLE_COLUMNS = ["model", *METRIC_COLUMNS, "folds", "horizon", "spec"]


@dataclass(frozen=True)
class BacktestPlan:
    """Where the folds start and how far each looks ahead."""

    horizon: int
    origins: tuple[int, ...]

    @property
    def folds(self) -> int:
        return len(self.origins)

    @property
    def first_origin(self) -> int:
        return self.origins[0]


def backtest_plan(n: int, horizon: int = MAX_HORIZON, folds: int = MAX_FOLDS) -> BacktestPlan | None:
    """The rolling-origin plan for a series of ``n`` points (module docstring), or None when
    the series is too short for even one fold."""
    min_train = MIN_SEASONAL_POINTS if n >= 36 else max(5, n // 2)
    available = n - min_train
    if available < 1 or horizon < 1 or folds < 1:
        return None
    h = min(horizon, MAX_HORIZON)
    if available < 2 * h:
        h = max(1, min(h, available // 2))
    k = min(folds, available - h + 1)
    origins = tuple(n - h - i for i in reversed(range(k)))
    return BacktestPlan(h, origins)


@dataclass
class BacktestResult:
    """One model's backtest: pooled metrics and every forecast it made."""

    model: str
    spec: str
    plan: BacktestPlan
    metrics: dict[str, float]
    errors: pd.DataFrame = field(repr=False)

    def row(self) -> dict[str, object]:
        """The model's row of the backtest table."""
        return {
            "model": self.model,
            **self.metrics,
            "folds": self.plan.folds,
            "horizon": self.plan.horizon,
            "spec": self.spec,
        }


def backtest(
    series: pd.Series | np.ndarray,
    model: str | ForecastModel,
    horizon: int = MAX_HORIZON,
    folds: int = MAX_FOLDS,
    refit: bool = False,
    plan: BacktestPlan | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of ``model`` on ``series`` (consecutive months, no gaps; see
    the module docstring for the plan and the metrics). Raises ``ValueError`` when the series
    is too short for one fold or the model cannot be fitted to the first training window.
    BLAS runs single-threaded meanwhile (``forecasting.threads``)."""
    with single_threaded_blas():
        return _backtest(np.asarray(series, dtype=float), model, horizon, folds, refit, plan)


def _backtest(
    y: np.ndarray,
    model: str | ForecastModel,
    horizon: int,
    folds: int,
    refit: bool,
    plan: BacktestPlan | None,
) -> BacktestResult:
    if isinstance(model, str):
        model = REGISTRY[model]
    plan = plan or backtest_plan(len(y), horizon, folds)
    if plan is None:
        raise ValueError(f"a series of {len(y)} points is too short for a backtest")
    first_train = y[: plan.first_origin]
    if not model.applicable(first_train):
        raise ValueError(
            f"{model.name} does not apply to the first training window ({len(first_train)} points)"
        )
    fitted = model.fit(first_train)
    spec = fitted.label
    rows = []
    for origin in plan.origins:
        train = y[:origin]
        if origin != plan.first_origin:
            fitted = model.fit(train) if refit else fitted.extend(train)
        raw = fitted.predict(plan.horizon)
        non_negative = bool(np.min(train) >= 0)
        prediction = raw.tidy(non_negative)
        sd = model_sd(raw)
        actual = y[origin : origin + plan.horizon]
        scale = in_sample_mae(train)
        for step in range(plan.horizon):
            rows.append(
                {
                    "origin": origin,
                    "step": step + 1,
                    "actual": actual[step],
                    "mean": prediction.mean[step],
                    "lo80": prediction.lo80[step],
                    "hi80": prediction.hi80[step],
                    "lo95": prediction.lo95[step],
                    "hi95": prediction.hi95[step],
                    "scale": scale,
                    "sd": sd[step],
                    "non_negative": non_negative,
                }
            )
    errors = pd.DataFrame(rows)
    return BacktestResult(model.name, spec, plan, metrics(errors), errors)


def metrics(errors: pd.DataFrame) -> dict[str, float]:
    """Pooled metrics of a frame of (actual, mean, lo80, hi80, lo95, hi95, scale) rows."""
    actual = errors["actual"].to_numpy(dtype=float)
    error = actual - errors["mean"].to_numpy(dtype=float)
    absolute = np.abs(error)
    nonzero = actual != 0
    scale = errors["scale"].to_numpy(dtype=float)
    scaled = np.isfinite(scale) & (scale > 0)
    return {
        "mae": float(absolute.mean()),
        "rmse": float(math.sqrt(np.mean(error**2))),
        "mape": float(np.mean(absolute[nonzero] / np.abs(actual[nonzero]))) if nonzero.any() else math.nan,
        "mase": float(np.mean(absolute[scaled] / scale[scaled])) if scaled.any() else math.nan,
        "coverage80": float(np.mean((errors["lo80"] <= actual) & (actual <= errors["hi80"]))),
        "coverage95": float(np.mean((errors["lo95"] <= actual) & (actual <= errors["hi95"]))),
    }


def backtest_table(results: list[BacktestResult]) -> pd.DataFrame:
    """One row per model: model, mae, rmse, mape, mase, coverage80, coverage95, folds,
    horizon, spec (the specification the backtest fitted at its first origin)."""
    return pd.DataFrame([r.row() for r in results], columns=TABLE_COLUMNS)
