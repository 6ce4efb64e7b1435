"""The command line: ``crm-insights demo | import | check | forecasts | rollups | serve | users | goals | alerts | reports | scheduler``.

Installed, it is the ``crm-insights`` console script; from a checkout without installing,
``python -m crm_data`` runs the same. :data:`DESCRIPTION` is the help text (plain text:
``--help`` shows it as written). Exit codes: 0 done; 1 invalid input, or ``demo`` refusing
to overwrite imported data; 2 the database is missing, has nothing to check or summarise,
cannot be opened (a damaged or foreign file, a folder, a PostgreSQL server, database or role
that cannot be reached: one sentence says what to do), or is held by another process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from crm_data.engines import (
    DatabaseBusyError,
    connect_checked,
    database_url,
    default_db_path,
    explain_database_error,
    make_engine,
)

if TYPE_CHECKING:
    from crm_data.goals import GoalStore

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
        shown = (
            default is not None
            and default is not False
            and default != []
            and default is not argparse.SUPPRESS
        )
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
        "--stages",
        metavar="FILE",
        help="a stage file saying what the deal stages the mapping cannot place are: a [stages] table of "
        '"<stage label>" = "won" | "lost" | "open" lines (e.g. "Contract Signed" = "won"); remembered in '
        "the database for the next import of this mapping",
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
        "deals, orphans, future dates, stale roll-ups) and store it for the dashboard's Data quality "
        "page (beside the sign-in accounts). Reads the CRM tables only: it works beside the dashboard.",
    )
    check.add_argument(
        "--stale-days",
        type=int,
        default=90,
        metavar="DAYS",
        help="open deals without a stage change for this long are stale",
    )

    forecasts = command(
        "forecasts",
        "compute ahead the revenue forecasts and customer-model fits the dashboard opens on",
        "Compute the revenue forecasts the dashboard's Forecast page opens on (monthly revenue, all "
        "history, 12 months ahead, the automatic model) for the whole company and for the scope of "
        "every signed-in user who sees only part of the data, and store them beside the sign-in "
        "accounts, unless they are stored already: the page then reads them back instead of fitting "
        "the models (about a second of CPU each). demo and every import do this themselves; run it "
        "after writing the tables with another tool, or from cron shortly after each month starts "
        "(a new full month is new data). --each adds one forecast per value of the filter lists "
        "named (one region, one owner, … chosen in the filter bar); lists joined by a comma "
        "(regions,industries) add one per combination (a region and an industry chosen together). "
        "The same run fits and stores the customer models the Customers & churn page opens on (churn "
        "risk's BG/NBD and Gamma-Gamma, the cohort sBGs) for each of those selections. "
        "Reads the CRM tables only: it works beside the dashboard.",
    )
    forecasts.add_argument(
        "--each",
        nargs="+",
        default=[],
        metavar="LIST",
        help="also forecast each value of these filter lists (segments, industries, regions, countries, "
        "company_sizes, acquisition_channels, owners, products), or each combination of the lists "
        "joined by a comma (regions,industries)",
    )
    forecasts.add_argument(
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="processes computing forecasts at once (default: the number of CPUs, here %(default)s)",
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
    serve.add_argument(
        "--allow-anonymous",
        action="store_true",
        help="listen on another address than 127.0.0.1 without sign-in (anyone who reaches the port "
        "sees all data and may import)",
    )
    serve.add_argument(
        "--secrets",
        metavar="FILE",
        help="Streamlit secrets file with the [auth] section for single sign-on (default: "
        ".streamlit/secrets.toml of the working directory, then ~/.streamlit/secrets.toml)",
    )
    _users_parser(commands, url_help)
    _goals_parser(commands, url_help)
    _alerts_parser(commands, url_help)
    _reports_parser(commands, url_help)
    return parser


def _reports_parser(commands: argparse._SubParsersAction, url_help: str) -> None:
    """``reports add | list | remove | send | run-due`` and ``scheduler``."""
    reports = commands.add_parser(
        "reports",
        help="scheduled reports by e-mail: add | list | remove | send | run-due",
        description="Dashboard pages with filters, sent as PDF, XLSX or PPTX to accounts on a cron "
        "schedule; each recipient gets only what their account's scope allows. `run-due` sends what "
        "is due (for cron or a systemd timer: once per scheduled time however often it runs). Mail "
        "goes through $CRM_SMTP_HOST (CRM_SMTP_PORT, CRM_SMTP_FROM, CRM_SMTP_USER, CRM_SMTP_PASSWORD; "
        "STARTTLS). Reports live beside the accounts (app_reports, app_report_runs).",
        formatter_class=_HelpFormatter,
    )
    actions = reports.add_subparsers(dest="reports_command", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        sub.add_argument("--url", help=url_help)
        return sub

    add = action("add", "add a scheduled report")
    add.add_argument("name", help="the report's name (the e-mail's subject)")
    add.add_argument(
        "--page", dest="pages", action="append", required=True, metavar="PAGE",
        help="a page: its title (\"Sales pipeline\", Overview), file or slug (repeatable)",
    )  # fmt: skip
    add.add_argument(
        "--filters", default="", metavar="QUERY",
        help="the filters as the pages' URL query, e.g. 'segment=SMB&period=quarter' (from/to fix the "
        "dates; without them every run shows the last 12 full months and the current one)",
    )  # fmt: skip
    add.add_argument("--format", dest="fmt", choices=("pdf", "xlsx", "pptx"), default="pdf")
    add.add_argument(
        "--to", dest="recipients", action="append", required=True, metavar="RECIPIENT",
        help="an account named by its e-mail address, or NAME=ADDRESS (repeatable)",
    )  # fmt: skip
    add.add_argument("--schedule", required=True, metavar="CRON", help="5-field cron, e.g. '0 8 * * 1'")
    add.add_argument("--timezone", default="UTC", help="the schedule's time zone, e.g. Europe/Berlin")

    action("list", "list the reports with their next run and last runs")
    remove = action("remove", "remove a report (its history stays)")
    remove.add_argument("report", help="name or id")
    send = action("send", "send a report now, apart from its schedule")
    send.add_argument("report", help="name or id")
    due = action("run-due", "send the reports that are due and retry failed deliveries")
    due.add_argument("--now", metavar="ISO", help="act as if it were this UTC time (testing a schedule)")

    scheduler = commands.add_parser(
        "scheduler",
        help="run `reports run-due` every minute and `forecasts` every night (a long-running process)",
        description="A long-running process (APScheduler) calling `reports run-due` at the start of "
        "every minute and `forecasts` at 00:15 UTC every day (the forecasts the Forecast page opens "
        "on: a new month, or data written by another tool); for a server without cron or systemd "
        "timers. Stop it with Ctrl+C or SIGTERM.",
        formatter_class=_HelpFormatter,
    )
    scheduler.add_argument("--url", help=url_help)
    scheduler.add_argument(
        "--forecast-each",
        nargs="+",
        default=[],
        metavar="LIST",
        help="the nightly `forecasts` also forecasts each value of these filter lists (as its --each)",
    )


def _users_parser(commands: argparse._SubParsersAction, url_help: str) -> None:
    from crm_data.accounts import MAX_FAILURES, MIN_PASSWORD_LENGTH, ROLES

    users = commands.add_parser(
        "users",
        help="sign-in accounts of the dashboard: add | remove | list | set-password | update",
        description="The people who may sign in to the dashboard, with a role (viewer: pages and "
        "exports; analyst: also record-level drill-downs and data-quality records; admin: also "
        "imports, the audit log and accounts) and a scope (the regions, countries, segments, "
        "industries and owners they may see; none given: everything). Once any account exists, "
        "the dashboard asks everyone to sign in. Accounts live in the app tables app_accounts and "
        "app_audit: beside a DuckDB or SQLite file in <name>-auth.sqlite, on PostgreSQL in the same "
        f"database (or $CRM_AUTH_DATABASE_URL). {MAX_FAILURES} failed sign-ins in 15 minutes lock a "
        "name for 15 minutes.",
        formatter_class=_HelpFormatter,
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        sub.add_argument("--url", help=url_help)
        return sub

    def scope_options(sub: argparse.ArgumentParser) -> None:
        for option, dest, what in (
            ("--region", "regions", "region"),
            ("--country", "countries", "country"),
            ("--segment", "segments", "segment"),
            ("--industry", "industries", "industry"),
            ("--owner", "owners", "owner (a CRM users.user_id)"),
        ):
            sub.add_argument(
                option, dest=dest, action="append", metavar="VALUE", help=f"may see this {what} (repeatable)"
            )

    add = action("add", "add an account (a password account, or --sso for single sign-on)")
    add.add_argument("name", help="login name, or the e-mail address of a single sign-on user")
    add.add_argument("--role", choices=ROLES, default="viewer", help="what the account may do")
    add.add_argument("--sso", action="store_true", help="signs in through the OpenID Connect provider")
    add.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password (at least {MIN_PASSWORD_LENGTH} characters) from the first line of "
        "standard input instead of asking twice",
    )
    scope_options(add)

    update = action("update", "change an account's role and/or scope (the scope given replaces the old one)")
    update.add_argument("name")
    update.add_argument("--role", choices=ROLES, help="the new role")
    update.add_argument("--everything", action="store_true", help="remove the scope's limits")
    scope_options(update)

    remove = action("remove", "remove an account")
    remove.add_argument("name")

    password = action("set-password", "set a new password")
    password.add_argument("name")
    password.add_argument("--password-stdin", action="store_true", help="read it from standard input")

    action("list", "list the accounts with their role and scope")

    pg_role = action(
        "pg-role",
        "PostgreSQL: the SQL of a LOGIN role that reads only this scope (row-level security "
        "policies; no roll-ups), printed, or run with --apply as a superuser or the tables' owner",
    )
    pg_role.add_argument("role", help="the PostgreSQL role the dashboard will connect as")
    pg_role.add_argument("--schema", default="public", help="the schema of the CRM tables")
    pg_role.add_argument("--print", action="store_true", help="print the SQL (the default without --apply)")
    pg_role.add_argument("--apply", action="store_true", help="run it on --url in one transaction")
    scope_options(pg_role)


def _goals_parser(commands: argparse._SubParsersAction, url_help: str) -> None:
    from crm_data.goals import CSV_COLUMNS

    goals = commands.add_parser(
        "goals",
        help="targets per KPI and period (quotas: won amount per owner per quarter): list | import | remove",
        description="Goals: a target for one KPI in one month, quarter or year (2026-12, 2026-Q4, "
        "2026), optionally for one segment, region, country, industry and/or owner. They live in the "
        "app table app_goals beside the sign-in accounts; the dashboard's Goals page shows progress. "
        f"CSV columns: {', '.join(CSV_COLUMNS)} (kpi, period and target required; ratios as 3% or "
        "0.03; owner: a CRM user id or name). An import is all-or-nothing.",
        formatter_class=_HelpFormatter,
    )
    actions = goals.add_subparsers(dest="goals_command", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        sub.add_argument("--url", help=url_help)
        return sub

    listing = action("list", "list the goals with their actual value and status")
    listing.add_argument(
        "--today", metavar="YYYY-MM-DD", help="judge progress as of this day (default: today, UTC)"
    )
    load = action("import", "add or change goals from a CSV file (nothing is written when a row is bad)")
    load.add_argument("file", help="the CSV file (see `goals --help` for its columns)")
    remove = action("remove", "remove a goal")
    remove.add_argument("goal_id", metavar="ID", help="the goal's id (see `goals list`)")


def _goals(args: argparse.Namespace, url: str) -> int:
    """``goals list | import FILE | remove ID``: exit 2 with one sentence on bad input."""
    import getpass

    from crm_data.goals import GoalError, GoalImportError, GoalStore, format_target

    actor = f"cli:{getpass.getuser()}"
    store = GoalStore.open(url)
    try:
        command = args.goals_command
        if command == "list":
            return _goals_list(store, url, args.today)
        if command == "import":
            path = Path(args.file)
            if not path.is_file():
                print(f"error: no file {path} to import goals from", file=sys.stderr)
                return 2
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError:
                print(f"error: {path} is not UTF-8 text: save the CSV as UTF-8", file=sys.stderr)
                return 2
            engine = make_engine(url, read_only=True)
            try:
                from kpis.goals import owner_names

                owners = owner_names(engine)
            finally:
                engine.dispose()
            try:
                added, changed = store.import_csv(text, path.name, actor=actor, owners=owners)
            except GoalImportError as error:
                for problem in error.problems:
                    print(f"error: {problem}", file=sys.stderr)
                print(
                    f"error: {len(error.problems)} problem(s) in {path.name}: nothing imported",
                    file=sys.stderr,
                )
                return 2
            print(f"imported {path.name}: {added} goal(s) added, {changed} changed")
            return 0
        if command == "remove":
            try:
                goal_id = int(args.goal_id)
            except ValueError:
                print(
                    f"error: a goal id is a number (see `goals list`), not {args.goal_id!r}", file=sys.stderr
                )
                return 2
            goal = store.remove(goal_id, actor=actor)
            target = format_target(goal.target, goal.kpi_info.unit)
            print(f"removed goal {goal_id}: {goal.kpi} {goal.period} target {target}")
            return 0
        return 2
    except GoalError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        store.dispose()


def _goals_list(store: GoalStore, url: str, today_text: str | None) -> int:
    import datetime as dt

    from crm_data.goals import format_target
    from kpis.goals import owner_names, progress, slice_text

    try:
        today = dt.date.fromisoformat(today_text) if today_text else dt.datetime.now(dt.UTC).date()
    except ValueError:
        print(f"error: --today takes a day as YYYY-MM-DD, not {today_text!r}", file=sys.stderr)
        return 2
    goals = store.goals()
    if not goals:
        print("no goals yet (add them on the dashboard's Goals page or with `goals import FILE`)")
        return 0
    engine = make_engine(url, read_only=True)
    try:
        names = owner_names(engine)
        judged = progress(engine, goals, today)
    finally:
        engine.dispose()
    print(f"{'id':>4}  {'kpi':26s} {'period':8s} {'target':>12s} {'actual':>12s}  {'status':12s} slice")
    for goal, row in zip(goals, judged.itertuples(index=False), strict=True):
        unit = goal.kpi_info.unit
        actual = "" if row.actual != row.actual else format_target(row.actual, unit)
        print(
            f"{goal.goal_id:>4}  {goal.kpi:26s} {goal.period:8s} {format_target(goal.target, unit):>12s} "
            f"{actual:>12s}  {row.status:12s} {slice_text(goal, names)}"
        )
    print(f"as of {today:%d %b %Y} (data up to the day before)")
    return 0


def _alerts_parser(commands: argparse._SubParsersAction, url_help: str) -> None:
    """``alerts run | list | add | remove`` (the rules live in the ``delivery`` package,
    imported only when the command runs)."""
    conditions = ("above", "below", "change_by", "outside_forecast", "complaint_spike")
    alerts = commands.add_parser(
        "alerts",
        help="alert rules on KPIs, delivered by e-mail and webhook: run | list | add | remove",
        description="Rules that tell people when a KPI crosses a line, judged on the last complete "
        "period (the running one never fires), one alert per rule and period, sent by e-mail "
        "(CRM_SMTP_HOST, CRM_SMTP_PORT, CRM_SMTP_USER, CRM_SMTP_PASSWORD, CRM_SMTP_FROM, "
        "CRM_SMTP_STARTTLS) and to webhooks (Slack-compatible JSON). Run `alerts run` from cron "
        "or a systemd timer; a delivery that failed is sent again by the next run. The rules, "
        "events and delivery attempts live in the app tables app_alert_rules, app_alert_events "
        "and app_deliveries, beside the accounts.",
        formatter_class=_HelpFormatter,
    )
    actions = alerts.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=summary, description=summary, formatter_class=_HelpFormatter)
        sub.add_argument("--url", help=url_help)
        return sub

    run = action(
        "run", "evaluate every rule on its last complete period, send new alerts and retry failed ones"
    )
    run.add_argument("--today", metavar="YYYY-MM-DD", help="judge as of this day (default: today in UTC)")
    run.add_argument("--rule", type=int, action="append", metavar="ID", help="only this rule (repeatable)")
    action("list", "list the rules and their last alerts")
    add = action("add", "add a rule")
    add.add_argument(
        "--kpi", required=True, help="a KPI key of kpis/registry.py, e.g. churn_rate, nps, revenue"
    )
    add.add_argument("--condition", required=True, choices=conditions)
    add.add_argument(
        "--threshold",
        help="above/below: the line, in the KPI's unit (3%% or 0.03 for a rate); change_by: the "
        "change on the previous period, negative for a fall (--threshold=-10: NPS falls by 10 "
        "points); outside_forecast: the interval, 95 or 80 (default 95)",
    )
    add.add_argument("--grain", choices=("month", "quarter", "year", "week"), default=None,
                     help="the period judged (default: month; week for complaint_spike)")  # fmt: skip
    add.add_argument("--to", dest="to", action="append", required=True, metavar="ADDRESS_OR_URL",
                     help="an e-mail address or a webhook URL to tell (repeatable)")  # fmt: skip
    add.add_argument("--name", default="", help="a title for the alert (default: the rule, described)")
    for option, dest, what in (
        ("--segment", "segments", "segment"),
        ("--industry", "industries", "industry"),
        ("--region", "regions", "region"),
        ("--country", "countries", "country"),
        ("--company-size", "company_sizes", "company size"),
        ("--acquisition-channel", "acquisition_channels", "acquisition channel"),
        ("--owner", "owners", "owner (a CRM users.user_id)"),
        ("--product", "products", "product (a product_id)"),
        ("--pipeline", "pipelines", "pipeline"),
    ):
        add.add_argument(
            option, dest=dest, action="append", metavar="VALUE", help=f"only this {what} (repeatable)"
        )
    remove = action("remove", "remove a rule (its alerts stay in the history)")
    remove.add_argument("rule_id", type=int, metavar="ID")


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
    from crm_data.mappings import MappingError, read_stage_file

    stages = None
    if args.stages:
        if not args.mapping:
            print("error: --stages goes with --mapping (a CSV bundle has its deal statuses)", file=sys.stderr)
            return 1
        try:
            stages = read_stage_file(args.stages)
        except MappingError as error:
            print(f"error: {error}\nnothing was imported", file=sys.stderr)
            return 1
    created = _new_database_file(url)  # removed again when nothing gets imported
    committed = False
    engine = make_engine(url)
    try:
        report = import_paths(
            engine,
            args.paths,
            mapping=args.mapping,
            stages=stages,
            reporting_currency=args.reporting_currency,
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
    if committed:
        _audit_import(url, args.paths, report)
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


def _forecasts(url: str, prog: str, each: list[str], jobs: int) -> int:
    from forecasting import store as forecast_store

    if forecast_store.mode() != "on":
        print(
            f"error: ${forecast_store.STORE_VARIABLE} is {forecast_store.mode()}: nothing is stored",
            file=sys.stderr,
        )
        return 2
    # read-only: works beside the (read-only) dashboard on the same DuckDB file
    engine = make_engine(url, read_only=True)
    store = forecast_store.ForecastStore.open(url)
    try:
        if store is None:
            print(f"error: {_shown(url)} is in memory: a stored forecast would not outlive this command",
                  file=sys.stderr)  # fmt: skip
            return 2
        with connect_checked(engine) as conn:
            from crm_data.validation import existing_tables

            missing = forecast_store.SERIES_TABLES - existing_tables(conn)  # the series' and range's tables
            scopes = forecast_store.signed_in_scopes(url)
            try:
                chosen = [] if missing else forecast_store.ahead_selections(conn, scopes=scopes, each=each)
            except ValueError as error:  # --each naming no filter list
                print(f"error: --each: {error}", file=sys.stderr)
                return 2
            done = forecast_store.compute_ahead(conn, store, selections=chosen, jobs=jobs) if chosen else []
    finally:
        engine.dispose()
        forecast_store.forget_opened()
    if not done:
        print(f"error: nothing to forecast: {_shown(url)} holds no dated record; load data with "
              f"`{prog} demo` or `{prog} import PATH`", file=sys.stderr)  # fmt: skip
        return 2
    for ahead in done:
        print(ahead.line())
    return 0 if all(ahead.stored for ahead in done) else 2


def _check(args: argparse.Namespace, url: str, prog: str) -> int:
    from crm_data import quality_snapshot, schema
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
            rows = quality_snapshot.table_rows(conn)  # before the check: a change meanwhile shows
            report = check_database(conn, stale_days=args.stale_days)
    finally:
        engine.dispose()
    print(report.render())
    try:  # the Data quality page reads it back (beside the sign-in accounts: works beside the dashboard)
        with quality_snapshot.opened(url) as store:
            store.write(report, rows)
        print(
            f"\nStored for the dashboard's Data quality page (checked {report.checked_at:%Y-%m-%d %H:%M} UTC)."
        )
    except (sa.exc.SQLAlchemyError, OSError) as error:
        print(f"warning: the report was not stored for the Data quality page: {error}", file=sys.stderr)
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    import getpass

    if not sys.stdin.isatty():
        raise ValueError(
            "no terminal to ask for the password: pass it on standard input with --password-stdin"
        )
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Password again: "):
        raise ValueError("the two passwords differ")
    return first


def _scope_args(args: argparse.Namespace) -> dict[str, list[str]]:
    from crm_data.accounts import SCOPE_KEYS

    return {key: getattr(args, key) for key in SCOPE_KEYS if getattr(args, key, None)}


def _pg_role(args: argparse.Namespace, url: str) -> int:
    from crm_data import pg_scope
    from kpis.filters import Scope

    statements = pg_scope.scope_role_sql(args.role, Scope.from_dict(_scope_args(args)), args.schema)
    if args.print or not args.apply:
        print("\n".join(f"{statement};" for statement in statements))
    if args.apply:
        if sa.make_url(url).get_backend_name() != "postgresql":
            print("error: --apply needs a PostgreSQL --url", file=sys.stderr)
            return 1
        pg_scope.apply(url, statements)
        print(f"applied: {args.role} sees {Scope.from_dict(_scope_args(args)).describe()}", file=sys.stderr)
    return 0


def _users(args: argparse.Namespace, url: str) -> int:
    import getpass

    from crm_data.accounts import AccountError, AccountStore

    actor = f"cli:{getpass.getuser()}"
    store = AccountStore.open(url)
    try:
        command = args.users_command
        if command == "list":
            accounts = store.accounts()
            if not accounts:
                print("no accounts: the dashboard needs no sign-in on 127.0.0.1 (add one with `users add`)")
            for account in accounts:
                how = "sso" if account.sso else "password"
                print(f"{account.name:40s} {account.role:8s} {how:9s} sees {account.describe_scope()}")
            return 0
        if command == "add":
            password = None if args.sso else _read_password(args)
            account = store.add(
                args.name,
                role=args.role,
                scope=_scope_args(args),
                password=password,
                sso=args.sso,
                actor=actor,
            )
            print(f"added {account.name} ({account.role}, sees {account.describe_scope()})")
        elif command == "update":
            scope = {} if args.everything else (_scope_args(args) or None)
            account = store.update(args.name, role=args.role, scope=scope, actor=actor)
            print(f"updated {account.name} ({account.role}, sees {account.describe_scope()})")
        elif command == "remove":
            store.remove(args.name, actor=actor)
            print(f"removed {args.name}")
        elif command == "set-password":
            store.set_password(args.name, _read_password(args), actor=actor)
            print(f"new password set for {args.name}")
        return 0
    except (AccountError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        store.dispose()


def _alerts(args: argparse.Namespace, url: str) -> int:
    """``alerts …``: 0 done; 1 a bad rule, or a rule or delivery that failed (recorded and
    retried by the next run); 2 the database or the SMTP settings cannot be used."""
    import datetime as dt
    import getpass

    from delivery.alerts import FILTER_FIELDS, AlertError, AlertStore, RunInProgress, run

    if args.alerts_command == "run":  # a missing CRM database: exit 2 before any app file is made
        make_engine(url, read_only=True).dispose()
    try:
        store = AlertStore(url)
        command = args.alerts_command
        if command == "list":
            rules = store.rules()
            if not rules:
                print("no alert rules (add one with `alerts add`)")
            events = store.events()
            for rule in rules:
                fired = events[events["rule_id"] == rule.rule_id]
                last = f"; last alert {fired['period'].iloc[0]}" if len(fired) else "; no alert yet"
                title = "" if rule.name == rule.describe() else f"{rule.name}: "
                print(f"{rule.rule_id:4d}  {title}{rule.describe()} → {', '.join(rule.channels)}{last}")
            return 0
        if command == "add":
            grain = args.grain or ("week" if args.condition == "complaint_spike" else "month")
            filters = {name: getattr(args, name) for name in FILTER_FIELDS if getattr(args, name)}
            rule = store.add(
                args.kpi,
                condition=args.condition,
                threshold=args.threshold,
                grain=grain,
                filters=filters,
                channels=args.to,
                name=args.name,
                created_by=f"cli:{getpass.getuser()}",
            )
            _audit_alert(url, "alert_rule_added", rule)
            print(f"added rule {rule.rule_id}: {rule.describe()} → {', '.join(rule.channels)}")
            return 0
        if command == "remove":
            rule = store.remove(args.rule_id)
            _audit_alert(url, "alert_rule_removed", rule)
            print(f"removed rule {rule.rule_id}: {rule.describe()}")
            return 0
        today = dt.date.fromisoformat(args.today) if args.today else dt.datetime.now(dt.UTC).date()
    except (AlertError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    from delivery.channels import MailSettings

    try:
        mail = MailSettings.from_env()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    engine = make_engine(url, read_only=True)
    try:
        report = run(engine, store, today, mail=mail, rule_ids=args.rule)
    except RunInProgress as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    for evaluation in report.evaluations:
        new = any(e is evaluation for e in report.fired)
        state = "ALERT" if new else "fired before" if evaluation.fired else "ok"
        print(f"rule {evaluation.rule.rule_id} [{state}] {evaluation.message}")
    for rule_id, error_text in report.errors:
        print(f"rule {rule_id} [error] {error_text}", file=sys.stderr)
    for rule_id, period, recipient, ok in report.deliveries:
        outcome = "sent to" if ok else "FAILED (recorded; the next run tries again):"
        print(f"rule {rule_id} {period}: {outcome} {recipient}")
    failed = report.failed_deliveries
    if failed:
        print(f"{failed} delivery(ies) failed: see the Alerts page or app_deliveries", file=sys.stderr)
    return 1 if failed or report.errors else 0


def _audit_alert(url: str, action: str, rule: object) -> None:
    """Log a rule added or removed on the command line in the audit log (who: the OS user)."""
    import getpass

    from crm_data.accounts import AccountStore

    store = AccountStore.open(url)
    try:
        describe = rule.describe()  # type: ignore[attr-defined]
        store.record(f"cli:{getpass.getuser()}", action, f"alert {rule.rule_id}", {"rule": describe})  # type: ignore[attr-defined]
    finally:
        store.dispose()


def _audit_import(url: str, paths: list[str], report: object) -> None:
    """Log a command-line import in the dashboard's audit log (who: the OS user)."""
    import getpass

    from crm_data.accounts import IMPORT, AccountStore

    store = AccountStore.open(url)
    try:
        store.record(
            f"cli:{getpass.getuser()}",
            IMPORT,
            ", ".join(Path(p).name for p in paths)[:254],
            {"files": [str(p) for p in paths], "rows_changed": dict(getattr(report, "written", {}) or {})},
        )
    except sa.exc.DBAPIError as error:  # the import itself succeeded: say so, do not fail
        print(f"warning: the import could not be written to the audit log: {error.orig}", file=sys.stderr)
    finally:
        store.dispose()


def _reports(args: argparse.Namespace, url: str) -> int:
    import datetime as dt
    import getpass

    from delivery import reports

    actor = f"cli:{getpass.getuser()}"
    command = args.reports_command
    try:
        if command == "add":
            report = reports.add_report(
                args.name, args.pages, args.filters, args.fmt, args.recipients, args.schedule,
                timezone=args.timezone, actor=actor, url=url,
            )  # fmt: skip
            upcoming = reports.next_run(report.schedule, report.timezone)
            print(
                f"added report {report.report_id} {report.name!r}: {report.describe()}, next {upcoming:%a %d %b %Y %H:%M} UTC"
            )
        elif command == "list":
            return _reports_list(url)
        elif command == "remove":
            report = reports.remove_report(args.report, actor=actor, url=url)
            print(f"removed report {report.report_id} {report.name!r}")
        elif command == "send":
            return _report_results([reports.send_now(args.report, actor=actor, url=url)])
        elif command == "run-due":
            now = dt.datetime.fromisoformat(args.now) if args.now else None
            if now is not None and now.tzinfo is None:
                now = now.replace(tzinfo=dt.UTC)
            return _report_results(reports.run_due(url=url, now=now))
        return 0
    except ValueError as error:  # ReportError, a malformed --now, bad SMTP settings
        print(f"error: {error}", file=sys.stderr)
        return 1


def _report_results(results: list) -> int:
    """One line per recipient; exit code 1 when any delivery failed (it is retried next run)."""
    if not results:
        print("nothing due")
    failed = False
    for result in results:
        for address, outcome in result.outcomes.items():
            failed |= outcome != "sent"
            print(
                f"{result.report} ({result.trigger} {result.due_at:%Y-%m-%d %H:%M} UTC) -> {address}: {outcome}"
            )
    return 1 if failed else 0


def _reports_list(url: str) -> int:
    from delivery import reports

    listed = reports.reports(url)
    if not listed:
        print("no reports (add one with `reports add`)")
    history = reports.runs(url=url)
    for report in listed:
        upcoming = reports.next_run(report.schedule, report.timezone)
        print(f"{report.report_id:>3} {report.name}: {', '.join(reports.page_title(p) for p in report.pages)} "
              f"as {report.format.upper()} to {', '.join(report.recipients)}")  # fmt: skip
        print(
            f"    {report.describe()}; next {upcoming:%a %d %b %Y %H:%M} UTC; filters {report.query or 'none'}"
        )
        for row in history[history["report_id"] == report.report_id].head(3).itertuples():
            print(f"    {row.trigger} {row.due_at:%Y-%m-%d %H:%M}: {row.status} {row.detail}")
    return 0


def _scheduler(url: str, prog: str, forecast_each: list[str]) -> int:
    from apscheduler.schedulers.blocking import BlockingScheduler
    from apscheduler.triggers.cron import CronTrigger

    from delivery import reports

    def tick() -> None:
        try:
            _report_results(reports.run_due(url=url))
        except Exception as error:  # one bad minute (mail server, database) must not end the process
            print(f"error: run-due failed: {type(error).__name__}: {error}", file=sys.stderr)

    def nightly() -> None:
        try:
            _forecasts(url, prog, forecast_each, os.cpu_count() or 1)
        except Exception as error:  # a bad night must not end the process either
            print(f"error: forecasts failed: {type(error).__name__}: {error}", file=sys.stderr)

    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(tick, CronTrigger(minute="*", timezone="UTC"), max_instances=1, coalesce=True,
                      misfire_grace_time=50, id="reports-run-due")  # fmt: skip
    scheduler.add_job(nightly, CronTrigger(hour=0, minute=15, timezone="UTC"), max_instances=1, coalesce=True,
                      misfire_grace_time=3600, id="forecasts")  # fmt: skip
    print("scheduler: running `reports run-due` every minute and `forecasts` at 00:15 UTC (Ctrl+C to stop)",
          flush=True)  # fmt: skip
    import contextlib

    with contextlib.suppress(KeyboardInterrupt, SystemExit):
        scheduler.start()
    return 0


def main(argv: list[str] | None = None) -> int:
    prog = prog_name()
    args = _parser(prog).parse_args(argv)
    if args.command == "serve":
        from ui.serve import serve  # Streamlit only for this command

        return serve(
            url=args.url,
            address=args.address,
            port=args.port,
            prog=prog,
            allow_anonymous=args.allow_anonymous,
            secrets=args.secrets,
        )
    url = database_url(args.url)
    if args.command in ("demo", "import"):
        from forecasting import store as forecast_store
        from kpis import rollups  # the application wires the KPI roll-ups to the writers

        rollups.listen()  # in the writer's transaction: rebuilt (demo) or just the periods touched (import)
        forecast_store.listen()  # after the writer's commit: the Forecast page's default forecast
    try:
        if args.command == "demo":
            return _demo(args, url, prog)
        if args.command == "import":
            return _import(args, url)
        if args.command == "rollups":
            return _rollups(url, prog)
        if args.command == "forecasts":
            return _forecasts(url, prog, args.each, max(1, args.jobs))
        if args.command == "check":
            return _check(args, url, prog)
        if args.command == "users" and args.users_command == "pg-role":
            return _pg_role(args, url)
        if args.command == "users":
            return _users(args, url)
        if args.command == "alerts":
            return _alerts(args, url)
        if args.command == "reports":
            return _reports(args, url)
        if args.command == "scheduler":
            return _scheduler(url, prog, args.forecast_each)
        if args.command == "goals":
            return _goals(args, url)
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
