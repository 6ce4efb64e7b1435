"""The command line: ``crm-insights demo | import | check | rollups | serve``.

Installed, it is the ``crm-insights`` console script; from a checkout without installing,
``python -m crm_data`` runs the same. :data:`DESCRIPTION` is the help text (plain text:
``--help`` shows it as written). Exit codes: 0 done; 1 invalid input, or ``demo`` refusing
to overwrite imported data; 2 the database is missing, has nothing to check or summarise,
cannot be opened (a damaged or foreign file, a folder, a PostgreSQL server, database or role
that cannot be reached: one sentence says what to do), or is held by another process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from crm_data.engines import (
    DatabaseBusyError,
    connect_checked,
    database_url,
    default_db_path,
    explain_database_error,
    make_engine,
)

PROG = "crm-insights"
MODULE_PROG = "python -m crm_data"

DESCRIPTION = """\
CRM Insights: CRM analytics on DuckDB (embedded), PostgreSQL or SQLite.
Every command works on the database of --url, else $CRM_DATABASE_URL, else the
embedded DuckDB file. Run COMMAND --help for more about each command.

exit codes: 0 done; 1 invalid input, or demo refusing to overwrite imported data;
2 no database (or nothing in it to work on), or the database file is busy.
"""


def prog_name() -> str:
    """How the user called us: ``crm-insights`` (the console script) or ``python -m crm_data``."""
    return PROG if Path(sys.argv[0]).stem == PROG else MODULE_PROG


class _HelpFormatter(argparse.HelpFormatter):
    """Options that take a value show their default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        shown = default is not None and default is not False and default is not argparse.SUPPRESS
        if shown and action.option_strings and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _MainHelpFormatter(_HelpFormatter, argparse.RawDescriptionHelpFormatter):
    """:data:`DESCRIPTION` as written."""


def _url_help() -> str:
    text = (
        "SQLAlchemy URL of the database. Default: $CRM_DATABASE_URL if set, else the embedded "
        f"DuckDB file, here {default_db_path()} (data/crm.duckdb in the project folder when "
        "run from a source checkout; $XDG_DATA_HOME/crm-insights/crm.duckdb, i.e. "
        "~/.local/share/crm-insights/crm.duckdb, when installed as a package)"
    )
    return text.replace("%", "%%")


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    from crm_data.mappings import SHIPPED

    prog = prog or prog_name()
    parser = argparse.ArgumentParser(prog=prog, description=DESCRIPTION, formatter_class=_MainHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    url_help = _url_help()

    def command(name: str, summary: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=description, formatter_class=_HelpFormatter)
        sub.add_argument("--url", help=url_help)
        return sub

    demo = command(
        "demo",
        "create the schema and fill it with realistic demo data",
        "Create the schema and fill all 17 CRM tables with realistic demo data, then build the "
        "KPI roll-ups. It replaces earlier demo data; a database holding other data (imported, "
        "or written by another tool) is left alone unless --replace is given.",
    )
    demo.add_argument("--accounts", type=int, default=5000, help="number of accounts")
    demo.add_argument("--seed", type=int, default=42, help="random seed")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.add_argument(
        "--replace", action="store_true", help="delete data that is not demo data (e.g. imported) too"
    )

    load = command(
        "import",
        "import a CSV bundle, or exports through a mapping",
        "Import a CSV bundle (a folder of <table>.csv files with the canonical columns, or such "
        "files), or the exports of a CRM or data set through a mapping. All or nothing: on any "
        "error nothing is written.",
    )
    load.add_argument("paths", nargs="+", metavar="PATH", help="a bundle folder, or files")
    load.add_argument(
        "--mapping",
        metavar="MAPPING",
        help=f"a shipped mapping ({', '.join(SHIPPED)}) or the path of your own mapping .toml file; "
        "without it, PATH is a CSV bundle",
    )
    load.add_argument(
        "--reporting-currency",
        metavar="CODE",
        help="the ISO 4217 code (EUR, USD, ...) money is reported in: deal and payment amounts in other "
        "currencies are converted into it with the imported exchange rates (a Salesforce export says it "
        "itself: the corporate currency of CurrencyType.csv); it cannot change later",
    )

    check = command(
        "check",
        "print a data-quality report",
        "Print a data-quality report of the CRM tables (duplicates, missing key fields, stale "
        "deals, orphans, future dates, stale roll-ups). Read-only: it works beside the dashboard.",
    )
    check.add_argument(
        "--stale-days",
        type=int,
        default=90,
        metavar="DAYS",
        help="open deals without a stage change for this long are stale",
    )

    command(
        "rollups",
        "rebuild the KPI roll-ups (after writing the CRM tables with another tool)",
        "Rebuild the KPI roll-ups (kpis.rollups) from the CRM tables, in one transaction. "
        "demo and import do this themselves; run it after loading the tables any other way.",
    )

    serve = command(
        "serve",
        "start the dashboard",
        "Start the dashboard (Streamlit) with its own theme and settings, from any working "
        "directory; stop it with Ctrl+C. --url is passed to the app as CRM_DATABASE_URL.",
    )
    serve.add_argument("--address", default="127.0.0.1", help="address to listen on (0.0.0.0: all)")
    serve.add_argument("--port", type=int, default=8501, help="port to listen on")
    return parser


def _shown(url: str) -> str:
    """The URL with any password hidden, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def _new_database_file(url: str) -> Path | None:
    """The DuckDB or SQLite file of ``url`` when it does not exist yet (a writer creates it)."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() not in ("duckdb", "sqlite"):
        return None
    database = sa_url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    path = Path(database)
    return None if path.exists() else path


def _remove_new_file(path: Path | None) -> None:
    """Remove a database file this command created without writing anything into it."""
    if path is None:
        return
    for leftover in (path, path.with_name(path.name + ".wal"), path.with_name(path.name + "-journal")):
        leftover.unlink(missing_ok=True)


def _demo(args: argparse.Namespace, url: str, prog: str) -> int:
    from crm_data.demo import existing_data, generate

    engine = make_engine(url)
    try:
        # fails fast (exit 2) while another process holds the DuckDB file
        with connect_checked(engine) as conn:
            existing = existing_data(conn)
        if existing and not args.replace:
            lines = [
                f"error: {_shown(url)} holds data that is not demo data (imported, or written by another "
                "tool); `demo` would delete these rows:"
            ]
            lines += [f"  {table:20s} {rows:>12,d}" for table, rows in existing.items()]
            lines.append(
                f"Nothing was changed. To replace them with demo data anyway, run `{prog} demo --replace`; "
                "to keep them, write the demo to another database with --url."
            )
            print("\n".join(lines), file=sys.stderr)
            return 1
        started = time.perf_counter()
        counts = generate(engine, accounts=args.accounts, seed=args.seed, progress=not args.quiet)
    finally:
        engine.dispose()  # release the DuckDB file
    print(f"demo data written to {_shown(url)} in {time.perf_counter() - started:.1f} s:")
    for table, rows in counts.items():
        print(f"  {table:20s} {rows:>12,d}")
    return 0


def _import(args: argparse.Namespace, url: str) -> int:
    from crm_data.importing import import_paths
    from crm_data.mappings import MappingError

    created = _new_database_file(url)  # removed again when nothing gets imported
    committed = False
    engine = make_engine(url)
    try:
        report = import_paths(
            engine, args.paths, mapping=args.mapping, reporting_currency=args.reporting_currency
        )
        committed = report.committed
    except MappingError as error:  # unknown mapping, files it does not know, bad TOML
        print(f"error: {error}\nnothing was imported", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
        if not committed:
            _remove_new_file(created)
    print(report.render(), file=sys.stdout if report.ok else sys.stderr)
    return 0 if report.ok else 1


def _rollups(url: str, prog: str) -> int:
    from kpis.rollups import SOURCES, refresh

    make_engine(url, read_only=True).dispose()  # a missing DuckDB or SQLite file: exit 2, no new file
    engine = make_engine(url)
    try:
        started = time.perf_counter()
        with connect_checked(engine) as conn, conn.begin():
            missing = [t.name for t in SOURCES if not sa.inspect(conn).has_table(t.name)]
            if missing:
                print(
                    f"error: {_shown(url)} has no {', '.join(missing)} table(s) to summarise: "
                    f"run `{prog} demo` or `{prog} import` first",
                    file=sys.stderr,
                )
                return 2
            written = refresh(conn)
    finally:
        engine.dispose()
    print(f"KPI roll-ups of {_shown(url)} rebuilt in {time.perf_counter() - started:.1f} s:")
    for name, rows in written.items():
        print(f"  {name:32s} {rows:>12,d} rows")
    return 0


def _check(args: argparse.Namespace, url: str, prog: str) -> int:
    from crm_data import schema
    from crm_data.quality import check_database
    from crm_data.validation import existing_tables

    load = f"load data with `{prog} demo` (demo data) or `{prog} import PATH` (your data)"
    # read-only: works beside the (read-only) dashboard on the same DuckDB file
    engine = make_engine(url, read_only=True)
    try:
        with connect_checked(engine) as conn:
            names = existing_tables(conn)
            present = [t for t in schema.TABLES if t.name in names]
            if not present:
                print(f"error: nothing to check: {_shown(url)} has no CRM tables; {load}", file=sys.stderr)
                return 2
            filled = conn.execute(
                sa.select(
                    *(sa.exists(sa.select(sa.literal(1)).select_from(t)).label(t.name) for t in present)
                )
            ).one()
            if not any(filled):
                print(
                    f"error: nothing to check: the {len(present)} CRM tables of {_shown(url)} are all "
                    f"empty; {load}",
                    file=sys.stderr,
                )
                return 2
            report = check_database(conn, stale_days=args.stale_days)
    finally:
        engine.dispose()
    print(report.render())
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = prog_name()
    args = _parser(prog).parse_args(argv)
    if args.command == "serve":
        from ui.serve import serve  # Streamlit only for this command

        return serve(url=args.url, address=args.address, port=args.port, prog=prog)
    url = database_url(args.url)
    try:
        if args.command == "demo":
            return _demo(args, url, prog)
        if args.command == "import":
            return _import(args, url)
        if args.command == "rollups":
            return _rollups(url, prog)
        if args.command == "check":
            return _check(args, url, prog)
    except (DatabaseBusyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # a damaged or foreign file, a server that cannot be reached, ...
        problem = explain_database_error(error, url, prog)
        if problem is None:
            if not isinstance(error, sa.exc.DBAPIError):
                raise  # a bug: keep its traceback
            orig = " ".join(str(error.orig).split())
            problem = f"the database {_shown(url)} cannot be used: {orig}"
        print(f"error: {problem[:1].lower()}{problem[1:]}", file=sys.stderr)
        return 2
    return 2
