"""crm_data.stored_results: key → JSON text beside the sign-in accounts (a SQLite file beside a
DuckDB or SQLite file, the database itself on PostgreSQL), on the three databases.

* a row is read back as written; writing its key again replaces it;
* a write drops the rows of its kind written by another version, and keeps at most
  ``keep`` rows of its kind (the oldest go), other kinds untouched;
* reading never creates the store's file and never raises (no file, no table); a store
  that cannot be written says so (False) without raising;
* an in-memory CRM database has no store.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import sqlalchemy as sa

from crm_data.engines import make_engine
from crm_data.stored_results import ResultStore

T0 = dt.datetime(2026, 11, 1, 8, 0)


def minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def test_rows_are_read_back_replaced_dropped_and_capped(db: sa.Engine) -> None:
    store = ResultStore.beside(db)
    assert store is not None
    try:
        if db.dialect.name == "postgresql":
            assert store.engine is db  # the database itself, in the engine's schema
        else:
            database = Path(str(db.url.database))
            assert store.engine.url.database == str(database.with_name(database.stem + "-auth.sqlite"))
        assert store.get("k1") is None and store.keys() == []  # nothing stored yet: no error
        assert store.put("k1", "forecast", "v1", '{"a": 1.5}', computed_at=minutes(1))
        row = store.get("k1")
        assert row is not None
        assert (row.key, row.kind, row.version, row.computed_at, row.body) == (
            "k1", "forecast", "v1", minutes(1), '{"a": 1.5}'
        )  # fmt: skip
        assert store.put("k1", "forecast", "v1", '{"a": 2}', computed_at=minutes(2))  # replaced
        assert store.get("k1").body == '{"a": 2}'  # type: ignore[union-attr]
        assert store.put("other", "report", "r1", "{}", computed_at=minutes(0))  # another kind
        # another version of the same kind: the rows of v1 can never be asked for again
        assert store.put("k2", "forecast", "v2", "[2]", computed_at=minutes(3))
        assert store.keys("forecast") == ["k2"] and store.get("k1") is None
        # at most `keep` rows of a kind: the oldest go, not the one just written
        assert store.put("k3", "forecast", "v2", "[3]", computed_at=minutes(5), keep=2)
        assert store.put("k4", "forecast", "v2", "[4]", computed_at=minutes(4), keep=2)
        assert store.keys("forecast") == ["k4", "k3"]  # k2 (3 min) went; oldest first
        assert store.keys() == ["other", "k4", "k3"]
        store.clear("forecast")
        assert store.keys() == ["other"]
    finally:
        store.dispose()


def test_reading_creates_no_file_and_an_unwritable_store_says_so(tmp_path: Path) -> None:
    crm = tmp_path / "crm.duckdb"
    store = ResultStore.open(f"duckdb:///{crm}")
    assert store is not None
    beside = tmp_path / "crm-auth.sqlite"
    assert store.get("k") is None and store.keys() == []
    store.clear()
    assert not beside.exists()
    assert store.put("k", "forecast", "v", "[1]")
    assert beside.exists()
    store.dispose()
    reader = ResultStore(make_engine(f"sqlite:///{beside}", read_only=True))
    try:
        assert reader.get("k").body == "[1]"  # type: ignore[union-attr]
        assert reader.put("k2", "forecast", "v", "[2]") is False  # read-only: not stored, no error
        assert reader.keys() == ["k"]
    finally:
        reader.engine.dispose()
    # a file that is not a database: nothing is read, nothing raises
    beside.write_bytes(b"not a database file at all" * 100)
    broken = ResultStore.open(f"duckdb:///{crm}")
    assert broken is not None
    try:
        assert broken.get("k") is None and broken.keys() == []
        assert broken.put("k", "forecast", "v", "[1]") is False
    finally:
        broken.dispose()


def test_an_in_memory_database_has_no_store() -> None:
    assert ResultStore.open("duckdb:///:memory:") is None
    assert ResultStore.open("sqlite://") is None
