"""bulk_insert round trips on DuckDB, SQLite and PostgreSQL: nulls, timestamps, dates,
floats, booleans, integers with gaps, tz-aware input and awkward text."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.bulk import bulk_insert


def _read(engine: sa.Engine, table: sa.Table, order: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(table.c[order]))]


def test_round_trip_tickets_with_nulls_timestamps_and_integers(db: sa.Engine) -> None:
    frame = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2", "T3"],
            "account_id": [None, None, None],
            "product_id": ["P1", None, 'P,2 "quoted"\nline'],
            "category": ["defect", "", None],
            "opened_at": pd.to_datetime(
                ["2024-01-31 23:59:59.250", "2024-02-01 00:00:00", "2025-06-30 12:00:00"], format="ISO8601"
            ),
            "resolved_at": pd.to_datetime(["2024-02-01 08:00:00", None, "2025-07-01 00:00:00"]),
            "contacts_until_resolved": [1.0, float("nan"), 3.0],
        }
    )
    with db.begin() as conn:
        assert bulk_insert(conn, schema.tickets, frame) == 3
    rows = _read(db, schema.tickets, "ticket_id")
    cols = [c.name for c in schema.tickets.columns]
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    assert got[0]["opened_at"] == dt.datetime(2024, 1, 31, 23, 59, 59, 250000)
    assert got[0]["resolved_at"] == dt.datetime(2024, 2, 1, 8)
    assert got[1]["resolved_at"] is None
    assert got[0]["contacts_until_resolved"] == 1 and isinstance(got[0]["contacts_until_resolved"], int)
    assert got[1]["contacts_until_resolved"] is None
    assert got[2]["product_id"] == 'P,2 "quoted"\nline'
    assert got[1]["product_id"] is None
    # an empty string stays an empty string, a missing value becomes NULL
    assert got[1]["category"] == ""
    assert got[2]["category"] is None
    assert got[0]["first_response_at"] is None  # column absent from the frame
    assert all(r["opened_at"].tzinfo is None for r in got)


def test_round_trip_dates_floats_booleans(db: sa.Engine) -> None:
    stages = pd.DataFrame(
        {
            "stage": ["Lead", "Closed Won", "Odd"],
            "position": [1, 5, 6],
            "probability": [0.1, 1.0, float("nan")],
            "is_closed": [False, True, None],
            "is_won": [False, True, None],
        }
    )
    costs = pd.DataFrame(
        {
            "cost_id": ["C1", "C2"],
            "incurred_on": [dt.date(2024, 2, 29), dt.date(2023, 12, 31)],
            "category": ["loyalty", "personnel"],
            "purpose": ["retention", None],
            "amount": [12.5, -3.25],
        }
    )
    campaigns = pd.DataFrame(
        {
            "campaign_id": ["K1", "K2"],
            "name": ["Spring", "Winter"],
            # dates given as datetime64 must still arrive as DATE
            "started_on": pd.to_datetime(["2024-03-01", None]),
            "cost": [None, 100.0],
        }
    )
    with db.begin() as conn:
        assert bulk_insert(conn, schema.pipeline_stages, stages) == 3
        assert bulk_insert(conn, schema.costs, costs) == 2
        assert bulk_insert(conn, schema.campaigns, campaigns) == 2
    assert _read(db, schema.pipeline_stages, "position") == [
        ("Lead", 1, 0.1, False, False),
        ("Closed Won", 5, 1.0, True, True),
        ("Odd", 6, None, None, None),
    ]
    assert _read(db, schema.costs, "cost_id") == [
        ("C1", dt.date(2024, 2, 29), "loyalty", "retention", None, 12.5),
        ("C2", dt.date(2023, 12, 31), "personnel", None, None, -3.25),
    ]
    got = _read(db, schema.campaigns, "campaign_id")
    assert got[0][4] == dt.date(2024, 3, 1) and not isinstance(got[0][4], dt.datetime)
    assert got[1][4] is None and got[0][6] is None and got[1][6] == 100.0


def test_tz_aware_and_text_timestamps_become_naive_utc(db: sa.Engine) -> None:
    frame = pd.DataFrame(
        {
            "payment_id": ["Y1", "Y2"],
            "account_id": ["A1", "A1"],
            # 2024-03-01 01:30 in Berlin (UTC+1) is 2024-03-01 00:30 UTC
            "paid_at": pd.to_datetime(["2024-03-01 01:30:00", "2024-07-01 02:00:00"]).tz_localize(
                "Europe/Berlin"
            ),
            "amount": [10.0, -10.0],
        }
    )
    accounts = pd.DataFrame({"account_id": ["A1"], "name": ["Acme"], "created_at": ["2024-01-01T09:30:00Z"]})
    with db.begin() as conn:
        bulk_insert(conn, schema.accounts, accounts)
        bulk_insert(conn, schema.payments, frame)
    assert _read(db, schema.accounts, "account_id")[0][-1] == dt.datetime(2024, 1, 1, 9, 30)
    # summer time: UTC+2
    assert [r[2] for r in _read(db, schema.payments, "payment_id")] == [
        dt.datetime(2024, 3, 1, 0, 30),
        dt.datetime(2024, 7, 1, 0, 0),
    ]


def test_literal_backslash_n_text_is_not_null(db: sa.Engine) -> None:
    frame = pd.DataFrame({"user_id": ["U1"], "name": [r"\N"]})
    with db.begin() as conn:
        bulk_insert(conn, schema.users, frame)
    assert _read(db, schema.users, "user_id")[0][1] == r"\N"


def test_empty_frame_and_unknown_column(db: sa.Engine) -> None:
    with db.begin() as conn:
        assert bulk_insert(conn, schema.users, pd.DataFrame({"user_id": [], "name": []})) == 0
        with pytest.raises(ValueError, match="not in the table"):
            bulk_insert(conn, schema.users, pd.DataFrame({"user_id": ["U1"], "nope": [1]}))


def test_rolls_back_with_the_callers_transaction(db: sa.Engine) -> None:
    with pytest.raises(RuntimeError), db.begin() as conn:
        bulk_insert(conn, schema.users, pd.DataFrame({"user_id": ["U1", "U2"], "name": ["a", "b"]}))
        raise RuntimeError("abort")
    assert _read(db, schema.users, "user_id") == []


def test_round_trip_category_columns(db: sa.Engine) -> None:
    """A column Arrow cannot write as CSV (a category) takes pandas' CSV text on PostgreSQL,
    with the same values."""
    frame = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "name": ["Acme", "", "Globex"],
            "segment": pd.Categorical(["SMB", None, "SMB"]),
            "created_at": pd.to_datetime(
                ["2024-01-31 23:59:59", "2024-02-01 00:00:00", "2024-02-02 00:00:00"]
            ),
        }
    )
    with db.begin() as conn:
        assert bulk_insert(conn, schema.accounts, frame) == 3
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(
                schema.accounts.c.name, schema.accounts.c.segment, schema.accounts.c.created_at
            ).order_by(schema.accounts.c.account_id)
        ).all()
    assert [tuple(r) for r in rows] == [
        ("Acme", "SMB", dt.datetime(2024, 1, 31, 23, 59, 59)),
        ("", None, dt.datetime(2024, 2, 1)),
        ("Globex", "SMB", dt.datetime(2024, 2, 2)),
    ]
