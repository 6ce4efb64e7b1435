"""``crm-insights`` / ``python -m crm_data`` ``import | check | demo | rollups | serve``: exit
codes 0 (ok), 1 (invalid input, demo refusing imported data), 2 (missing, empty or busy
database).

The busy cases hold the DuckDB file open in another process, like the dashboard does. The
``serve`` case starts the real server from another working directory and talks to it over
Streamlit's websocket.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.cli import main
from crm_data.demo import existing_data, generate
from crm_data.engines import default_db_path, make_engine
from crm_data.importing import import_paths, recorded_contents
from kpis import Filters, customer_base, first_contact_resolution, revenue, rollups, survey_scores, win_rate
from kpis.core import period_starts
from tests.conftest import IN_CI, ROOT, write_demo_database
from tests.crm_data.test_importing import snapshot, write_bundle
from tests.kpis import fixtures
from tests.servers import duckdb_held_open, free_port, run_module_cli, stop_process_group, wait_healthy

GOOD = {"accounts": "account_id,name,created_at\nA1,Acme Inc,2024-03-01\nA2,ACME inc.,2024-03-02\n"}
BAD = {"deals": "deal_id,account_id,created_at,status\nD1,A9,2024-03-01,open\n"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m crm_data ARGS`` in its own process (forked from one that has imported it;
    a fresh interpreter runs it in test_the_console_script_and_python_m_name_themselves)."""
    return run_module_cli(*args, timeout=300)


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'crm.duckdb'}"


def test_import_ok_then_invalid(duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good), "--url", duckdb_url]) == 0
    assert "accounts                        2            2" in capsys.readouterr().out
    engine = make_engine(duckdb_url)
    before = snapshot(engine)
    engine.dispose()

    bad = write_bundle(tmp_path / "bad", BAD)
    assert main(["import", str(bad), "--url", duckdb_url]) == 1
    err = capsys.readouterr().err
    assert "deals.csv:2:account_id: 'A9' is not in accounts.account_id" in err
    assert "nothing was imported" in err
    engine = make_engine(duckdb_url)
    assert snapshot(engine) == before
    engine.dispose()


def test_check_prints_the_report(duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", str(write_bundle(tmp_path / "good", GOOD)), "--url", duckdb_url]) == 0
    capsys.readouterr()
    assert main(["check", "--url", duckdb_url, "--stale-days", "30"]) == 0
    out = capsys.readouterr().out
    assert "[!] Duplicate accounts: 2" in out
    assert "open deals are stale after 30 days" in out


def test_check_of_a_missing_database_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", f"duckdb:///{tmp_path / 'none.duckdb'}"]) == 2
    assert "no database at" in capsys.readouterr().err


@pytest.fixture
def held_open(duckdb_url: str, tmp_path: Path) -> Iterator[str]:
    """The DuckDB file with GOOD imported, held open read-only by another process (like the dashboard)."""
    engine = make_engine(duckdb_url)
    assert main(["import", str(write_bundle(tmp_path / "good", GOOD)), "--url", duckdb_url]) == 0
    engine.dispose()
    with duckdb_held_open(sa.make_url(duckdb_url).database, True, "accounts"):
        yield duckdb_url


def test_import_while_the_file_is_held_exits_2(held_open: str, tmp_path: Path) -> None:
    changed = write_bundle(
        tmp_path / "changed", {"accounts": "account_id,name,created_at\nA1,Renamed,2024-03-01\n"}
    )
    result = run_cli("import", str(changed), "--url", held_open)
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_while_the_file_is_held_exits_2(held_open: str) -> None:
    result = run_cli("demo", "--url", held_open, "--accounts", "50", "--quiet")
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr


def test_check_works_beside_a_read_only_dashboard(held_open: str) -> None:
    result = run_cli("check", "--url", held_open)
    assert result.returncode == 0, result.stderr
    assert "[!] Duplicate accounts: 2" in result.stdout


def test_busy_file_is_left_intact(held_open: str, tmp_path: Path) -> None:
    run_cli(
        "import", str(write_bundle(tmp_path / "x", {"users": "user_id,name\nU1,Ann\n"})), "--url", held_open
    )
    engine = make_engine(held_open, read_only=True)
    try:
        rows = snapshot(engine)
    finally:
        engine.dispose()
    assert rows["users"] == []
    assert [r[:2] for r in rows["accounts"]] == [("A1", "Acme Inc"), ("A2", "ACME inc.")]


def test_import_with_an_unknown_mapping_exits_1_without_a_traceback(
    duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good), "--url", duckdb_url, "--mapping", "no_such_crm"]) == 1
    err = capsys.readouterr().err
    assert "no_such_crm" in err
    assert "Traceback" not in err
    assert "nothing was imported" in err


def test_import_of_files_the_mapping_does_not_know_exits_1(
    duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_bundle(tmp_path / "good", GOOD)
    assert main(["import", str(good / "accounts.csv"), "--url", duckdb_url, "--mapping", "salesforce"]) == 1
    err = capsys.readouterr().err
    assert "accounts.csv" in err
    assert "salesforce" in err


# --- rollups -----------------------------------------------------------------------------


#: The KPIs that read the roll-ups (tests/kpis/test_rollups.py checks them in depth).
KPIS = (customer_base, revenue, survey_scores, win_rate, first_contact_resolution)


def _read_rollups(url: str, f: Filters) -> dict[str, dict | None]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            periods = period_starts(f.start, f.end, "month")
            return {r.name: rollups.read(conn, r, f, "month", periods) for r in rollups.ROLLUPS}
    finally:
        engine.dispose()


def test_rollups_builds_what_the_kpis_read(
    duckdb_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CRM_ROLLUPS", raising=False)
    engine = make_engine(duckdb_url)
    schema.create_schema(engine)
    fixtures.load(engine)  # plain inserts, as another tool would write: no roll-ups yet
    engine.dispose()
    f = Filters("2024-01-01", "2024-05-01")
    assert set(_read_rollups(duckdb_url, f).values()) == {None}

    assert main(["rollups", "--url", duckdb_url]) == 0
    out = capsys.readouterr().out
    assert f"KPI roll-ups of {duckdb_url} rebuilt" in out
    lines = out.splitlines()[1:]
    printed = {line.split()[0]: int(line.split()[1].replace(",", "")) for line in lines}
    assert list(printed) == list(rollups.DERIVED)  # the roll-ups, then the stored stage visits
    assert all(printed.values())
    # a column of names, then the row counts right-aligned in one column, however long the names
    assert len({line.rindex(" rows") for line in lines}) == 1

    assert None not in _read_rollups(duckdb_url, f).values()
    engine = make_engine(duckdb_url)
    try:
        rolled = {kpi: kpi(engine, f, "month") for kpi in KPIS}
        # tests/kpis/test_churn.py test_monthly_churn: 2, 1, 1, 0 churned; test_sales.py
        # test_monthly_win_rate: 1, 3, 0, 0 won; test_service.py test_monthly_fcr: 2, 2, 1, 0
        # resolved; test_feedback.py: 5, 2, 0, 0 NPS responses
        assert list(rolled[customer_base]["churned"]) == [2, 1, 1, 0]
        assert list(rolled[win_rate]["won"]) == [1, 3, 0, 0]
        assert list(rolled[first_contact_resolution]["resolved"]) == [2, 2, 1, 0]
        assert list(rolled[survey_scores]["nps_responses"]) == [5, 2, 0, 0]
        monkeypatch.setenv("CRM_ROLLUPS", "off")
        for kpi, frame in rolled.items():
            pd.testing.assert_frame_equal(frame, kpi(engine, f, "month"), rtol=1e-9, obj=kpi.__name__)
    finally:
        engine.dispose()


def test_rollups_while_the_file_is_held_exits_2(held_open: str) -> None:
    result = run_cli("rollups", "--url", held_open)
    assert result.returncode == 2, result.stderr
    assert "is open in another process" in result.stderr
    assert "Traceback" not in result.stderr


def test_rollups_of_a_missing_database_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "none.duckdb"
    result = run_cli("rollups", "--url", f"duckdb:///{path}")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert "no database at" in result.stderr
    assert not path.exists()


def test_rollups_of_a_database_without_crm_tables_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    make_engine(f"duckdb:///{path}").dispose()
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    result = run_cli("rollups", "--url", f"duckdb:///{path}")
    assert "Traceback" not in result.stderr
    assert result.returncode == 2, result.stderr
    assert f"has no {', '.join(t.name for t in rollups.SOURCES)} table(s)" in result.stderr


# --- the command line itself -------------------------------------------------------------

CONSOLE_SCRIPT = Path(sys.executable).with_name("crm-insights")
COMMANDS = ("demo", "import", "check", "rollups", "serve")
#: The shipped mappings: the TOML files of the package.
MAPPINGS = sorted(path.stem for path in (ROOT / "crm_data" / "mappings").glob("*.toml"))
SAMPLES = Path(__file__).parent / "mappings" / "samples"


def _help(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exited:
        main([*args, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


def test_the_console_script_and_python_m_name_themselves(tmp_path: Path) -> None:
    if not CONSOLE_SCRIPT.exists():
        if IN_CI:
            pytest.fail(f"{CONSOLE_SCRIPT} is missing: `pip install -e .` (make install-test) installs it")
        pytest.skip(f"{CONSOLE_SCRIPT} is not installed (pip install -e .)")
    script = subprocess.run(
        [str(CONSOLE_SCRIPT), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.startswith("usage: crm-insights [-h] COMMAND")
    module = subprocess.run(  # a fresh interpreter: what `python -m crm_data` really is
        [sys.executable, "-m", "crm_data", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert module.returncode == 0, module.stderr
    assert module.stdout.startswith("usage: python -m crm_data [-h] COMMAND")
    for command in COMMANDS:
        assert f"    {command} " in script.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_names_the_console_script(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/crm-insights", command, "--help"])
    assert _help(capsys, command).startswith(f"usage: crm-insights {command} ")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "crm_data" / "__main__.py"), command, "--help"])
    assert _help(capsys, command).startswith(f"usage: python -m crm_data {command} ")


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    for args in [(), *((command,) for command in COMMANDS)]:
        text = _help(capsys, *args)
        for markup in ("``", ":mod:", ":func:", ":data:", ":class:"):
            assert markup not in text, (args, markup)


def test_help_lists_the_shipped_mappings_and_shows_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "1000")  # one line per option: no path broken by wrapping
    assert len(MAPPINGS) >= 7
    assert f"--mapping MAPPING a shipped mapping ({', '.join(MAPPINGS)}) or the path of your own" in " ".join(
        _help(capsys, "import").split()
    )
    demo = " ".join(_help(capsys, "demo").split())
    assert "--accounts ACCOUNTS number of accounts (default: 5000)" in demo
    assert "--seed SEED random seed (default: 42)" in demo
    assert "(default: None)" not in demo and "(default: False)" not in demo
    assert (
        f"Default: $CRM_DATABASE_URL if set, else the embedded DuckDB file, here {default_db_path()}" in demo
    )
    assert "$XDG_DATA_HOME/crm-insights/crm.duckdb, i.e. ~/.local/share/crm-insights/crm.duckdb" in demo
    assert "(default: 90)" in _help(capsys, "check")
    serve = " ".join(_help(capsys, "serve").split())
    assert "--address ADDRESS address to listen on (0.0.0.0: all) (default: 127.0.0.1)" in serve
    assert "--port PORT port to listen on (default: 8501)" in serve


# --- check: nothing to check --------------------------------------------------------------


def test_check_of_a_database_without_crm_tables_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE t (x INTEGER)")
    assert main(["check", "--url", f"duckdb:///{path}"]) == 2
    captured = capsys.readouterr()
    assert "checks passed" not in captured.out
    assert "nothing to check" in captured.err
    assert "has no CRM tables" in captured.err
    assert "`python -m crm_data demo`" in captured.err
    assert "`python -m crm_data import PATH`" in captured.err


def test_check_of_empty_crm_tables_exits_2(duckdb_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = make_engine(duckdb_url)
    schema.create_schema(engine)
    engine.dispose()
    assert main(["check", "--url", duckdb_url]) == 2
    captured = capsys.readouterr()
    assert "checks passed" not in captured.out
    assert "nothing to check: the 18 CRM tables" in captured.err  # exchange_rates included
    assert "are all empty" in captured.err


def test_check_of_a_file_that_is_not_a_database_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "empty.duckdb"
    path.write_bytes(b"")
    result = run_cli("check", "--url", f"duckdb:///{path}")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert f"error: the database file {path} is empty (0 bytes), not a DuckDB database" in result.stderr
    assert "delete it" in result.stderr


@pytest.mark.parametrize("scheme", ["duckdb", "sqlite"])
@pytest.mark.parametrize("command", ["check", "rollups"])
def test_reading_commands_never_create_the_database(
    tmp_path: Path, scheme: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "none.db"
    assert main([command, "--url", f"{scheme}:///{path}"]) == 2
    assert "no database at" in capsys.readouterr().err
    assert not path.exists()


def test_an_invalid_import_creates_no_database_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.duckdb"
    assert main(["import", str(write_bundle(tmp_path / "bad", BAD)), "--url", f"duckdb:///{path}"]) == 1
    assert "nothing was imported" in capsys.readouterr().err
    assert not path.exists()
    assert not path.with_name("new.duckdb.wal").exists()


# --- import: which mapping fits ------------------------------------------------------------


def test_import_of_exports_without_a_mapping_suggests_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"duckdb:///{tmp_path / 'crm.duckdb'}"
    assert main(["import", str(SAMPLES / "hubspot"), "--url", url]) == 1
    err = capsys.readouterr().err
    assert (
        "no <table>.csv files of canonical tables here; these look like HubSpot CRM exports: add --mapping hubspot"
        in err
    )

    exports = sorted((SAMPLES / "salesforce").glob("*.csv"))
    assert main(["import", *map(str, exports), "--url", url]) == 1
    err = capsys.readouterr().err
    assert "these look like Salesforce exports: add --mapping salesforce" in err
    assert err.count("--mapping") == 1  # one piece of advice for all the files

    assert main(["import", str(SAMPLES / "mailchimp" / "email_activity.csv"), "--url", url]) == 1
    assert "add --mapping mailchimp" in capsys.readouterr().err
    assert not (tmp_path / "crm.duckdb").exists()


def test_import_of_files_no_mapping_knows_gives_no_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "orders_2024.csv").write_text("order,total\n1,2\n")
    assert main(["import", str(folder), "--url", f"duckdb:///{tmp_path / 'crm.duckdb'}"]) == 1
    err = capsys.readouterr().err
    assert "no <table>.csv files of canonical tables here" in err
    assert "--mapping" not in err


def test_the_importer_marks_its_contents_and_keeps_them_on_failure(db: sa.Engine, tmp_path: Path) -> None:
    """What demo may overwrite, recorded on DuckDB, SQLite and PostgreSQL alike."""
    with db.connect() as conn:
        assert existing_data(conn) is None  # empty tables
        assert recorded_contents(conn) is None
    assert import_paths(db, [write_bundle(tmp_path / "good", GOOD)]).ok
    with db.connect() as conn:
        assert existing_data(conn) == {"accounts": 2}
        assert recorded_contents(conn) == "imported"
    generate(db, accounts=20, seed=3, progress=False)
    with db.connect() as conn:
        assert existing_data(conn) is None
        assert recorded_contents(conn) == "demo"
    assert not import_paths(db, [write_bundle(tmp_path / "bad", BAD)]).ok
    with db.connect() as conn:
        assert recorded_contents(conn) == "demo"  # the failed import rolled its mark back too
    assert "crm_insights_meta" not in schema.TABLE_NAMES


# --- demo: never over imported data unasked ---------------------------------------------------


def test_demo_refuses_to_overwrite_imported_data(
    duckdb_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", str(write_bundle(tmp_path / "good", GOOD)), "--url", duckdb_url]) == 0
    engine = make_engine(duckdb_url)
    before = snapshot(engine)
    engine.dispose()
    capsys.readouterr()

    assert main(["demo", "--url", duckdb_url, "--accounts", "30", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "holds data that is not demo data" in err
    assert "accounts                        2" in err  # what would be deleted
    assert "deals" not in err  # empty tables are not listed
    assert "Nothing was changed" in err
    assert "`python -m crm_data demo --replace`" in err
    engine = make_engine(duckdb_url)
    assert snapshot(engine) == before
    engine.dispose()

    assert main(["demo", "--url", duckdb_url, "--accounts", "30", "--quiet", "--replace"]) == 0
    assert "demo data written to" in capsys.readouterr().out
    # demo data may be replaced by demo data again
    assert main(["demo", "--url", duckdb_url, "--accounts", "30", "--quiet"]) == 0


def test_demo_fills_empty_tables_but_refuses_tables_another_tool_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = f"duckdb:///{tmp_path / 'empty.duckdb'}"
    engine = make_engine(empty)
    schema.create_schema(engine)
    engine.dispose()
    assert main(["demo", "--url", empty, "--accounts", "30", "--quiet"]) == 0

    written = f"duckdb:///{tmp_path / 'written.duckdb'}"
    engine = make_engine(written)
    schema.create_schema(engine)
    fixtures.load(engine)  # plain inserts, as another tool writes: nothing says it is demo data
    engine.dispose()
    capsys.readouterr()
    assert main(["demo", "--url", written, "--accounts", "30", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "deals" in err and "accounts" in err


# --- serve --------------------------------------------------------------------------------


def test_serve_without_a_database_says_to_run_demo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ui import serve

    missing = tmp_path / "share" / "crm-insights" / "crm.duckdb"  # an installed package's default
    monkeypatch.setattr(serve, "default_db_path", lambda: missing)
    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert f"there is no database yet at {missing}" in err
    assert "`python -m crm_data demo`" in err
    assert "--url" in err
    assert not missing.exists()
    # with a URL the app is started and tells what is wrong itself: no refusal here
    assert serve.missing_database("duckdb:///elsewhere.duckdb") is None
    monkeypatch.setenv("CRM_DATABASE_URL", "duckdb:///elsewhere.duckdb")
    assert serve.missing_database() is None


def test_serve_options_come_from_the_shipped_streamlit_config() -> None:
    from ui.serve import CONFIG_FILE, dashboard_script, flag_options

    assert dashboard_script() == ROOT / "dashboard.py"
    # `streamlit run dashboard.py` in the checkout reads the same options
    checkout_config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert checkout_config == tomllib.loads(CONFIG_FILE.read_text())
    options = flag_options("127.0.0.1", 8600)
    assert options["client.showSidebarNavigation"] is False
    assert options["theme.primaryColor"] == "#0072B2"
    assert options["server.address"] == "127.0.0.1"
    assert options["server.port"] == 8600


def _first_run(port: int) -> tuple[object, list[str], int]:
    """Open a browser session over Streamlit's websocket and run the app once: the
    ``new_session`` message (the app's config and theme), the texts it drew, and how the
    script finished."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
    from websockets.sync.client import connect

    session = None
    texts: list[str] = []
    with connect(f"ws://127.0.0.1:{port}/_stcore/stream", subprotocols=["streamlit"], open_timeout=30) as ws:
        rerun = BackMsg()
        rerun.rerun_script.query_string = ""
        ws.send(rerun.SerializeToString())
        while True:
            message = ForwardMsg()
            message.ParseFromString(ws.recv(timeout=120))
            kind = message.WhichOneof("type")
            if kind == "new_session":
                session = message.new_session
            elif kind == "delta" and message.delta.HasField("new_element"):
                element = message.delta.new_element
                field = element.WhichOneof("type")
                if field == "exception":
                    raise AssertionError(f"the app raised: {element.exception.message}")
                body = getattr(getattr(element, field), "body", None)
                if isinstance(body, str):
                    texts.append(body)
            elif kind == "script_finished":
                return session, texts, message.script_finished


@pytest.mark.slow
def test_serve_starts_the_dashboard_from_any_directory(tmp_path: Path) -> None:
    url = write_demo_database(tmp_path, accounts=60, seed=5)
    elsewhere = tmp_path / "elsewhere"  # no .streamlit/config.toml here
    elsewhere.mkdir()
    port = free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CRM_DATABASE_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "crm_data", "serve", "--url", url, "--port", str(port)],
            cwd=elsewhere,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process, log)
        session, texts, finished = _first_run(port)
    finally:
        stop_process_group(process, timeout=30)
    assert f"started on 127.0.0.1:{port}" in log.read_text()  # the default address
    config = tomllib.loads((ROOT / "ui" / "streamlit_config.toml").read_text())
    assert session is not None
    assert session.main_script_path == str(ROOT / "dashboard.py")
    # ui/streamlit_config.toml applies although the working directory has no .streamlit/
    assert session.config.hide_sidebar_nav is (not config["client"]["showSidebarNavigation"])
    assert session.custom_theme.primary_color == config["theme"]["primaryColor"]
    assert session.custom_theme.background_color == config["theme"]["backgroundColor"]
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    assert finished == ForwardMsg.FINISHED_SUCCESSFULLY
    # --url reached the app as CRM_DATABASE_URL: the Overview read the demo file
    assert "Overview" in texts
    assert f"Read-only connection to `{url}`." in texts
