"""Import canonical tables — a CSV bundle, or inputs built by a mapping — all or nothing.

A *CSV bundle* is a folder with one ``<table>.csv`` per canonical table (any subset of
the 17 tables of :mod:`crm_data.schema`), or the CSV files themselves named
``<table>.csv``. Files are UTF-8 (a byte-order mark is fine) with ``\\n`` or ``\\r\\n``
line endings and a header row of canonical column names (matched ignoring case and
surrounding blanks).

Steps of :func:`import_tables`, on one connection and in ONE transaction:

1. validate everything (:mod:`crm_data.validation`); on any error nothing is written;
2. create the canonical tables that are missing;
3. per table, parents first: copy the rows into a temporary staging table with
   :func:`crm_data.bulk.bulk_insert`, then upsert them by primary key
   (:func:`crm_data.dialects.upsert_from_select`): new keys are inserted; existing keys
   get the columns present in the file (columns absent from the file keep their values),
   and only rows whose values differ are touched — re-importing a bundle changes nothing.
   On PostgreSQL a *bulk load* (:data:`BULK_LOAD_SHARE`: into an empty table, or with new
   keys that make up a large share of the table) drops the table's secondary indexes and
   foreign keys and creates them again after the rows (:func:`crm_data.bulk.deferred_indexes`),
   then ANALYZEs the table (into an empty table: a plain INSERT, no upsert).
   Deals and payments with a ``currency`` are converted into the reporting currency on
   the way (:mod:`crm_data.currency`: ``amount_original`` keeps the amount as written);
   blank values a mapping asks to estimate are filled first (:mod:`crm_data.estimates`);
   inputs of ``crm_insights_meta`` are settings (the reporting currency), not rows;
4. report which tables changed, and per table the rows inserted and updated and the span
   of their dates (old and new values), to :func:`crm_data.hooks.tables_changed` — the
   application's listeners (the KPI roll-ups' incremental refresh, when wired) run in
   the import's transaction; unwired, the derived tables depending on a changed table
   are invalidated (:mod:`crm_data.derived`: the KPIs read the base tables until
   ``python -m crm_data rollups``); when any row changed, record that the tables hold
   imported data (:func:`mark_contents`: ``crm-insights demo`` then refuses to overwrite
   them without ``--replace``);
5. commit; any database error rolls everything back;
6. when any row changed and a data-quality report is stored, check again and store the new
   one for the Data quality page (:func:`crm_data.quality_snapshot.store_after_import`; a
   failure there is a warning);
7. when any row changed, tell the committed listeners (:func:`crm_data.hooks.tables_committed`:
   when wired, the revenue forecast the Forecast page opens on is computed ahead and stored,
   ``forecasting.store``; a failure there is a warning).

Row identity: the primary key of each table; ``deal_stage_history`` (deal_id, stage,
entered_at), ``web_traffic`` (date, source) and ``social_media`` (date, platform) have
composite keys. ``campaign_responses`` has no key: an import *replaces all responses of
every campaign that appears in its file* (so a campaign's responses are always those of
its latest import, and re-importing changes nothing).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import dialects, hooks, schema
from crm_data.bulk import bulk_insert, deferred_indexes
from crm_data.engines import connect_checked, explain_database_error
from crm_data.validation import (
    MAX_LISTED_ERRORS,
    ImportIssue,
    IssueLog,
    TableInput,
    ValidTable,
    allow_long_csv_fields,
    existing_tables,
    shown_name,
    validate,
)

__all__ = [
    "ImportIssue",
    "ImportReport",
    "ImportSummary",
    "TableInput",
    "import_paths",
    "import_tables",
    "mapping_hint",
    "mark_contents",
    "read_bundle",
    "read_csv",
    "recorded_contents",
    "store_stages",
    "stored_stages",
    "validate_tables",
    "won_amount_by_currency",
]

Progress = Callable[[float, str], None]
_COUNT = {"preserve_rowcount": True}  # INSERT row counts (SQLAlchemy keeps them only when asked)

#: A PostgreSQL upsert is a *bulk load* — the table's secondary indexes and foreign keys are
#: dropped before it and created again after it (:func:`crm_data.bulk.deferred_indexes`) —
#: when it stages at least :data:`BULK_LOAD_MIN_ROWS` rows and the keys new to the table
#: are at least :data:`BULK_LOAD_SHARE` of the rows the table then holds. Measured on
#: 490k deals (3 secondary indexes, 1 foreign key): maintaining them row by row costs
#: ~15 µs per new row, rebuilding them ~2.2 µs per row of the whole table, so rebuilding
#: pays from a share of ~0.15; 0.2 leaves a margin (a monthly import into years of
#: history stays far below it and never locks the table for readers).
BULK_LOAD_MIN_ROWS = 10_000
BULK_LOAD_SHARE = 0.2


#: The column that dates each table's records, for the summary's date ranges.
DATED_BY: dict[str, tuple[str, ...]] = {
    "accounts": ("created_at",),
    "contacts": ("created_at",),
    "subscriptions": ("started_at", "ended_at"),
    "deals": ("created_at", "closed_at"),
    "deal_stage_history": ("entered_at",),
    "interactions": ("occurred_at",),
    "tickets": ("opened_at",),
    "survey_responses": ("responded_at",),
    "campaigns": ("started_on",),
    "campaign_responses": ("sent_at", "opened_at"),
    "web_traffic": ("date",),
    "social_media": ("date",),
    "payments": ("paid_at",),
    "costs": ("incurred_on",),
}


@dataclass
class ImportSummary:
    """What the files held, in figures a user can check against the CRM: rows per table,
    deals per status, the won amount (per currency when deals have a currency column, else
    under ``""``) and the first and last date of each dated column."""

    rows: dict[str, int] = field(default_factory=dict)
    deals: dict[str, int] = field(default_factory=dict)
    won_amount: dict[str, float] = field(default_factory=dict)
    dates: dict[str, tuple[dt.date, dt.date]] = field(default_factory=dict)

    @classmethod
    def of(cls, tables: dict[str, ValidTable]) -> ImportSummary:
        summary = cls(rows={name: len(tables[name].frame) for name in schema.TABLE_NAMES if name in tables})
        deals = tables.get("deals")
        if deals is not None and "status" in deals.frame.columns:
            status = deals.frame["status"].astype("string").str.lower()
            summary.deals = {s: int((status == s).sum()) for s in ("won", "lost", "open")}
            if "amount" in deals.frame.columns:
                won = deals.frame[(status == "won").fillna(False).to_numpy()]
                amounts = pd.to_numeric(won["amount"], errors="coerce").fillna(0.0)
                if "currency" in won.columns:
                    currency = won["currency"].astype("string").fillna("")
                    summary.won_amount = {
                        str(c): float(a) for c, a in amounts.groupby(currency).sum().items()
                    }
                else:
                    summary.won_amount = {"": float(amounts.sum())}
        for name, columns in DATED_BY.items():
            item = tables.get(name)
            for column in columns if item is not None else ():
                if column not in item.frame.columns:
                    continue
                stamps = pd.to_datetime(item.frame[column], errors="coerce").dropna()
                if not stamps.empty:
                    summary.dates[f"{name}.{column}"] = (stamps.min().date(), stamps.max().date())
        return summary

    def lines(self) -> list[str]:
        """The summary as indented text lines (after a heading)."""
        out: list[str] = []
        if self.deals:
            counts = ", ".join(f"{s} {n:,d}" for s, n in self.deals.items())
            out.append(f"  deals: {sum(self.deals.values()):,d} ({counts})")
            for currency, amount in sorted(self.won_amount.items()):
                out.append(f"  won amount{f' ({currency})' if currency else ''}: {amount:,.2f}")
        if self.dates:
            first = min(low for low, _ in self.dates.values())
            last = max(high for _, high in self.dates.values())
            out.append(f"  dates: {first:%Y-%m-%d} – {last:%Y-%m-%d}")
            width = max(len(name) for name in self.dates)
            out.extend(
                f"    {name:{width}s} {low:%Y-%m-%d} – {high:%Y-%m-%d}"
                for name, (low, high) in self.dates.items()
            )
        return out


@dataclass
class ImportReport:
    """The outcome of a validation or an import.

    ``rows`` = rows given per table; ``written`` = rows inserted or changed per table, as
    the databases count them (empty when nothing was written; on DuckDB a row whose
    foreign-key column changes together with other columns counts twice; for
    ``campaign_responses`` every row of the file, since they replace their campaigns' rows);
    ``error_count`` / ``warning_count`` count every issue while ``errors`` / ``warnings``
    list the first ones; ``won_by_currency``: after an import, the won deals of the
    database per currency (:func:`won_amount_by_currency`), to check against the CRM, and
    ``reporting_currency`` the currency amounts are converted into (None: not set).
    """

    ok: bool
    errors: list[ImportIssue] = field(default_factory=list)
    warnings: list[ImportIssue] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    written: dict[str, int] = field(default_factory=dict)
    error_count: int = 0
    warning_count: int = 0
    committed: bool = False
    seconds: float = 0.0
    summary: ImportSummary | None = None
    won_by_currency: list[WonAmount] = field(default_factory=list)
    reporting_currency: str | None = None

    def render(self) -> str:
        """A readable text report: errors (up to the cap, then "and N more"), warnings, rows."""
        out: list[str] = []
        if self.errors:
            out.append(f"{self.error_count:,d} error(s):" if self.error_count != 1 else "1 error:")
            out.extend(f"  {issue}" for issue in self.errors)
            if self.error_count > len(self.errors):
                out.append(f"  ... and {self.error_count - len(self.errors):,d} more")
        if self.warnings:
            out.append(f"{self.warning_count:,d} warning(s):")
            out.extend(f"  {issue}" for issue in self.warnings)
            if self.warning_count > len(self.warnings):
                out.append(f"  ... and {self.warning_count - len(self.warnings):,d} more")
        if not self.ok:
            out.append("nothing was imported: the database is unchanged.")
        elif self.committed:
            out.append(f"imported in {self.seconds:.1f} s (rows in the input / inserted or changed):")
            for table, count in self.rows.items():
                out.append(f"  {table:20s} {count:>12,d} {self.written.get(table, 0):>12,d}")
            summary = self.summary.lines() if self.summary else []
            if summary:
                out.append("what the files held (check it against the CRM):")
                out.extend(summary)
            out.extend(render_won_amounts(self.won_by_currency, self.reporting_currency))
        else:
            out.append("valid (nothing written yet):")
            for table, count in self.rows.items():
                out.append(f"  {table:20s} {count:>12,d}")
        return "\n".join(out)


@dataclass(frozen=True)
class WonAmount:
    """Won deals of one currency: how many, their amounts as the CRM wrote them
    (``amount_original``, else ``amount``), and in the reporting currency (None while
    not converted)."""

    currency: str
    deals: int
    amount: float
    in_reporting: float | None


def won_amount_by_currency(conn: sa.Connection) -> list[WonAmount]:
    """The won deals of the database per currency, to check an import against the CRM's own
    report ("Closed Won by currency"). A NULL currency is the reporting currency (shown as
    its code once known, else ``"(reporting currency)"``); ``in_reporting`` is None for a
    currency stored unconverted (:func:`crm_data.currency.unconverted_currencies`)."""
    from crm_data import currency

    if "deals" not in existing_tables(conn):
        return []
    deals = schema.deals
    reporting = currency.read_setting(conn, currency.REPORTING_CURRENCY)
    unconverted = set(currency.unconverted_currencies(conn))
    have = schema.table_columns(conn, "deals")
    code = deals.c.currency if "currency" in have else sa.null()
    original = (
        sa.func.coalesce(deals.c.amount_original, deals.c.amount)
        if "amount_original" in have
        else deals.c.amount
    )
    rows = conn.execute(
        sa.select(code.label("currency"), sa.func.count(), sa.func.sum(original), sa.func.sum(deals.c.amount))
        .where(deals.c.status == "won")
        .group_by(code)
    ).all()
    out = [
        WonAmount(
            str(c) if c is not None else (reporting or "(reporting currency)"),
            int(n),
            float(a or 0.0),
            None if c is not None and (c in unconverted or reporting is None) else float(r or 0.0),
        )
        for c, n, a, r in rows
    ]
    return sorted(out, key=lambda w: w.currency)


def render_won_amounts(won: Sequence[WonAmount], reporting: str | None = None) -> list[str]:
    """The report lines of :func:`won_amount_by_currency` (none when nothing was won)."""
    if not won:
        return []
    unit = reporting or "reporting currency"
    lines = [
        "won deals in the database, per currency (check them against the CRM):",
        f"  {'currency':20s} {'deals':>12s} {'as written':>18s} {'in ' + unit:>18s}",
    ]
    for item in won:
        converted = "not converted" if item.in_reporting is None else f"{item.in_reporting:,.2f}"
        lines.append(f"  {item.currency:20s} {item.deals:>12,d} {item.amount:>18,.2f} {converted:>18s}")
    if len(won) > 1 and all(item.in_reporting is not None for item in won):
        total = sum(item.in_reporting or 0.0 for item in won)
        lines.append(f"  {'total':20s} {sum(i.deals for i in won):>12,d} {'':>18s} {total:>18,.2f}")
    return lines


def _midnight(today: dt.date | None) -> dt.datetime | None:
    """``today`` as a naive UTC datetime (the day open deals are converted at), or None."""
    return None if today is None else dt.datetime.combine(today, dt.time())


def _report(log: IssueLog, tables: dict[str, ValidTable] | None, started: float) -> ImportReport:
    return ImportReport(
        ok=log.error_count == 0,
        errors=list(log.errors),
        warnings=list(log.warnings),
        rows={name: len(tables[name].frame) for name in schema.TABLE_NAMES if name in (tables or {})},
        error_count=log.error_count,
        warning_count=log.warning_count,
        seconds=time.perf_counter() - started,
        summary=ImportSummary.of(tables) if log.error_count == 0 and tables else None,
    )


# --- reading CSV files -------------------------------------------------------------------


def _line_numbers(data: bytes, rows: int) -> np.ndarray:
    """The line number of each record: header on line 1, then one line per row — unless
    the file has blank lines or quoted line breaks, then the lines are counted exactly."""
    newlines = data.count(b"\n")
    trailing = data.endswith(b"\n")
    if newlines - (1 if trailing else 0) == rows and b"\n\n" not in data and b"\n\r\n" not in data:
        return np.arange(2, rows + 2, dtype=np.int64)
    starts: list[int] = []
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    previous_end = 0
    for record in reader:
        if record and any(record):
            starts.append(previous_end + 1)
        previous_end = reader.line_num
    return np.asarray(starts[1 : rows + 1], dtype=np.int64)


def _locate_bad_record(text: str, width: int) -> tuple[int | None, str]:
    reader = csv.reader(io.StringIO(text, newline=""))
    previous_end = 0
    try:
        for record in reader:
            if record and any(record) and len(record) != width:
                return previous_end + 1, f"expected {width} fields, found {len(record)}"
            previous_end = reader.line_num
    except csv.Error as error:
        return reader.line_num, f"unreadable CSV: {error}"
    return None, "unreadable CSV"


def _csv_module_frame(text: str, header: list[str]) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The rows of ``text`` read by Python's csv module, with their line numbers: the fallback
    when pyarrow cannot split a file that is valid CSV (a quoted value with line breaks over
    its 1 MB block, say). Text cells, empty ones missing, blank lines skipped; None when a
    record does not have one field per header cell."""
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)  # the header
    rows: list[list[str]] = []
    starts: list[int] = []
    previous_end = reader.line_num
    for record in reader:
        start, previous_end = previous_end + 1, reader.line_num
        if not record:
            continue
        if len(record) != len(header):
            return None
        rows.append(record)
        starts.append(start)
    frame = pd.DataFrame(rows, columns=header, dtype="str")
    return frame.mask(frame == ""), np.asarray(starts, dtype=np.int64)


def read_csv(path: str | Path, table: str | None = None) -> tuple[TableInput | None, list[ImportIssue]]:
    """Read one bundle CSV as text (empty cells missing) with the line number of each row.
    Fields may be long (:func:`crm_data.validation.allow_long_csv_fields`): the validation,
    not the reader, refuses values over :data:`crm_data.validation.MAX_TEXT_LENGTH`."""
    allow_long_csv_fields()
    path = Path(path)
    name = path.name
    table = table or path.stem
    try:
        data = path.read_bytes()
    except OSError as error:
        return None, [ImportIssue(name, None, "", f"cannot read the file: {error.strerror}")]
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        return None, [ImportIssue(name, line, "", "not UTF-8 text (save the file as UTF-8)")]
    header = next(csv.reader(io.StringIO(text, newline="")), None)
    if not header or not any(h.strip() for h in header):
        return None, [ImportIssue(name, 1, "", "the file is empty: a header row is required")]
    if len(set(header)) != len(header):
        dupes = sorted({h for h in header if header.count(h) > 1})
        return None, [ImportIssue(name, 1, shown_name(dupes[0]), "column appears more than once")]
    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            dtype="str",
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            engine="pyarrow",
        )
    except Exception:  # pyarrow reports ragged rows with its own exception types
        line, reason = _locate_bad_record(text, len(header))
        read = _csv_module_frame(text, header) if line is None else None
        if read is None:
            return None, [ImportIssue(name, line, "", reason)]
        return TableInput(table, read[0], name, read[1]), []
    lines = _line_numbers(data, len(frame))
    if len(lines) != len(frame):
        line, reason = _locate_bad_record(text, len(header))
        return None, [ImportIssue(name, line, "", reason)]
    return TableInput(table, frame, name, lines), []


def mapping_hint(paths: Sequence[str | Path]) -> str:
    """Which shipped mapping(s) recognise ``paths`` as their exports, as advice ("these
    look like HubSpot CRM exports: add --mapping hubspot"); empty when none does."""
    from crm_data.mappings import label, suggest_mappings

    suggested = suggest_mappings(paths)
    if not suggested:
        return ""
    most = suggested[0][1]
    best = [mapping for mapping, recognised in suggested if recognised == most]
    if len(best) == 1:
        return f"these look like {label(best[0])}: add --mapping {best[0].name}"
    options = " or ".join(f"{label(m)} (add --mapping {m.name})" for m in best)
    return f"these look like {options}"


def _with_hint(reason: str, paths: Sequence[Path]) -> str:
    hint = mapping_hint(paths)
    return f"{reason}; {hint}" if hint else reason


def _bundle_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[ImportIssue]]:
    files: list[Path] = []
    issues: list[ImportIssue] = []
    misnamed: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
            for candidate in found:
                if candidate.stem in schema.metadata.tables:
                    files.append(candidate)
                else:
                    issues.append(
                        ImportIssue(
                            candidate.name, None, "", "not a canonical table name: file ignored", "warning"
                        )
                    )
            if not any(p.stem in schema.metadata.tables for p in found):
                reason = _with_hint("no <table>.csv files of canonical tables here", [path])
                issues.append(ImportIssue(str(path), None, "", reason))
        elif path.is_file():
            if path.suffix.lower() == ".csv" and path.stem in schema.metadata.tables:
                files.append(path)
            else:
                misnamed.append(path)
                issues.append(ImportIssue(path.name, None, "", "a bundle file must be named <table>.csv"))
        else:
            issues.append(ImportIssue(str(path), None, "", "no such file or folder"))
    if misnamed:
        # one piece of advice for all of them, on the first one's issue
        first = next(i for i, issue in enumerate(issues) if issue.file == misnamed[0].name)
        issues[first] = replace(issues[first], reason=_with_hint(issues[first].reason, misnamed))
    return files, issues


def read_bundle(paths: Iterable[str | Path]) -> tuple[list[TableInput], list[ImportIssue]]:
    """The inputs of a CSV bundle: folders and/or ``<table>.csv`` files."""
    files, issues = _bundle_files(paths)
    inputs: list[TableInput] = []
    for path in files:
        item, problems = read_csv(path)
        issues.extend(problems)
        if item is not None:
            inputs.append(item)
    return inputs, issues


# --- validation and import ---------------------------------------------------------------


def _log_with(issues: Iterable[ImportIssue] = ()) -> IssueLog:
    log = IssueLog(max_errors=MAX_LISTED_ERRORS)
    for issue in issues:
        log.add(issue)
    return log


def validate_tables(
    engine: sa.Engine, inputs: Sequence[TableInput], *, today: dt.date | None = None
) -> ImportReport:
    """Validate ``inputs`` against each other and the database, writing nothing (a preview).
    ``today`` (default: today in UTC) sets the accepted dates
    (:func:`crm_data.validation.date_window`)."""
    return _validate_tables(engine, inputs, _log_with(), today)


def _prepare(
    inputs: Sequence[TableInput], conn: sa.Connection, log: IssueLog, today: dt.date | None = None
) -> tuple[list[TableInput], dict[str, str]]:
    """The canonical inputs ready to validate and the settings they carry: settings rows
    (crm_insights_meta) taken apart, currency codes normalised, estimated values filled."""
    from crm_data import currency, estimates

    canonical, settings = currency.split_settings(inputs, log)
    canonical = currency.normalise_inputs(canonical, log)
    return estimates.fill_estimates(canonical, conn, log, today), settings


def _validate_tables(
    engine: sa.Engine, inputs: Sequence[TableInput], log: IssueLog, today: dt.date | None = None
) -> ImportReport:
    from crm_data import currency

    started = time.perf_counter()
    with connect_checked(engine) as conn:
        canonical, settings = _prepare(inputs, conn, log, today)
        tables = validate(canonical, conn, log, today)
        currency.plan(conn, settings, canonical, log, _midnight(today))
    return _report(log, tables, started)


def import_tables(
    engine: sa.Engine,
    inputs: Sequence[TableInput],
    progress: Progress | None = None,
    stages: tuple[str, dict[str, str]] | None = None,
    *,
    today: dt.date | None = None,
) -> ImportReport:
    """Validate ``inputs``, then upsert them all in one transaction (nothing on any error).

    ``progress(fraction, message)`` is called as the work advances (0..1). ``stages`` =
    ``(mapping name, {stage label: won / lost / open})``: the user's stage assignments,
    remembered for the next import (:func:`store_stages`) in the same transaction. ``today``
    (default: today in UTC) sets the accepted dates (:func:`crm_data.validation.date_window`).
    Raises :class:`~crm_data.engines.DatabaseBusyError` when another process holds the
    DuckDB file, and the driver's error when the database cannot be used at all (a damaged
    file: :func:`~crm_data.engines.explain_database_error` says what to do).
    """
    return _import_tables(engine, inputs, progress, _log_with(), stages, today)


def _import_tables(
    engine: sa.Engine,
    inputs: Sequence[TableInput],
    progress: Progress | None,
    log: IssueLog,
    stages: tuple[str, dict[str, str]] | None = None,
    today: dt.date | None = None,
) -> ImportReport:
    from crm_data import currency

    started = time.perf_counter()
    tell = progress or (lambda fraction, message: None)
    tell(0.0, "validating")
    with connect_checked(engine) as conn:
        with conn.begin() as transaction:
            dialects.include_ddl_in_transaction(conn)
            canonical, settings = _prepare(inputs, conn, log, today)
            tables = validate(canonical, conn, log, today)
            conversion = currency.plan(conn, settings, canonical, log, _midnight(today))
            report = _report(log, tables, started)
            if not report.ok:
                transaction.rollback()
                tell(1.0, "invalid: nothing imported")
                return report
            change: hooks.Change | None = None
            try:
                changes: dict[str, hooks.TableChange] = {}
                report.written = _write(conn, tables, tell, conversion.convert_staging, changes)
                for name, changed in conversion.finish(conn, report.written, log).items():
                    if changed:  # stored amounts converted again (new rates): rows unknown
                        report.written[name] = report.written.get(name, 0) + changed
                        changes[name] = hooks.UNKNOWN
                report.warnings, report.warning_count = list(log.warnings), log.warning_count
                # planner statistics of the tables just written, before the roll-ups read them
                dialects.analyze(conn, sorted(name for name, rows in report.written.items() if rows))
                change = _tables_changed(conn, report.written, changes, tell, today)
                report.won_by_currency = won_amount_by_currency(conn)
                report.reporting_currency = currency.read_setting(conn, currency.REPORTING_CURRENCY)
                if any(report.written.values()):
                    mark_contents(conn, IMPORTED)
                if stages and stages[1]:
                    store_stages(conn, *stages)
            except sa.exc.DBAPIError as error:
                transaction.rollback()
                if explain_database_error(error, engine.url) is not None:
                    raise  # a damaged database file: not a problem of the imported files
                report.ok = False
                report.error_count += 1
                reason = f"the database rejected the import, nothing was written: {error.orig}"
                if conn.dialect.name == "duckdb" and "still referenced" in str(error.orig):
                    reason += (
                        " (DuckDB cannot change a foreign-key column, such as a deal's account_id, of a row"
                        " that other rows reference: import into a new, empty database file instead)"
                    )
                report.errors.append(
                    ImportIssue(str(engine.url.render_as_string(hide_password=True)), None, "", reason)
                )
                return report
        report.committed = True
    if any(report.written.values()):  # the Data quality page's stored report, right after the commit
        from crm_data.quality_snapshot import store_after_import

        tell(0.95, "checking data quality")
        problem = store_after_import(engine)
        if problem:
            report.warnings.append(
                ImportIssue(engine.url.render_as_string(hide_password=True), None, "", problem)
            )
            report.warning_count += 1
        if change is not None and hooks.committed_listeners():  # e.g. the revenue forecast, computed ahead
            tell(0.97, "preparing what the dashboard computes ahead")
            for problem in hooks.tables_committed(engine, change):
                report.warnings.append(
                    ImportIssue(engine.url.render_as_string(hide_password=True), None, "", problem, "warning")
                )
                report.warning_count += 1
    report.seconds = time.perf_counter() - started
    tell(1.0, "done")
    return report


# --- what the CRM tables hold -------------------------------------------------------------

#: The application's own key/value table, apart from the 17 CRM tables (like the roll-ups'
#: ``rollup_state``). Key ``contents``: what the CRM tables hold — ``demo`` once
#: ``crm_data.demo.generate`` filled them, ``imported`` once an import changed them — so
#: that ``crm-insights demo`` does not overwrite imported data unasked.
meta_metadata = sa.MetaData()
meta = sa.Table(
    "crm_insights_meta",
    meta_metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)
CONTENTS = "contents"
DEMO = "demo"
IMPORTED = "imported"


def mark_contents(conn: sa.Connection, contents: str) -> None:
    """Record in :data:`meta`, in the caller's transaction, what the CRM tables hold now
    (:data:`DEMO` or :data:`IMPORTED`); creates the table when missing."""
    meta_metadata.create_all(conn, checkfirst=True)
    conn.execute(meta.delete().where(meta.c.key == CONTENTS))
    conn.execute(meta.insert().values(key=CONTENTS, value=contents))


#: The user's deal-stage assignments, per mapping (source): a stage the mapping cannot place
#: as won, lost or open is assigned once (stage file, Import page) and remembered here for
#: the next import. ``stage_key`` is the label compared ignoring case and blanks.
stage_map = sa.Table(
    "crm_insights_stage_map",
    meta_metadata,
    sa.Column("source", sa.String(64), primary_key=True),
    sa.Column("stage_key", sa.String(255), primary_key=True),
    sa.Column("stage", sa.String(255), nullable=False),
    sa.Column("status", sa.String(8), nullable=False),
)


def stored_stages(bind: sa.Engine | sa.Connection, source: str) -> dict[str, str]:
    """The stage assignments remembered for ``source`` (a mapping's name): label -> won /
    lost / open; empty when none (or no such table: a database never imported into)."""
    connection = bind.connect() if isinstance(bind, sa.Engine) else contextlib.nullcontext(bind)
    with connection as conn:
        if not sa.inspect(conn).has_table(stage_map.name):
            return {}
        rows = conn.execute(
            sa.select(stage_map.c.stage, stage_map.c.status)
            .where(stage_map.c.source == source)
            .order_by(stage_map.c.stage)
        )
        return {stage: status for stage, status in rows}


def store_stages(conn: sa.Connection, source: str, stages: dict[str, str]) -> None:
    """Remember ``stages`` (label -> won / lost / open) for ``source``, in the caller's
    transaction; creates the table when missing. A label assigned before is replaced."""
    from crm_data.mappings.columns import stage_key
    from crm_data.mappings.engine import check_stage_map

    checked = check_stage_map(stages)  # raises MappingError for a status not won/lost/open
    meta_metadata.create_all(conn, checkfirst=True)
    labels = {stage_key(label): " ".join(str(label).split()) for label in stages}
    conn.execute(
        stage_map.delete().where(stage_map.c.source == source, stage_map.c.stage_key.in_(list(checked)))
    )
    conn.execute(
        stage_map.insert(),
        [{"source": source, "stage_key": k, "stage": labels[k], "status": v} for k, v in checked.items()],
    )


def recorded_contents(conn: sa.Connection) -> str | None:
    """What :func:`mark_contents` recorded last, or None (never recorded: an older
    database, or tables written by another tool)."""
    if not sa.inspect(conn).has_table(meta.name):
        return None
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == CONTENTS)).scalar_one_or_none()


def _tables_changed(
    conn: sa.Connection,
    written: dict[str, int],
    changes: dict[str, hooks.TableChange],
    tell: Progress,
    today: dt.date | None,
) -> hooks.Change | None:
    """Report the tables the import changed (:func:`crm_data.hooks.tables_changed`), in
    its transaction, so data and derived tables (the KPI roll-ups) change together; the
    change reported (None: no row changed), for the committed listeners after the commit."""
    changed = {name: changes.get(name, hooks.UNKNOWN) for name, rows in written.items() if rows}
    if not changed:
        return None
    tell(0.9, "refreshing what is derived from the changed tables")
    change = hooks.Change(changed, today)
    hooks.tables_changed(conn, change)
    return change


def _as_date(value: object) -> dt.date | None:
    """A date from what the database returns for a DATE or timestamp (SQLite: text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return pd.Timestamp(str(value)).date()


def _describe_change(
    conn: sa.Connection, table: sa.Table, staging: sa.Table, columns: list[str], keys: list[str]
) -> hooks.TableChange:
    """What upserting ``staging`` into ``table`` by ``keys`` changes (run before the
    upsert): the rows it inserts, the rows whose values differ (updated, as
    :func:`crm_data.dialects.upsert_statements` decides), whether an inserted key is
    referenced already by another table's rows, and per date or timestamp column of
    ``table`` the earliest and latest of the changed rows' old and new values."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text(f'ANALYZE "{staging.name}"'))  # the planner's row counts of the staged rows
    dates = [c.name for c in table.columns if isinstance(c.type, sa.Date | sa.DateTime)]
    staged_dates = [c for c in dates if c in columns]
    joined = sa.and_(*(table.c[k] == staging.c[k] for k in keys))
    updates = [c for c in columns if c not in keys]

    def spans(source: sa.FromClause, names: list[str]) -> list[sa.ColumnElement]:
        return [
            aggregate
            for name in names
            for aggregate in (
                sa.func.min(source.c[name]),
                sa.func.max(source.c[name]),
                sa.func.sum(sa.case((source.c[name].is_(None), 1), else_=0)),
            )
        ]

    new = (
        sa.select(sa.func.count(), *spans(staging, staged_dates))
        .select_from(staging.outerjoin(table, joined))
        .where(table.c[keys[0]].is_(None))
    )
    inserted, *found = conn.execute(new).one()
    updated, old, now = 0, [], []
    if updates:
        differs = sa.or_(*(table.c[c].is_distinct_from(staging.c[c]) for c in updates))
        changed = sa.select(sa.func.count(), *spans(staging, staged_dates), *spans(table, dates))
        updated, *rest = conn.execute(changed.select_from(staging.join(table, joined)).where(differs)).one()
        now, old = rest[: 3 * len(staged_dates)], rest[3 * len(staged_dates) :]
    result: dict[str, hooks.DateSpan] = {}
    for name in dates:
        values: list[dt.date] = []
        has_null = False
        if name in staged_dates:
            i = 3 * staged_dates.index(name)
            for part, rows in ((found, inserted), (now, updated)):
                if rows:
                    values += [d for d in (_as_date(part[i]), _as_date(part[i + 1])) if d is not None]
                    has_null = has_null or bool(part[i + 2])
        elif inserted:
            has_null = True  # inserted rows get no value
        if updated:
            i = 3 * dates.index(name)
            values += [d for d in (_as_date(old[i]), _as_date(old[i + 1])) if d is not None]
            has_null = has_null or bool(old[i + 2])
        result[name] = hooks.DateSpan(min(values, default=None), max(values, default=None), has_null)
    adopted = False
    if inserted and len(keys) == 1:
        # driven by the staged rows: per new key, one probe of each referencing table's
        # index (every foreign-key column is indexed)
        key = staging.c[keys[0]]
        is_new = ~sa.exists().where(table.c[keys[0]] == key)
        present = existing_tables(conn)
        for other in schema.TABLES:
            for fk in other.foreign_keys:
                if (
                    adopted
                    or fk.column.table is not table
                    or fk.column.name != keys[0]
                    or other.name not in present
                ):
                    continue
                referenced = sa.exists().where(fk.parent == key)
                adopted = conn.execute(sa.select(key).where(is_new, referenced).limit(1)).first() is not None
    return hooks.TableChange(True, int(inserted or 0), int(updated or 0), adopted, result)


def _staging_table(table: sa.Table, columns: list[str]) -> sa.Table:
    return sa.Table(
        f"_import_{table.name}",
        sa.MetaData(),
        *(sa.Column(name, table.c[name].type) for name in columns),
        prefixes=["TEMPORARY"],
    )


def _load_kind(conn: sa.Connection, table: sa.Table, staging: sa.Table, staged: int) -> str:
    """How to upsert ``staged`` rows from ``staging`` into ``table`` on PostgreSQL:
    ``"empty"`` (a bulk load into an empty table: a plain INSERT, no row can conflict since
    the validation refuses duplicate keys), ``"bulk"`` (a bulk load, :data:`BULK_LOAD_SHARE`)
    or ``"rows"`` (row by row: every other database and table, and small loads). The rows
    already in ``table`` are counted up to the number that would make the load too small,
    so a small import into a big table reads little; only then are the staged keys new to
    the table counted (re-importing a bundle changes no index entry: not a bulk load). A
    candidate for a bulk load is locked against other writers first (readers go on), and
    counted again, so that no row can arrive between the count and the load."""
    if conn.dialect.name != "postgresql" or staged < BULK_LOAD_MIN_ROWS or not table.primary_key.columns:
        return "rows"
    # new / (existing + new) >= share needs existing <= staged * (1 - share) / share
    cap = int(staged * (1 - BULK_LOAD_SHARE) / BULK_LOAD_SHARE) + 1
    capped = sa.select(sa.func.count()).select_from(
        sa.select(sa.literal(1)).select_from(table).limit(cap).subquery()
    )
    if conn.execute(capped).scalar_one() >= cap:
        return "rows"
    target = conn.dialect.identifier_preparer.format_table(table)
    conn.exec_driver_sql(f"LOCK TABLE {target} IN SHARE ROW EXCLUSIVE MODE")
    existing = conn.execute(capped).scalar_one()
    if existing >= cap:
        return "rows"
    if existing == 0:
        return "empty"
    keys = [c.name for c in table.primary_key.columns]
    known = sa.exists().where(*(table.c[k] == staging.c[k] for k in keys))
    new = conn.execute(sa.select(sa.func.count()).select_from(staging).where(~known)).scalar_one()
    return "bulk" if new >= BULK_LOAD_SHARE * (existing + new) else "rows"


def _write(
    conn: sa.Connection,
    tables: dict[str, ValidTable],
    tell: Progress,
    before_upsert: Callable[[sa.Connection, sa.Table, sa.Table], None] | None = None,
    changes: dict[str, hooks.TableChange] | None = None,
) -> dict[str, int]:
    """Create missing tables (and columns), then stage and upsert each table, parents first;
    ``before_upsert(conn, table, staging)`` may change the staged rows (currency conversion).
    ``changes`` receives what each table's upsert changes (:func:`_describe_change`; a
    table without a key, whose rows are replaced: unknown)."""
    present = existing_tables(conn)
    missing = [t for t in schema.TABLES if t.name not in present]
    if missing:
        schema.metadata.create_all(conn, tables=missing, checkfirst=True)
    schema.add_missing_columns(conn)  # a database from before an optional column was added
    schema.create_missing_indexes(conn)  # ... or an index
    ordered = [tables[t.name] for t in schema.TABLES if t.name in tables]
    total = sum(len(t.frame) for t in ordered) or 1
    done = 0
    written: dict[str, int] = {}
    for item in ordered:
        table = item.table
        tell(0.2 + 0.7 * done / total, f"writing {table.name}")
        columns = [c.name for c in table.columns if c.name in item.frame.columns]
        staging = _staging_table(table, columns)
        staging.create(conn)
        bulk_insert(conn, staging, item.frame[columns])
        if before_upsert is not None:
            before_upsert(conn, table, staging)
        if table.primary_key.columns:
            keys = [c.name for c in table.primary_key.columns]
            if changes is not None:
                changes[table.name] = _describe_change(conn, table, staging, columns, keys)
            kind = _load_kind(conn, table, staging, len(item.frame))
            if kind == "empty":
                source = sa.select(*(staging.c[c] for c in columns))
                statements = [sa.insert(table).from_select(columns, source)]
            else:
                statements = dialects.upsert_statements(conn.dialect, table, staging, columns, keys)
            bulk = kind != "rows"
            with deferred_indexes(conn, table) if bulk else contextlib.nullcontext():
                counts = [
                    conn.execute(statement, execution_options=_COUNT).rowcount for statement in statements
                ]
            if bulk:  # fresh statistics for the queries that follow in this transaction (roll-ups)
                conn.exec_driver_sql(f"ANALYZE {conn.dialect.identifier_preparer.format_table(table)}")
        else:
            # campaign_responses: replace the responses of the campaigns in the file
            campaigns = sa.select(staging.c.campaign_id).distinct().scalar_subquery()
            conn.execute(sa.delete(table).where(table.c.campaign_id.in_(campaigns)))
            source = sa.select(*(staging.c[c] for c in columns))
            counts = [
                conn.execute(sa.insert(table).from_select(columns, source), execution_options=_COUNT).rowcount
            ]
        written[table.name] = sum(max(count or 0, 0) for count in counts)
        # on failure the rollback removes the staging table too
        staging.drop(conn)
        done += len(item.frame)
    return written


def import_paths(
    engine: sa.Engine,
    paths: Sequence[str | Path],
    mapping: str | None = None,
    progress: Progress | None = None,
    stages: dict[str, str] | None = None,
    *,
    today: dt.date | None = None,
    reporting_currency: str | None = None,
) -> ImportReport:
    """Import a CSV bundle (folders / ``<table>.csv`` files), or exports through ``mapping``
    (``crm_data.mappings.load_mapping(mapping).read(paths)``; what reading the exports
    detected or repaired comes back as the report's warnings); ``today`` as in
    :func:`import_tables`.

    ``stages``: stage assignments (label -> won / lost / open, e.g. from a stage file) for
    the deal stages the mapping cannot place; they add to (and replace) those remembered in
    the database for this mapping, and are remembered in turn when the import succeeds.
    ``reporting_currency``: the ISO 4217 code amounts are converted into
    (:mod:`crm_data.currency`)."""
    remember: tuple[str, dict[str, str]] | None = None
    if mapping:
        from crm_data.mappings import ReadReport, load_mapping

        loaded = load_mapping(mapping)
        read = ReadReport()  # what reading detected or repaired: warnings, they do not stop the import
        known = _stored_stages_if_readable(engine, loaded.name)
        inputs = loaded.read(
            [Path(p) for p in paths], report=read, stages={**known, **(stages or {})}, database=engine
        )
        issues: list[ImportIssue] = [warning.issue() for warning in read.warnings]
        remember = (loaded.name, dict(stages or {}))
    else:
        inputs, issues = read_bundle(paths)
    if reporting_currency:  # a setting of the import (crm_data.currency)
        setting = pd.DataFrame({"key": ["reporting_currency"], "value": [reporting_currency]}, dtype=object)
        inputs = [TableInput(meta.name, setting, "--reporting-currency", [1]), *inputs]
    log = _log_with(issues)
    if log.error_count:
        report = _validate_tables(engine, inputs, log, today)
        report.ok = False
        return report
    return _import_tables(engine, inputs, progress, log, remember, today)


def _stored_stages_if_readable(engine: sa.Engine, source: str) -> dict[str, str]:
    """:func:`stored_stages`, or none when the database cannot be read yet (a new file)."""
    try:
        return stored_stages(engine, source)
    except sa.exc.DBAPIError:
        return {}
