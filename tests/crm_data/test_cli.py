"""``python -m crm_data import | check | demo | rollups``: exit codes 0 (ok), 1 (invalid input),
2 (busy file).

The busy cases hold the DuckDB file open in another process, like the dashboard does.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.cli import main
from crm_data.engines import make_engine
from kpis import Filters, customer_base, first_contact_resolution, revenue, rollups, survey_scores, win_rate
from kpis.core import period_starts
from tests.conftest import ROOT
from tests.crm_data.test_importing import snapshot, write_bundle
from tests.kpis import fixtures

GOOD = {"accounts": "account_id,name,created_at\nA1,Acme Inc,2024-03-01\nA2,ACME inc.,2024-03-02\n"}
BAD = {"deals": "deal_id,account_id,created_at,status\nD1,A9,2024-03-01,open\n"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crm_data", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'crm.duckdb'}"


def test_import_ok_then_invalid(duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good), "--url", duckdb_url]) == 0
    assert "accounts                        2            2" in capsys.readouterr().out
    engine = make_engine(duckdb_url)
    before = snapshot(engine)
    engine.dispose()

    bad = write_bundle(tmp_path / "bad", BAD)
    assert main(["import", str(bad), "--url", duckdb_url]) == 1
    err = capsys.readouterr().err
    assert "deals.csv:2:account_id: 'A9' is not in accounts.account_id" in err
    assert "nothing was imported" in err
    engine = make_engine(duckdb_url)
    assert snapshot(engine) == before
    engine.dispose()


def test_check_prints_the_report(duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(write_bundle(tmp_path / "good", GOOD)), "--url", duckdb_url]) == 0
    capsys.readouterr()
    assert main(["check", "--url", duckdb_url, "--stale-days", "30"]) == 0
    out = capsys.readouterr().out
    assert "[!] Duplicate accounts: 2" in out
    assert "open deals are stale after 30 days" in out


def test_check_of_a_missing_database_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", f"duckdb:///{tmp_path / 'none.duckdb'}"]) == 2
    assert "no database at" in capsys.readouterr().err


@pytest.fixture
def held_open(duckdb_url: str, tmp_path: Path) -> Iterator[str]:
    """The DuckDB file with GOOD imported, held open read-only by another process (like the dashboard)."""
    engine = make_engine(duckdb_url)
    assert main(["import", str(write_bundle(tmp_path / "good", GOOD)), "--url", duckdb_url]) == 0
    engine.dispose()
    path = sa.make_url(duckdb_url).database
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys, time\n"
            f"c = duckdb.connect({path!r}, read_only=True)\n"
            "c.execute('select count(*) from accounts').fetchall()\n"
            "print('ready', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        yield duckdb_url
    finally:
        holder.communicate(input="", timeout=30)  # closing stdin ends the holder


def test_import_while_the_file_is_held_exits_2(held_open: str, tmp_path: Path) -> None:
    changed = write_bundle(
        tmp_path / "changed", {"accounts": "account_id,name,created_at\nA1,Renamed,2024-03-01\n"}
    )
    result = run_cli("import", str(changed), "--url", held_open)
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_while_the_file_is_held_exits_2(held_open: str) -> None:
    result = run_cli("demo", "--url", held_open, "--accounts", "50", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr


def test_check_works_beside_a_read_only_dashboard(held_open: str) -> None:
    result = run_cli("check", "--url", held_open)
    assert result.returncode == 0, result.stderr
    assert "[!] Duplicate accounts: 2" in result.stdout


def test_busy_file_is_left_intact(held_open: str, tmp_path: Path) -> None:
    run_cli(
        "import", str(write_bundle(tmp_path / "x", {"users": "user_id,name\nU1,Ann\n"})), "--url", held_open
    )
    engine = make_engine(held_open, read_only=True)
    try:
        rows = snapshot(engine)
    finally:
        engine.dispose()
    assert rows["users"] == []
    assert [r[:2] for r in rows["accounts"]] == [("A1", "Acme Inc"), ("A2", "ACME inc.")]


def test_import_with_an_unknown_mapping_exits_1_without_a_traceback(
    duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good), "--url", duckdb_url, "--mapping", "no_such_crm"]) == 1
    err = capsys.readouterr().err
    assert "no_such_crm" in err
    assert "Traceback" not in err
    assert "nothing was imported" in err


def test_import_of_files_the_mapping_does_not_know_exits_1(
    duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good / "accounts.csv"), "--url", duckdb_url, "--mapping", "salesforce"]) == 1
    err = capsys.readouterr().err
    assert "accounts.csv" in err
    assert "salesforce" in err


# --- rollups -----------------------------------------------------------------------------


#: The KPIs that read the roll-ups (tests/kpis/test_rollups.py checks them in depth).
KPIS = (customer_base, revenue, survey_scores, win_rate, first_contact_resolution)


def _read_rollups(url: str, f: Filters) -> dict[str, dict | None]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            periods = period_starts(f.start, f.end, "month")
            return {r.name: rollups.read(conn, r, f, "month", periods) for r in rollups.ROLLUPS}
    finally:
        engine.dispose()


def test_rollups_builds_what_the_kpis_read(
    duckdb_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    engine = make_engine(duckdb_url)
    schema.create_schema(engine)
    fixtures.load(engine)  # plain inserts, as another tool would write: no roll-ups yet
    engine.dispose()
    f = Filters("2024-01-01", "2024-05-01")
    assert set(_read_rollups(duckdb_url, f).values()) == {None}

    assert main(["rollups", "--url", duckdb_url]) == 0
    out = capsys.readouterr().out
    assert f"KPI roll-ups of {duckdb_url} rebuilt" in out
    lines = out.splitlines()[1:]
    printed = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines}
    assert list(printed) == [r.name for r in rollups.ROLLUPS]
    assert all(printed.values())
    # a column of names, then the row counts right-aligned in one column, however long the names
    assert len({line.rindex(" rows") for line in lines}) == 1

    assert None not in _read_rollups(duckdb_url, f).values()
    engine = make_engine(duckdb_url)
    try:
        rolled = {kpi: kpi(engine, f, "month") for kpi in KPIS}
        # tests/kpis/test_churn.py test_monthly_churn: 2, 1, 1, 0 churned; test_sales.py
        # test_monthly_win_rate: 1, 3, 0, 0 won; test_service.py test_monthly_fcr: 2, 2, 1, 0
        # resolved; test_feedback.py: 5, 2, 0, 0 NPS responses
        assert list(rolled[customer_base]["churned"]) == [2, 1, 1, 0]
        assert list(rolled[win_rate]["won"]) == [1, 3, 0, 0]
        assert list(rolled[first_contact_resolution]["resolved"]) == [2, 2, 1, 0]
        assert list(rolled[survey_scores]["nps_responses"]) == [5, 2, 0, 0]
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        for kpi, frame in rolled.items():
            pd.testing.assert_frame_equal(frame, kpi(engine, f, "month"), rtol=1e-9, obj=kpi.__name__)
    finally:
        engine.dispose()


def test_rollups_while_the_file_is_held_exits_2(held_open: str) -> None:
    result = run_cli("rollups", "--url", held_open)
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_rollups_of_a_missing_database_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "none.duckdb"
    result = run_cli("rollups", "--url", f"duckdb:///{path}")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert "no database at" in result.stderr
    assert not path.exists()


def test_rollups_of_a_database_without_crm_tables_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    make_engine(f"duckdb:///{path}").dispose()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    result = run_cli("rollups", "--url", f"duckdb:///{path}")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert f"has no {', '.join(t.name for t in rollups.SOURCES)} table(s)" in result.stderr
