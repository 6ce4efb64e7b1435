"""``benchmarks.import_throughput``: a tiny demo's deals imported into a scratch PostgreSQL
database; every phase is reported and the scratch database is gone afterwards. Never
wall-clock times."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa

from benchmarks import import_throughput
from tests.conftest import PG_ADMIN_URL, write_demo_database

#: the benchmark's scratch databases (other tests' may come and go meanwhile)
SCRATCH = "SELECT datname FROM pg_database WHERE datname LIKE 'crm_import_bench_%'"


def test_the_deals_are_imported_and_every_phase_is_timed(tmp_path: Path) -> None:
    source = write_demo_database(tmp_path, 120, 5).removeprefix("duckdb:///")
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            before = set(conn.execute(sa.text(SCRATCH)).scalars())
    except sa.exc.OperationalError:
        pytest.skip("no PostgreSQL server")
    rows, phases = import_throughput.measure(source, PG_ADMIN_URL, again=True)
    with duckdb.connect(source, read_only=True) as con:
        assert rows == con.execute("SELECT count(*) FROM deals").fetchone()[0]
    names = [p.name for p in phases]
    assert names[:3] == ["first: read", "first: validating", "first: writing deals"]
    assert "again: writing deals" in names
    assert all(p.client >= 0 and p.server >= 0 and p.wall >= 0 for p in phases)
    with admin.connect() as conn:
        assert set(conn.execute(sa.text(SCRATCH)).scalars()) == before
    admin.dispose()
