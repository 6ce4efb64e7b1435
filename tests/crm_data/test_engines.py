"""crm_data.engines: the default database of a checkout and of an installed package, reading
without creating files, and DuckDB's file lock as ``DatabaseBusyError``.

DuckDB lets one process write a file or any number of processes read it. Measured with
duckdb 2.0 (a second process holding the file, like the dashboard or a running import):

=================  ======================  ==========================
this process       holder reads            holder writes
=================  ======================  ==========================
reads (read_only)  works                   lock error -> busy
writes             lock error -> busy      lock error -> busy
=================  ======================  ==========================
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.engines import (
    DatabaseBusyError,
    database_url,
    default_db_path,
    is_source_checkout,
    make_engine,
)
from kpis import Filters, win_rate
from tests.conftest import ROOT
from tests.kpis import fixtures
from tests.servers import duckdb_held_open

F = Filters("2024-01-01", "2024-05-01")


# --- the default database ------------------------------------------------------------------


def test_a_source_checkout_keeps_its_database_in_the_project_folder() -> None:
    assert is_source_checkout(ROOT)
    assert default_db_path() == ROOT / "data" / "crm.duckdb"
    assert default_db_path(ROOT, environ={"XDG_DATA_HOME": "/elsewhere"}) == ROOT / "data" / "crm.duckdb"


def _site_packages(tmp_path: Path) -> Path:
    """A folder laid out like site-packages: the packages and dashboard.py, no pyproject.toml."""
    folder = tmp_path / "site-packages"
    (folder / "crm_data").mkdir(parents=True)
    (folder / "dashboard.py").write_text("")
    return folder


def test_an_installed_package_uses_the_xdg_data_folder(tmp_path: Path) -> None:
    installed = _site_packages(tmp_path)
    assert not is_source_checkout(installed)
    data_home = tmp_path / "xdg"
    assert default_db_path(installed, {"XDG_DATA_HOME": str(data_home)}) == (
        data_home / "crm-insights" / "crm.duckdb"
    )
    home_default = Path.home() / ".local" / "share" / "crm-insights" / "crm.duckdb"
    assert default_db_path(installed, {}) == home_default
    # the XDG specification: an empty or relative XDG_DATA_HOME is ignored
    assert default_db_path(installed, {"XDG_DATA_HOME": ""}) == home_default
    assert default_db_path(installed, {"XDG_DATA_HOME": "relative/dir"}) == home_default


def test_a_folder_with_only_a_pyproject_is_not_this_checkout(tmp_path: Path) -> None:
    folder = _site_packages(tmp_path)
    (folder / "dashboard.py").unlink()
    (folder / "pyproject.toml").write_text("")  # some other project's
    assert not is_source_checkout(folder)


def test_database_url_prefers_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    assert database_url() == f"duckdb:///{default_db_path()}"
    monkeypatch.setenv("CRM_DATABASE_URL", "sqlite:///from-env.db")
    assert database_url() == "sqlite:///from-env.db"
    assert database_url("duckdb:///given.duckdb") == "duckdb:///given.duckdb"


# --- reading never creates a file -----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["duckdb", "sqlite"])
def test_reading_a_missing_file_creates_nothing(tmp_path: Path, scheme: str) -> None:
    path = tmp_path / "sub" / "none.db"
    with pytest.raises(FileNotFoundError, match=r"no database at .*run `crm-insights demo` first"):
        make_engine(f"{scheme}:///{path}", read_only=True)
    assert not path.exists()
    assert not path.parent.exists()


def test_a_read_only_sqlite_engine_cannot_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    writer = make_engine(url)
    schema.create_schema(writer)
    writer.dispose()
    reader = make_engine(url, read_only=True)
    try:
        with reader.connect() as conn, pytest.raises(sa.exc.OperationalError, match="readonly"):
            conn.execute(sa.insert(schema.users).values(user_id="U1", name="Ann"))
    finally:
        reader.dispose()


# --- the DuckDB file lock -------------------------------------------------------------------


@pytest.fixture
def fixture_db(tmp_path: Path) -> str:
    """A DuckDB file with the KPI fixture rows, closed."""
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    engine = make_engine(url)
    schema.create_schema(engine)
    fixtures.load(engine)
    engine.dispose()
    return url


@contextlib.contextmanager
def _held(url: str, read_only: bool) -> Iterator[None]:
    """Another process with the file open (read-only like the dashboard, or writing like an import)."""
    with duckdb_held_open(sa.make_url(url).database, read_only, "deals"):
        yield


@pytest.fixture
def expected_win_rate(fixture_db: str) -> pd.DataFrame:
    engine = make_engine(fixture_db, read_only=True)
    try:
        return win_rate(engine, F, "month")
    finally:
        engine.dispose()


@pytest.fixture
def held_by_a_reader(fixture_db: str, expected_win_rate: pd.DataFrame) -> Iterator[str]:
    """The file held open read-only by another process, like the dashboard does."""
    with _held(fixture_db, read_only=True):
        yield fixture_db


@pytest.fixture
def held_by_a_writer(fixture_db: str, expected_win_rate: pd.DataFrame) -> Iterator[str]:
    """The file held open for writing by another process, like a running import does."""
    with _held(fixture_db, read_only=False):
        yield fixture_db


def test_a_reader_works_beside_a_reader(held_by_a_reader: str, expected_win_rate: pd.DataFrame) -> None:
    engine = make_engine(held_by_a_reader, read_only=True)  # the README's analyst snippet
    try:
        pd.testing.assert_frame_equal(win_rate(engine, F, "month"), expected_win_rate)
    finally:
        engine.dispose()


def test_a_reader_beside_a_writer_gets_database_busy(held_by_a_writer: str) -> None:
    engine = make_engine(held_by_a_writer, read_only=True)
    try:
        with pytest.raises(DatabaseBusyError) as caught:
            win_rate(engine, F, "month")
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "open for writing in another process" in message
    assert "wait until it has finished" in message
    assert sa.make_url(held_by_a_writer).database in message
    # still a database error with DuckDB's own, for code that handles those (the dashboard's)
    assert isinstance(caught.value, sa.exc.DBAPIError)
    assert "lock" in str(caught.value.orig).lower()


def test_a_writer_beside_the_dashboard_gets_database_busy_on_connect(held_by_a_reader: str) -> None:
    engine = make_engine(held_by_a_reader)
    try:
        with pytest.raises(DatabaseBusyError) as caught:
            engine.connect()  # a plain connect: no connect_checked needed
    finally:
        engine.dispose()
    message = str(caught.value)
    assert "is open in another process (probably the dashboard)" in message
    assert "make_engine(read_only=True)" in message  # how to read beside it
    assert "--url" in message  # how to write elsewhere


def test_a_writer_beside_a_writer_gets_database_busy(held_by_a_writer: str) -> None:
    engine = make_engine(held_by_a_writer)
    try:
        with pytest.raises(DatabaseBusyError, match="is open in another process"), engine.begin() as conn:
            conn.execute(sa.delete(schema.deals))
    finally:
        engine.dispose()
