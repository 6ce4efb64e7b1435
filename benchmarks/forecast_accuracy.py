"""Forecast accuracy benchmark: ``python -m benchmarks.forecast_accuracy [--series NAME ...]
[--folds 12] [--output benchmarks/forecast-accuracy.json]``.

The product's forecast against statsforecast's AutoETS, AutoARIMA and AutoTheta (season
length 12, their defaults otherwise) on the same folds of seven real monthly series:
Superstore sales (total and per category: Furniture, Office Supplies, Technology; needs
``../shared/data/superstore-sales``, skipped with a note without it) and three series
statsmodels ships (elec_equip; Mauna Loa co2 as monthly means; elnino sea temperatures).

* **Folds**: the product's own backtest plan for the whole series
  (``forecasting.backtest_plan(n, 12)``: up to 12 origins one month apart, 12 months ahead,
  the last ending at the last observation).
* **Every method is refitted at every origin on the months before it**, and nothing else.
  For the product that is the whole of ``forecasting.forecast``: its backtest of four
  models, the choice, the final fit and the interval calibration all run on ``y[:origin]``,
  so its coverage is out of sample (not the in-sample-selected backtest figure the page
  shows).
* **MASE**: mean |actual − forecast| / the in-sample seasonal-naive MAE of the training
  window (lag 12; the product backtest's scale), pooled over folds and steps.
  **Coverage**: share of actuals inside the 80 % / 95 % intervals (bounds included).
  **Fit time**: median seconds per fold of fitting and forecasting (statsforecast's numba
  functions are compiled on a warm-up series first, so compile time is not counted).
* **Ratios** are against the product, measured in the same run: MASE ratio = method ÷
  product (above 1: less accurate than the product); time ratio = method ÷ product.

Results are printed as one table and written to ``benchmarks/forecast-accuracy.json``
(git-ignored). statsforecast is a benchmark-only dependency (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

import forecasting
from forecasting.backtest import backtest_plan
from forecasting.datasets import (
    load_co2_monthly,
    load_elec_equip,
    load_elnino_monthly,
    load_superstore_monthly,
)
from forecasting.models.seasonal_naive import in_sample_mae

HERE = Path(__file__).resolve().parent
#: the public datasets: $CRM_PUBLIC_DATA, else shared/data beside the project (as the tests)
PUBLIC_DATA = Path(os.environ.get("CRM_PUBLIC_DATA") or HERE.parent.parent / "shared" / "data")
SUPERSTORE = PUBLIC_DATA / "superstore-sales"
OUTPUT = HERE / "forecast-accuracy.json"
SEASON = 12
HORIZON = 12
METHODS = ("product", "AutoETS", "AutoARIMA", "AutoTheta")


def series_loaders(superstore: Path = SUPERSTORE) -> dict[str, Callable[[], pd.Series]]:
    """Name -> loader of every benchmark series."""
    loaders: dict[str, Callable[[], pd.Series]] = {
        "Superstore total": lambda: load_superstore_monthly(superstore),
    }
    for category in ("Furniture", "Office Supplies", "Technology"):
        loaders[f"Superstore {category}"] = lambda c=category: load_superstore_monthly(superstore, c)
    loaders["elec_equip"] = load_elec_equip
    loaders["co2 (monthly)"] = load_co2_monthly
    loaders["elnino"] = load_elnino_monthly
    return loaders


Forecaster = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


def product_forecaster(index: pd.DatetimeIndex) -> Forecaster:
    """The product: ``forecasting.forecast`` on the training months (mean, lo80, hi80, lo95, hi95)."""

    def run(train: np.ndarray, h: int) -> tuple[np.ndarray, ...]:
        result = forecasting.forecast(pd.Series(train, index=index[: len(train)]), horizon=h)
        frame = result.forecast
        return tuple(frame[c].to_numpy(dtype=float) for c in ("mean", "lo80", "hi80", "lo95", "hi95"))

    return run


def statsforecast_forecaster(name: str) -> Forecaster:
    """One of statsforecast's Auto models, refitted on the training months."""
    from statsforecast import models

    model_class = getattr(models, name)

    def run(train: np.ndarray, h: int) -> tuple[np.ndarray, ...]:
        out = model_class(season_length=SEASON).forecast(y=train.astype(float), h=h, level=[80, 95])
        return tuple(np.asarray(out[k], dtype=float) for k in ("mean", "lo-80", "hi-80", "lo-95", "hi-95"))

    return run


def warm_up() -> None:
    """Compile statsforecast's numba functions before anything is timed."""
    t = np.arange(60, dtype=float)
    y = 100 + t + 10 * np.sin(2 * np.pi * t / SEASON)
    for name in METHODS[1:]:
        statsforecast_forecaster(name)(y, 3)


def evaluate(y: np.ndarray, forecaster: Forecaster, origins: tuple[int, ...], h: int) -> dict[str, float]:
    """MASE, 80 % / 95 % coverage and median fit seconds of one method over the folds."""
    scaled, inside80, inside95, seconds = [], [], [], []
    for origin in origins:
        train, actual = y[:origin], y[origin : origin + h]
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mean, lo80, hi80, lo95, hi95 = forecaster(train, h)
        seconds.append(time.perf_counter() - started)
        scale = in_sample_mae(train)
        scaled.extend(np.abs(actual - mean[:h]) / scale)
        inside80.extend((lo80[:h] <= actual) & (actual <= hi80[:h]))
        inside95.extend((lo95[:h] <= actual) & (actual <= hi95[:h]))
    return {
        "mase": float(np.mean(scaled)),
        "coverage80": float(np.mean(inside80)),
        "coverage95": float(np.mean(inside95)),
        "fit_seconds": float(statistics.median(seconds)),
    }


def run_series(name: str, series: pd.Series, folds: int, methods: tuple[str, ...] = METHODS) -> list[dict]:
    """One row per method for one series, with ratios against the product."""
    y = series.to_numpy(dtype=float)
    plan = backtest_plan(len(y), HORIZON, folds)
    assert plan is not None, f"{name} is too short for a backtest"
    rows = []
    for method in methods:
        if method == "product":
            forecaster = product_forecaster(pd.DatetimeIndex(series.index))
        else:
            forecaster = statsforecast_forecaster(method)
        row = {"series": name, "method": method, "n": len(y), "folds": plan.folds, "horizon": plan.horizon}
        row.update(evaluate(y, forecaster, plan.origins, plan.horizon))
        rows.append(row)
        print(
            f"  {name:26s} {method:10s} MASE {row['mase']:.3f}  cov80 {row['coverage80']:.2f}  "
            f"cov95 {row['coverage95']:.2f}  {row['fit_seconds']:.3f} s/fold",
            file=sys.stderr,
            flush=True,
        )
    product = next(r for r in rows if r["method"] == "product") if "product" in methods else None
    for row in rows:
        row["mase_ratio"] = row["mase"] / product["mase"] if product else float("nan")
        row["time_ratio"] = row["fit_seconds"] / product["fit_seconds"] if product else float("nan")
    return rows


def table(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    columns = [
        "series",
        "method",
        "mase",
        "mase_ratio",
        "coverage80",
        "coverage95",
        "fit_seconds",
        "time_ratio",
    ]
    return frame[columns]


def markdown(frame: pd.DataFrame) -> str:
    """The table as Markdown (README)."""
    lines = [
        "| series | method | MASE | × product | 80 % cover | 95 % cover | s / fold | × product |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in frame.itertuples():
        lines.append(
            f"| {r.series} | {r.method} | {r.mase:.2f} | {r.mase_ratio:.2f} | {r.coverage80:.0%} | "
            f"{r.coverage95:.0%} | {r.fit_seconds:.2f} | {r.time_ratio:.2f} |"
        )
    return "\n".join(lines).replace("%", " %").replace("  %", " %")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.forecast_accuracy", description=__doc__.split("\n")[0]
    )
    loaders = series_loaders()
    parser.add_argument("--series", nargs="+", choices=list(loaders), help="default: all seven")
    parser.add_argument("--folds", type=int, default=12, help="origins per series (default 12)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    warm_up()
    rows: list[dict] = []
    skipped: list[str] = []
    for name in args.series or list(loaders):
        try:
            series = loaders[name]()
        except FileNotFoundError as error:
            skipped.append(f"{name}: {error}")
            continue
        rows.extend(run_series(name, series, args.folds))
    frame = table(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(frame.round(3).to_string(index=False))
    print()
    print(markdown(frame))
    for note in skipped:
        print(f"skipped {note}")
    from statsforecast import __version__ as statsforecast_version

    args.output.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "statsforecast": statsforecast_version,
                "statsmodels": __import__("statsmodels").__version__,
                "folds": args.folds,
                "horizon": HORIZON,
                "skipped": skipped,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
