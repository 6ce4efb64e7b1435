"""stage_durations with a filter other than the date range (an owner, a product, an account
list): the Kaplan–Meier numbers by hand on DuckDB, SQLite and PostgreSQL, from the base tables
and from the stored visits; on PostgreSQL the selected stored visits are fetched and counted in
numpy (``kpis.sales._durations_in_python``, :func:`crm_data.dialects.counts_selected_rows`), not
numbered by the database's window (``_km_quantiles``): one byte string of (duration, flags) per
stage (:func:`crm_data.dialects.packed_rows`).

The January leads of ``test_stage_durations_spans`` (account A1: Tech, owner u1, product P1;
n = 14, median 6 days, p90 never reached) plus deals no selection below takes: account A2
(Retail), owner u2, product P2, each a Lead visit of 20 days finished before C — counted, they
would move the median and the p90 to 20 days.
"""

from __future__ import annotations

import datetime as dt
import math

import pytest
import sqlalchemy as sa

from crm_data.dialects import counts_selected_rows
from kpis import Filters, sales, stage_durations, stage_visits
from tests.kpis import fixtures
from tests.kpis.test_stage_durations_spans import JANUARY, JANUARY_NOW, _rows

OTHERS = 20

#: deals, finished, censored, median_days, p90_days, conversion_to_next of the Lead stage
LEADS = [14, 8, 6, 6.0, math.nan, 9 / 14]
NOTHING = [0, 0, 0, math.nan, math.nan, math.nan]

SELECTIONS = {
    "owner": (JANUARY.replace(owners=["u1"]), LEADS),
    "product": (JANUARY.replace(products=["P1"]), LEADS),
    "industry": (JANUARY.replace(industries=["Tech"]), LEADS),
    "owner without deals": (JANUARY.replace(owners=["u9"]), NOTHING),
}


def _load(engine: sa.Engine) -> sa.Engine:
    fixtures.load(engine, only=("accounts", "users", "products", "pipeline_stages"))
    deals, history = _rows()
    for k in range(OTHERS):
        entered = dt.datetime(2024, 1, 1, 6) + dt.timedelta(hours=k)
        deals.append(fixtures._deal(f"X{k}", "A2", "u2", "P2", 50.0, entered, None, "open"))
        history.append(dict(deal_id=f"X{k}", stage="Lead", entered_at=entered))
        history.append(dict(deal_id=f"X{k}", stage="Qualified", entered_at=entered + dt.timedelta(days=20)))
    fixtures.insert(engine, "deals", deals)
    fixtures.insert(engine, "deal_stage_history", history)
    return engine


def _lead(engine: sa.Engine, f: Filters) -> list:
    frame = stage_durations(engine, f, now=JANUARY_NOW).set_index("stage")
    return frame.loc[
        "Lead", ["deals", "finished", "censored", "median_days", "p90_days", "conversion_to_next"]
    ].tolist()


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_a_selection_by_hand(db, visits_path, selection):
    engine = visits_path(_load(db))
    f, expected = SELECTIONS[selection]
    assert _lead(engine, f) == pytest.approx(expected, nan_ok=True)
    # every Lead visit of the range: after the leads' last censored visit (12 days) the 20
    # others are the 20 at risk and finish together at 20 days: S drops from 0.74 to 0
    assert _lead(engine, JANUARY) == pytest.approx([14 + OTHERS, 8 + OTHERS, 6, 20.0, 20.0, 29 / 34])


def _refuse(*args, **kwargs):
    raise AssertionError("this path must not be taken")


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_on_postgresql_a_selection_is_counted_in_numpy(make_db, monkeypatch, selection):
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    engine = _load(make_db("postgresql"))
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    taken = []
    in_python = sales._durations_in_python

    def spy(*args, **kwargs):
        taken.append(True)
        return in_python(*args, **kwargs)

    monkeypatch.setattr(sales, "_durations_in_python", spy)
    monkeypatch.setattr(sales, "_km_quantiles", _refuse)  # the numbering of the selected visits
    monkeypatch.setattr(sales, "_km_from_spans", _refuse)  # the date range alone
    f, expected = SELECTIONS[selection]
    with fixtures.statements_sent(engine, "string_agg") as statements:
        assert _lead(engine, f) == pytest.approx(expected, nan_ok=True)
    assert taken == [True]
    assert len(statements) == 1  # the selected visits as one byte string per stage (packed_rows)


def test_which_databases_count_a_selection_in_numpy(db):
    assert counts_selected_rows(db.dialect) == (db.dialect.name in ("duckdb", "postgresql"))
