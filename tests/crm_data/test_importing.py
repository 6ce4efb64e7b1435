"""The CSV-bundle import: validation messages, all-or-nothing writes, upsert semantics.

Every malformed-bundle test imports onto a database that already holds a valid bundle
and compares the full contents of every table before and after.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.engines import make_engine
from crm_data.importing import (
    ImportIssue,
    TableInput,
    import_paths,
    import_tables,
    read_csv,
    validate_tables,
)
from crm_data.validation import MAX_LISTED_ERRORS, existing_tables
from kpis import Filters, customer_base, first_contact_resolution, revenue, rollups, survey_scores, win_rate
from kpis.core import period_starts
from tests.conftest import DB_KINDS, pg_scratch_schema_engine


def write_bundle(folder: Path, files: dict[str, str], newline: str = "\n", bom: bool = False) -> Path:
    """Write ``{table: csv text}`` as ``folder/<table>.csv`` (text dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    for table, text in files.items():
        body = textwrap.dedent(text).lstrip("\n").replace("\n", newline)
        (folder / f"{table}.csv").write_bytes(("\ufeff" if bom else "").encode() + body.encode("utf-8"))
    return folder


def snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every canonical table that exists, in a fixed order."""
    with engine.connect() as conn:
        present = existing_tables(conn)
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.columns))]
            for t in schema.TABLES
            if t.name in present
        }


BASE = {
    "accounts": """
        account_id,name,segment,created_at
        A1,Acme Inc,SMB,2024-03-01T09:30:00Z
        A2,Globex,Enterprise,2024-03-01T09:30:00+02:00
        """,
    "deals": """
        deal_id,account_id,amount,created_at,closed_at,status
        D1,A1,100.5,2024-03-01,,open
        D2,A2,2000,2024-03-02 10:00:00,2024-04-01T00:00:00Z,won
        """,
    "deal_stage_history": """
        deal_id,stage,entered_at
        D1,Lead,2024-03-01
        D2,Lead,2024-03-02 10:00:00
        D2,Closed Won,2024-04-01
        """,
    "tickets": """
        ticket_id,account_id,category,opened_at,contacts_until_resolved
        T1,A1,defect,2024-05-01,1
        """,
}


@pytest.fixture
def loaded(db: sa.Engine, tmp_path: Path) -> sa.Engine:
    """A database holding BASE."""
    report = import_paths(db, [write_bundle(tmp_path / "base", BASE)])
    assert report.ok, report.render()
    return db


def test_valid_bundle_is_imported_with_typed_values(loaded: sa.Engine) -> None:
    rows = snapshot(loaded)
    assert rows["accounts"] == [
        ("A1", "Acme Inc", "SMB", None, None, None, None, None, None, None, datetime(2024, 3, 1, 9, 30)),
        # +02:00 converted to UTC: 09:30 - 2 h = 07:30
        ("A2", "Globex", "Enterprise", None, None, None, None, None, None, None, datetime(2024, 3, 1, 7, 30)),
    ]
    assert rows["deals"] == [
        # ..., lost_reason, pipeline, amount_original, currency: none given
        (
            "D1",
            "A1",
            None,
            None,
            None,
            100.5,
            None,
            datetime(2024, 3, 1),
            None,
            "open",
            None,
            None,
            None,
            None,
        ),
        (
            "D2",
            "A2",
            None,
            None,
            None,
            2000.0,
            None,
            datetime(2024, 3, 2, 10),
            datetime(2024, 4, 1),
            "won",
            None,
            None,  # pipeline
            None,
            None,
        ),
    ]
    assert len(rows["deal_stage_history"]) == 3
    assert rows["tickets"][0][-1] == 1
    assert rows["users"] == []


# --- one test per validation error class: exact message, database unchanged --------------

MALFORMED = {
    "missing required column": (
        {"deals": "deal_id,account_id,created_at\nD3,A1,2024-01-01\n"},
        "deals.csv:1:status: required column is missing",
    ),
    "empty required value": (
        {"deals": "deal_id,account_id,created_at,status\nD3,A1,2024-01-01,open\nD4,A1,2024-01-01,\n"},
        "deals.csv:3:status: required value is empty",
    ),
    "bad number": (
        {"deals": "deal_id,created_at,status,amount\nD3,2024-01-01,open,12;5\n"},
        "deals.csv:2:amount: not a number: '12;5'",
    ),
    "bad integer": (
        {"tickets": "ticket_id,opened_at,contacts_until_resolved\nT2,2024-01-01,2\nT3,2024-01-01,1.5\n"},
        "tickets.csv:3:contacts_until_resolved: not an integer: '1.5'",
    ),
    "bad timestamp": (
        {"deals": "deal_id,created_at,status\nD3,03/01/2024,open\n"},
        "deals.csv:2:created_at: not an ISO 8601 timestamp: '03/01/2024'",
    ),
    "impossible date in a timestamp": (
        {"deals": "deal_id,created_at,status\nD3,2024-02-30,open\n"},
        "deals.csv:2:created_at: not an ISO 8601 timestamp: '2024-02-30'",
    ),
    "bad date": (
        {"campaigns": "campaign_id,name,started_on\nC1,Spring,2024-03-01T10:00:00Z\n"},
        "campaigns.csv:2:started_on: not an ISO 8601 date: '2024-03-01T10:00:00Z'",
    ),
    "bad boolean": (
        {"pipeline_stages": "stage,position,is_won\nLead,1,false\nWon,2,maybe\n"},
        "pipeline_stages.csv:3:is_won: not a boolean (true/false): 'maybe'",
    ),
    "bad enum": (
        {"deals": "deal_id,created_at,status\nD3,2024-01-01,pending\n"},
        "deals.csv:2:status: 'pending' is not one of: lost, open, won",
    ),
    "duplicate id": (
        {"deals": "deal_id,created_at,status\nD3,2024-01-01,open\nD4,2024-01-01,open\nD3,2024-01-02,won\n"},
        "deals.csv:4:deal_id: duplicate key 'D3' (first on line 2)",
    ),
    "duplicate composite key": (
        # the same instant written two ways is the same key
        {
            "deal_stage_history": "deal_id,stage,entered_at\nD1,Lead,2024-03-01T00:00:00Z\nD1,Lead,2024-03-01\n"
        },
        "deal_stage_history.csv:3:deal_id+stage+entered_at: duplicate key 'D1, Lead, 2024-03-01T00:00:00' "
        "(first on line 2)",
    ),
    "missing reference": (
        {"deals": "deal_id,account_id,created_at,status\nD3,A1,2024-01-01,open\nD4,A9,2024-01-01,open\n"},
        "deals.csv:3:account_id: 'A9' is not in accounts.account_id (neither in this import nor in the database)",
    ),
    "ragged row": (
        {"deals": "deal_id,created_at,status\nD3,2024-01-01,open,extra\n"},
        "deals.csv:2:: expected 3 fields, found 4",
    ),
    # ids are required like every required column (they reached the database as NULL, or
    # raised KeyError when the id column was missing)
    "empty id": (
        {"deals": "deal_id,account_id,created_at,status\nD3,A1,2024-01-01,open\n,A1,2024-01-01,open\n"},
        "deals.csv:3:deal_id: required value is empty",
    ),
    "blank id": (
        {"users": "user_id,name\nU1,Ann\n   ,Bob\n"},
        "users.csv:3:user_id: required value is empty",
    ),
    "missing id column": (
        {"deals": "account_id,created_at,status\nA1,2024-01-01,open\n"},
        "deals.csv:1:deal_id: required column is missing",
    ),
    "empty stage (a text primary key)": (
        {"pipeline_stages": "stage,position\nLead,1\n,2\n"},
        "pipeline_stages.csv:3:stage: required value is empty",
    ),
}


@pytest.fixture(scope="module", params=DB_KINDS)
def loaded_for_refusals(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[sa.Engine]:
    """A database holding BASE, one per kind for every malformed bundle: each of them is
    refused and must change nothing (its test compares every table before and after), so
    the next one finds BASE again (a refusal that wrote something fails its own test)."""
    folder = tmp_path_factory.mktemp(f"refusals-{request.param}")
    if request.param == "postgresql":
        engine = pg_scratch_schema_engine(request.getfixturevalue("pg_database_url"), "refusals")
    else:
        engine = make_engine(f"{request.param}:///{folder / f'db.{request.param}'}")
    try:
        schema.create_schema(engine)
        report = import_paths(engine, [write_bundle(folder / "base", BASE)])
        assert report.ok, report.render()
        yield engine
    finally:
        engine.dispose()


@pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_bundle_is_rejected_with_its_message_and_changes_nothing(
    loaded_for_refusals: sa.Engine, tmp_path: Path, case: str
) -> None:
    loaded = loaded_for_refusals
    files, message = MALFORMED[case]
    # a valid accounts.csv with a changed row rides along: it must not be written either
    files = {"accounts": "account_id,name,created_at\nA1,Renamed,2024-03-01\nA3,New,2024-03-01\n", **files}
    before = snapshot(loaded)

    report = import_paths(loaded, [write_bundle(tmp_path / "bad", files)])

    assert not report.ok
    assert [str(e) for e in report.errors] == [message]
    assert "nothing was imported" in report.render()
    assert snapshot(loaded) == before


def test_unknown_column_is_a_warning_and_not_imported(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {"users": "user_id,name,colour\nU1,Ann,red\n"}
    report = import_paths(loaded, [write_bundle(tmp_path / "b", files)])
    assert report.ok
    assert [str(w) for w in report.warnings] == ["users.csv:1:colour: unknown column, not imported"]
    assert report.errors == []
    assert snapshot(loaded)["users"] == [("U1", "Ann", None, None, None, None)]


def test_several_errors_are_listed_by_line_then_capped(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    bad = "\n".join(f"D{i},2024-01-01,nope," for i in range(60))
    files = {"deals": "deal_id,created_at,status,amount\n" + bad + "\nD1,2024-01-01,open,x\n"}
    report = import_paths(engine, [write_bundle(tmp_path / "b", files)])
    # 60 bad enums + 1 bad number + 1 duplicate D1 (D1 is on line 3 and line 62)
    assert report.error_count == 62
    assert len(report.errors) == MAX_LISTED_ERRORS
    assert str(report.errors[0]) == "deals.csv:2:status: 'nope' is not one of: lost, open, won"
    assert [e.row for e in report.errors] == sorted(e.row for e in report.errors)
    assert f"... and {62 - MAX_LISTED_ERRORS} more" in report.render()


def test_scores_outside_their_survey_scale_are_rejected(make_db, tmp_path: Path) -> None:
    """NPS 0–10 in whole points, CES 1–7 (DESIGN.md); CSAT scales vary and pass."""
    engine = make_db("duckdb")
    rows = [
        "R1,nps,0,2024-01-01",  # the NPS ends are fine
        "R2,nps,10,2024-01-01",
        "R3,nps,11,2024-01-01",
        "R4,nps,7.5,2024-01-01",
        "R5,nps,-1,2024-01-01",
        "R6,ces,1,2024-01-01",
        "R7,ces,7,2024-01-01",
        "R8,ces,0,2024-01-01",
        "R9,ces,7.5,2024-01-01",
        "R10,ces,4.5,2024-01-01",  # CES may be a mean of items: not only whole points
        "R11,csat,9,2024-01-01",
    ]
    files = {"survey_responses": "response_id,survey,score,responded_at\n" + "\n".join(rows) + "\n"}
    report = import_paths(engine, [write_bundle(tmp_path / "b", files)])
    assert not report.ok
    assert [str(e) for e in report.errors] == [
        "survey_responses.csv:4:score: 11 is outside the nps scale 0–10 in whole points",
        "survey_responses.csv:5:score: 7.5 is outside the nps scale 0–10 in whole points",
        "survey_responses.csv:6:score: -1 is outside the nps scale 0–10 in whole points",
        "survey_responses.csv:9:score: 0 is outside the ces scale 1–7",
        "survey_responses.csv:10:score: 7.5 is outside the ces scale 1–7",
    ]
    assert snapshot(engine)["survey_responses"] == []


def test_line_numbers_count_quoted_line_breaks_and_blank_lines(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    files = {
        "survey_responses": (
            'response_id,survey,score,comment,responded_at\nR1,nps,9,"two\nlines",2024-01-01\n\n'
            "R2,nps,x,,2024-01-01\n"
        )
    }
    report = import_paths(engine, [write_bundle(tmp_path / "b", files)])
    assert [str(e) for e in report.errors] == ["survey_responses.csv:5:score: not a number: 'x'"]


def test_bom_crlf_case_and_blanks_are_handled(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    files = {"accounts": "Account_ID, Name ,created_at\nA1,Acme,2024-03-01\nA2,  ,2024-03-01\n"}
    folder = write_bundle(tmp_path / "b", files, newline="\r\n", bom=True)
    report = import_paths(engine, [folder])
    # the blank name is empty; the header matched despite the BOM, case and blanks
    assert [str(e) for e in report.errors] == ["accounts.csv:3:name: required value is empty"]
    (folder / "accounts.csv").write_bytes(b"\xef\xbb\xbfaccount_id,name,created_at\r\nA1,Acme,2024-03-01\r\n")
    assert import_paths(engine, [folder]).ok
    assert snapshot(engine)["accounts"][0][:2] == ("A1", "Acme")


def test_reference_to_a_parent_already_in_the_database(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {"subscriptions": "subscription_id,account_id,started_at\nS1,A2,2024-01-01\n"}
    report = import_paths(loaded, [write_bundle(tmp_path / "b", files)])
    assert report.ok, report.render()
    assert snapshot(loaded)["subscriptions"] == [("S1", "A2", None, None, datetime(2024, 1, 1), None, None)]


def test_bundle_with_only_some_tables_leaves_the_others_alone(loaded: sa.Engine, tmp_path: Path) -> None:
    before = snapshot(loaded)
    report = import_paths(
        loaded, [write_bundle(tmp_path / "b", {"products": "product_id,name\nP1,Widget\n"})]
    )
    assert report.ok and report.rows == {"products": 1}
    after = snapshot(loaded)
    assert after.pop("products") == [("P1", "Widget", None, None)]
    before.pop("products")
    assert after == before


def test_reimporting_the_same_bundle_changes_nothing(loaded: sa.Engine, tmp_path: Path) -> None:
    before = snapshot(loaded)
    report = import_paths(loaded, [write_bundle(tmp_path / "again", BASE)])
    assert report.ok
    assert snapshot(loaded) == before
    assert report.written == {"accounts": 0, "deals": 0, "tickets": 0, "deal_stage_history": 0}


def test_upsert_updates_changed_rows_and_keeps_absent_columns(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {
        # D1 changes amount and status; D3 is new; D2 is absent (kept); closed_at is not in the
        # file, so D1 keeps its (empty) closed_at and D2 its 2024-04-01
        "deals": "deal_id,account_id,amount,created_at,status\nD1,A1,150,2024-03-01,won\nD3,A2,1,2024-06-01,lost\n"
    }
    report = import_paths(loaded, [write_bundle(tmp_path / "b", files)])
    assert report.ok
    assert report.written == {"deals": 2}
    assert snapshot(loaded)["deals"] == [
        (
            "D1",
            "A1",
            None,
            None,
            None,
            150.0,
            None,
            datetime(2024, 3, 1),
            None,
            "won",
            None,
            None,
            None,
            None,
        ),
        (
            "D2",
            "A2",
            None,
            None,
            None,
            2000.0,
            None,
            datetime(2024, 3, 2, 10),
            datetime(2024, 4, 1),
            "won",
            None,
            None,  # pipeline
            None,
            None,
        ),
        ("D3", "A2", None, None, None, 1.0, None, datetime(2024, 6, 1), None, "lost", None, None, None, None),
    ]


def test_moving_a_deal_with_stage_history_to_another_account(loaded: sa.Engine, tmp_path: Path) -> None:
    files = {"deals": "deal_id,account_id,created_at,status\nD1,A2,2024-03-01,open\n"}
    before = snapshot(loaded)
    report = import_paths(loaded, [write_bundle(tmp_path / "b", files)])
    # works on every database: DuckDB gets no foreign-key DDL (it would refuse to update a
    # referenced row's foreign-key column); the importer checks the references itself
    assert report.ok, report.render()
    assert [r[:2] for r in snapshot(loaded)["deals"]] == [("D1", "A2"), ("D2", "A2")]
    assert snapshot(loaded)["deal_stage_history"] == before["deal_stage_history"]


def test_campaign_responses_replace_those_of_the_campaigns_in_the_file(db: sa.Engine, tmp_path: Path) -> None:
    campaigns = "campaign_id,name\nC1,Spring\nC2,Autumn\n"
    first = {
        "campaigns": campaigns,
        "campaign_responses": "campaign_id,contact_id,sent_at\nC1,K1,2024-01-01\nC1,K2,2024-01-01\nC2,K1,2024-02-01\n",
    }
    assert import_paths(db, [write_bundle(tmp_path / "one", first)]).ok
    assert import_paths(db, [write_bundle(tmp_path / "one", first)]).ok  # idempotent
    assert len(snapshot(db)["campaign_responses"]) == 3
    second = {"campaign_responses": "campaign_id,contact_id,sent_at\nC1,K3,2024-03-01\n"}
    assert import_paths(db, [write_bundle(tmp_path / "two", second)]).ok
    rows = {(r[0], r[2]) for r in snapshot(db)["campaign_responses"]}
    # C1's responses are replaced by the new file's; C2's are untouched
    assert rows == {("C1", "K3"), ("C2", "K1")}


#: A valid bundle whose deal the strict ``deals`` table below refuses (amount 5,000 > 1,000).
LARGE_AMOUNT_BUNDLE = {
    "accounts": "account_id,name,created_at\nA1,Acme,2024-03-01\n",
    "deals": "deal_id,account_id,amount,created_at,status\nD1,A1,5000,2024-03-01,open\n",
}


def _create_deals_refusing_large_amounts(conn: sa.Connection) -> None:
    """A ``deals`` table with a CHECK the canonical schema does not have: the database, not
    the validation, rejects the bundle above."""
    strict = sa.MetaData()
    sa.Table(
        "deals",
        strict,
        *(sa.Column(c.name, c.type, primary_key=c.primary_key) for c in schema.deals.columns),
        sa.CheckConstraint("amount <= 1000", name="small_amount"),
    ).create(conn)


def test_failed_write_rolls_back_everything(db: sa.Engine, tmp_path: Path) -> None:
    """A database error after validation (here a CHECK the canonical schema does not have)
    rolls back the tables already written in the same transaction."""
    with db.begin() as conn:
        schema.deal_stage_history.drop(conn)
        schema.deals.drop(conn)
        _create_deals_refusing_large_amounts(conn)
    files = LARGE_AMOUNT_BUNDLE
    report = import_paths(db, [write_bundle(tmp_path / "b", files)])
    assert not report.ok
    assert "the database rejected the import" in report.errors[0].reason
    assert snapshot(db)["accounts"] == []


@pytest.mark.parametrize("kind", ["duckdb", "sqlite", "postgresql"])
def test_failed_write_into_a_fresh_database_leaves_no_tables(make_db, tmp_path: Path, kind: str) -> None:
    """The schema is created in the import's transaction: a failure takes it back too."""
    engine = make_db(kind, create=False)
    with engine.begin() as conn:
        _create_deals_refusing_large_amounts(conn)
    files = LARGE_AMOUNT_BUNDLE
    report = import_paths(engine, [write_bundle(tmp_path / "b", files)])
    assert not report.ok
    assert "the database rejected the import" in report.errors[0].reason  # not the validation
    with engine.connect() as conn:
        assert existing_tables(conn) == {"deals"}


def test_invalid_import_into_a_fresh_database_creates_nothing(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb", create=False)
    report = import_paths(engine, [write_bundle(tmp_path / "b", {"deals": "deal_id,status\nD1,open\n"})])
    assert not report.ok
    with engine.connect() as conn:
        assert existing_tables(conn) == set()


def test_import_creates_the_missing_schema(make_db, tmp_path: Path) -> None:
    engine = make_db("sqlite", create=False)
    report = import_paths(engine, [write_bundle(tmp_path / "b", {"users": "user_id,name\nU1,Ann\n"})])
    assert report.ok, report.render()
    with engine.connect() as conn:
        assert existing_tables(conn) == set(schema.TABLE_NAMES)


def test_validate_tables_previews_without_writing(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    item, problems = read_csv(write_bundle(tmp_path / "b", {"users": "user_id,name\nU1,Ann\n"}) / "users.csv")
    assert problems == [] and item is not None
    report = validate_tables(engine, [item])
    assert report.ok and report.rows == {"users": 1} and not report.committed
    assert snapshot(engine)["users"] == []


def test_import_tables_accepts_typed_frames_and_reports_progress(db: sa.Engine) -> None:
    accounts = pd.DataFrame(
        {
            "account_id": ["A1"],
            "name": ["Acme"],
            "created_at": pd.to_datetime(["2024-03-01T10:00:00+01:00"]),  # tz-aware: stored as 09:00 UTC
        }
    )
    stages = pd.DataFrame({"stage": ["Lead"], "position": [1], "probability": [0.1], "is_won": [False]})
    costs = pd.DataFrame(
        {"cost_id": ["K1"], "incurred_on": [date(2024, 3, 1)], "category": ["Loyalty"], "amount": [12.5]}
    )
    calls: list[tuple[float, str]] = []
    report = import_tables(
        db,
        [
            TableInput("accounts", accounts, "crm:accounts"),
            TableInput("pipeline_stages", stages, "crm:stages"),
            TableInput("costs", costs, "crm:costs"),
        ],
        progress=lambda fraction, message: calls.append((fraction, message)),
    )
    assert report.ok, report.render()
    rows = snapshot(db)
    assert rows["accounts"][0][-1] == datetime(2024, 3, 1, 9)
    assert rows["pipeline_stages"] == [("Lead", 1, 0.1, None, False)]
    assert rows["costs"] == [("K1", date(2024, 3, 1), "loyalty", None, None, 12.5)]
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_table_input_lines_name_the_source_rows(make_db) -> None:
    engine = make_db("duckdb")
    frame = pd.DataFrame({"user_id": ["U1", "U2"], "name": ["Ann", None]})
    report = validate_tables(engine, [TableInput("users", frame, "export.xlsx", lines=[10, 12])])
    assert report.errors == [ImportIssue("export.xlsx", 12, "name", "required value is empty")]


def test_typed_inputs_without_ids_are_refused_before_the_database(db: sa.Engine) -> None:
    """A missing id in a typed frame (a mapping's output) is reported on its source line; a
    frame without its id column names the column (it raised KeyError: 'deal_id')."""
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", None, "  "],
            "name": ["Acme", "Beta", "Gamma"],
            "created_at": pd.to_datetime(["2024-01-01"] * 3),
        }
    )
    deals = pd.DataFrame({"created_at": pd.to_datetime(["2024-01-01"]), "status": ["open"]})
    report = import_tables(
        db,
        [
            TableInput("accounts", accounts, "crm:accounts", lines=[5, 9, 12]),
            TableInput("deals", deals, "crm:deals"),
        ],
    )
    assert [str(e) for e in report.errors] == [
        "crm:accounts:9:account_id: required value is empty",
        "crm:accounts:12:account_id: required value is empty",
        "crm:deals:1:deal_id: required column is missing",
    ]
    assert snapshot(db)["accounts"] == [] and snapshot(db)["deals"] == []


def test_bundle_paths_problems(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    folder = write_bundle(tmp_path / "b", {"notes": "a\n1\n", "users": "user_id,name\nU1,Ann\n"})
    report = import_paths(engine, [folder, tmp_path / "missing"])
    assert not report.ok
    assert [str(e) for e in report.errors] == [f"{tmp_path / 'missing'}: no such file or folder"]
    assert [str(w) for w in report.warnings] == ["notes.csv: not a canonical table name: file ignored"]
    assert snapshot(engine)["users"] == []
    # explicit files work too
    assert import_paths(engine, [folder / "users.csv"]).ok


def test_unreadable_files_are_errors_with_their_line(make_db, tmp_path: Path) -> None:
    engine = make_db("duckdb")
    folder = tmp_path / "b"
    folder.mkdir()
    (folder / "users.csv").write_bytes("user_id,name\nU1,Ann\nU2,Jürgen\n".encode("latin-1"))
    (folder / "products.csv").write_bytes(b"")
    report = import_paths(engine, [folder])
    assert [str(e) for e in report.errors] == [
        "products.csv:1:: the file is empty: a header row is required",
        "users.csv:3:: not UTF-8 text (save the file as UTF-8)",
    ]
    assert snapshot(engine)["users"] == []


# --- KPI roll-ups: rebuilt with the data, in the import's transaction -----------------------

#: Hand-checked, by month from January 2024: revenue Jan Y1 100 + Y2 50 = 150 (payers A1,
#: A2), Feb Y3 −10 (a refund: no payer), Mar 0. Active at 1 Jan: A1 (S1 starts exactly
#: then); 1 Feb: A1, A2; 1 Mar: A1 (S2 ends exactly then); 1 Apr: A1 -> at start 1, 2, 1;
#: churned 0, 1, 0. Retention costs: K1 12.5 in February.
#: NPS: Jan R1 A1 9 (promoter), Feb R2 A2 6 (detractor, 1 Feb 00:00), Mar R3 (no account)
#: 10 -> responses 1, 1, 1, NPS 100, −100, 100; CES: Feb C1 A1 5 (easy) -> mean 5, easy 1/1.
#: Deals: D1 A1 won 1 Feb 00:00, D2 A2 lost 1 Mar 00:00, D3 A2 open created 20 Jan ->
#: won 0, 1, 0; lost 0, 0, 1; open created 1, 0, 0. Tickets by resolved_at: Jan T1 A1 (1
#: contact), Mar T2 A2 (2 contacts, 1 Mar 00:00); T3 A1 unresolved -> resolved 1, 0, 1,
#: first contact 1, 0, 0.
ROLLUP_BUNDLE = {
    "accounts": """
        account_id,name,segment,region,created_at
        A1,Acme Inc,SMB,EU,2024-01-01
        A2,Globex,Enterprise,NA,2024-01-01
        """,
    "subscriptions": """
        subscription_id,account_id,mrr,started_at,ended_at
        S1,A1,100,2024-01-01,
        S2,A2,50,2024-01-15,2024-03-01T00:00:00Z
        """,
    "payments": """
        payment_id,account_id,paid_at,amount
        Y1,A1,2024-01-01T00:00:00Z,100
        Y2,A2,2024-01-20 12:00:00,50
        Y3,A2,2024-02-20,-10
        """,
    "costs": """
        cost_id,incurred_on,category,purpose,account_id,amount
        K1,2024-02-01,loyalty,retention,A1,12.5
        """,
    "survey_responses": """
        response_id,account_id,survey,score,responded_at
        R1,A1,nps,9,2024-01-10
        R2,A2,nps,6,2024-02-01T00:00:00Z
        R3,,nps,10,2024-03-05
        C1,A1,ces,5,2024-02-15
        """,
    "deals": """
        deal_id,account_id,created_at,closed_at,status
        D1,A1,2024-01-05,2024-02-01T00:00:00Z,won
        D2,A2,2024-01-10,2024-03-01,lost
        D3,A2,2024-01-20,,open
        """,
    "tickets": """
        ticket_id,account_id,opened_at,resolved_at,contacts_until_resolved
        T1,A1,2024-01-02,2024-01-03,1
        T2,A2,2024-02-27,2024-03-01T00:00:00Z,2
        T3,A1,2024-03-10,,
        """,
}
#: The KPIs that read the roll-ups (tests/kpis/test_rollups.py checks them in depth).
ROLLUP_KPIS = (customer_base, revenue, survey_scores, win_rate, first_contact_resolution)
Q1_2024 = Filters("2024-01-01", "2024-04-01")


def rollup_snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of the roll-up tables and their state (refreshed_at included; not the
    state of the stored stage visits, tests/kpis/test_stage_visits.py's)."""
    state = rollups.state
    mine = state.c.rollup.in_([r.name for r in rollups.ROLLUPS])
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).where(*where).order_by(*t.columns))]
            for t, where in ((state, [mine]), *((r.table, []) for r in rollups.ROLLUPS))
        }


def rolled_up_revenue(engine: sa.Engine, f: Filters = Q1_2024) -> dict | None:
    with engine.connect() as conn:
        return rollups.read(conn, rollups.REVENUE, f, "month", period_starts(f.start, f.end, "month"))


def assert_rollups_equal_the_tables(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, f: Filters) -> None:
    """Every KPI that reads the roll-ups, read from them, equals the direct path
    (CRM_ROLLUPS=off); and it did read them."""
    periods = period_starts(f.start, f.end, "month")
    with engine.connect() as conn:
        assert None not in (rollups.read(conn, r, f, "month", periods) for r in rollups.ROLLUPS)
    for kpi in ROLLUP_KPIS:
        monkeypatch.delenv("CRM_ROLLUPS", raising=False)
        rolled = kpi(engine, f, "month")
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        direct = kpi(engine, f, "month")
        monkeypatch.delenv("CRM_ROLLUPS")
        pd.testing.assert_frame_equal(
            rolled, direct, check_exact=False, rtol=1e-9, atol=1e-9, obj=kpi.__name__
        )


@pytest.fixture
def with_rollups(db: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> sa.Engine:
    """A database holding ROLLUP_BUNDLE, imported (so its roll-ups were built by the import)."""
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    report = import_paths(db, [write_bundle(tmp_path / "rollups", ROLLUP_BUNDLE)])
    assert report.ok, report.render()
    return db


def test_import_builds_the_rollups(with_rollups: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    state = rollup_snapshot(with_rollups)[rollups.state.name]
    # covered: January 2024 (first start, payment) to December of the current year (UTC)
    this_year = datetime.now(UTC).year
    assert [row[:3] for row in state] == [
        (r.name, 202401, this_year * 100 + 12) for r in sorted(rollups.ROLLUPS, key=lambda r: r.name)
    ]
    found = rolled_up_revenue(with_rollups)
    assert found is not None
    assert {p.month: row for p, row in found.items()} == {1: (2, 150.0, 150.0, 0.0), 2: (0, -10.0, 0.0, 10.0)}
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024)
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024.replace(segments=["SMB"]))
    base = customer_base(with_rollups, Q1_2024, "month")
    assert list(base["customers_at_start"]) == [1, 2, 1]
    assert list(base["churned"]) == [0, 1, 0]
    assert base["retention_costs"].tolist() == pytest.approx([0.0, 12.5, 0.0])
    scores = survey_scores(with_rollups, Q1_2024, "month")
    assert scores["nps_responses"].tolist() == [1, 1, 1]
    assert scores["nps"].tolist() == pytest.approx([100.0, -100.0, 100.0])
    assert scores["ces_responses"].tolist() == [0, 1, 0]
    assert scores["share_easy"].tolist()[1] == 1.0
    deals = win_rate(with_rollups, Q1_2024, "month")
    assert (deals["won"].tolist(), deals["lost"].tolist(), deals["open_created"].tolist()) == (
        [0, 1, 0],
        [0, 0, 1],
        [1, 0, 0],
    )
    tickets = first_contact_resolution(with_rollups, Q1_2024, "month")
    assert (tickets["resolved"].tolist(), tickets["first_contact"].tolist()) == ([1, 0, 1], [1, 0, 0])
    # SMB (A1): R1, C1; D1; T1 -- not R3 (no account)
    smb = Q1_2024.replace(segments=["SMB"])
    assert survey_scores(with_rollups, smb, "month")["nps_responses"].tolist() == [1, 0, 0]
    assert win_rate(with_rollups, smb, "month")["won"].tolist() == [0, 1, 0]
    assert first_contact_resolution(with_rollups, smb, "month")["resolved"].tolist() == [1, 0, 0]


def test_importing_a_changed_payment_rebuilds_the_rollups(
    with_rollups: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Y2 50 -> 80 and a new subscription for A1: January revenue 150 -> 180
    files = {
        "payments": "payment_id,account_id,paid_at,amount\nY2,A2,2024-01-20 12:00:00,80\n",
        "subscriptions": "subscription_id,account_id,mrr,started_at\nS3,A1,20,2024-02-10\n",
    }
    report = import_paths(with_rollups, [write_bundle(tmp_path / "changed", files)])
    assert report.ok, report.render()
    assert report.written == {"payments": 1, "subscriptions": 1}
    found = rolled_up_revenue(with_rollups)
    assert found is not None
    assert found[pd.Timestamp("2024-01-01")] == (2, 180.0, 180.0, 0.0)
    assert revenue(with_rollups, Q1_2024, "month")["revenue"].tolist() == pytest.approx([180.0, -10.0, 0.0])
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024)
    # A1's MRR 100 -> 120 between 1 Feb and 1 Mar: expansion 20 in February
    assert customer_base(with_rollups, Q1_2024, "month")["expansion"].tolist() == pytest.approx(
        [0.0, 20.0, 0.0]
    )


def test_rejected_import_leaves_the_rollups_alone(with_rollups: sa.Engine, tmp_path: Path) -> None:
    before = rollup_snapshot(with_rollups)
    payments = snapshot(with_rollups)["payments"]
    # a changed amount (valid) and a payment of an unknown account (invalid)
    files = {
        "payments": "payment_id,account_id,paid_at,amount\nY2,A2,2024-01-20 12:00:00,80\nY4,A9,2024-01-05,1\n"
    }
    report = import_paths(with_rollups, [write_bundle(tmp_path / "bad", files)])
    assert not report.ok
    assert [str(e) for e in report.errors] == [
        "payments.csv:3:account_id: 'A9' is not in accounts.account_id (neither in this import nor in the database)"
    ]
    assert rollup_snapshot(with_rollups) == before
    assert snapshot(with_rollups)["payments"] == payments
    assert rolled_up_revenue(with_rollups)[pd.Timestamp("2024-01-01")] == (2, 150.0, 150.0, 0.0)


def test_a_failing_rollup_refresh_rolls_back_the_data_too(
    with_rollups: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh runs in the import's transaction: when the database rejects it (here a
    statement on a missing table after the real refresh), the payments are not changed either."""
    before, payments = rollup_snapshot(with_rollups), snapshot(with_rollups)["payments"]
    real_update = rollups.update

    def update_then_fail(conn: sa.Connection, change: object) -> list[str]:
        written = real_update(conn, change)
        conn.execute(sa.text("SELECT * FROM no_such_table_after_the_refresh"))
        return written

    monkeypatch.setattr(rollups, "update", update_then_fail)
    files = {"payments": "payment_id,account_id,paid_at,amount\nY2,A2,2024-01-20 12:00:00,80\n"}
    report = import_paths(with_rollups, [write_bundle(tmp_path / "changed", files)])
    assert not report.ok
    assert "the database rejected the import" in report.errors[0].reason
    assert snapshot(with_rollups)["payments"] == payments
    assert rollup_snapshot(with_rollups) == before


def counting_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The roll-ups refreshed (whole or the periods touched) from now on (still refreshing)."""
    refreshed: list[str] = []
    real_record = rollups._record

    def counting_record(conn: sa.Connection, rollup: rollups.Rollup, *args: object) -> int:
        refreshed.append(rollup.name)
        return real_record(conn, rollup, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(rollups, "_record", counting_record)
    return refreshed


#: Tables the roll-ups do not summarise, one row each.
NOT_SUMMARISED = {
    "users": "user_id,name\nU1,Ann\n",
    "products": "product_id,name\nP1,Core\n",
    "pipeline_stages": "stage,position\nLead,1\n",
}


def test_import_of_tables_the_rollups_do_not_summarise_keeps_them(
    with_rollups: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not set(NOT_SUMMARISED) & {t.name for t in rollups.SOURCES}
    refreshed = counting_refreshes(monkeypatch)
    before = rollup_snapshot(with_rollups)
    report = import_paths(with_rollups, [write_bundle(tmp_path / "other", NOT_SUMMARISED)])
    assert report.ok, report.render()
    assert report.written == {name: 1 for name in NOT_SUMMARISED}
    assert refreshed == [] and rollup_snapshot(with_rollups) == before
    # re-importing the same data changes no row: no refresh either
    assert import_paths(with_rollups, [write_bundle(tmp_path / "same", ROLLUP_BUNDLE)]).ok
    assert refreshed == []
    # an account's dimension changes: the roll-ups follow (A1 moves from SMB to Enterprise)
    files = {"accounts": "account_id,name,segment,created_at\nA1,Acme Inc,Enterprise,2024-01-01\n"}
    assert import_paths(with_rollups, [write_bundle(tmp_path / "moved", files)]).ok
    assert sorted(refreshed) == sorted(r.name for r in rollups.ROLLUPS)  # every one, whole
    smb = Q1_2024.replace(segments=["SMB"])
    assert revenue(with_rollups, smb, "month")["revenue"].tolist() == [0.0, 0.0, 0.0]
    assert survey_scores(with_rollups, smb, "month")["nps_responses"].tolist() == [0, 0, 0]
    assert win_rate(with_rollups, smb, "month")["won"].tolist() == [0, 0, 0]
    assert first_contact_resolution(with_rollups, smb, "month")["resolved"].tolist() == [0, 0, 0]
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024.replace(segments=["Enterprise"]))


#: A new record of each table of the survey-score, win-rate and FCR roll-ups, and what the
#: KPI reads from the rebuilt roll-up in January to March 2024 (ROLLUP_BUNDLE's numbers plus it).
NEW_RECORDS = {
    "survey_responses": (
        "response_id,account_id,survey,score,responded_at\nC9,A2,ces,4,2024-03-20\n",
        survey_scores,
        "ces_responses",
        [0, 1, 1],
    ),
    "deals": (
        "deal_id,account_id,created_at,closed_at,status\nD9,A1,2024-02-01,2024-03-10,won\n",
        win_rate,
        "won",
        [0, 1, 1],
    ),
    "tickets": (
        "ticket_id,account_id,opened_at,resolved_at,contacts_until_resolved\nT9,A2,2024-03-02,2024-03-03,1\n",
        first_contact_resolution,
        "first_contact",
        [1, 0, 1],
    ),
}


@pytest.mark.parametrize("table", NEW_RECORDS)
def test_importing_a_survey_response_deal_or_ticket_rebuilds_the_rollups(
    with_rollups: sa.Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, table: str
) -> None:
    assert table in {t.name for t in rollups.SOURCES}
    text, kpi, measure, expected = NEW_RECORDS[table]
    refreshed = counting_refreshes(monkeypatch)
    report = import_paths(with_rollups, [write_bundle(tmp_path / "new", {table: text})])
    assert report.ok, report.render()
    assert report.written == {table: 1}
    assert refreshed == [r.name for r in rollups.ROLLUPS if r.records.name == table]
    assert kpi(with_rollups, Q1_2024, "month")[measure].tolist() == expected
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024)
    assert_rollups_equal_the_tables(with_rollups, monkeypatch, Q1_2024.replace(segments=["Enterprise"]))


def test_an_import_rebuilds_only_the_rollups_of_the_tables_it_changed(
    with_rollups: sa.Engine, tmp_path: Path
) -> None:
    """A ticket import (resolved in March 2024) refreshes first-contact resolution and
    nothing else: a win-rate roll-up tampered with beforehand stays tampered, with its
    state; the FCR one is refreshed in the periods the ticket touches (March 2024 from the
    tickets, its tampering undone; Q1 2024 and 2024 as the sums of their month rows) and
    keeps its other periods."""
    with with_rollups.begin() as conn:
        for rollup, measure in ((rollups.WIN_RATE, "won"), (rollups.FIRST_CONTACT_RESOLUTION, "resolved")):
            conn.execute(rollup.table.update().values({measure: rollup.table.c[measure] + 100}))
    before = rollup_snapshot(with_rollups)
    files = {"tickets": NEW_RECORDS["tickets"][0]}
    assert import_paths(with_rollups, [write_bundle(tmp_path / "ticket", files)]).ok
    after = rollup_snapshot(with_rollups)
    untouched = [r.table.name for r in rollups.ROLLUPS if r is not rollups.FIRST_CONTACT_RESOLUTION]
    assert {name: after[name] for name in untouched} == {name: before[name] for name in untouched}
    assert after[rollups.FIRST_CONTACT_RESOLUTION.name] != before[rollups.FIRST_CONTACT_RESOLUTION.name]
    states = {name: rows for name, *rows in before[rollups.state.name]}
    assert [row for row in after[rollups.state.name] if row[0] != rollups.FIRST_CONTACT_RESOLUTION.name] == [
        (name, *rows) for name, rows in states.items() if name != rollups.FIRST_CONTACT_RESOLUTION.name
    ]
    assert win_rate(with_rollups, Q1_2024, "month")["won"].min() >= 100  # still the tampered roll-up
    fcr = first_contact_resolution(with_rollups, Q1_2024, "month")["resolved"]
    assert fcr.iloc[2] < 100 and fcr.iloc[2] > 0  # March: refreshed
    assert fcr.iloc[0] >= 100 and fcr.iloc[1] == 0  # January (no ticket in February): still tampered
    # the quarter: refreshed as the sum of its month rows as they stand
    assert first_contact_resolution(with_rollups, Q1_2024, "quarter")["resolved"].iloc[0] == fcr.sum()


def test_first_import_without_rollup_data_leaves_no_state(make_db, tmp_path: Path) -> None:
    engine = make_db("sqlite")
    assert import_paths(engine, [write_bundle(tmp_path / "b", {"users": "user_id,name\nU1,Ann\n"})]).ok
    snap = rollup_snapshot(engine)  # the roll-up tables exist, empty, with no state
    assert all(rows == [] for rows in snap.values())
    assert rolled_up_revenue(engine) is None
