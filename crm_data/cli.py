"""``python -m crm_data demo | import | check | rollups``: the data layer's command line."""

from __future__ import annotations

import argparse
import sys
import time

from crm_data.engines import DatabaseBusyError, connect_checked, database_url, make_engine


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m crm_data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = "SQLAlchemy URL (default: $CRM_DATABASE_URL, else data/crm.duckdb)"

    demo = commands.add_parser("demo", help="create the schema and fill it with realistic demo data")
    demo.add_argument("--url", help=url_help)
    demo.add_argument("--accounts", type=int, default=5000, help="number of accounts (default 5000)")
    demo.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")

    load = commands.add_parser("import", help="import a CSV bundle, or exports through a mapping")
    load.add_argument("paths", nargs="+", metavar="PATH", help="a bundle folder, or files")
    load.add_argument("--url", help=url_help)
    load.add_argument("--mapping", help="a shipped mapping name or a mapping file")

    check = commands.add_parser("check", help="print a data-quality report")
    check.add_argument("--url", help=url_help)
    check.add_argument(
        "--stale-days", type=int, default=90, help="open deals without a stage change for this long are stale"
    )
    rollups = commands.add_parser(
        "rollups",
        help="rebuild the KPI roll-ups (after writing the CRM tables with another tool)",
        description="Rebuild the KPI roll-ups (kpis.rollups) from the CRM tables, in one transaction. "
        "`demo` and `import` do this themselves; run it after loading the tables any other way.",
    )
    rollups.add_argument("--url", help=url_help)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    url = database_url(args.url)
    try:
        if args.command == "demo":
            from crm_data.demo import generate

            engine = make_engine(url)
            try:
                # fail fast (exit 2) while another process holds the DuckDB file
                connect_checked(engine).close()
                started = time.perf_counter()
                counts = generate(engine, accounts=args.accounts, seed=args.seed, progress=not args.quiet)
            finally:
                engine.dispose()  # release the DuckDB file
            took = time.perf_counter() - started
            print(f"demo data written to {url} in {took:.1f} s:")
            for table, rows in counts.items():
                print(f"  {table:20s} {rows:>12,d}")
            return 0
        if args.command == "import":
            from crm_data.importing import import_paths
            from crm_data.mappings import MappingError

            engine = make_engine(url)
            try:
                report = import_paths(engine, args.paths, mapping=args.mapping)
            except MappingError as error:  # unknown mapping, files it does not know, bad TOML
                print(f"error: {error}\nnothing was imported", file=sys.stderr)
                return 1
            finally:
                engine.dispose()
            print(report.render(), file=sys.stdout if report.ok else sys.stderr)
            return 0 if report.ok else 1
        if args.command == "rollups":
            import sqlalchemy as sa

            from kpis.rollups import SOURCES, refresh

            make_engine(url, read_only=True).dispose()  # a missing DuckDB file: exit 2, no new file
            engine = make_engine(url)
            try:
                started = time.perf_counter()
                with connect_checked(engine) as conn, conn.begin():
                    missing = [t.name for t in SOURCES if not sa.inspect(conn).has_table(t.name)]
                    if missing:
                        print(
                            f"error: {url} has no {', '.join(missing)} table(s) to summarise: "
                            "run `python -m crm_data demo` or `import` first",
                            file=sys.stderr,
                        )
                        return 2
                    written = refresh(conn)
            finally:
                engine.dispose()
            print(f"KPI roll-ups of {url} rebuilt in {time.perf_counter() - started:.1f} s:")
            for name, rows in written.items():
                print(f"  {name:32s} {rows:>12,d} rows")
            return 0
        if args.command == "check":
            from crm_data.quality import check_database

            # read-only: works beside the (read-only) dashboard on the same DuckDB file
            engine = make_engine(url, read_only=True)
            try:
                with connect_checked(engine) as conn:
                    report = check_database(conn, stale_days=args.stale_days)
            finally:
                engine.dispose()
            print(report.render())
            return 0
    except (DatabaseBusyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 2
