"""The import's door against extreme, impossible and hostile values ("Hardening the data door").

Every malformed file is generated here as bytes and imported onto a database that already
holds a valid bundle (DuckDB, SQLite and PostgreSQL): the messages are exact
``file:row:column: reason`` lines, no driver error escapes, and the database is unchanged.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_data import validation
from crm_data.importing import import_paths
from crm_data.mappings.sources import read_text_table
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
