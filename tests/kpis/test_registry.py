"""The KPI registry, and the promise that DuckDB, SQLite and PostgreSQL give the same numbers."""

from __future__ import annotations

import datetime as dt
import re

import pandas as pd
import pytest

import kpis
from kpis import Filters
from kpis.registry import KPIS, UNITS, KpiDefinition, get
from tests.kpis import fixtures

CONTRACT_KEYS = {
    "churn_rate", "nps", "ces", "win_rate", "sales_cycle", "stage_durations",
    "first_contact_resolution", "retention_cost",
}  # fmt: skip


def _words(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def test_registry_holds_the_contract_kpis():
    keys = [k.key for k in KPIS]
    assert set(keys) >= CONTRACT_KEYS
    assert len(keys) == len(set(keys)), "duplicate keys"
    assert get("win_rate").function is kpis.win_rate
    with pytest.raises(KeyError, match="unknown KPI"):
        get("happiness")
    with pytest.raises(ValueError):
        KpiDefinition("x", "X", "furlongs", True, "x", kpis.nps, "nps", "pages/x.py")


@pytest.mark.parametrize("key", sorted(CONTRACT_KEYS))
def test_definition_is_the_docstring_formula(key):
    kpi = get(key)
    assert kpi.unit in UNITS
    assert _words(kpi.definition) in _words(kpi.function.__doc__ or ""), (
        f"{key}: definition differs from docstring"
    )


@pytest.mark.parametrize("key", sorted(CONTRACT_KEYS))
def test_value_column_is_returned(db, key):
    fixtures.load(db)
    kpi = get(key)
    kwargs = {"freq": "month"} if "freq" in kpi.function.__code__.co_varnames else {}
    frame = kpi.function(db, Filters("2024-01-01", "2024-04-01"), **kwargs)
    assert kpi.value_column in frame.columns
    assert frame[kpi.value_column].notna().any()


HAND = Filters("2024-01-01", "2024-05-01")
WIDE = Filters("2023-01-01", "2025-01-01")

CALLS = [
    ("churn_rate", {"freq": "month"}),
    ("churn_rate", {"freq": "quarter"}),
    ("churn_by", {"by": "segment"}),
    ("churned_accounts", {"period": "2024-01-01"}),
    ("nps", {"freq": "month"}),
    ("nps_score_distribution", {}),
    ("latest_comments", {"limit": 10}),
    ("ces", {"freq": "quarter"}),
    ("ces", {"freq": "month", "by_touchpoint": False}),
    ("win_rate", {"freq": "month"}),
    ("sales_cycle", {}),
    ("sales_cycle_distribution", {"bins": 7}),
    ("stage_durations", {"now": dt.datetime(2024, 6, 1)}),
    ("first_contact_resolution", {"freq": "month"}),
    ("ticket_breakdown", {"by": "product", "freq": "quarter"}),
    ("resolution_times", {"freq": "month"}),
    ("retention_cost", {"freq": "month"}),
]


@pytest.mark.parametrize("dataset", ["hand", "synthetic"])
def test_all_databases_agree(make_db, dataset):
    rows = fixtures.ROWS if dataset == "hand" else fixtures.synthetic_rows()
    filters = HAND if dataset == "hand" else WIDE
    engines = {kind: fixtures.load_rows(make_db(kind), rows) for kind in ("duckdb", "sqlite", "postgresql")}
    for segments in ((), ("Enterprise",)):
        f = filters.replace(segments=segments)
        for name, kwargs in CALLS:
            results = {kind: getattr(kpis, name)(engine, f, **kwargs) for kind, engine in engines.items()}
            reference = results["duckdb"]
            assert not reference.empty or name in ("churned_accounts", "latest_comments"), name
            for kind in ("sqlite", "postgresql"):
                pd.testing.assert_frame_equal(
                    results[kind].reset_index(drop=True),
                    reference.reset_index(drop=True),
                    check_exact=False,
                    rtol=1e-9,
                    atol=1e-9,
                    obj=f"{name}{kwargs} segments={segments} on {kind} vs duckdb",
                )
