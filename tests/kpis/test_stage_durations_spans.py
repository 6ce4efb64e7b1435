"""stage_durations selected by a date range alone, on PostgreSQL from the stored visits'
index of finished lengths (``kpis.sales._km_from_spans``, ``kpis.stage_visits.SPANS_INDEX``):
the same Kaplan–Meier numbers as the numbering of every visit, computed by hand here; the
index exists after a build, matches the statement's expression, and a table built without
it is read the old way until an import creates it. The numbers on DuckDB, SQLite and
PostgreSQL, from the base tables and from the stored visits (``db``, ``visits_path``).

Every deal enters Lead when created (all open). A FINISHED Lead visit of d days moves to
Qualified d days later (before C); a CENSORED one stays in Lead (entered C − d), or moves
to Qualified after C (cut at C).
"""

from __future__ import annotations

import datetime as dt
import math

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import hooks
from kpis import Filters, sales, stage_durations, stage_visits
from tests.kpis import fixtures

#: January: C = now = 31 Jan 12:00. Lengths (days) finished 1 2 2 4 5 6 8 10, censored
#: 2 3 3 7 12 (still in Lead) and 6.5 (entered 25 Jan, moves on 10 Feb, after C).
JANUARY = Filters("2024-01-01", "2024-02-01")
JANUARY_NOW = dt.datetime(2024, 1, 31, 12)
#: March: C = 31 Mar 12:00. Finished 1..9, censored 9.5: both targets before the first
#: censored visit, S = 0.5 and 0.1 exactly (within the tolerance).
MARCH = Filters("2024-03-01", "2024-04-01")
MARCH_NOW = dt.datetime(2024, 3, 31, 12)

JANUARY_FINISHED = [1, 2, 2, 4, 5, 6, 8, 10]
JANUARY_CENSORED = [2, 3, 3, 7, 12]
MARCH_FINISHED = [1, 2, 3, 4, 5, 6, 7, 8, 9]
MARCH_CENSORED = [9.5]


def _rows() -> tuple[list[dict], list[dict]]:
    deals, history = [], []

    def visit(deal_id: str, entered: dt.datetime, moved: dt.datetime | None) -> None:
        deals.append(fixtures._deal(deal_id, "A1", "u1", "P1", 100.0, entered, None, "open"))
        history.append(dict(deal_id=deal_id, stage="Lead", entered_at=entered))
        if moved is not None:
            history.append(dict(deal_id=deal_id, stage="Qualified", entered_at=moved))

    for k, days in enumerate(JANUARY_FINISHED):
        entered = dt.datetime(2024, 1, 2) + dt.timedelta(days=k)
        visit(f"JF{k}", entered, entered + dt.timedelta(days=days))
    for k, days in enumerate(JANUARY_CENSORED):
        visit(f"JC{k}", JANUARY_NOW - dt.timedelta(days=days), None)
    visit("JLATE", dt.datetime(2024, 1, 25), dt.datetime(2024, 2, 10))  # censored at C: 6.5 days
    for k, days in enumerate(MARCH_FINISHED):
        entered = dt.datetime(2024, 3, 2) + dt.timedelta(days=k)
        visit(f"MF{k}", entered, entered + dt.timedelta(days=days))
    for k, days in enumerate(MARCH_CENSORED):
        visit(f"MC{k}", MARCH_NOW - dt.timedelta(days=days), None)
    return deals, history


def _load(engine: sa.Engine) -> sa.Engine:
    fixtures.load(engine, only=("accounts", "users", "products", "pipeline_stages"))
    deals, history = _rows()
    fixtures.insert(engine, "deals", deals)
    fixtures.insert(engine, "deal_stage_history", history)
    return engine


@pytest.fixture
def leads(db, visits_path):
    return visits_path(_load(db))


def _lead(engine: sa.Engine, f: Filters, now: dt.datetime) -> list:
    frame = stage_durations(engine, f, now=now).set_index("stage")
    return frame.loc[
        "Lead", ["deals", "finished", "censored", "median_days", "p90_days", "conversion_to_next"]
    ].tolist()


def test_censored_stretches_and_ties_by_hand(leads):
    # numbered by length, finished before censored: 1:1F 2:2F 3:2F 4:2C 5:3C 6:3C 7:4F 8:5F
    # 9:6F 10:6.5C 11:7C 12:8F 13:10F 14:12C, n = 14. S: t=1 13/14; t=2 (13 at risk, 2
    # finish) 11/14; 2C 3C 3C leave, t=4 (8 at risk) 77/112 = 0.69; t=5 66/112; t=6 55/112 =
    # 0.49 -> median 6; 6.5C 7C leave, t=8 (3) 110/336 = 0.33; t=10 (2) 0.16; 12C: S never
    # reaches 0.1 -> p90 NaN. Progressed: the 8 finished and the one that moved after C.
    assert _lead(leads, JANUARY, JANUARY_NOW) == pytest.approx([14, 8, 6, 6.0, math.nan, 9 / 14], nan_ok=True)


def test_targets_before_the_first_censored_visit_by_hand(leads):
    # n = 10: t=k leaves (10 − k)/10 -> S = 0.5 at t=5 (median 5), 0.1 at t=9 (p90 9); the
    # censored 9.5 comes after both.
    assert _lead(leads, MARCH, MARCH_NOW) == pytest.approx([10, 9, 1, 5.0, 9.0, 9 / 10])


def _plan_with_index_scans_only(engine: sa.Engine, statement: str, parameters) -> str:
    with engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")
        conn.exec_driver_sql("SET enable_bitmapscan = off")
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(row[0] for row in rows)


def test_on_postgresql_a_range_reads_the_finished_lengths_from_the_index(make_db, monkeypatch):
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    engine = _load(make_db("postgresql"))
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    with engine.connect() as conn:
        assert stage_visits.spans_indexed(conn)
    monkeypatch.setattr(sales, "_km_quantiles", _refuse)  # the numbering of every visit
    with fixtures.statements_sent(engine, "LATERAL") as statements:
        assert _lead(engine, JANUARY, JANUARY_NOW) == pytest.approx(
            [14, 8, 6, 6.0, math.nan, 9 / 14], nan_ok=True
        )
    ((statement, parameters),) = statements
    # the index's expression is the statement's: its range scans can use it
    assert str(stage_visits.SPANS_INDEX.name) in _plan_with_index_scans_only(engine, statement, parameters)
    # an owner selection reads the selected visits the old way
    monkeypatch.undo()
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    monkeypatch.setattr(sales, "_km_from_spans", _refuse)
    assert _lead(engine, JANUARY.replace(owners=["u1"]), JANUARY_NOW)[:3] == [14, 8, 6]


def test_a_table_built_without_the_index_is_read_the_old_way_until_an_import_creates_it(make_db, monkeypatch):
    monkeypatch.setenv("CRM_ROLLUPS", "on")
    engine = _load(make_db("postgresql"))
    with engine.begin() as conn:
        stage_visits.refresh(conn)
    expected = stage_durations(engine, MARCH, now=MARCH_NOW)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP INDEX {stage_visits.SPANS_INDEX.name}")
    stage_visits._SPANS_INDEXED.clear()
    with engine.connect() as conn:
        assert stage_visits.available(conn) and not stage_visits.spans_indexed(conn)
    with monkeypatch.context() as patched:
        patched.setattr(sales, "_km_from_spans", _refuse)
        pd.testing.assert_frame_equal(
            stage_durations(engine, MARCH, now=MARCH_NOW), expected, check_exact=True
        )
    with engine.begin() as conn:  # an import touching none of the visits' sources
        assert stage_visits.update(conn, hooks.Change.unknown(["payments"])) == [stage_visits.NAME]
    with engine.connect() as conn:
        assert stage_visits.spans_indexed(conn)
    monkeypatch.setattr(sales, "_km_quantiles", _refuse)
    pd.testing.assert_frame_equal(stage_durations(engine, MARCH, now=MARCH_NOW), expected, check_exact=True)


def test_the_index_is_postgresql_only(db):
    _load(db)
    with db.begin() as conn:
        stage_visits.refresh(conn)
    names = {index["name"] for index in sa.inspect(db).get_indexes(stage_visits.NAME)}
    assert (str(stage_visits.SPANS_INDEX.name) in names) == (db.dialect.name == "postgresql")
    with db.connect() as conn:
        assert stage_visits.spans_indexed(conn) == (db.dialect.name == "postgresql")


def _refuse(*args, **kwargs):
    raise AssertionError("this path must not be taken")
