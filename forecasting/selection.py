"""``forecast()``: try every applicable model, backtest each, forecast with the best.

Choice rule: the model with the lowest backtest MASE wins; a simpler model
(seasonal_naive < theta < ets < sarimax) whose MASE is within ``TIE_TOLERANCE`` (1 %,
relative) of the lowest is preferred — a more complex model must beat it by more than 1 %.
When no model has a finite MASE (e.g. all training windows constant) the lowest MAE decides;
when nothing could be backtested (fewer than 6 points) the seasonal naive forecast is used.
``model=`` forces a model (the backtest of every model is still reported).

The chosen model is then fitted to the whole series (it chooses its specification again, by
AIC, on all the data) and forecasts ``horizon`` months. Its intervals are calibrated on the
errors of a longer backtest of the chosen model (``forecasting.calibration``: scaled split
conformal over up to 48 folds; the selection backtest's errors if that one fails; the
model's own intervals when there are fewer than 20 errors), and ``intervals`` says how
often the calibrated intervals covered the actuals of folds the calibration had not seen.

**Reliability** (``reliable`` and ``reliability``): a forecast is *not reliable* when

* the chosen model could not be backtested (too few months): its accuracy is unknown;
* its backtest MASE is not a number (constant training windows): accuracy unknown;
* it did worse than seasonal naive in the same backtest (a forced model, or the fallback);
* its backtest MASE is above ``MAX_RELIABLE_MASE`` (1): its errors were larger than the
  seasonal naive's in-sample errors on the same training windows — the page's own reading
  of MASE ("below 1 beats the baseline").

The Forecast page then warns and draws no forecast line.

Awkward data never raises; each fix is stated in ``notes``:

* the index is normalised to month starts (several values in one month are summed);
* missing months inside the series and missing values are filled by linear interpolation
  between their neighbours (not with 0: a gap means "not recorded", not "nothing sold");
  leading and trailing missing values are dropped;
* fewer than 6 points: the naive forecast only; fewer than 24: no seasonal terms;
  a constant series (e.g. all zeros): the naive forecast (the constant);
* forecasts and intervals are clipped at 0 when the history has no negative value
  (revenue, counts), with a note when that changed anything;
* statsmodels warnings are recorded (``warnings.catch_warnings(record=True)``) and turned
  into notes, never printed; a model that fails is left out with a note.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from forecasting.backtest import BacktestResult, backtest, backtest_plan, backtest_table
from forecasting.calibration import MIN_POINTS, calibrate, calibration_plan, held_out_coverage
from forecasting.models import MODELS, REGISTRY
from forecasting.models.base import (
    MIN_SEASONAL_POINTS,
    Pinned,
    Prediction,
    degenerate,
    fits_own,
    sharing_fits,
)
from forecasting.result import (  # the result's types and the kept forecasts: without statsmodels
    FORECAST_COLUMNS,
    FORECASTS,
    NO_HELD_OUT,
    ForecastCache,  # noqa: F401 - re-exported (forecasting.selection.ForecastCache)
    ForecastResult,
    HeldOutCoverage,
    forecast_key,
)
from forecasting.threads import single_threaded_blas

TIE_TOLERANCE = 0.01
#: A chosen model whose backtest MASE is above this is not reliable (module docstring).
MAX_RELIABLE_MASE = 1.0
MIN_MODEL_POINTS = 6
DISPLAY_NAMES = {"seasonal_naive": "seasonal naive", "theta": "Theta", "ets": "ETS", "sarimax": "SARIMAX"}


@contextmanager
def captured_warnings(notes: list[str], source: str, limit: int = 3) -> Iterator[None]:
    """Record every warning raised inside the block and add each distinct one (up to
    ``limit``) to ``notes`` as ``"<source>: statsmodels warning — <Category>: <message>"``;
    a warning that is not the fit's (:data:`forecasting.models.base.FOREIGN_WARNINGS`: the
    garbage collector closing another part's connection meanwhile) is raised again instead."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen: list[str] = []
    for w in fits_own(caught):
        text = f"{w.category.__name__}: {str(w.message).strip().splitlines()[0] if str(w.message).strip() else ''}"
        if text not in seen:
            seen.append(text)
    for text in seen[:limit]:
        notes.append(f"{source}: statsmodels warning — {text}")
    if len(seen) > limit:
        notes.append(f"{source}: {len(seen) - limit} more distinct warning(s) not shown")


def _month_label(period: pd.Timestamp) -> str:
    return period.strftime("%Y-%m")


def prepare_series(series: pd.Series) -> tuple[pd.Series, list[str]]:
    """The series as consecutive month starts with no missing value, and notes on what was
    changed (see the module docstring). Raises ``TypeError`` when the index is not dates."""
    notes: list[str] = []
    if not isinstance(series, pd.Series):
        raise TypeError("series must be a pandas Series indexed by month")
    index = series.index
    if isinstance(index, pd.PeriodIndex):
        index = index.to_timestamp()
    try:
        index = pd.DatetimeIndex(pd.to_datetime(index))
    except (TypeError, ValueError) as error:
        raise TypeError(f"series must be indexed by dates: {error}") from error
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    months = index.to_period("M").to_timestamp().astype("datetime64[ns]")
    values = pd.to_numeric(pd.Series(np.asarray(series, dtype=object)), errors="coerce").to_numpy(dtype=float)
    if not months.equals(index.astype("datetime64[ns]")):
        notes.append("Dates were moved to the first day of their month.")
    frame = pd.Series(values, index=months)
    if frame.index.has_duplicates:
        repeated = int(frame.index.duplicated().sum())
        frame = frame.groupby(level=0).sum(min_count=1)
        notes.append(f"{repeated} value(s) fell in a month already present and were summed into it.")
    frame = frame.sort_index()
    valid = frame.dropna()
    if valid.empty:
        if len(frame):
            notes.append("The series has no numeric value.")
        return pd.Series(
            [], index=pd.DatetimeIndex([], dtype="datetime64[ns]"), dtype=float, name="value"
        ), notes
    trimmed = frame.loc[valid.index[0] : valid.index[-1]]
    dropped = len(frame) - len(trimmed)
    if dropped:
        notes.append(
            f"{dropped} missing value(s) before the first or after the last observation were dropped."
        )
    full = pd.date_range(trimmed.index[0], trimmed.index[-1], freq="MS").astype("datetime64[ns]")
    complete = trimmed.reindex(full)
    missing = complete.index[complete.isna()]
    if len(missing):
        shown = ", ".join(_month_label(m) for m in missing[:6]) + (", ..." if len(missing) > 6 else "")
        notes.append(
            f"{len(missing)} missing month(s) ({shown}) were filled by linear interpolation "
            "between the neighbouring months."
        )
        complete = complete.interpolate(method="linear")
    complete.index.name = "period"
    complete.name = series.name if series.name is not None else "value"
    return complete.astype(float), notes


def _empty_forecast() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype="datetime64[ns]" if c == "period" else float) for c in FORECAST_COLUMNS}
    )


def _forecast_frame(history: pd.Series, prediction: Prediction) -> pd.DataFrame:
    periods = pd.date_range(history.index[-1], periods=len(prediction.mean) + 1, freq="MS")[1:]
    return pd.DataFrame(
        {
            "period": periods.astype("datetime64[ns]"),
            "mean": prediction.mean,
            "lo80": prediction.lo80,
            "hi80": prediction.hi80,
            "lo95": prediction.lo95,
            "hi95": prediction.hi95,
        }
    )


def choose_model(results: dict[str, BacktestResult], notes: list[str]) -> tuple[str, str]:
    """(model name, metric used) by the rule in the module docstring."""
    for metric in ("mase", "mae"):
        scores = {name: r.metrics[metric] for name, r in results.items() if math.isfinite(r.metrics[metric])}
        if scores:
            if metric == "mae":
                notes.append(
                    "No model had a finite MASE (the training windows were constant), so MAE decided."
                )
            best = min(scores.values())
            for name in MODELS:  # simplest first
                if name in scores and scores[name] <= best * (1 + TIE_TOLERANCE) + 1e-12:
                    return name, metric
    return "seasonal_naive", ""


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _reason(chosen: str, metric: str, results: dict[str, BacktestResult], spec: str) -> str:
    """One sentence: which model, its score against the others, over how many folds."""
    result = results[chosen]
    value = result.metrics[metric]
    others = [
        f"{r.metrics[metric]:.2f} for {DISPLAY_NAMES[name]}"
        for name, r in sorted(results.items(), key=lambda item: MODELS.index(item[0]))
        if name != chosen and math.isfinite(r.metrics[metric])
    ]
    versus = f", vs {', '.join(others)}" if others else ""
    folds = f" over {_plural(result.plan.folds, 'fold')} of {_plural(result.plan.horizon, 'month')}"
    # name the specification when the backtest and the final fit agree on it
    label = result.spec if spec == result.spec else DISPLAY_NAMES[chosen]
    refit = (
        f" (backtested as {result.spec}; refitted on all months as {spec})"
        if spec and spec != result.spec
        else ""
    )
    name = metric.upper()
    if len(results) == 1:
        return f"{label} was the only model that could be backtested: {name} {value:.2f}{folds}{refit}."
    if any(math.isfinite(r.metrics[metric]) and r.metrics[metric] < value for r in results.values()):
        return (
            f"{label} is the simplest model within {TIE_TOLERANCE:.0%} of the lowest backtest {name}: "
            f"{value:.2f}{versus}{folds}{refit}."
        )
    return f"{label} had the lowest backtest {name}, {value:.2f}{versus}{folds}{refit}."


def _override_reason(chosen: str, automatic: str, results: dict[str, BacktestResult]) -> str:
    mase = {name: r.metrics["mase"] for name, r in results.items() if math.isfinite(r.metrics["mase"])}
    parts = [f"backtest MASE {mase[chosen]:.2f}"] if chosen in mase else []
    if automatic != chosen and automatic in mase:
        parts.append(f"the automatic choice would be {DISPLAY_NAMES[automatic]}, {mase[automatic]:.2f}")
    detail = f" ({'; '.join(parts)})" if parts else ""
    return f"{DISPLAY_NAMES[chosen]} was chosen by override{detail}."


def _calibration_errors(
    y: np.ndarray,
    chosen: str,
    results: dict[str, BacktestResult],
    horizon: int,
    refit: bool,
    notes: list[str],
) -> pd.DataFrame | None:
    """The backtest errors the chosen model's intervals are calibrated on: its calibration
    backtest (``forecasting.calibration.calibration_plan``), else its selection backtest,
    else None."""
    selected = results.get(chosen)
    if selected is None or selected.errors.empty or "sd" not in selected.errors:
        return None
    plan = calibration_plan(len(y), horizon)
    if plan is None or plan == selected.plan:
        return selected.errors
    with captured_warnings(notes, f"{DISPLAY_NAMES[chosen]} calibration backtest"):
        try:
            return backtest(y, chosen, plan=plan, refit=refit).errors
        except Exception as error:  # statsmodels raises many kinds; never fail the page
            notes.append(
                f"{DISPLAY_NAMES[chosen]}'s calibration backtest failed ({error}); its intervals are "
                "calibrated on the selection backtest instead."
            )
    return selected.errors


def _fallback_order(chosen: str, metric: str, results: dict[str, BacktestResult]) -> list[str]:
    """The models the final fit tries, in order: ``chosen``, then the other backtested
    models from the best ``metric`` (ties: the simpler), then seasonal naive."""
    others = sorted(
        (
            name
            for name in results
            if name != chosen and metric and math.isfinite(results[name].metrics[metric])
        ),
        key=lambda name: (results[name].metrics[metric], MODELS.index(name)),
    )
    return list(dict.fromkeys([chosen, *others, "seasonal_naive"]))


def _own_backtest(
    y: np.ndarray,
    chosen: str,
    fitted: object,
    results: dict[str, BacktestResult],
    refit: bool,
    notes: list[str],
) -> dict[str, BacktestResult]:
    """The backtests reliability is judged on: ``results`` with the chosen model's row
    replaced by the backtest of the specification the final fit actually uses when that
    differs from the one its selection backtest fitted (same plan; the specification is
    pinned, ``Pinned``). When that backtest fails the chosen model has no backtest (not
    reliable)."""
    selected = results.get(chosen)
    spec = getattr(fitted, "spec", None)
    label = getattr(fitted, "label", "")
    if selected is None or spec is None or label == selected.spec:
        return results
    judged = dict(results)
    with captured_warnings(notes, f"{label} backtest"):
        try:
            own = backtest(y, Pinned(REGISTRY[chosen], spec), plan=selected.plan, refit=refit)
        except Exception as error:  # statsmodels raises many kinds; never fail the page
            notes.append(f"{label}, the specification used, could not be backtested ({error}).")
            del judged[chosen]
            return judged
    notes.append(
        f"{label}, the specification used, was backtested on its own for the reliability check: "
        f"MASE {own.metrics['mase']:.2f} (selection backtest as {selected.spec}: {selected.metrics['mase']:.2f})."
    )
    judged[chosen] = own
    return judged


def reliability(chosen: str, results: dict[str, BacktestResult]) -> tuple[bool, str]:
    """(reliable, one sentence) for the model ``chosen`` given every model's backtest
    (rules in the module docstring)."""
    name = DISPLAY_NAMES[chosen]
    result = results.get(chosen)
    if result is None:
        return False, (
            f"Not reliable: {name} could not be backtested on this series (too few months), "
            "so its accuracy is unknown."
        )
    mase = result.metrics.get("mase", math.nan)
    if not math.isfinite(mase):
        return False, (
            f"Not reliable: {name}'s backtest error cannot be compared with the seasonal naive baseline "
            "(its training windows were constant), so its accuracy is unknown."
        )
    baseline = (
        results["seasonal_naive"].metrics.get("mase", math.nan) if "seasonal_naive" in results else math.nan
    )
    if chosen != "seasonal_naive" and math.isfinite(baseline) and mase > baseline:
        return False, (
            f"Not reliable: {name} did worse than the seasonal naive baseline in the backtest "
            f"(MASE {mase:.2f} against {baseline:.2f})."
        )
    if mase > MAX_RELIABLE_MASE:
        return False, (
            f"Not reliable: in the backtest {name}'s errors were {mase:.2f} times the seasonal naive "
            f"baseline's in-sample error (MASE {mase:.2f}, above {MAX_RELIABLE_MASE:g}), worse than the baseline."
        )
    return True, f"Backtest MASE {mase:.2f}: {name} beat the seasonal naive baseline's in-sample error."


def _percent(share: float) -> str:
    return f"{share:.0%}".replace("%", " %")


def intervals_sentence(calibrated: bool, held_out: HeldOutCoverage, errors: int) -> str:
    """What the intervals are and how often they covered held-out backtest actuals."""
    if not calibrated and errors == 0:
        return "Intervals are the model's own, not calibrated: there is no backtest to calibrate them on."
    if not calibrated:
        return (
            f"Intervals are the model's own, not calibrated: its backtest has {errors} usable errors, "
            f"fewer than the {MIN_POINTS} a calibration needs."
        )
    head = f"Intervals calibrated on {errors} backtest errors of the model"
    if held_out.points == 0:
        return head + "; too few folds to measure them on folds the calibration did not see."
    return (
        f"{head}. On {_plural(held_out.folds, 'later fold')} not used to calibrate them ({held_out.points} "
        f"forecast months), the 80 % interval covered {_percent(held_out.coverage80)} and the 95 % interval "
        f"{_percent(held_out.coverage95)} of the actual values (the model's own intervals: "
        f"{_percent(held_out.model80)} and {_percent(held_out.model95)})."
    )


def forecast(
    series: pd.Series,
    horizon: int = 12,
    model: str | None = None,
    *,
    folds: int = 12,
    refit: bool = False,
) -> ForecastResult:
    """Forecast a monthly ``series`` ``horizon`` months ahead with the model that did best
    in a rolling-origin backtest (rules in the module docstring). ``model`` forces one of
    ``MODELS``; ``folds`` caps the backtest folds; ``refit`` refits every model at every
    origin (slower). Pure: same input, same output (cache it by the series and arguments).
    BLAS runs single-threaded meanwhile (``forecasting.threads``). Results are kept by
    :data:`FORECASTS`, keyed by the series' values and these arguments: the same series
    (another page, the cache of the pages expired, another filter with the same revenue)
    is not fitted again. Across processes, ``forecasting.store`` keeps them beside the
    database (``revenue_forecast`` reads it first)."""
    key = forecast_key(series, horizon, model, folds, refit)
    cached = FORECASTS.get(key)
    if cached is not None:
        return cached
    with single_threaded_blas(), sharing_fits():
        result = _forecast(series, horizon, model, folds, refit)
    FORECASTS.put(key, result)
    return result


def _forecast(series: pd.Series, horizon: int, model: str | None, folds: int, refit: bool) -> ForecastResult:
    if model is not None and model not in REGISTRY:
        raise ValueError(f"model must be one of {MODELS} or None, not {model!r}")
    horizon = max(1, int(horizon))
    history, notes = prepare_series(series)
    n = len(history)
    if n == 0:
        notes.append("No data to forecast.")
        return ForecastResult(
            "none",
            _empty_forecast(),
            backtest_table([]),
            history,
            notes,
            "No data to forecast.",
            reliability="No data to forecast.",
        )
    y = history.to_numpy(dtype=float)
    non_negative = bool(y.min() >= 0)
    constant = bool(np.ptp(y) == 0)
    if constant:
        notes.append(f"The series is constant ({y[0]:g}): only the naive forecast (that constant) applies.")
    elif n < MIN_MODEL_POINTS:
        notes.append(f"Only {n} month(s) of data: only the naive forecast (last value) is used.")
    elif n < MIN_SEASONAL_POINTS:
        notes.append(f"Only {n} months of data (< 24): no seasonal terms are fitted.")
    candidates = [
        m for m in REGISTRY.values() if m.name == "seasonal_naive" or (n >= MIN_MODEL_POINTS and not constant)
    ]

    plan = backtest_plan(n, horizon, folds)
    results: dict[str, BacktestResult] = {}
    if plan is None:
        notes.append(f"{n} month(s) are too few for a backtest; accuracy is unknown.")
    else:
        first_train = y[: plan.first_origin]
        for candidate in candidates:
            if not candidate.applicable(first_train):
                notes.append(
                    f"{DISPLAY_NAMES[candidate.name]} was not backtested: the first training window "
                    f"({len(first_train)} months) is too short or constant for it."
                )
                continue
            with captured_warnings(notes, f"{DISPLAY_NAMES[candidate.name]} backtest"):
                try:
                    results[candidate.name] = backtest(y, candidate, plan=plan, refit=refit)
                except Exception as error:  # statsmodels raises many kinds; never fail the page
                    notes.append(
                        f"{DISPLAY_NAMES[candidate.name]} failed in the backtest and was left out: {error}"
                    )

    chosen, metric = choose_model(results, notes) if results else ("seasonal_naive", "")
    automatic = chosen
    forced = model is not None
    if forced:
        if model in (m.name for m in candidates) and REGISTRY[model].applicable(y):
            chosen = model
        else:
            notes.append(
                f"{DISPLAY_NAMES[model]} does not apply to this series; {DISPLAY_NAMES[chosen]} is used instead."
            )
            forced = False

    fitted = None
    failed: str | None = None
    # a forced model falls back to seasonal naive only; an automatic choice to the next best
    for name in _fallback_order(chosen, "" if forced else metric, results):
        with captured_warnings(notes, f"{DISPLAY_NAMES[name]} final fit"):
            try:
                fitted = REGISTRY[name].fit(y)
                raw = fitted.predict(horizon)
                why = degenerate(y, raw) if name != "seasonal_naive" else None
                if not np.isfinite(raw.mean).all():
                    why = "its forecast is not finite"
                if why is not None:
                    raise ValueError(f"{fitted.label} was rejected: {why}")
                prediction = raw.tidy(non_negative)
            except Exception as error:
                notes.append(f"{DISPLAY_NAMES[name]} could not be fitted to the whole series: {error}")
                fitted = None
                continue
        if name != chosen:
            notes.append(f"Fell back to the {DISPLAY_NAMES[name]} forecast.")
            failed, chosen, forced = chosen, name, False
        break
    assert fitted is not None  # seasonal naive cannot fail on a non-empty series

    table = backtest_table([results[name] for name in MODELS if name in results])
    if failed is not None:
        reason = (
            f"{fitted.label} is used because {DISPLAY_NAMES[failed]} could not be fitted to the whole series."
        )
    elif forced:
        reason = _override_reason(chosen, automatic, results)
    elif chosen in results and metric:
        reason = _reason(chosen, metric, results, fitted.label)
    else:
        reason = f"{fitted.label} is used because there was too little data to compare models."
    judged = _own_backtest(y, chosen, fitted, results, refit, notes)
    errors = _calibration_errors(y, chosen, results, horizon, refit, notes)
    calibration = calibrate(errors, start=len(y)) if errors is not None else None
    held_out = NO_HELD_OUT
    if calibration is not None:
        raw = calibration.apply(raw)
        prediction = raw.tidy(non_negative)
        held_out = held_out_coverage(errors)
    usable = int(errors["sd"].gt(0).sum()) if errors is not None else 0
    if non_negative and np.nanmin(np.r_[raw.mean, raw.lo80, raw.lo95]) < 0:
        notes.append(
            "Forecast values or interval bounds below 0 were clipped at 0 (the history has no negative value)."
        )
    reason = reason[:1].upper() + reason[1:]
    reliable, why = reliability(chosen, judged)
    return ForecastResult(
        chosen,
        _forecast_frame(history, prediction),
        table,
        history,
        notes,
        reason,
        fitted.label,
        reliable=reliable,
        reliability=why,
        calibrated=calibration is not None,
        held_out=held_out,
        intervals=intervals_sentence(calibration is not None, held_out, usable),
    )
