"""The workload: every KPI the Overview page (dashboard.py) computes for one filter change.

``CALLS`` mirrors dashboard.py's ``CARDS``: the ``kpis`` function of each card with its
keyword arguments, called as ``ui.data.kpi`` calls it — ``function(engine, filters,
freq=..., **kwargs)``, each on its own pooled connection of one engine (the Overview's KPI
cache is keyed by filters, so a filter change recomputes all of them).
:func:`dashboard_calls` reads the cards from dashboard.py's source, so the benchmark
notices when the page and this list drift apart.
"""

from __future__ import annotations

import ast
import datetime as dt
import math
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

import kpis
from kpis import Filters

#: (kpis function name, keyword arguments) for each Overview card, in dashboard.py's order.
CALLS: list[tuple[str, dict[str, object]]] = [
    ("revenue", {}),
    ("customer_base", {}),  # active customers
    ("customer_base", {}),  # churn rate
    ("customer_base", {}),  # net revenue retention
    ("survey_scores", {}),  # NPS
    ("survey_scores", {}),  # CES
    ("win_rate", {}),
    ("sales_cycle", {}),
    ("first_contact_resolution", {}),
    ("customer_base", {}),  # retention cost
]
FREQ = "month"
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard.py"


def window(today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """The benchmark's 12 full months before the current one."""
    today = today or dt.date.today()
    end = today.replace(day=1)
    return end.replace(year=end.year - 1), end


def dashboard_calls(path: Path = DASHBOARD) -> list[tuple[str, dict[str, object], bool]]:
    """(function, kwargs, per_period) of every ``CardSpec(...)`` in dashboard.py's source."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "CardSpec"
            and len(node.args) >= 2
        ):
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            kwargs = dict(keywords.get("kwargs", ()))
            calls.append((ast.literal_eval(node.args[1]), kwargs, keywords.get("per_period", True)))
    return calls


def check_matches_dashboard() -> list[str]:
    """Differences between ``CALLS`` and dashboard.py's cards (empty when they agree)."""
    found = dashboard_calls()
    problems = []
    if [(name, kwargs) for name, kwargs, _ in found] != CALLS:
        problems.append(f"dashboard.py cards {[(n, k) for n, k, _ in found]} != benchmark CALLS {CALLS}")
    loops = [name for name, _, per_period in found if not per_period]
    if loops:
        problems.append(
            f"dashboard.py calls {loops} once per period; the benchmark calls them once with freq"
        )
    return problems


def product_overview(engine: sa.Engine, f: Filters) -> dict[str, pd.DataFrame]:
    """The product: the Overview's KPI calls, monthly, as ``ui.data.kpi`` makes them — a
    call repeated with the same function and arguments is computed once (the page's cache
    returns the first result to the later cards)."""
    results: dict[str, pd.DataFrame] = {}
    for name, kwargs in CALLS:
        key = f"{name}{sorted(kwargs.items())}"
        if key not in results:
            results[key] = getattr(kpis, name)(engine, f, freq=FREQ, **kwargs)
    return {key.split("[")[0]: frame for key, frame in results.items()}


def _total(frame: pd.DataFrame, column: str) -> float:
    return float(pd.to_numeric(frame[column], errors="coerce").fillna(0).sum())


def headline(results: dict[str, pd.DataFrame]) -> dict[str, float]:
    """Totals over the window of a few numbers (the floor's ``headline`` names)."""
    by = dict(results)
    by["active_customers"] = by["churn_rate"] = by["revenue_retention"] = by["retention_cost"] = by[
        "customer_base"
    ]
    return {
        "revenue": _total(by["revenue"], "revenue"),
        "refunds": _total(by["revenue"], "refunds"),
        "paying_accounts": _total(by["revenue"], "paying_accounts"),
        "customers_at_start": _total(by["active_customers"], "customers_at_start"),
        "new_customers": _total(by["active_customers"], "new_customers"),
        "churned": _total(by["churn_rate"], "churned"),
        "retained": _total(by["retention_cost"], "retained_customers"),
        "mrr_at_start": _total(by["revenue_retention"], "mrr_at_start"),
        "expansion": _total(by["revenue_retention"], "expansion"),
        "churned_mrr": _total(by["revenue_retention"], "churned_mrr"),
        "retention_costs": _total(by["retention_cost"], "retention_costs"),
        "nps_responses": _total(by["survey_scores"], "nps_responses"),
        "promoters": _total(by["survey_scores"], "promoters"),
        "ces_responses": _total(by["survey_scores"], "ces_responses"),
        "ces_easy": float(
            (
                pd.to_numeric(by["survey_scores"]["share_easy"]).fillna(0)
                * by["survey_scores"]["ces_responses"]
            )
            .round()
            .sum()
        ),
        "won": _total(by["win_rate"], "won"),
        "lost": _total(by["win_rate"], "lost"),
        "open_created": _total(by["win_rate"], "open_created"),
        "won_deals_cycle": _total(by["sales_cycle"], "deals"),
        "median_cycle_days_sum": _total(by["sales_cycle"], "median_days"),
        "resolved": _total(by["first_contact_resolution"], "resolved"),
        "first_contact": _total(by["first_contact_resolution"], "first_contact"),
    }


def disagreements(reference: dict[str, float], other: dict[str, float], rel: float = 1e-6) -> list[str]:
    """Headline numbers present in both that differ by more than ``rel`` (relative)."""
    out = []
    for key, value in reference.items():
        if key in other and not math.isclose(value, other[key], rel_tol=rel, abs_tol=1e-6):
            out.append(f"{key}: {value!r} vs {other[key]!r}")
    return out
