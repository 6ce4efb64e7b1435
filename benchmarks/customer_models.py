"""Retention and lifetime-value models at scale: ``python -m benchmarks.customer_models``.

Builds (or reuses) the benchmark's demo DuckDB of ``--size`` (M = 100k accounts, as
``python -m benchmarks`` does: ``benchmarks/data/M.duckdb``, its ``build`` helper), then
times on the dashboard's default range (the last 12 full months and the current one):

* summary: ``kpis.clv_summary.customer_summary`` — frequency, recency, T and mean spend per
  account computed in DuckDB; only one row per account reaches Python;
* pandas: the baseline measured in the same run — the range's payments loaded into pandas
  (load) and the same summary computed there (summarise);
* BG/NBD and Gamma-Gamma fits on that summary, the per-account predictions (P(alive),
  expected transactions and the discounted value over 52 weeks), ``churn_risk`` as the page
  calls it (summary, both fits, predictions and the holdout check), ``cohort_sbg``;
* a fresh process importing the module and fitting the papers' CDNOW data (the "first
  fit" of the library comparison in the README).

Each figure is the median of ``--runs`` runs after a warm-up, in this process. Ratios are
within this run: the fits against the summary query, pandas against the summary query.

``--calls [--url URL] [--states ...]`` instead times the pages' model calls one by one, as
``benchmarks.pages`` does for whole pages: each (call, filter state) in a fresh process,
the call once (first view), then the statements and kept fits forgotten
(``benchmarks.pages.forget_built_statements``: ``customer_models.FITS`` and
``selection.FORECASTS`` too) and the call again (a filter change): wall and CPU seconds of
both and the process's peak RSS. The calls and arguments are the Customers & churn and
Forecast pages' (``churn_risk``, ``cohort_sbg``, ``cohort_sbg_holdout``,
``revenue_forecast`` on the page's full history); ``cohort_retention`` is the heatmap's query
and ``cohort_view`` the page's whole cohort section now (that query once, then
``cohort_sbg(..., holdout=6, retention=frame)``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.__main__ import DATA, SIZES, build

HERE = Path(__file__).resolve().parent


def timed(function: Callable[[], object], runs: int) -> tuple[float, object]:
    """Median wall time of ``runs`` calls after one warm-up, and the last result."""
    result = function()
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def pandas_summary(payments: pd.DataFrame, end: dt.datetime) -> pd.DataFrame:
    """The per-account summary from raw payment rows in pandas (the baseline)."""
    pay = payments[payments["amount"] > 0]
    pay = pay.assign(day=pay["paid_at"].dt.floor("D"))
    daily = pay.groupby(["account_id", "day"], as_index=False)["amount"].sum()
    first = daily.groupby("account_id")["day"].transform("min")
    daily = daily.assign(first=first, repeat=np.where(daily["day"] > first, daily["amount"], np.nan))
    g = daily.groupby("account_id")
    return pd.DataFrame(
        {
            "frequency": g.size() - 1,
            "recency": (g["day"].max() - g["first"].min()).dt.days / 7,
            "T": (pd.Timestamp(end) - g["first"].min()).dt.days / 7,
            "mean_repeat_amount": g["repeat"].mean(),
        }
    )


FRESH_PROCESS = """
import time
began = time.perf_counter()
import pandas as pd
from forecasting.customer_models import fit_bg_nbd_summary
imported = time.perf_counter() - began
d = pd.read_csv('tests/forecasting/data/cdnow_customers_summary.csv')
began = time.perf_counter()
fit_bg_nbd_summary(d['frequency'], d['recency'], d['T'])
print(imported, time.perf_counter() - began)
"""


#: The model calls of the pages, by name (``--calls``).
CALLS = (
    "churn_risk",
    "cohort_sbg",
    "cohort_sbg_holdout",
    "cohort_retention",
    "cohort_view",
    "revenue_forecast",
)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def call_worker(url: str, name: str, state: str) -> dict[str, object]:
    """First view and filter change of one model call in one state (this process only).
    Stored forecasts are read, none stored (as ``benchmarks.pages.worker``)."""
    os.environ.setdefault("CRM_FORECAST_STORE", "read")
    import forecasting
    import kpis
    from benchmarks import pages
    from crm_data.engines import make_engine
    from forecasting import customer_models as cm

    engine = make_engine(url, read_only=url.startswith("duckdb"))
    filters, _, _, bounds = pages.state_view(engine, state)
    as_of = min(filters.end, bounds[1] + dt.timedelta(days=1)) if bounds else None
    history = (
        filters.replace(start=bounds[0].replace(day=1)) if bounds and bounds[0] < filters.start else filters
    )
    run: Callable[[], object] = {
        "churn_risk": lambda: cm.churn_risk(
            engine, filters, unit="week", horizon=52, as_of=as_of, names=False
        ),
        "cohort_sbg": lambda: cm.cohort_sbg(engine, filters, horizon=24),
        "cohort_sbg_holdout": lambda: cm.cohort_sbg_holdout(engine, filters, holdout=6),
        # the page's heatmap query alone, and the whole cohort section of a view: that query
        # once, the sBG fits and the holdout check on its frame
        "cohort_retention": lambda: kpis.cohort_retention(engine, filters),
        "cohort_view": lambda: cm.cohort_sbg(
            engine, filters, horizon=24, holdout=6, retention=kpis.cohort_retention(engine, filters)
        ),
        "revenue_forecast": lambda: forecasting.revenue_forecast(engine, history, horizon=12, model=None),
    }[name]
    began, cpu = time.perf_counter(), _cpu_seconds()
    run()
    first = (time.perf_counter() - began, _cpu_seconds() - cpu)
    pages.forget_built_statements()
    began, cpu = time.perf_counter(), _cpu_seconds()
    run()
    change = (time.perf_counter() - began, _cpu_seconds() - cpu)
    engine.dispose()
    return {
        "call": name,
        "state": state,
        "first_s": first[0],
        "first_cpu_s": first[1],
        "change_s": change[0],
        "change_cpu_s": change[1],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def time_calls(url: str, states: list[str], calls: list[str]) -> None:
    """Each (call, state) in a fresh process (``--worker``); one line each."""
    print("| call | state | first view CPU (wall) | filter change CPU (wall) | peak RSS |")
    print("|---|---|---:|---:|---:|")
    for state in states:
        for name in calls:
            cmd = [sys.executable, "-m", "benchmarks.customer_models", "--worker", url, name, state]
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE.parent)
            if done.returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            print(
                f"| `{name}` | {state} | {r['first_cpu_s']:.2f} s ({r['first_s']:.1f} s) | "
                f"{r['change_cpu_s']:.2f} s ({r['change_s']:.1f} s) | {r['peak_rss_mb']:,} MB |",
                flush=True,
            )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps(call_worker(*sys.argv[2:5])))
        return
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.customer_models",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", default="M", choices=list(SIZES))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--calls", nargs="*", choices=CALLS, help="time the pages' model calls (all by default)"
    )
    parser.add_argument("--url", help="with --calls: the database (default: the benchmark's of --size)")
    parser.add_argument(
        "--states", nargs="+", default=["default"], help="with --calls: benchmarks.pages states"
    )
    args = parser.parse_args()
    if args.calls is not None:
        url = args.url or f"duckdb:///{DATA / f'{args.size}.duckdb'}"
        time_calls(url, args.states, list(args.calls) or list(CALLS))
        return

    from crm_data.engines import make_engine
    from forecasting import customer_models as cm
    from kpis.clv_summary import customer_summary
    from kpis.filters import Filters, data_date_range
    from ui.filters import default_range

    DATA.mkdir(exist_ok=True)
    accounts = SIZES[args.size]
    db = DATA / f"{args.size}.duckdb"
    url = f"duckdb:///{db}"
    if args.rebuild or not db.exists():
        db.unlink(missing_ok=True)
        print(f"{args.size}: demo data for {accounts:,} accounts written in {build(url, accounts):.1f} s")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    engine = make_engine(url, read_only=True)
    bounds = data_date_range(engine)
    start, end = default_range(bounds)
    f = Filters(start, end)
    as_of = min(f.end, bounds[1] + dt.timedelta(days=1))
    end_ts = dt.datetime.combine(as_of, dt.time())
    runs = args.runs

    summary_s, summary = timed(lambda: customer_summary(engine, f, unit="week", as_of=as_of), runs)

    def load() -> pd.DataFrame:
        """The range's payment rows into pandas through DuckDB's own result conversion."""
        with engine.connect() as c:
            return c.connection.driver_connection.execute(
                "SELECT account_id, paid_at, amount FROM payments WHERE paid_at >= ? AND paid_at < ?",
                (f.start_ts, end_ts),
            ).df()

    load_s, payments = timed(load, runs)
    pandas_s, reference = timed(lambda: pandas_summary(payments, end_ts), runs)
    assert len(reference) == len(summary), (len(reference), len(summary))
    args_ = (summary["frequency"], summary["recency"], summary["T"])
    bg_s, transactions = timed(lambda: cm.fit_bg_nbd_summary(*args_), runs)
    gg_s, spend = timed(
        lambda: cm.fit_gamma_gamma_summary(summary["frequency"], summary["mean_repeat_amount"]), runs
    )

    def predict() -> np.ndarray:
        transactions.alive_probability(*args_)
        transactions.expected_transactions(52, *args_)
        return cm.customer_lifetime_value(transactions, spend, *args_, summary["mean_repeat_amount"], 52)

    predict_s, _ = timed(predict, runs)
    risk_s, _ = timed(lambda: cm.churn_risk(engine, f, unit="week", horizon=52, as_of=as_of), runs)
    cohort_s, cohorts = timed(lambda: cm.cohort_sbg(engine, f, freq="month", horizon=24), runs)
    engine.dispose()

    fresh = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS], capture_output=True, text=True, cwd=HERE.parent, check=True
    )
    imported, first_fit = (float(v) for v in fresh.stdout.split())

    payment_rows = len(payments)
    print(
        f"\n{args.size}: {accounts:,} accounts; range {f.start} – {f.end} (T to {as_of}); "
        f"{payment_rows:,} payments, {len(summary):,} accounts with a payment, "
        f"{int((summary['frequency'] > 0).sum()):,} repeat payers; median of {runs} runs\n"
    )
    rows = [
        ("summary query (DuckDB, one row per account)", summary_s, 1.0),
        ("pandas: load the range's payments", load_s, load_s / summary_s),
        ("pandas: summarise them", pandas_s, pandas_s / summary_s),
        ("BG/NBD fit (on the summary)", bg_s, bg_s / summary_s),
        ("Gamma-Gamma fit", gg_s, gg_s / summary_s),
        ("predictions: P(alive), E[transactions], CLV over 52 weeks", predict_s, predict_s / summary_s),
        ("churn_risk as the page calls it (incl. holdout)", risk_s, risk_s / summary_s),
        ("cohort_sbg (monthly cohorts)", cohort_s, cohort_s / summary_s),
    ]
    print("| step | median | ÷ summary query |")
    print("|---|---:|---:|")
    for name, seconds, ratio in rows:
        print(f"| {name} | {seconds * 1000:,.0f} ms | {ratio:.1f}× |")
    print(
        f"\npandas load + summarise ÷ summary query: {(load_s + pandas_s) / summary_s:.1f}×; "
        f"fits (BG/NBD + Gamma-Gamma) ÷ summary query: {(bg_s + gg_s) / summary_s:.1f}×"
    )
    print(
        f"BG/NBD: {transactions.params} at bound {transactions.at_bound}; "
        f"Gamma-Gamma: {spend.params}; pooled sBG: {cohorts.pooled.params if cohorts.pooled else None}"
    )
    print(
        f"fresh process: import {imported:.2f} s, first BG/NBD fit on CDNOW (2,357 customers) {first_fit:.2f} s"
    )


if __name__ == "__main__":
    main()
