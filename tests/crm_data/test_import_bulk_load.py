"""Bulk loads into PostgreSQL (``crm_data.importing.BULK_LOAD_SHARE``): the secondary indexes and
foreign keys are dropped and created again in the import's transaction, the rows are those of
the row-by-row upsert, and any failure leaves the database — rows, indexes and keys — as it
was. And an error in row 400,001 of a big file is found and nothing is written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import importing, schema
from crm_data.importing import import_paths, import_tables, read_bundle

TODAY = date(2026, 12, 6)


def _catalog(engine: sa.Engine) -> dict[str, list[tuple[str, str]]]:
    """Every index and constraint of the deals and accounts tables: (name, definition)."""
    with engine.connect() as conn:
        indexes = conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = current_schema() AND tablename IN ('deals', 'accounts') ORDER BY 1"
            )
        ).all()
        constraints = conn.execute(
            sa.text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE conrelid IN (CAST('deals' AS regclass), CAST('accounts' AS regclass)) ORDER BY 1"
            )
        ).all()
    return {"indexes": [tuple(r) for r in indexes], "constraints": [tuple(r) for r in constraints]}


def _rows(engine: sa.Engine) -> dict[str, list[tuple]]:
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.columns))]
            for t in (schema.accounts, schema.deals)
        }


def _bundle(folder: Path, accounts: int, deals: int, first_deal: int = 1, awkward: bool = True) -> Path:
    """``accounts.csv`` and ``deals.csv``: deals D<first_deal>.. spread over the accounts, with
    blanks and (``awkward``) names holding a quote, a comma and a line break."""
    folder.mkdir(parents=True, exist_ok=True)
    account_ids = [f"A{i}" for i in range(1, accounts + 1)]
    pd.DataFrame(
        {
            "account_id": account_ids,
            "name": [f"Firm {i}" for i in range(1, accounts + 1)],
            "segment": "SMB",
            "created_at": "2024-03-01",
        }
    ).to_csv(folder / "accounts.csv", index=False)
    number = np.arange(first_deal, first_deal + deals)
    names = np.array(
        [f'Deal "{n}", line\nbreak' if awkward and n % 7 == 0 else f"Deal {n}" for n in number], dtype=object
    )
    pd.DataFrame(
        {
            "deal_id": [f"D{n}" for n in number],
            "account_id": [account_ids[n % accounts] for n in number],
            "name": names,
            "amount": np.where(number % 5 == 0, np.nan, number * 10.5),
            "created_at": [f"2025-0{1 + n % 9}-1{n % 10}T08:30:00Z" for n in number],
            "closed_at": ["" if n % 3 else "2025-12-01" for n in number],
            "status": ["open" if n % 3 else ("won" if n % 2 else "lost") for n in number],
        }
    ).to_csv(folder / "deals.csv", index=False)
    return folder


@pytest.fixture
def pg(make_db: Callable[..., sa.Engine]) -> sa.Engine:
    return make_db("postgresql")


def test_bulk_load_gives_the_rows_of_the_row_by_row_upsert_and_keeps_indexes_and_keys(
    pg: sa.Engine, make_db: Callable[..., sa.Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = make_db("postgresql")
    catalog = _catalog(pg)
    assert any(name == "ix_deals_account_id" for name, _ in catalog["indexes"])
    assert any("FOREIGN KEY (account_id)" in definition for _, definition in catalog["constraints"])
    first = _bundle(tmp_path / "first", accounts=40, deals=300)
    more = _bundle(tmp_path / "more", accounts=40, deals=300, first_deal=201)  # 100 known, 200 new

    kinds: list[str] = []
    load_kind = importing._load_kind
    monkeypatch.setattr(importing, "_load_kind", lambda *a: kinds.append(load_kind(*a)) or kinds[-1])
    monkeypatch.setattr(importing, "BULK_LOAD_MIN_ROWS", 10)
    for bundle in (first, more, more):  # empty tables, then 200 of 500 new, then nothing new
        report = import_paths(pg, [bundle], today=TODAY)
        assert report.ok and report.committed, report.render()
    assert kinds == ["empty", "empty", "rows", "bulk", "rows", "rows"]  # accounts, deals per import
    assert report.written == {"accounts": 0, "deals": 0}

    monkeypatch.setattr(importing, "BULK_LOAD_MIN_ROWS", 10**9)  # the row-by-row upsert
    for bundle in (first, more):
        assert import_paths(reference, [bundle], today=TODAY).ok
    assert _rows(pg) == _rows(reference)
    assert _catalog(pg) == catalog
    deals = _rows(pg)["deals"]
    assert len(deals) == 500
    by_id = {row[0]: row for row in deals}
    assert by_id["D7"][4] == 'Deal "7", line\nbreak'
    assert by_id["D5"][5] is None and by_id["D4"][5] == 42.0
    assert by_id["D1"][8] is None and by_id["D3"][8] is not None


def test_a_failure_after_a_bulk_load_rolls_back_rows_indexes_and_keys(
    pg: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "BULK_LOAD_MIN_ROWS", 10)
    assert import_paths(pg, [_bundle(tmp_path / "first", accounts=20, deals=50)], today=TODAY).ok
    before, catalog = _rows(pg), _catalog(pg)

    def fail(conn: sa.Connection, contents: str) -> None:
        conn.exec_driver_sql("SELECT 1 / 0")  # the database refuses something after the load

    monkeypatch.setattr(importing, "mark_contents", fail)
    report = import_paths(
        pg, [_bundle(tmp_path / "more", accounts=40, deals=400, first_deal=51)], today=TODAY
    )
    assert not report.ok and not report.committed
    assert "division by zero" in report.render()
    assert _rows(pg) == before
    assert _catalog(pg) == catalog


def test_a_bad_value_in_row_400001_of_a_big_file_writes_nothing(
    make_db: Callable[..., sa.Engine], tmp_path: Path
) -> None:
    engine = make_db("postgresql")
    bundle = _bundle(tmp_path / "big", accounts=1000, deals=400_010, awkward=False)
    frame = pd.read_csv(bundle / "deals.csv", dtype=str, keep_default_na=False)
    frame.loc[400_000, "amount"] = "12,5"  # data row 400,001 = line 400,002 (the header is line 1)
    frame.to_csv(bundle / "deals.csv", index=False)
    inputs, issues = read_bundle([bundle])
    assert not issues
    report = import_tables(engine, inputs, today=TODAY)
    assert not report.ok and not report.committed
    assert [str(e) for e in report.errors] == ["deals.csv:400002:amount: not a number: '12,5'"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.accounts)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.deals)).scalar_one() == 0
