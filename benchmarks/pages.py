"""Every page's KPI calls, per filter state: ``python -m benchmarks.pages --size M|L [--postgres]``.

For each dashboard page, ``PAGES`` lists the calls its script makes through ``ui.data.kpi``
/ ``ui.data.call`` — the same functions, the same arguments (a ``View`` argument adds the
view's ``freq``, as ``ui.data.kpi`` does), and, for a period trend drawn by
``PageReport.chart`` while the range ends inside a period, the same call again on last
year's range (``ui.report``'s hover comparison). :func:`page_calls` reads the
``kpi(...)`` / ``call(...)`` calls from the page scripts, so the benchmark notices when a
page and this list drift apart.

Filter states (the table of issue 15): ``default`` (the dashboard's default range: 12
full months and the current one up to the last day with data, per month), ``region ×
industry`` (the busiest pair), ``one owner`` (the owner with most deals), ``one product``
(the product with most deals), ``3 years, quarters`` (three years to the default range's
end, per quarter).

Each (page, state) runs in a fresh process: the first run of the page's calls is the
*first view* (cold: a new server process), then the page's statements are forgotten and
the calls run again — the *filter change* figure (a warm process, a new filter
selection). Pages and states are interleaved over ``--runs`` rounds, so the machine's
load hits all alike; medians over the rounds, and every figure also as a ratio to the
Overview's in the same state and round. ``--json`` keeps the raw numbers
(per call too) in ``benchmarks/pages-results.json``. ``--versus URL`` measures a second
database in the same rounds (each page and state on both in turn) and adds the table of
both times and their ratio (issue 15: PostgreSQL within 2× of DuckDB).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import inspect
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"


@dataclass(frozen=True)
class Call:
    """One ``kpi(function, view|filters, **kwargs)`` (or ``call(function, **kwargs)``) of a page.

    ``arg``: ``view`` (the view: its freq is added when the function takes one),
    ``filters`` (the filters alone), ``history`` (the filters from the first month with
    data: the Forecast page's "All history"), ``connection`` (``ui.data.call``: no filters).
    ``derived``: keyword arguments computed from earlier results of the same page (e.g. the
    Stuck deals' stage = the first stage of the aging chart)."""

    function: str
    arg: str = "view"
    kwargs: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, Callable[[dict[str, Any]], Any]] = field(default_factory=dict)
    #: The ``ui`` module that makes the call for the page (not in the page script itself).
    via: str | None = None

    @property
    def name(self) -> str:
        return self.function.rpartition(".")[2]


def _first_aging_stage(results: dict[str, Any]) -> str | None:
    aging = results.get("open_deal_aging")
    return str(aging["stage"].iloc[0]) if aging is not None and len(aging) else None


def _risk_table_ids(results: dict[str, Any]) -> tuple[str, ...]:
    """The account ids of the Customers & churn page's churn-risk table (its first 1,000)."""
    risk = results.get("churn_risk")
    if risk is None or risk.transactions is None:
        return ()
    return tuple(risk.ranking("inactive_probability", rows=1000)["account_id"])


#: page -> (script, calls in the script's order). Selectboxes at their defaults.
PAGES: dict[str, tuple[str, list[Call]]] = {
    "Overview": (
        "dashboard.py",
        [
            Call("kpis.revenue"),
            Call("kpis.customer_base"),
            Call("kpis.survey_scores"),
            Call("kpis.win_rate"),
            Call("kpis.sales_cycle"),
            Call("kpis.first_contact_resolution"),
        ],
    ),
    "Sales pipeline": (
        "pages/1_Sales_pipeline.py",
        [
            Call("kpis.funnel", "filters"),
            Call("kpis.why_empty.no_account_reason", "filters"),
            Call("kpis.win_rate"),
            Call("kpis.lead_conversion"),
            Call("kpis.win_rate_by", "filters", {"by": "segment"}),
            Call("kpis.sales_cycle", "filters"),
            Call("kpis.sales_cycle_distribution", "filters", {"bins": 20}),
            Call("kpis.stage_durations", "filters"),
            Call("kpis.weighted_pipeline", "filters"),
            Call("forecasting.pipeline_forecast", "filters", {"months": 3}, via="ui.pipeline_summary"),
            Call("kpis.open_deal_aging", "filters"),
            Call(
                "kpis.stuck_deals",
                "filters",
                {"min_days": 90, "limit": 2000},
                derived={"stage": _first_aging_stage},
            ),
        ],
    ),
    "Customers & churn": (
        "pages/2_Customers_and_churn.py",
        [
            Call("kpis.churn_rate"),
            Call("kpis.active_customers"),
            Call("kpis.revenue_retention"),
            Call("kpis.revenue"),
            Call("kpis.churn_by", "filters", {"by": "segment"}),
            Call("kpis.cohort_retention", "filters"),
            Call(
                "forecasting.customer_models.churn_risk",
                "filters",
                {"unit": "week", "horizon": 52, "names": False},
                derived={"as_of": lambda r: r["_as_of"]},
            ),
            # the names of the accounts the table lists (the page's RISK_TABLE_ROWS)
            Call(
                "kpis.clv_summary.account_names",
                "connection",
                derived={"account_ids": _risk_table_ids},
            ),
            Call(
                "forecasting.customer_models.cohort_sbg",
                "filters",
                {"horizon": 24, "holdout": 6},
                derived={"retention": lambda r: r["cohort_retention"]},
            ),
        ],
    ),
    "Marketing & retention cost": (
        "pages/5_Marketing_and_retention_cost.py",
        [
            Call("kpis.campaign_funnel"),
            Call("kpis.web_metrics"),
            Call("kpis.social_metrics"),
            Call("kpis.retention_cost"),
            Call("kpis.profitability_ends", "view", {"n": 50}),
        ],
    ),
    "Forecast": (
        "pages/6_Forecast.py",
        [
            Call("forecasting.revenue_forecast", "history", {"horizon": 12, "model": None}),
            Call("forecasting.pipeline_forecast", "filters", {"months": 3}, via="ui.pipeline_summary"),
            Call("kpis.weighted_pipeline", "filters", via="ui.pipeline_summary"),
        ],
    ),
    "Data quality": (
        "pages/7_Data_quality.py",
        # the whole database checked now: "Re-check now", or a first view with no stored report
        # (otherwise the page reads the stored one); a restricted scope's check_scope: LEFT_OUT
        [
            Call(
                "crm_data.quality.check_database",
                "connection",
                {"stale_days": 90, "scope": None},
                via="ui.quality",
            )
        ],
    ),
}

#: Filter states, in the issue's order.
STATES = ["default", "region × industry", "one owner", "one product", "3 years, quarters"]
#: Pages whose calls do not depend on the sidebar filters: measured in the default state only.
UNFILTERED = {"Data quality"}


def page_calls(script: Path) -> list[str]:
    """The function names of the ``kpi(...)`` / ``call(...)`` / ``data.kpi(...)`` calls in a
    page script, in source order (``kpi(kpis.funnel, ...)`` -> ``funnel``)."""
    import ast

    names = []
    for node in ast.walk(ast.parse(script.read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        called = (
            func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        )
        if called not in ("kpi", "call"):
            continue
        target = node.args[0]
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
        if name:
            names.append((node.lineno, name))
    return [name for _, name in sorted(names)]


#: Calls a page makes that the benchmark leaves out, and why.
LEFT_OUT = {
    "churned_accounts": "only after the user picks a period in the drill-down expander",
    "funnel_empty_reason": "only when the funnel is empty",
    "function": "the Overview's cards: benchmarks.overview.CALLS, checked against dashboard.py there",
    "check_scope": "Data quality for a restricted scope only; its cost depends on the stored report "
    "(docs/performance.md, Data quality within a scope)",
}


def check_matches_pages() -> list[str]:
    """Differences between ``PAGES`` and the page scripts (empty when they agree)."""
    problems = []
    for page, (script, calls) in PAGES.items():
        if page == "Overview":
            continue
        found = [n for n in page_calls(ROOT / script) if n not in LEFT_OUT]
        listed = [c.name for c in calls if c.via is None]
        if sorted(found) != sorted(listed):
            problems.append(f"{script} calls {found}, the benchmark lists {listed}")
    return problems


# ------------------------------------------------------------------ one process: one page, one state


def _resolve(path: str) -> Callable[..., Any]:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _accepts(function: Callable[..., Any], parameter: str) -> bool:
    try:
        return parameter in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def _slices(engine: Any) -> dict[str, Any]:
    """The busiest region × industry, owner and product (most accounts / deals)."""
    with engine.connect() as c:
        region, industry = c.exec_driver_sql(
            "SELECT region, industry FROM accounts GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
        ).one()
        owner = c.exec_driver_sql(
            "SELECT owner_id FROM deals WHERE owner_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).scalar()
        product = c.exec_driver_sql(
            "SELECT product_id FROM deals WHERE product_id IS NOT NULL GROUP BY 1 "
            "ORDER BY count(*) DESC, 1 LIMIT 1"
        ).scalar()
    return {"region": region, "industry": industry, "owner": str(owner), "product": str(product)}


def _add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def state_view(engine: Any, state: str) -> tuple[Any, str, dt.date, tuple[dt.date, dt.date] | None]:
    """(filters, freq, cut, data bounds) of a filter state, as the filter bar builds them."""
    from kpis import Filters
    from kpis.filters import data_date_range

    bounds = data_date_range(engine)
    today = dt.datetime.now(dt.UTC).date()
    anchor = today if bounds is None else min(bounds[1], today)
    end = _add_months(anchor.replace(day=1), 1)  # ui.filters.default_range
    start = _add_months(end, -13)
    if bounds is not None:
        end = min(end, bounds[1] + dt.timedelta(days=1))  # the date picker stops at the last day with data
    cut = min(end, today if bounds is None else bounds[1] + dt.timedelta(days=1))
    freq = "month"
    kwargs: dict[str, Any] = {}
    if state == "region × industry":
        s = _slices(engine)
        kwargs = {"regions": [s["region"]], "industries": [s["industry"]]}
    elif state == "one owner":
        kwargs = {"owners": [_slices(engine)["owner"]]}
    elif state == "one product":
        kwargs = {"products": [_slices(engine)["product"]]}
    elif state == "3 years, quarters":
        start, freq = _add_months(end.replace(day=1), -36), "quarter"
    elif state != "default":
        raise ValueError(f"unknown state {state!r}")
    return Filters(start, end, **kwargs), freq, cut, bounds


def forget_built_statements() -> None:
    """Empty every per-filters statement cache (``functools.lru_cache``) of the KPI and
    forecasting modules, so a run pays what a new filter selection pays (as
    ``benchmarks.run_one`` does for the Overview)."""
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] in ("kpis", "forecasting") and module is not None:
            for value in list(vars(module).values()):
                if hasattr(value, "cache_clear") and callable(value.cache_clear):
                    with contextlib.suppress(TypeError):
                        value.cache_clear()


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, DuckDB's threads included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_page(
    engine: Any,
    page: str,
    state: str,
    calls: Collection[str] | None = None,
    cpu: dict[str, float] | None = None,
) -> dict[str, float]:
    """Seconds per call of one page in one filter state (``call [last year]`` for the
    last-year comparison of a period trend). ``calls``: only the calls of these names (the
    others are skipped; a derived argument then sees no earlier result). ``cpu``: filled
    with the CPU seconds of this process per call (DuckDB's threads included)."""
    from kpis.customer_base import sharing

    # one memo for the page run, as ui.filters.global_filters starts at the top of every
    # page run (scoped here: the benchmark's tests run pages in the test process)
    with sharing():
        return _run_page(engine, page, state, calls, {} if cpu is None else cpu)


def _run_page(
    engine: Any, page: str, state: str, calls: Collection[str] | None, cpu: dict[str, float]
) -> dict[str, float]:
    """:func:`run_page` inside its customer-base memo."""
    filters, freq, cut, bounds = state_view(engine, state)
    results: dict[str, Any] = {
        "_as_of": min(filters.end, bounds[1] + dt.timedelta(days=1)) if bounds else None
    }
    times: dict[str, float] = {}
    for call in PAGES[page][1]:
        if calls is not None and call.name not in calls:
            continue
        function = _resolve(call.function)
        kwargs = dict(call.kwargs)
        kwargs.update({k: derive(results) for k, derive in call.derived.items()})
        if call.arg == "view" and _accepts(function, "freq"):
            kwargs.setdefault("freq", freq)
        began, began_cpu = time.perf_counter(), cpu_seconds()
        if call.arg == "connection":
            with engine.connect() as c:
                result = function(c, **kwargs)
        else:
            f = filters
            if call.arg == "history" and bounds is not None and bounds[0] < f.start:
                f = f.replace(start=bounds[0].replace(day=1))
            result = function(engine, f, **kwargs)
        times[call.name] = times.get(call.name, 0.0) + time.perf_counter() - began
        cpu[call.name] = cpu.get(call.name, 0.0) + cpu_seconds() - began_cpu
        results[call.name] = result
        # ui.report: a period trend of the view's freq, in a range ending inside a period,
        # is compared with last year's range up to the same day
        period_trend = call.arg == "view" and getattr(result, "columns", None) is not None
        if period_trend and "period" in result.columns and page != "Overview":
            start = _years_back(filters.start)
            end = _years_back(cut)
            if end > start:
                began, began_cpu = time.perf_counter(), cpu_seconds()
                function(engine, filters.replace(start=start, end=end), **kwargs)
                times[f"{call.name} [last year]"] = time.perf_counter() - began
                cpu[f"{call.name} [last year]"] = cpu_seconds() - began_cpu
    return times


def _years_back(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year - 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year - 1, day=28)


def worker(url: str, page: str, state: str, calls: Collection[str] | None = None) -> dict[str, Any]:
    """First view, then a filter change, of one page in one state (this process only).

    The forecasts stored beside the database (``forecasting.store``) are read but none is
    stored (``CRM_FORECAST_STORE=read`` unless set): what the demo, an import or
    ``python -m crm_data forecasts`` stored is what a user finds, and the filter change
    does not read back what the first view of the same selection computed."""
    from crm_data.engines import make_engine

    os.environ.setdefault("CRM_FORECAST_STORE", "read")

    engine = make_engine(url, read_only=url.startswith("duckdb"))
    began = time.perf_counter()
    first = run_page(engine, page, state, calls)
    first_s = time.perf_counter() - began
    forget_built_statements()
    began, cpu = time.perf_counter(), cpu_seconds()
    calls_cpu: dict[str, float] = {}
    again = run_page(engine, page, state, calls, calls_cpu)
    again_s, again_cpu = time.perf_counter() - began, cpu_seconds() - cpu
    engine.dispose()
    return {
        "page": page,
        "state": state,
        "first_s": first_s,
        "change_s": again_s,
        "change_cpu_s": again_cpu,
        "calls_s": again,
        "calls_cpu_s": calls_cpu,
        "first_calls_s": first,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


# ------------------------------------------------------------------ the orchestrator


def measure(
    url: str,
    page: str,
    state: str,
    env: dict[str, str] | None = None,
    calls: Collection[str] | None = None,
) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.pages", "--worker", url, "--page", page, "--state", state]
    if calls:
        cmd += ["--calls", *calls]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_benchmark(
    url: str,
    pages: list[str],
    states: list[str],
    runs: int,
    log: Callable[[str], None] | None = None,
    calls: Collection[str] | None = None,
) -> dict[str, Any]:
    """``runs`` interleaved rounds over every (page, state); medians and ratios to the
    Overview. ``calls``: time only the calls of these names on each page (the Overview's
    ratio then compares a part of a page with the whole Overview)."""
    return run_benchmarks([url], pages, states, runs, log, calls)[0]


def run_benchmarks(
    urls: list[str],
    pages: list[str],
    states: list[str],
    runs: int,
    log: Callable[[str], None] | None = None,
    calls: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """:func:`run_benchmark` of several databases (one result each, in ``urls``' order),
    interleaved: each (page, state) runs on every database in turn before the next, so
    the machine's load hits the databases alike and their ratios compare like with like."""
    log = log or (lambda line: print(line, flush=True))
    pairs = [(p, s) for s in states for p in pages if s == "default" or p not in UNFILTERED]
    samples: dict[tuple[str, str, str], list[dict[str, Any]]] = {
        (url, *pair): [] for url in urls for pair in pairs
    }
    for round_ in range(runs):
        for page, state in pairs:
            for url in urls:
                sample = measure(url, page, state, calls=None if page == "Overview" else calls)
                samples[(url, page, state)].append(sample)
                log(
                    f"round {round_ + 1}/{runs} {page:28s} {state:18s} first {sample['first_s']:7.2f} s "
                    f"change {sample['change_s']:7.2f} s (CPU {sample['change_cpu_s']:6.2f} s)  "
                    f"peak {sample['peak_rss_mb']} MB" + (f"  {url}" if len(urls) > 1 else ""),
                )
    return [
        {
            "url": url,
            "runs": runs,
            "rows": [
                _summary(page, state, samples[(url, page, state)], samples.get((url, "Overview", state)))
                for page, state in pairs
            ],
        }
        for url in urls
    ]


def _summary(
    page: str, state: str, rounds: list[dict[str, Any]], base: list[dict[str, Any]] | None
) -> dict[str, Any]:
    """The medians over the rounds of one (page, state) on one database; ``base``: the
    Overview's rounds in the same state (the ratio is taken per round: same load)."""
    row: dict[str, Any] = {
        "page": page,
        "state": state,
        "first_s": statistics.median(r["first_s"] for r in rounds),
        "change_s": statistics.median(r["change_s"] for r in rounds),
        "change_cpu_s": statistics.median(r["change_cpu_s"] for r in rounds),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in rounds),
        "calls_s": {
            name: statistics.median(r["calls_s"].get(name, 0.0) for r in rounds)
            for name in rounds[0]["calls_s"]
        },
        "calls_cpu_s": {
            name: statistics.median(r.get("calls_cpu_s", {}).get(name, 0.0) for r in rounds)
            for name in rounds[0]["calls_s"]
        },
        "change_times_s": [r["change_s"] for r in rounds],
    }
    if base:
        row["change_vs_overview"] = statistics.median(
            r["change_s"] / b["change_s"] for r, b in zip(rounds, base, strict=True)
        )
    return row


def versus_table(base: dict[str, Any], other: dict[str, Any], states: list[str]) -> str:
    """Filter-change wall seconds of each (page, state) on two databases measured together
    (:func:`run_benchmarks`), and ``other ÷ base`` (the issue's "within 2× of DuckDB")."""
    ours = {(r["page"], r["state"]): r for r in base["rows"]}
    theirs = {(r["page"], r["state"]): r for r in other["rows"]}
    lines = [
        f"| page | state | {_label(base['url'])} | {_label(other['url'])} | ratio |",
        "|---|---|---:|---:|---:|",
    ]
    for page in dict.fromkeys(r["page"] for r in base["rows"]):
        for state in states:
            a, b = ours.get((page, state)), theirs.get((page, state))
            if a is None or b is None:
                continue
            lines.append(
                f"| {page} | {state} | {_fmt(a['change_s'])} | {_fmt(b['change_s'])} | "
                f"{b['change_s'] / a['change_s']:.1f}× |"
            )
    return "\n".join(lines)


def _label(url: str) -> str:
    """A database's short name for a table heading: its dialect and file or database name."""
    dialect = url.partition(":")[0].partition("+")[0]
    return f"{dialect} {url.rstrip('/').rpartition('/')[2]}"


def markdown_table(result: dict[str, Any], states: list[str], key: str = "change_s") -> str:
    """Filter-change seconds per page (rows) and state (columns); first view; × Overview.
    ``key="change_cpu_s"``: the process's CPU seconds instead (steadier on a busy machine)."""
    rows = result["rows"]
    pages = list(dict.fromkeys(r["page"] for r in rows))
    by = {(r["page"], r["state"]): r for r in rows}
    lines = [
        "| page | first view (default) | " + " | ".join(states) + " | peak RSS |",
        "|---|---:|" + "---:|" * len(states) + "---:|",
    ]
    for page in pages:
        cells = []
        for state in states:
            r = by.get((page, state))
            if r is None:
                cells.append("—")
                continue
            ratio = (
                f" ({r['change_vs_overview']:.1f}×)"
                if "change_vs_overview" in r and page != "Overview"
                else ""
            )
            cells.append(f"{_fmt(r[key])}{ratio if key == 'change_s' else ''}")
        first = by.get((page, "default")) if key == "change_s" else None  # first view: wall time only
        peak = max(r["peak_rss_mb"] for r in rows if r["page"] == page)
        lines.append(
            f"| {page} | {_fmt(first['first_s']) if first else '—'} | "
            + " | ".join(cells)
            + f" | {peak:,} MB |"
        )
    return "\n".join(lines)


def slowest_calls(result: dict[str, Any], top: int = 12) -> str:
    """The slowest calls of all pages and states (filter change), for profiling: wall
    seconds, and the process's CPU seconds during the call."""
    calls = [
        (seconds, r.get("calls_cpu_s", {}).get(name, math.nan), r["page"], r["state"], name)
        for r in result["rows"]
        for name, seconds in r["calls_s"].items()
    ]
    calls.sort(key=lambda c: c[0], reverse=True)
    return "\n".join(
        f"{s:8.3f} s (CPU {c:6.2f} s)  {page} · {state} · {name}" for s, c, page, state, name in calls[:top]
    )


def _fmt(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.1f} s"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pages",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", choices=["S", "M", "L"], default="M")
    parser.add_argument(
        "--url", help="another database (default: benchmarks/data/<size>.duckdb, built on first use)"
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="the PostgreSQL copy crm_bench_<size> instead (python -m benchmarks.copy makes it)",
    )
    parser.add_argument(
        "--versus",
        metavar="URL",
        help="a second database measured interleaved with the first (e.g. the PostgreSQL copy "
        "versus the DuckDB file): both tables, then each cell's ratio second ÷ first",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--states", nargs="+", choices=STATES, default=STATES)
    parser.add_argument(
        "--calls",
        nargs="+",
        metavar="NAME",
        help="time only these calls of each page (e.g. stage_durations funnel); the Overview runs whole",
    )
    parser.add_argument("--json", action="store_true", help="write benchmarks/pages-results.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--page", help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.calls and not args.worker:
        known = {c.name for _, calls in PAGES.values() for c in calls}
        unknown = sorted(set(args.calls) - known)
        if unknown:
            parser.error(f"no page makes the call(s) {unknown}; known: {sorted(known)}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.page, args.state, args.calls)))
        return
    for problem in check_matches_pages():
        print(f"WARNING: {problem}")
    if "Overview" not in args.pages:
        args.pages = ["Overview", *args.pages]  # the baseline of the ratios
    url = args.url
    if url is None:
        from benchmarks.__main__ import SIZES, build, pg_url

        db = DATA / f"{args.size}.duckdb"
        if not db.exists() and not args.postgres:  # the PostgreSQL copy: benchmarks.copy
            DATA.mkdir(exist_ok=True)
            print(f"building {db} ({SIZES[args.size]:,} accounts) …", flush=True)
            build(f"duckdb:///{db}", SIZES[args.size])
        url = pg_url(args.size) if args.postgres else f"duckdb:///{db}"
    urls = [url, args.versus] if args.versus else [url]
    results = run_benchmarks(urls, args.pages, args.states, args.runs, calls=args.calls)
    for result in results:
        print(
            f"\n{result['url']}: filter change, median of {args.runs} fresh processes "
            "(× the Overview in the same state)\n"
        )
        print(markdown_table(result, args.states))
        print(
            "\nCPU seconds of the same filter changes (DuckDB's threads included; not the server's on PostgreSQL)\n"
        )
        print(markdown_table(result, args.states, key="change_cpu_s"))
        print("\nslowest calls (filter change):\n" + slowest_calls(result))
    if args.versus:
        print(f"\nfilter change, wall seconds, measured interleaved\n\n{versus_table(*results, args.states)}")
    if args.json:
        out = HERE / "pages-results.json"
        previous = json.loads(out.read_text()) if out.exists() else []
        previous = [r for r in previous if r.get("url") not in urls] + results
        out.write_text(json.dumps(previous, indent=2, default=str))
        print(f"\nraw results: {out}")


if __name__ == "__main__":
    main()
