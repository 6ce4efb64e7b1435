"""Hand-written fixture rows for the "more KPIs" tests (revenue, pipeline, profitability,
marketing, complaints), inserted with plain SQLAlchemy inserts.

Each test module writes out its own rows next to the arithmetic of its expected numbers;
this module only holds the shared accounts / products / stages and the loader.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import sqlalchemy as sa

from crm_data import schema


def ts(text: str) -> dt.datetime:
    """A naive UTC timestamp from ``'2024-01-31 23:59:59'`` or ``'2024-01-31'``."""
    return dt.datetime.fromisoformat(text)


def day(text: str) -> dt.date:
    """A calendar day from ``'2024-01-31'``."""
    return dt.date.fromisoformat(text)


#: Four accounts in three segments, two owners. A4 has no owner.
ACCOUNTS: list[dict] = [
    {
        "account_id": "A1",
        "name": "Alpha",
        "segment": "SMB",
        "industry": "Retail",
        "region": "EMEA",
        "company_size": "1-10",
        "acquisition_channel": "web",
        "owner_id": "U1",
        "created_at": ts("2023-01-01"),
    },
    {
        "account_id": "A2",
        "name": "Beta",
        "segment": "Enterprise",
        "industry": "Finance",
        "region": "AMER",
        "company_size": "1000+",
        "acquisition_channel": "partner",
        "owner_id": "U2",
        "created_at": ts("2023-01-01"),
    },
    {
        "account_id": "A3",
        "name": "Gamma",
        "segment": "SMB",
        "industry": "Retail",
        "region": "APAC",
        "company_size": "1-10",
        "acquisition_channel": "web",
        "owner_id": "U1",
        "created_at": ts("2023-01-01"),
    },
    {
        "account_id": "A4",
        "name": "Delta",
        "segment": "Mid-Market",
        "industry": "Health",
        "region": "EMEA",
        "company_size": "50-200",
        "acquisition_channel": "event",
        "owner_id": None,
        "created_at": ts("2023-01-01"),
    },
]

USERS: list[dict] = [
    {"user_id": "U1", "name": "Uma", "team": "East"},
    {"user_id": "U2", "name": "Ugo", "team": "West"},
]

PRODUCTS: list[dict] = [
    {"product_id": "P1", "name": "Widget", "family": "Core", "list_price": 100.0},
    {"product_id": "P2", "name": "Gadget", "family": "Core", "list_price": 50.0},
]

#: The usual pipeline: four open stages, then Closed Won (5) and Closed Lost (6).
STAGES: list[dict] = [
    {"stage": "Lead", "position": 1, "probability": 0.1, "is_closed": False, "is_won": False},
    {"stage": "Qualified", "position": 2, "probability": 0.25, "is_closed": False, "is_won": False},
    {"stage": "Proposal", "position": 3, "probability": 0.5, "is_closed": False, "is_won": False},
    {"stage": "Negotiation", "position": 4, "probability": 0.75, "is_closed": False, "is_won": False},
    {"stage": "Closed Won", "position": 5, "probability": 1.0, "is_closed": True, "is_won": True},
    {"stage": "Closed Lost", "position": 6, "probability": 0.0, "is_closed": True, "is_won": False},
]

BASE: dict[str, list[dict]] = {
    "accounts": ACCOUNTS,
    "users": USERS,
    "products": PRODUCTS,
    "pipeline_stages": STAGES,
}


def load(engine: sa.Engine, *row_sets: Mapping[str, Sequence[Mapping]]) -> None:
    """Insert the rows of every ``{table name: [row, ...]}`` mapping, parents first.

    Rows of one table may leave out nullable columns; missing keys are inserted as NULL.
    """
    merged: dict[str, list[Mapping]] = {}
    for rows in row_sets:
        for name, table_rows in rows.items():
            merged.setdefault(name, []).extend(table_rows)
    with engine.begin() as c:
        for table in schema.TABLES:
            rows = merged.get(table.name)
            if rows:
                columns = [col.name for col in table.columns]
                complete = [{col: row.get(col) for col in columns} for row in rows]
                c.execute(sa.insert(table), complete)


def assert_databases_agree(
    make_db: Callable[..., sa.Engine],
    rows: Sequence[Mapping[str, Sequence[Mapping]]],
    compute: Callable[[sa.Engine], dict[str, pd.DataFrame]],
) -> None:
    """Load ``rows`` into fresh DuckDB, SQLite and PostgreSQL databases, run ``compute`` on
    each, and require every returned frame to be equal across them (values to 1e-9)."""
    results = {}
    for kind in ("duckdb", "sqlite", "postgresql"):
        engine = make_db(kind)
        load(engine, *rows)
        results[kind] = compute(engine)
    reference = results["duckdb"]
    for kind in ("sqlite", "postgresql"):
        assert results[kind].keys() == reference.keys()
        for name, frame in reference.items():
            other = results[kind][name]
            assert not frame.empty, f"{name}: an empty result proves nothing"
            pd.testing.assert_frame_equal(
                other.reset_index(drop=True),
                frame.reset_index(drop=True),
                check_dtype=False,
                check_exact=False,
                rtol=1e-9,
                atol=1e-12,
                obj=f"{name} on {kind} vs duckdb",
            )
