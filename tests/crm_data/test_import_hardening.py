"""The import's door against extreme, impossible and hostile values ("Hardening the data door").

Every malformed file is generated here as bytes and imported onto a database that already
holds a valid bundle (DuckDB, SQLite and PostgreSQL): the messages are exact
``file:row:column: reason`` lines, no driver error escapes, and the database is unchanged.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema, validation
from crm_data.importing import TableInput, import_paths, import_tables
from crm_data.mappings.sources import read_text_table
from kpis import rollups
from tests.crm_data.test_importing import BASE, snapshot, write_bundle

#: The longest text a field may hold.
LIMIT = validation.MAX_TEXT_LENGTH


def write_files(folder: Path, files: dict[str, bytes]) -> Path:
    """Write ``{table: raw bytes}`` as ``folder/<table>.csv`` (exactly those bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, data in files.items():
        (folder / f"{table}.csv").write_bytes(data)
    return folder


@pytest.fixture
def loaded(db: sa.Engine, tmp_path: Path) -> sa.Engine:
    """A database holding test_importing's BASE bundle."""
    report = import_paths(db, [write_bundle(tmp_path / "base", BASE)])
    assert report.ok, report.render()
    return db


def refused(engine: sa.Engine, folder: Path, **options: object) -> list[str]:
    """Import ``folder``, expecting a refusal that changed nothing; the error lines."""
    before = snapshot(engine)
    report = import_paths(engine, [folder], **options)
    assert not report.ok, report.render()
    assert "nothing was imported" in report.render()
    assert snapshot(engine) == before
    return [str(e) for e in report.errors]


# --- long text (4) ---------------------------------------------------------------------------


@pytest.fixture
def csv_default_limit() -> Iterator[None]:
    """Python's csv module with its default field limit (131,072 characters), as in a fresh
    process: the readers must raise it themselves. Restored afterwards."""
    before = csv.field_size_limit(131_072)
    yield
    csv.field_size_limit(before)


def comment(length: int) -> bytes:
    """A quoted multi-line comment of ``length`` characters (a line break every 100)."""
    line = "y" * 99 + "\n"
    text = (line * (length // 100 + 1))[:length]
    return b'"' + text.encode() + b'"'


def survey(comment_cell: bytes) -> bytes:
    return b"response_id,survey,score,comment,responded_at\nR1,nps,9," + comment_cell + b",2024-01-01\n"


@pytest.mark.parametrize("length", [140_000, LIMIT], ids=["140kB", "at the limit"])
def test_long_multi_line_text_up_to_the_limit_is_imported_in_full(
    loaded: sa.Engine, tmp_path: Path, length: int, csv_default_limit: None
) -> None:
    """It raised ``_csv.Error: field larger than field limit (131072)``; at 1 MB pyarrow
    cannot split the file and the row was "unreadable"."""
    folder = write_files(tmp_path / "b", {"survey_responses": survey(comment(length))})
    report = import_paths(loaded, [folder])
    assert report.ok, report.render()
    with loaded.connect() as conn:
        stored = conn.execute(sa.text("SELECT comment FROM survey_responses")).scalar_one()
    assert len(stored) == length and stored[:100] == "y" * 99 + "\n"


def test_text_over_the_limit_is_refused_without_echoing_it(
    loaded: sa.Engine, tmp_path: Path, csv_default_limit: None
) -> None:
    folder = write_files(tmp_path / "b", {"survey_responses": survey(comment(LIMIT + 1))})
    errors = refused(loaded, folder)
    expected = "'" + "y" * 40 + "'… (1,048,577 characters)"
    assert errors == [f"survey_responses.csv:2:comment: text longer than 1,048,576 characters: {expected}"]


def test_a_long_header_cell_is_an_unknown_column_named_briefly(
    loaded: sa.Engine, tmp_path: Path, csv_default_limit: None
) -> None:
    header = "n" * 140_000
    folder = write_files(tmp_path / "b", {"users": f"user_id,name,{header}\nU1,Ann,x\n".encode()})
    report = import_paths(loaded, [folder])
    assert report.ok, report.render()
    assert [str(w) for w in report.warnings] == [
        f"users.csv:1:{'n' * 40}… (140,000 characters): unknown column, not imported"
    ]
    assert snapshot(loaded)["users"] == [("U1", "Ann", None, None, None, None)]


def test_a_mapping_reads_long_fields_too(tmp_path: Path, csv_default_limit: None) -> None:
    """The mappings' reader (Import page, --mapping) raised the same ``_csv.Error``."""
    path = tmp_path / "tickets.csv"
    path.write_bytes(b'Ticket ID,Description\r\n1,"' + b"d" * 140_000 + b'\r\nend"\r\n2,short\r\n')
    read = read_text_table(path)
    assert read.lines == [2, 4]
    assert read.frame["Description"].tolist() == ["d" * 140_000 + "\r\nend", "short"]


HUGE = 200_000
#: Bad values of every kind a message quotes, each 200,000 characters long.
QUOTED = {
    "enum": (
        b"deals",
        b"deal_id,created_at,status\nD3,2024-01-01," + b"w" * HUGE + b"\n",
        "deals.csv:2:status: '{w}'… (200,000 characters) is not one of: lost, open, won",
    ),
    "number": (
        b"deals",
        b"deal_id,created_at,status,amount\nD3,2024-01-01,open," + b"9" * (HUGE - 1) + b"x\n",
        "deals.csv:2:amount: not a number: '{9}'… (200,000 characters)",
    ),
    "timestamp": (
        b"deals",
        b"deal_id,created_at,status\nD3," + b"2" * HUGE + b",open\n",
        "deals.csv:2:created_at: not an ISO 8601 timestamp: '{2}'… (200,000 characters)",
    ),
}


@pytest.mark.parametrize("case", list(QUOTED))
def test_messages_never_echo_a_huge_value(loaded: sa.Engine, tmp_path: Path, case: str) -> None:
    table, data, message = QUOTED[case]
    folder = write_files(tmp_path / "b", {table.decode(): data})
    errors = refused(loaded, folder)
    first = message[message.index("{") + 1]
    assert errors == [message.replace("{" + first + "}", first * 40)]
    assert all(len(e) < 200 for e in errors)


def test_quoted_shortens_long_values() -> None:
    assert validation.quoted("abc") == "'abc'"
    assert validation.quoted("x" * 40) == "'" + "x" * 40 + "'"
    assert validation.quoted("x" * 41) == "'" + "x" * 40 + "'… (41 characters)"
    assert validation.quoted(12.5) == "'12.5'"


# --- NUL characters and over-long ids (6) ------------------------------------------------------


def test_a_nul_character_is_refused_on_every_database(loaded: sa.Engine, tmp_path: Path) -> None:
    """PostgreSQL raised CharacterNotInRepertoire while DuckDB stored it: now one rule."""
    folder = write_files(tmp_path / "b", {"users": b"user_id,name,team\nU1,An\x00n,Sales\nU2,Bob,\x00\n"})
    assert refused(loaded, folder) == [
        "users.csv:2:name: contains a NUL character (\\x00), which databases cannot store: 'An\\x00n'",
        "users.csv:3:team: contains a NUL character (\\x00), which databases cannot store: '\\x00'",
    ]


def test_a_nul_character_in_an_id_is_refused(loaded: sa.Engine, tmp_path: Path) -> None:
    folder = write_files(tmp_path / "b", {"users": b"user_id,name\nU\x001,Ann\n"})
    assert refused(loaded, folder) == [
        "users.csv:2:user_id: contains a NUL character (\\x00), which databases cannot store: 'U\\x001'"
    ]


def test_an_id_over_255_characters_is_refused(loaded: sa.Engine, tmp_path: Path) -> None:
    """A 1 MB id gave PostgreSQL's ``index row requires 12024 bytes``; DuckDB stored it."""
    huge = "u" * 1_000_000
    long_account = "a" * 256
    files = {
        "users": f"user_id,name\n{huge},Ann\n{'v' * 255},Bob\n".encode(),
        # a reference that is too long is not reported twice (too long, then unknown)
        "deals": f"deal_id,account_id,created_at,status\nD3,{long_account},2024-01-01,open\n".encode(),
    }
    assert refused(loaded, write_files(tmp_path / "b", files)) == [
        f"deals.csv:2:account_id: id longer than 255 characters: '{'a' * 40}'… (256 characters)",
        f"users.csv:2:user_id: id longer than 255 characters: '{'u' * 40}'… (1,000,000 characters)",
    ]


def test_an_id_of_255_characters_is_imported(loaded: sa.Engine, tmp_path: Path) -> None:
    user = "ü" * 255  # 510 bytes in UTF-8
    folder = write_files(tmp_path / "b", {"users": f"user_id,name\n{user},Ann\n".encode()})
    report = import_paths(loaded, [folder])
    assert report.ok, report.render()
    assert snapshot(loaded)["users"] == [(user, "Ann", None, None, None, None)]


# --- dates: the accepted window (3) ------------------------------------------------------------

#: The pinned "today" of every import below: events are accepted up to 2026-06-15 (today +
#: 1 year), planned dates up to 2035-06-15 (today + 10 years), everything from 1900-01-01.
TODAY = date(2025, 6, 15)

DATES = {
    "year 0": (
        {"accounts": b"account_id,name,created_at\nA3,New,0000-01-01\n"},
        ["accounts.csv:2:created_at: 0000-01-01 is before the earliest accepted date 1900-01-01"],
    ),
    "a second before 1900": (
        {"accounts": b"account_id,name,created_at\nA3,New,1899-12-31T23:59:59Z\n"},
        ["accounts.csv:2:created_at: 1899-12-31T23:59:59Z is before the earliest accepted date 1900-01-01"],
    ),
    "year 9999": (
        {"subscriptions": b"subscription_id,account_id,started_at\nS1,A1,9999-12-31\n"},
        [
            "subscriptions.csv:2:started_at: 9999-12-31 is after the latest accepted date 2026-06-15 (today + 1 year)"
        ],
    ),
    "year 10000 once converted to UTC": (
        {"deals": b"deal_id,created_at,status\nD3,9999-12-31T23:00:00-02:00,open\n"},
        [
            "deals.csv:2:created_at: 9999-12-31T23:00:00-02:00 is after the latest accepted date 2026-06-15 "
            "(today + 1 year)"
        ],
    ),
    "an event the day after the horizon": (
        {
            "payments": b"payment_id,account_id,paid_at,amount\nY1,A1,2026-06-15T23:59:59,1\nY2,A1,2026-06-16,1\n"
        },
        ["payments.csv:3:paid_at: 2026-06-16 is after the latest accepted date 2026-06-15 (today + 1 year)"],
    ),
    "a subscription starting in 3000": (
        {"subscriptions": b"subscription_id,account_id,started_at\nS1,A1,3000-01-01\n"},
        [
            "subscriptions.csv:2:started_at: 3000-01-01 is after the latest accepted date 2026-06-15 (today + 1 year)"
        ],
    ),
    "a planned end in 3000": (
        {"subscriptions": b"subscription_id,account_id,started_at,ended_at\nS1,A1,2024-01-01,3000-01-01\n"},
        [
            "subscriptions.csv:2:ended_at: 3000-01-01 is after the latest accepted date 2035-06-15 (today + 10 years)"
        ],
    ),
    "a planned campaign day after the horizon": (
        {"campaigns": b"campaign_id,name,started_on,ended_on\nC1,Later,2035-06-15,2035-06-16\n"},
        [
            "campaigns.csv:2:ended_on: 2035-06-16 is after the latest accepted date 2035-06-15 (today + 10 years)"
        ],
    ),
}


@pytest.mark.parametrize("case", list(DATES))
def test_dates_outside_the_window_are_refused(loaded: sa.Engine, tmp_path: Path, case: str) -> None:
    """0000-01-01 was stored as 1 BC on DuckDB and a traceback on PostgreSQL; 9999-12-31
    raised ``year 10000 is out of range``; 3000-01-01 blew the roll-ups up."""
    files, messages = DATES[case]
    assert refused(loaded, write_files(tmp_path / "b", files), today=TODAY) == messages


def test_the_edges_of_the_window_are_accepted(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {
        "accounts": b"account_id,name,created_at\nA3,Old,1900-01-01\n",
        "payments": b"payment_id,account_id,paid_at,amount\nY1,A1,2026-06-15T23:59:59Z,1\n",
        "subscriptions": b"subscription_id,account_id,started_at,ended_at\nS1,A1,2024-01-01,2035-06-15T23:59:59\n",
        "campaigns": b"campaign_id,name,started_on,ended_on\nC1,Later,2035-06-15,2035-06-15\n",
    }
    report = import_paths(loaded, [write_files(tmp_path / "b", files)], today=TODAY)
    assert report.ok, report.render()
    assert snapshot(loaded)["subscriptions"][0][5] == datetime(2035, 6, 15, 23, 59, 59)


def test_today_is_a_parameter(make_db, tmp_path: Path) -> None:
    """The window moves with ``today``: a test pins it, the calendar does not matter."""
    engine = make_db("duckdb")
    files = {
        "accounts": b"account_id,name,created_at\nA1,Acme,2024-01-01\n",
        "subscriptions": b"subscription_id,account_id,started_at,ended_at\nS1,A1,2024-01-01,2036-01-01\n",
    }
    folder = write_files(tmp_path / "b", files)
    assert refused(engine, folder, today=TODAY) == [
        "subscriptions.csv:2:ended_at: 2036-01-01 is after the latest accepted date 2035-06-15 (today + 10 years)"
    ]
    assert import_paths(engine, [folder], today=date(2026, 1, 1)).ok
    window = validation.date_window(date(2028, 2, 29))
    assert (window.earliest, window.latest_event, window.latest_planned) == (
        date(1900, 1, 1),
        date(2029, 2, 28),
        date(2038, 2, 28),
    )
    assert validation.date_window().today in {
        (datetime.now(UTC) - timedelta(minutes=1)).date(),
        datetime.now(UTC).date(),
    }


def test_typed_dates_outside_the_window_are_refused(db: sa.Engine) -> None:
    """Values from a mapping (already datetimes) follow the same window."""
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "name": ["Acme", "Beta"],
            "created_at": pd.to_datetime(["1850-06-01T12:00:00", "2024-01-01T00:00:00"]),
        }
    )
    report = import_tables(db, [TableInput("accounts", accounts, "crm:accounts", lines=[4, 5])], today=TODAY)
    assert [str(e) for e in report.errors] == [
        "crm:accounts:4:created_at: 1850-06-01T12:00:00 is before the earliest accepted date 1900-01-01"
    ]
    assert snapshot(db)["accounts"] == []


# --- values: one table of rules (3) ------------------------------------------------------------

VALUES = {
    "web_traffic": b"date,source,sessions,pageviews,impressions,clicks,signups\n"
    b"2024-01-01,seo,0,0,0,0,0\n2024-01-02,seo,-5,-1,-2,-3,-4\n",
    "social_media": b"date,platform,followers,impressions,engagements,mentions\n2024-01-01,x,-1,-2,-3,-4\n",
    "pipeline_stages": b"stage,position,probability\nLead,1,0\nWon,2,1\nOdd,3,1.5\nNeg,4,-0.1\n",
    "products": b"product_id,name,list_price\nP1,Core,0\nP2,Minus,-1\n",
    "subscriptions": b"subscription_id,account_id,mrr,started_at\nS1,A1,-0.01,2024-01-01\n",
    "deals": b"deal_id,created_at,status,amount\nD3,2024-01-01,open,-5\n",
    "campaigns": b"campaign_id,name,cost\nC1,Spring,-1e3\n",
    "tickets": b"ticket_id,opened_at,contacts_until_resolved\nT2,2024-01-01,1\nT3,2024-01-01,0\nT4,2024-01-01,-2\n",
}


def test_values_outside_their_rules_are_refused(loaded: sa.Engine, tmp_path: Path) -> None:
    """Negative counts, prices, MRR, amounts and costs, probabilities above 1 and tickets
    resolved in zero contacts were accepted silently."""
    errors = refused(loaded, write_files(tmp_path / "b", VALUES), today=TODAY)
    assert sorted(errors) == sorted(
        [
            "campaigns.csv:2:cost: -1000 is out of range (must be ≥ 0)",
            "deals.csv:2:amount: -5 is out of range (must be ≥ 0)",
            "pipeline_stages.csv:4:probability: 1.5 is out of range (must be between 0 and 1)",
            "pipeline_stages.csv:5:probability: -0.1 is out of range (must be between 0 and 1)",
            "products.csv:3:list_price: -1 is out of range (must be ≥ 0)",
            "social_media.csv:2:followers: -1 is out of range (must be ≥ 0)",
            "social_media.csv:2:impressions: -2 is out of range (must be ≥ 0)",
            "social_media.csv:2:engagements: -3 is out of range (must be ≥ 0)",
            "social_media.csv:2:mentions: -4 is out of range (must be ≥ 0)",
            "subscriptions.csv:2:mrr: -0.01 is out of range (must be ≥ 0)",
            "tickets.csv:3:contacts_until_resolved: 0 is out of range (must be ≥ 1)",
            "tickets.csv:4:contacts_until_resolved: -2 is out of range (must be ≥ 1)",
            "web_traffic.csv:3:sessions: -5 is out of range (must be ≥ 0)",
            "web_traffic.csv:3:pageviews: -1 is out of range (must be ≥ 0)",
            "web_traffic.csv:3:impressions: -2 is out of range (must be ≥ 0)",
            "web_traffic.csv:3:clicks: -3 is out of range (must be ≥ 0)",
            "web_traffic.csv:3:signups: -4 is out of range (must be ≥ 0)",
        ]
    )


def test_refunds_and_cost_credits_may_be_negative(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {
        "payments": b"payment_id,account_id,paid_at,amount\nY1,A1,2024-01-01,-10\n",
        "costs": b"cost_id,incurred_on,category,amount\nK1,2024-01-01,marketing,-5\n",
    }
    report = import_paths(loaded, [write_files(tmp_path / "b", files)], today=TODAY)
    assert report.ok, report.render()


def test_every_value_rule_names_a_number_column() -> None:
    for (table, column), bounds in validation.VALUE_RULES.items():
        assert validation.column_kind(schema.metadata.tables[table].c[column]) in ("float", "integer")
        assert bounds.low is not None or bounds.high is not None
    for table, column in validation.SIGNED_COLUMNS:
        assert (table, column) not in validation.VALUE_RULES
    for table, earlier, later in validation.ORDER_RULES:
        columns = schema.metadata.tables[table].c
        assert {validation.column_kind(columns[earlier]), validation.column_kind(columns[later])} <= {
            "date",
            "timestamp",
        }


# --- order within a row (3) --------------------------------------------------------------------

ORDER = {
    "subscriptions": b"subscription_id,account_id,started_at,ended_at\n"
    b"S1,A1,2024-05-01,2024-01-01\nS2,A1,2024-05-01,2024-05-01\n",
    "deals": b"deal_id,created_at,closed_at,status\n"
    b"D3,2024-03-01T10:00:00Z,2024-02-29T23:00:00Z,won\n"
    # a close date without its time, on the day of creation: not before it
    b"D4,2024-03-01T10:00:00Z,2024-03-01,won\n",
    "tickets": b"ticket_id,opened_at,first_response_at,resolved_at\n"
    b"T2,2024-01-02 08:00,2024-01-02 07:59,2024-01-01\nT3,2024-01-02,2024-01-02,2024-01-03\n",
    "campaigns": b"campaign_id,name,started_on,ended_on\nC1,Spring,2024-04-01,2024-03-31\n",
}


def test_ends_before_their_starts_are_refused(loaded: sa.Engine, tmp_path: Path) -> None:
    errors = refused(loaded, write_files(tmp_path / "b", ORDER), today=TODAY)
    assert errors == [
        "campaigns.csv:2:ended_on: 2024-03-31 is before started_on 2024-04-01",
        "deals.csv:2:closed_at: 2024-02-29T23:00:00Z is before created_at 2024-03-01T10:00:00Z",
        "subscriptions.csv:2:ended_at: 2024-01-01 is before started_at 2024-05-01",
        "tickets.csv:2:first_response_at: 2024-01-02 07:59 is before opened_at 2024-01-02 08:00",
        "tickets.csv:2:resolved_at: 2024-01-01 is before opened_at 2024-01-02 08:00",
    ]


def test_a_date_out_of_the_window_is_not_also_out_of_order(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {
        "subscriptions": b"subscription_id,account_id,started_at,ended_at\nS1,A1,9999-01-01,2024-01-01\n"
    }
    assert refused(loaded, write_files(tmp_path / "b", files), today=TODAY) == [
        "subscriptions.csv:2:started_at: 9999-01-01 is after the latest accepted date 2026-06-15 (today + 1 year)"
    ]


def test_a_planned_end_in_2035_does_not_stretch_the_rollups(make_db, tmp_path: Path) -> None:
    """An allowed far-future ``ended_at`` leaves the roll-ups as large as without it."""
    accounts = "".join(f"A{i},Acme {i},SMB,2024-01-01\n" for i in range(20))
    subscriptions = "".join(f"S{i},A{i},10,2024-0{1 + i % 9}-01,\n" for i in range(20))
    files = {
        "accounts": ("account_id,name,segment,created_at\n" + accounts).encode(),
        "subscriptions": ("subscription_id,account_id,mrr,started_at,ended_at\n" + subscriptions).encode(),
    }
    counts = []
    for ended_at in (b"", b"2035-01-01"):
        engine = make_db("duckdb")
        planned = dict(
            files,
            subscriptions=files["subscriptions"].replace(
                b"S0,A0,10,2024-01-01,", b"S0,A0,10,2024-01-01," + ended_at
            ),
        )
        report = import_paths(engine, [write_files(tmp_path / f"b{len(counts)}", planned)], today=TODAY)
        assert report.ok, report.render()
        with engine.connect() as conn:
            counts.append(
                conn.execute(sa.select(sa.func.count()).select_from(rollups.CUSTOMER_BASE.table)).scalar_one()
            )
    assert counts[1] == counts[0] < 200
