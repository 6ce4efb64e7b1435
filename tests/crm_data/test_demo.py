"""The demo generator on DuckDB, SQLite and PostgreSQL: every table filled, reproducible,
consistent (enums, references, stage order) and telling the story it promises (defect
spike, refunds, costs, quality problems: :mod:`tests.crm_data.demo_story`), for one pinned
``today``. The same story on every day of a year, and the churn story (a statistic that
needs more than this fixture's 300 accounts), are checked in memory by
``test_demo_any_day``."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import demo as demo_module
from crm_data import demo_accounts, schema
from crm_data.demo import generate
from crm_data.engines import make_engine
from crm_data.quality import check_database
from kpis import Filters, customer_base, first_contact_resolution, revenue, rollups, survey_scores, win_rate
from kpis.core import period_starts
from tests.conftest import pg_scratch_schema_engine
from tests.crm_data import demo_story as story

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = 300
SEED = 7
#: the last day of the demo history: pinned, so the tests do not depend on the calendar
TODAY = dt.date(2026, 11, 18)


def _read_all(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    with engine.connect() as conn:
        return {t.name: pd.DataFrame(conn.execute(sa.select(t)).mappings().all()) for t in schema.TABLES}


@pytest.fixture(scope="module", params=["duckdb", "sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Demo data for ACCOUNTS accounts on one database kind: counts, engine and all rows."""
    kind = request.param
    if kind == "postgresql":
        engine = pg_scratch_schema_engine(request.getfixturevalue("pg_database_url"), "demo")
    else:
        suffix = "duckdb" if kind == "duckdb" else "sqlite"
        engine = make_engine(f"{kind}:///{tmp_path_factory.mktemp('demo') / f'demo.{suffix}'}")
    counts = generate(engine, accounts=ACCOUNTS, seed=SEED, progress=False, today=TODAY)
    yield {"kind": kind, "engine": engine, "counts": counts, "rows": _read_all(engine)}
    engine.dispose()


def test_every_table_is_filled_and_counted(demo: dict) -> None:
    counts, rows = demo["counts"], demo["rows"]
    assert set(counts) == set(schema.TABLE_NAMES)
    for table in schema.TABLE_NAMES:
        if table == "exchange_rates":  # demo amounts are in the reporting currency: no rates
            assert counts[table] == 0
            continue
        assert counts[table] > 0, table
        assert len(rows[table]) == counts[table], table
    assert counts["accounts"] == ACCOUNTS
    # about five deals per account, several stage rows per deal
    assert 3.5 <= counts["deals"] / ACCOUNTS <= 7.0
    assert counts["deal_stage_history"] > 3 * counts["deals"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A second, independent run with the demo fixture's arguments (DuckDB)."""
    engine = make_engine(f"duckdb:///{tmp_path_factory.mktemp('reference') / 'ref.duckdb'}")
    counts = generate(engine, accounts=ACCOUNTS, seed=SEED, progress=False, today=TODAY)
    rows = _read_all(engine)
    engine.dispose()
    return {"counts": counts, "rows": rows}


def test_same_seed_same_rows_on_every_database(demo: dict, reference: dict) -> None:
    """Same seed and day: identical rows, whatever the database (a DuckDB run as the reference)."""
    assert reference["counts"] == demo["counts"]
    expected = reference["rows"]
    for table in ("accounts", "deals", "deal_stage_history", "payments", "survey_responses", "costs"):
        key = list(expected[table].columns[:3])
        left = expected[table].sort_values(key).reset_index(drop=True)
        right = demo["rows"][table].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_dtype=False, check_exact=False, rtol=1e-12)


def test_different_seed_different_rows(tmp_path: Path) -> None:
    one = make_engine(f"duckdb:///{tmp_path / 'one.duckdb'}")
    two = make_engine(f"duckdb:///{tmp_path / 'two.duckdb'}")
    today = dt.date(2026, 11, 30)
    generate(one, accounts=200, seed=1, progress=False, today=today)
    generate(two, accounts=200, seed=2, progress=False, today=today)
    a, b = _read_all(one), _read_all(two)
    assert not a["accounts"]["segment"].equals(b["accounts"]["segment"])
    assert a["payments"]["amount"].sum() != b["payments"]["amount"].sum()
    one.dispose()
    two.dispose()


def test_regenerating_replaces_the_data(tmp_path: Path) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'again.duckdb'}")
    generate(engine, accounts=250, seed=3, progress=False)
    counts = generate(engine, accounts=120, seed=3, progress=False)
    rows = _read_all(engine)
    assert len(rows["accounts"]) == 120 == counts["accounts"]
    assert len(rows["deals"]) == counts["deals"]
    engine.dispose()


@pytest.mark.parametrize(
    "check",
    [c for c in story.CHECKS if c is not story.churn_is_higher_with_low_nps_and_unresolved_tickets],
    ids=lambda c: c.__name__,
)
def test_the_data_tell_the_story(demo: dict, check: Callable[[story.Rows, dt.date], None]) -> None:
    check(demo["rows"], TODAY)


def test_check_finds_only_the_injected_problems(demo: dict) -> None:
    """``python -m crm_data check`` on the demo: the four injected problems, nothing else
    (no overlapping subscriptions, orphans or future timestamps)."""
    report = check_database(demo["engine"], now=dt.datetime.combine(TODAY, dt.time()))
    found = {finding.key for finding in report.findings if finding.count}
    assert found == {"duplicate_accounts", "duplicate_contacts", "missing_deals_amount", "stale_open_deals"}


def test_cli_demo_prints_row_counts(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    done = subprocess.run(
        [sys.executable, "-m", "crm_data", "demo", "--accounts", "200", "--url", url, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "accounts" in done.stdout and "deal_stage_history" in done.stdout
    line = next(li for li in done.stdout.splitlines() if li.strip().startswith("accounts"))
    assert line.split()[-1] == "200"
    assert "demo data" not in done.stderr  # --quiet: no progress bar


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            for t in schema.TABLES
        }


def _fail_on_tickets(*args: object, **kwargs: object) -> None:
    raise RuntimeError("generator broke")


def test_a_failed_run_keeps_the_previous_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = make_engine(f"duckdb:///{tmp_path / 'keep.duckdb'}")
    before = generate(engine, accounts=150, seed=5, progress=False)
    monkeypatch.setattr(demo_accounts, "_tickets", _fail_on_tickets)
    with pytest.raises(RuntimeError, match="generator broke"):
        generate(engine, accounts=180, seed=6, progress=False)
    assert _counts(engine) == before
    engine.dispose()


def test_chunks_join_up_and_a_failed_chunked_run_leaves_empty_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With chunks of 100 accounts, 250 accounts are three chunks, each committed."""
    monkeypatch.setattr(demo_module, "CHUNK_ACCOUNTS", 100)
    engine = make_engine(f"duckdb:///{tmp_path / 'chunks.duckdb'}")
    counts = generate(engine, accounts=250, seed=8, progress=False)
    rows = _read_all(engine)
    assert counts == _counts(engine)
    assert list(rows["accounts"]["account_id"].sort_values()) == [f"A{i:07d}" for i in range(1, 251)]
    deal_numbers = rows["deals"]["deal_id"].str[1:].astype(int).sort_values()
    assert list(deal_numbers) == list(range(1, len(deal_numbers) + 1))  # ids run on across chunks
    for child, column, parent, key in story.REFERENCES:
        assert set(rows[child][column].dropna()) <= set(rows[parent][key]), (child, column)

    calls = {"n": 0}
    original = demo_accounts._tickets

    def fail_in_second_chunk(*args: object, **kwargs: object):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("generator broke")
        return original(*args, **kwargs)

    monkeypatch.setattr(demo_accounts, "_tickets", fail_in_second_chunk)
    with pytest.raises(RuntimeError, match="generator broke"):
        generate(engine, accounts=250, seed=9, progress=False)
    assert set(_counts(engine).values()) == {0}
    engine.dispose()


def test_demo_frames_of_some_tables_hold_the_same_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """``demo_frames(tables=...)`` stops each chunk after the last table asked for: the tables
    it returns hold the rows of a full run, over three chunks of accounts (each chunk draws
    from its own stream, the ids run on across chunks)."""
    monkeypatch.setattr(demo_module, "CHUNK_ACCOUNTS", 100)
    today = dt.date(2024, 2, 29)
    full = demo_module.demo_frames(250, 11, today)
    for asked in [*([t.name] for t in schema.TABLES), ["subscriptions", "survey_responses", "tickets"]]:
        some = demo_module.demo_frames(250, 11, today, tables=asked)
        assert list(some) == [t.name for t in schema.TABLES if t.name in asked]
        for name in asked:
            pd.testing.assert_frame_equal(some[name], full[name], obj=f"{asked}: {name}")
    with pytest.raises(ValueError, match="not a table of the demo: dealz"):
        demo_module.demo_frames(10, 1, today, tables=["deals", "dealz"])


def test_demo_builds_the_rollups_the_kpis_read(demo: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``generate``, the last 12 full months by month come from every roll-up, with the
    numbers of the base tables for each KPI that reads one (unfiltered and for one segment)."""
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    engine = demo["engine"]
    with engine.connect() as conn:
        state = conn.execute(sa.select(rollups.state.c.rollup, rollups.state.c.rows)).all()
    assert sorted(name for name, _ in state) == sorted(rollups.DERIVED)
    assert all(rows > 0 for _, rows in state)
    end = TODAY.replace(day=1)
    everyone = Filters((pd.Timestamp(end) - pd.DateOffset(months=12)).date(), end)
    segment = demo["rows"]["accounts"]["segment"].dropna().sort_values().iloc[0]
    for f in (everyone, everyone.replace(segments=[segment])):
        monkeypatch.delenv("CRM_ROLLUPS", raising=False)
        periods = period_starts(f.start, f.end, "month")
        assert len(periods) == 12
        with engine.connect() as conn:
            assert all(rollups.read(conn, r, f, "month", periods) is not None for r in rollups.ROLLUPS)
        # customers at start, revenue, NPS responses, won deals, resolved tickets
        for kpi in (customer_base, revenue, survey_scores, win_rate, first_contact_resolution):
            monkeypatch.delenv("CRM_ROLLUPS", raising=False)
            rolled = kpi(engine, f, "month")
            monkeypatch.setenv("CRM_ROLLUPS", "off")
            direct = kpi(engine, f, "month")
            pd.testing.assert_frame_equal(
                rolled, direct, check_exact=False, rtol=1e-9, atol=1e-9, obj=f"{kpi.__name__} {f}"
            )
            assert direct.iloc[:, 1].sum() > 0, (kpi.__name__, f)


def test_one_row_per_product_splits_overlaps_into_pieces_with_the_summed_mrr() -> None:
    """Hand-made rows (days): account 0 buys product 1 twice, then churns; account 1 has a
    product-2 add-on cancelled inside its running plan; account 2's rows do not overlap."""
    inf = np.inf
    rows = {  # account, product, mrr, start, end, reason, base
        "account": np.array([0, 0, 1, 1, 2, 2]),
        "product": np.array([1, 1, 2, 2, 3, 3]),
        "mrr": np.array([10.0, 5.0, 20.0, 5.0, 7.0, 9.0]),
        "start": np.array([0.0, 40.0, 0.0, 10.0, 0.0, 50.0]),
        "end": np.array([100.0, 100.0, inf, 30.0, 50.0, inf]),
        "reason": np.array([0, 0, -1, 1, 2, -1]),
        "base": np.array([True, False, True, False, True, False]),
    }
    out = demo_accounts._one_row_per_product(*rows.values())
    got = sorted(zip(*(a.tolist() for a in out), strict=True))
    assert got == sorted(
        [
            # account 0: 10 until the second deal, then 15 until the churn on day 100
            (0, 1, 10.0, 0.0, 40.0, 2, True),
            (0, 1, 15.0, 40.0, 100.0, 0, False),
            # account 1: 20, 25 while the add-on runs (then a downgrade), 20 again, still running
            (1, 2, 20.0, 0.0, 10.0, 2, True),
            (1, 2, 25.0, 10.0, 30.0, 3, False),
            (1, 2, 20.0, 30.0, inf, -1, False),
            # account 2: a plan change without overlap passes as it is
            (2, 3, 7.0, 0.0, 50.0, 2, True),
            (2, 3, 9.0, 50.0, inf, -1, False),
        ]
    )
