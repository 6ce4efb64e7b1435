"""Shared fixtures: fresh databases on DuckDB, SQLite and PostgreSQL, and the public data.

* ``make_db(kind)`` returns a new, empty engine with the canonical schema created.
  DuckDB and SQLite use files in pytest's tmp dir; PostgreSQL uses a scratch schema in a
  scratch database created for this run (127.0.0.1:5432, user postgres) and dropped
  afterwards. Without a server the PostgreSQL cases skip, except when ``CI=true``: then
  they fail. The schema is made once per test process by ``schema.create_schema`` and then
  copied: a file on DuckDB and SQLite, the DDL statements it ran on PostgreSQL.
* ``db``: the same, parametrised over the three kinds.
* ``shared_data(name)``: the folder of a public dataset in ``../shared/data``; skips
  when it is absent (a user's machine), fails when absent under CI.
* ``visits_path``: the readers of the stored stage visits (:mod:`kpis.stage_visits`) —
  :data:`VISIT_READERS` — have two paths, the base tables and the stored visits, that must
  give the same results. A test requesting it runs once per path: it calls
  ``visits_path(engine)`` once its deals are loaded; on ``stored`` the visits are built
  then, and on either path every reader's other path fails, so each run really takes its
  own.

The tests run as the application does: the KPI roll-ups listen to the writers
(``kpis.rollups.listen``), so an import or a demo refreshes them in its transaction
(``crm_data.hooks.unwired()`` gives a test the unwired case). One exception: the forecasts
stored beside a database (``forecasting.store``) are off (``CRM_FORECAST_STORE=off``) —
otherwise every demo or import through the command line would compute a forecast ahead
(seconds each) and every forecast would write a file beside its test database; the tests of
the store turn it on (``monkeypatch.setenv``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import prepare_engine
from crm_data.engines import make_engine
from kpis import rollups
from kpis.customer_base import sharing_active

rollups.listen()
os.environ["CRM_FORECAST_STORE"] = "off"  # the tests of forecasting.store turn it on

ROOT = Path(__file__).resolve().parent.parent
#: the public datasets (one folder each): $CRM_PUBLIC_DATA, else shared/data beside the project
SHARED_DATA = Path(os.environ.get("CRM_PUBLIC_DATA") or ROOT.parent / "shared" / "data")
IN_CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("CRM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DB_KINDS = ("duckdb", "sqlite", "postgresql")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: these tests must run)")
    pytest.skip(reason)


@contextlib.contextmanager
def scratch_postgres_database(prefix: str) -> Iterator[str]:
    """A new, empty PostgreSQL database named ``<prefix>_<random>`` on the test server (its
    URL), dropped afterwards; skips (fails under CI) when the server cannot be reached.

    Its sessions do not wait for the WAL flush at commit (``synchronous_commit = off``: a
    commit is as atomic and as visible as before, only not durable across a server crash —
    nothing a test database needs): ~6 ms less per commit on the test machine."""
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
            c.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    except sa.exc.OperationalError as error:
        admin.dispose()
        _unavailable(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {error.orig}")
    try:
        yield sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A scratch PostgreSQL database for this test run, dropped at the end."""
    with scratch_postgres_database("crm_test") as url:
        yield url


_counter = itertools.count()


def pg_scratch_schema_engine(base_url: str, prefix: str) -> sa.Engine:
    """An engine on a new, empty PostgreSQL schema of ``base_url``'s database (its
    ``search_path``), set up like every product engine (UTC sessions)."""
    schema_name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with sa.create_engine(base_url, isolation_level="AUTOCOMMIT").connect() as c:
        c.exec_driver_sql(f'CREATE SCHEMA "{schema_name}"')
    engine = sa.create_engine(base_url, connect_args={"options": f"-c search_path={schema_name}"})
    prepare_engine(engine)
    return engine


#: kind -> a closed DuckDB / SQLite file holding just the canonical schema (made once per
#: test process by ``schema.create_schema``): ``make_db`` copies it instead of running the DDL
_SCHEMA_FILES: dict[str, Path] = {}


def _schema_file(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if kind not in _SCHEMA_FILES:
        folder = tmp_path_factory.mktemp(f"schema-{kind}")
        path = folder / f"schema.{kind}"
        engine = make_engine(f"{kind}:///{path}")
        try:
            schema.create_schema(engine)
        finally:
            engine.dispose()
        assert [p.name for p in folder.iterdir()] == [path.name], "the schema file is not closed"
        _SCHEMA_FILES[kind] = path
    return _SCHEMA_FILES[kind]


#: PostgreSQL database URL -> the DDL ``schema.create_schema`` runs on an empty schema of it
#: (recorded once per test process): ``make_db`` runs it as one batch on each new schema
#: instead of ``create_schema``'s ~45 catalog queries and 46 single statements (≈ 4× less wall
#: per schema on the shared test machine)
_PG_SCHEMA_DDL: dict[str, str] = {}
_READ_ONLY_STATEMENTS = ("SELECT", "SHOW", "WITH")


def pg_schema_ddl(base_url: str) -> str:
    """The statements ``schema.create_schema`` runs on a new, empty PostgreSQL schema of
    ``base_url``'s database, joined into one batch (unqualified names: they create in the
    connection's ``search_path``). Recorded on a scratch schema the first time; a statement
    with parameters (an INSERT a future ``create_schema`` might run) fails the recording
    instead of being left out."""
    if base_url not in _PG_SCHEMA_DDL:
        engine = pg_scratch_schema_engine(base_url, "ddl")
        statements: list[str] = []

        def record(
            conn: sa.Connection,
            cursor: object,
            statement: str,
            parameters: object,
            context: object,
            many: bool,
        ) -> None:
            if statement.lstrip().upper().startswith(_READ_ONLY_STATEMENTS):
                return
            assert not parameters, f"create_schema ran a statement with parameters: {statement[:200]}"
            statements.append(statement.strip().rstrip(";"))

        sa.event.listen(engine, "before_cursor_execute", record)
        try:
            schema.create_schema(engine)
        finally:
            engine.dispose()
        assert statements, "create_schema ran no DDL on an empty schema"
        _PG_SCHEMA_DDL[base_url] = ";\n".join(statements)
    return _PG_SCHEMA_DDL[base_url]


@pytest.fixture
def make_db(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., sa.Engine]]:
    """Factory: ``make_db(kind, create=True)`` -> a fresh engine (schema created unless
    ``create=False``; on DuckDB and SQLite a copy of a file ``schema.create_schema`` made, on
    PostgreSQL the DDL it ran: :func:`pg_schema_ddl`)."""
    engines: list[sa.Engine] = []

    def factory(kind: str, create: bool = True) -> sa.Engine:
        n = next(_counter)
        if kind in ("duckdb", "sqlite"):
            path = tmp_path / f"db{n}.{kind}"
            if create:
                shutil.copyfile(_schema_file(kind, tmp_path_factory), path)
            engine = make_engine(f"{kind}:///{path}")
        elif kind == "postgresql":
            base_url = request.getfixturevalue("pg_database_url")
            engine = pg_scratch_schema_engine(base_url, f"s{n}")
            if create:
                with engine.begin() as conn:
                    conn.exec_driver_sql(pg_schema_ddl(base_url))
        else:
            raise ValueError(kind)
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.dispose()


#: The readers of the stored stage visits: (module, its base-table function, its
#: stored-visits function) — ``kpis.stage_durations``, ``forecasting.pipeline_forecast``'s
#: learning and its open deals' current stages, the deals open at an instant of
#: ``kpis.open_deal_aging`` / ``stuck_deals``, ``kpis.funnel``.
VISIT_READERS = (
    ("kpis.sales", "_stage_visits", "_stored_visits"),
    ("kpis.sales", "_stage_visits", "_durations_in_python"),
    ("forecasting.pipeline", "_learning_pass", "_stored_learning"),
    ("forecasting.pipeline", "_learning_pass", "_stored_current_stages"),
    ("kpis.pipeline", "_window_current", "_stored_current"),
    ("kpis.pipeline", "_window_current", "_stored_latest"),
    ("kpis.pipeline", "_window_current", "_stored_open_at"),
    ("kpis.pipeline", "_window_current", "_stored_weighted"),
    ("kpis.pipeline", "_window_current", "_stored_stuck_deals"),
    ("kpis.pipeline", "_funnel_masks", "_stored_funnel_masks"),
)


def _took(what: str, name: str) -> Callable[..., object]:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"{name} ran: the {what} path was taken")

    return refuse


@pytest.fixture(params=("base", "stored"))
def visits_path(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[sa.Engine], sa.Engine]:
    """``visits_path(engine)`` -> ``engine``, with every reader of :data:`VISIT_READERS` made
    to read the base tables (``base``) or the stored visits built now (``stored``; called
    again, they are built again)."""
    monkeypatch.setenv("CRM_ROLLUPS", "on")

    def take(engine: sa.Engine) -> sa.Engine:
        from kpis import stage_visits

        if request.param == "stored":
            with engine.begin() as conn:
                stage_visits.refresh(conn)
        for module, base, stored in VISIT_READERS:
            refused = base if request.param == "stored" else stored
            what = "base-table" if refused == base else "stored-visits"
            monkeypatch.setattr(f"{module}.{refused}", _took(what, f"{module}.{refused}"))
        return engine

    return take


@pytest.fixture(autouse=True)
def no_customer_base_memo_left() -> Iterator[None]:
    """Fail a test that leaves the customer-base memo of a page run on in the test process
    (``kpis.customer_base.start_sharing`` outside a page's own context): the next tests of
    the worker would read that memo's frames instead of their databases."""
    yield
    assert not sharing_active(), "kpis.customer_base sharing left on (use `with sharing():`)"


@pytest.fixture(params=DB_KINDS)
def db(request: pytest.FixtureRequest, make_db: Callable[..., sa.Engine]) -> sa.Engine:
    """A fresh engine with the canonical schema, once per database kind."""
    return make_db(request.param)


@pytest.fixture
def shared_data() -> Callable[[str], Path]:
    """``shared_data('superstore-sales')`` -> that dataset's folder, or skip (fail under CI)."""

    def find(name: str) -> Path:
        folder = SHARED_DATA / name
        if not folder.is_dir():
            _unavailable(f"public dataset {folder} is absent")
        return folder

    return find


#: The day the shared demo databases of the page and browser tests are generated for: their
#: history ends the day before, so the dashboard opens on the same months whatever the real
#: date is (its "today" is the data's: ``ui.filters.data_today``), and November 2026 is a
#: partial month of 17 days.
DEMO_TODAY = dt.date(2026, 11, 18)


def write_demo_database(folder: Path, accounts: int, seed: int, today: dt.date = DEMO_TODAY) -> str:
    """Write a demo DuckDB file into ``folder`` (closed afterwards, so a read-only process
    can open it) for ``today`` and return its URL."""
    from crm_data.demo import generate

    url = f"duckdb:///{folder / 'demo.duckdb'}"
    writer = make_engine(url)
    try:
        generate(writer, accounts=accounts, seed=seed, today=today, progress=False)
    finally:
        writer.dispose()
    return url


# ---------------------------------------------------------------- scheduling on xdist workers

#: tests/browser shares one Streamlit server, one chromium and one demo file per worker
BROWSER_GROUP = "browser"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """With ``--dist loadgroup`` (``make test``): every test module is one unit of work, so its
    module fixtures are built on one worker only (tests/browser is one unit: its session
    server); the units start longest first — the browser tests, then modules with a test
    marked ``slow``, then the rest by number of tests — so no long unit starts when the other
    worker is about to finish. Needs ``--no-loadscope-reorder`` (xdist would sort by size)."""
    if not getattr(config.option, "loadgroup", False):  # set on the workers of --dist loadgroup
        return
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        marks = list(item.iter_markers("xdist_group"))
        if marks:
            name = str(marks[0].args[0] if marks[0].args else marks[0].kwargs.get("name", "default"))
        elif item.nodeid.startswith("tests/browser/"):
            name = BROWSER_GROUP
        else:
            name = item.nodeid.split("::")[0]
        if not marks:
            item.add_marker(pytest.mark.xdist_group(name))
        groups.setdefault(name, []).append(item)

    def first(name: str) -> tuple[int, int]:
        tests = groups[name]
        slow = any(item.get_closest_marker("slow") for item in tests)
        return (0 if name == BROWSER_GROUP else 1 if slow else 2, -len(tests))

    items[:] = [item for name in sorted(groups, key=first) for item in groups[name]]
