"""Validation of canonical-table inputs before an import writes anything.

Every check is vectorised with pandas (no Python loop per row): required columns and
values (primary-key columns are always required), types (float, integer, boolean, date,
timestamp), enum values (:data:`crm_data.schema.ENUMS`), survey scores within their scale
(:data:`crm_data.schema.SCORE_SCALES`), the value rules below, duplicate primary keys
(composite keys included) and the references declared as foreign keys in
:mod:`crm_data.schema` (the parent must be in the same import or already in the database).

Value rules, declared here in one place, so that no database ever sees an impossible
value (and all databases refuse the same ones):

* dates and timestamps within :class:`DateWindow`: from :data:`EARLIEST_DATE` to today
  (a parameter, default today in UTC) + :data:`EVENT_HORIZON_YEARS`, or
  + :data:`PLANNED_HORIZON_YEARS` for :data:`crm_data.schema.PLANNED_COLUMNS`;
* numbers within :data:`VALUE_RULES` (:data:`SIGNED_COLUMNS` may be negative);
* :data:`ORDER_RULES`: an end not before its start in the same row;
* text: at most :data:`MAX_TEXT_LENGTH` characters, ids (:func:`is_id`) at most
  :data:`MAX_ID_LENGTH`, no NUL character.

A message quotes at most :data:`SHOWN_CHARACTERS` characters of a value (:func:`quoted`).

Each problem is an :class:`ImportIssue` whose ``str`` is ``file:row:column: reason``, with
``row`` the line number in the source file (the header is line 1). Only the first
:data:`MAX_LISTED_ERRORS` errors are kept as objects; all are counted.

Parsed values: text stays text (an empty or blank cell is missing); numbers are doubles;
integers are nullable ``Int64``; booleans accept true/false, t/f, yes/no, y/n, 1/0 (any
case); dates and timestamps accept ISO 8601 — ``2024-03-01T09:30:00Z``, offsets such as
``+02:00`` (converted to UTC), ``2024-03-01 09:30:00``, ``2024-03-01`` — and are kept as
naive values meaning UTC. Enum values are matched ignoring case and surrounding blanks and
stored in lower case.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from crm_data import schema

#: The longest text (characters) one field may hold; longer values are refused. The CSV
#: readers accept longer fields (see :func:`allow_long_csv_fields`) so that this check, not
#: the reader, reports them with their row and column.
MAX_TEXT_LENGTH = 1_048_576
#: The longest id (characters): ids are keys the databases index (a PostgreSQL B-tree
#: entry holds at most about 2,700 bytes; 255 characters are at most 1,020 bytes of UTF-8).
MAX_ID_LENGTH = 255
#: Characters of a value a message quotes; a longer value is cut there and its length given.
SHOWN_CHARACTERS = 40
#: What Python's csv module is allowed to read in one field (its default is 128 KiB):
#: more than :data:`MAX_TEXT_LENGTH`, so that over-long values reach the validation.
CSV_FIELD_LIMIT = 2**31 - 1  # the largest the csv module takes on every platform (a C long)
#: The earliest day any date or timestamp column accepts.
EARLIEST_DATE = dt.date(1900, 1, 1)
#: How many years after today a planned date (:data:`crm_data.schema.PLANNED_COLUMNS`: a
#: subscription's end, a campaign's days) may lie.
PLANNED_HORIZON_YEARS = 10
#: How many years after today every other date or timestamp may lie: the records of things
#: that happened, with room for scheduled ones and clocks that run ahead (the data-quality
#: check reports every future one).
EVENT_HORIZON_YEARS = 1
#: How many errors are listed one by one (the rest are counted: "and N more").
MAX_LISTED_ERRORS = 50
#: How many warnings are listed one by one.
MAX_LISTED_WARNINGS = 50
#: Up to this many distinct unknown parent ids are looked up with ``IN (...)``; above it the
#: parent's whole key column is read once.
_LOOKUP_LIMIT = 20_000
_LOOKUP_CHUNK = 1_000

_TIMESTAMP_TEXT = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?"
TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0"})


@dataclass(frozen=True)
class Bounds:
    """The accepted values of a number column: ``low <= value <= high`` (None: unbounded)."""

    low: float | None = None
    high: float | None = None

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        if self.low is not None:
            return f"≥ {self.low:g}"
        return f"≤ {self.high:g}"


#: The value rules of number columns, in one place: (table, column) -> accepted values.
#: Counts cannot be negative; a ticket takes at least one contact to resolve; a stage's win
#: probability is a fraction; prices, MRR, deal amounts and campaign costs are not negative.
#: Number columns not listed take any finite value — on purpose :data:`SIGNED_COLUMNS`; the
#: survey scores follow their scale (:data:`crm_data.schema.SCORE_SCALES`).
VALUE_RULES: dict[tuple[str, str], Bounds] = {
    ("products", "list_price"): Bounds(low=0),
    ("subscriptions", "mrr"): Bounds(low=0),
    ("pipeline_stages", "probability"): Bounds(low=0, high=1),
    ("deals", "amount"): Bounds(low=0),
    ("tickets", "contacts_until_resolved"): Bounds(low=1),
    ("campaigns", "cost"): Bounds(low=0),
    **{
        ("web_traffic", column): Bounds(low=0)
        for column in ("sessions", "pageviews", "impressions", "clicks", "signups")
    },
    **{
        ("social_media", column): Bounds(low=0)
        for column in ("followers", "impressions", "engagements", "mentions")
    },
}
#: Money columns that may be negative, and what a negative amount means.
SIGNED_COLUMNS: dict[tuple[str, str], str] = {
    ("payments", "amount"): "a refund, which revenue nets out",
    ("costs", "amount"): "a credit or correction, netted out like a refund",
}
#: Order rules within a row: (table, earlier, later) — when both are given, ``later`` may
#: not lie before ``earlier``. A timestamp at midnight may be a date without its time (a
#: CRM's close date, say): on the same day as ``earlier`` it is not before it.
ORDER_RULES: tuple[tuple[str, str, str], ...] = (
    ("subscriptions", "started_at", "ended_at"),
    ("deals", "created_at", "closed_at"),
    ("tickets", "opened_at", "first_response_at"),
    ("tickets", "opened_at", "resolved_at"),
    ("campaigns", "started_on", "ended_on"),
)


def utc_today() -> dt.date:
    """Today's date in UTC."""
    return dt.datetime.now(dt.UTC).date()


def _years_after(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February -> 28 February
        return day.replace(year=day.year + years, day=28)


@dataclass(frozen=True)
class DateWindow:
    """The dates and timestamps an import accepts: from :data:`EARLIEST_DATE` to the end of
    ``today`` + :data:`PLANNED_HORIZON_YEARS` for planned columns, + :data:`EVENT_HORIZON_YEARS`
    for the others (both last days included)."""

    today: dt.date
    earliest: dt.date
    latest_event: dt.date
    latest_planned: dt.date

    def latest(self, table: str, column: str) -> tuple[dt.date, str]:
        """The last day ``table.column`` accepts, and how it is set (``today + 10 years``)."""
        if (table, column) in schema.PLANNED_COLUMNS:
            return self.latest_planned, _horizon_text(PLANNED_HORIZON_YEARS)
        return self.latest_event, _horizon_text(EVENT_HORIZON_YEARS)


def _horizon_text(years: int) -> str:
    return f"today + {years} year" + ("" if years == 1 else "s")


def date_window(today: dt.date | None = None) -> DateWindow:
    """The :class:`DateWindow` of ``today`` (default: today in UTC)."""
    today = today or utc_today()
    return DateWindow(
        today,
        EARLIEST_DATE,
        _years_after(today, EVENT_HORIZON_YEARS),
        _years_after(today, PLANNED_HORIZON_YEARS),
    )


@dataclass(frozen=True)
class ImportIssue:
    """One problem of an import; ``str`` gives ``file:row:column: reason``."""

    file: str
    row: int | None
    column: str
    reason: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        if self.row is None and not self.column:
            return f"{self.file}: {self.reason}"
        row = "" if self.row is None else self.row
        return f"{self.file}:{row}:{self.column}: {self.reason}"


@dataclass
class TableInput:
    """Rows for one canonical table, as raw text or typed values.

    ``lines`` are the line numbers of the rows in ``source`` (for messages); by default
    the frame's integer index + 2 (a CSV file with its header on line 1). ``estimated``:
    columns whose blank values the importer estimates before validating them
    (``crm_data.estimates``; a mapping's ``estimate`` key).
    """

    table: str
    frame: pd.DataFrame
    source: str
    lines: Sequence[int] | None = None
    estimated: tuple[str, ...] = ()


@dataclass
class ValidTable:
    """A validated input: typed values for the table's columns that were given."""

    table: sa.Table
    frame: pd.DataFrame
    source: str
    lines: np.ndarray


@dataclass
class IssueLog:
    """Collects issues, listing the first ones and counting all."""

    max_errors: int = MAX_LISTED_ERRORS
    max_warnings: int = MAX_LISTED_WARNINGS
    errors: list[ImportIssue] = field(default_factory=list)
    warnings: list[ImportIssue] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    _order: dict[str, int] = field(default_factory=dict)

    def add(self, issue: ImportIssue) -> None:
        """Record one issue."""
        self._order.setdefault(issue.file, len(self._order))
        if issue.level == "warning":
            self.warning_count += 1
            if len(self.warnings) < self.max_warnings:
                self.warnings.append(issue)
        else:
            self.error_count += 1
            self.errors.append(issue)
            if len(self.errors) > 4 * self.max_errors:
                self._trim()

    def add_rows(
        self,
        source: str,
        lines: np.ndarray,
        positions: np.ndarray,
        column: str,
        reasons: Callable[[np.ndarray], Sequence[str]],
    ) -> None:
        """Record an error for each row position in ``positions``; only the first ones are
        turned into messages (``reasons(first_positions)``), the rest are counted."""
        if len(positions) == 0:
            return
        self._order.setdefault(source, len(self._order))
        shown = positions[: self.max_errors]
        for position, reason in zip(shown, reasons(shown), strict=True):
            self.errors.append(ImportIssue(source, int(lines[position]), column, reason))
        self.error_count += len(positions)
        if len(self.errors) > 4 * self.max_errors:
            self._trim()

    def _trim(self) -> None:
        self.errors.sort(key=lambda i: (self._order.get(i.file, 0), i.row or 0))
        del self.errors[self.max_errors :]

    def finish(self) -> None:
        """Sort the listed errors by file (in table order) and line, and keep the first ones."""
        self._trim()
        self.warnings.sort(key=lambda i: (self._order.get(i.file, 0), i.row or 0))


def isin(values: pd.Series, allowed: pd.Series | set[str]) -> pd.Series:
    """``values.isin(allowed)`` for text, through Arrow's hash lookup (pandas' string ``isin``
    converts to Python objects first: ~10x slower on 500k ids). Missing values are False."""
    left = (
        pa.array(values.astype("str"), type=pa.large_string())
        if len(values)
        else pa.array([], pa.large_string())
    )
    right = pa.array(
        list(allowed) if isinstance(allowed, set) else allowed.astype("str"), type=pa.large_string()
    )
    found = pc.fill_null(pc.is_in(left, value_set=right, skip_nulls=True), False)
    return pd.Series(found.to_numpy(zero_copy_only=False), index=values.index, dtype=bool)


def quoted(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """``value`` as text, quoted for a message (``repr``); a value longer than ``limit``
    characters is cut there and its length given: ``'xxxx'… (140,000 characters)``."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text):,d} characters)"


def shown_name(name: object, limit: int = SHOWN_CHARACTERS) -> str:
    """A column label as a message shows it: as it is, or cut like :func:`quoted`."""
    text = str(name)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text):,d} characters)"


def allow_long_csv_fields() -> None:
    """Let Python's csv module read fields up to :data:`CSV_FIELD_LIMIT` characters (its
    default, 131,072, made a long comment or header cell an unreadable file). The limit is
    process-wide; this only ever raises it."""
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)


def _quoted(values: pd.Series) -> list[str]:
    return [quoted(v) for v in values]


def _is_text(series: pd.Series) -> bool:
    return series.dtype == object or pd.api.types.is_string_dtype(series.dtype)


def _as_text(series: pd.Series) -> pd.Series:
    """Text with missing values as NA; blank cells count as missing."""
    if not _is_text(series):
        series = series.astype(object).where(series.notna(), None)
    text = series.astype("str")
    blank = text.str.strip() == ""
    return text.mask(blank.fillna(False).astype(bool))


def is_required(column: sa.Column) -> bool:
    """True when every row must have a value: declared NOT NULL, or part of the primary key."""
    return column.primary_key or not column.nullable


def column_kind(column: sa.Column) -> str:
    """``text``, ``float``, ``integer``, ``boolean``, ``date`` or ``timestamp``."""
    kind = column.type
    if isinstance(kind, sa.DateTime):
        return "timestamp"
    if isinstance(kind, sa.Date):
        return "date"
    if isinstance(kind, sa.Boolean):
        return "boolean"
    if isinstance(kind, sa.Integer):
        return "integer"
    if isinstance(kind, sa.Float | sa.Numeric):
        return "float"
    return "text"


def _parse_timestamps(text: pd.Series) -> pd.Series:
    """ISO 8601 text -> naive UTC ``datetime64``; anything else NaT."""
    looks_right = text.str.fullmatch(_TIMESTAMP_TEXT).fillna(False).astype(bool)
    candidates = text.where(looks_right).str.replace(",", ".", regex=False)
    # cache=False: timestamps are mostly distinct, and the cache's unique/map passes cost more than they save
    parsed = pd.to_datetime(candidates, format="ISO8601", utc=True, errors="coerce", cache=False)
    return parsed.dt.tz_localize(None).astype("datetime64[us]")


def _typed_timestamps(series: pd.Series) -> pd.Series | None:
    if isinstance(series.dtype, pd.DatetimeTZDtype):
        return series.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[us]")
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        return series.astype("datetime64[us]")
    return None


def parse_column(
    series: pd.Series, column: sa.Column, table: str
) -> tuple[pd.Series, pd.Series, pd.Series, str]:
    """Parse one input column.

    Returns ``(values, missing, invalid, reason_prefix)``: the typed values, the mask of
    empty cells, the mask of cells that are given but unreadable, and the reason text
    that precedes the quoted bad value.
    """
    kind = column_kind(column)
    typed = _typed_timestamps(series) if kind in ("timestamp", "date") else None
    if typed is not None:
        missing = typed.isna()
        if kind == "date":
            invalid = typed.notna() & (typed != typed.dt.normalize())
            return typed.dt.normalize(), missing, invalid, "not an ISO 8601 date"
        return typed, missing, pd.Series(False, index=series.index), "not an ISO 8601 timestamp"
    if kind in ("float", "integer") and pd.api.types.is_numeric_dtype(series.dtype) and series.dtype != bool:
        numbers = series.astype("float64")
        missing = numbers.isna()
        text = None
    elif kind == "boolean" and (series.dtype == bool or isinstance(series.dtype, pd.BooleanDtype)):
        values = series.astype("boolean")
        return values, values.isna(), pd.Series(False, index=series.index), "not a boolean (true/false)"
    else:
        text = _as_text(series)
        missing = text.isna()
    if kind == "text":
        enum = schema.ENUMS.get((table, column.name))
        if enum is None:
            return text, missing, pd.Series(False, index=series.index), ""
        normalised = text.str.strip().str.lower()
        invalid = ~missing & ~isin(normalised, set(enum))
        return normalised, missing, invalid, f"is not one of: {', '.join(sorted(enum))}"
    if kind in ("timestamp", "date"):
        parsed = _parse_timestamps(text.str.strip())
        invalid = ~missing & parsed.isna()
        if kind == "date":
            invalid |= parsed.notna() & (parsed != parsed.dt.normalize())
            return parsed, missing, invalid, "not an ISO 8601 date"
        return parsed, missing, invalid, "not an ISO 8601 timestamp"
    if kind == "boolean":
        lowered = text.str.strip().str.lower()
        values = pd.Series(pd.NA, index=series.index, dtype="boolean")
        values[lowered.isin(TRUE_WORDS).to_numpy()] = True
        values[lowered.isin(FALSE_WORDS).to_numpy()] = False
        invalid = ~missing & values.isna()
        return values, missing, invalid, "not a boolean (true/false)"
    if text is not None:
        numbers = pd.to_numeric(text.str.strip(), errors="coerce").astype("float64")
    finite = np.isfinite(numbers.to_numpy(dtype="float64", na_value=np.nan))
    invalid = ~missing & ~pd.Series(finite, index=series.index)
    if kind == "integer":
        whole = (
            pd.Series(finite, index=series.index) & (numbers == numbers.round()) & (numbers.abs() < 2.0**63)
        )
        not_integer = ~missing & ~whole
        values = numbers.where(whole).astype("Int64")
        return values, missing, not_integer, "not an integer"
    return numbers.where(~invalid), missing, invalid, "not a number"


def _header_map(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Canonical (trimmed, lower-case) column name -> the input's column labels."""
    names: dict[str, list[str]] = {}
    for label in frame.columns:
        names.setdefault(str(label).strip().lower(), []).append(label)
    return names


def validate_input(item: TableInput, log: IssueLog, window: DateWindow | None = None) -> ValidTable | None:
    """Check one table's rows on their own (everything except references); dates against
    ``window`` (default: today's, :func:`date_window`)."""
    window = window or date_window()
    if item.table not in schema.metadata.tables:
        log.add(ImportIssue(item.source, None, "", f"{item.table!r} is not a canonical table"))
        return None
    table = schema.metadata.tables[item.table]
    frame = item.frame
    if item.lines is not None:
        lines = np.asarray(item.lines, dtype=np.int64)
        if len(lines) != len(frame):
            raise ValueError(f"{item.source}: {len(lines)} line numbers for {len(frame)} rows")
    elif pd.api.types.is_integer_dtype(frame.index.dtype):
        lines = frame.index.to_numpy(dtype=np.int64) + 2
    else:
        lines = np.arange(len(frame), dtype=np.int64) + 2
    frame = frame.reset_index(drop=True)
    source = item.source
    names = _header_map(frame)
    for name, labels in names.items():
        if name not in table.c:
            for label in labels:
                log.add(ImportIssue(source, 1, shown_name(label), "unknown column, not imported", "warning"))
        elif len(labels) > 1:
            log.add(ImportIssue(source, 1, shown_name(name), f"column appears {len(labels)} times"))
    for column in table.columns:
        if is_required(column) and column.name not in names:
            log.add(ImportIssue(source, 1, column.name, "required column is missing"))

    values: dict[str, pd.Series] = {}
    raws: dict[str, pd.Series] = {}
    for column in table.columns:
        labels = names.get(column.name)
        if not labels:
            continue
        raw = frame[labels[0]]
        parsed, missing, invalid, reason = parse_column(raw, column, table.name)
        if is_required(column):
            log.add_rows(
                source,
                lines,
                np.flatnonzero(missing.to_numpy()),
                column.name,
                lambda p: ["required value is empty"] * len(p),
            )
        bad = np.flatnonzero(invalid.to_numpy())
        if len(bad):
            if reason.startswith("is not one of"):
                log.add_rows(
                    source,
                    lines,
                    bad,
                    column.name,
                    lambda p, r=raw, why=reason: [f"{v} {why}" for v in _quoted(r.iloc[p])],
                )
            else:
                log.add_rows(
                    source,
                    lines,
                    bad,
                    column.name,
                    lambda p, r=raw, why=reason: [f"{why}: {v}" for v in _quoted(r.iloc[p])],
                )
        kind = column_kind(column)
        if kind == "text" and (table.name, column.name) not in schema.ENUMS:
            parsed = _check_text(parsed, column, source, lines, log)
        elif kind in ("date", "timestamp"):
            parsed = _check_window(parsed, raw, column, window, source, lines, log)
        elif (table.name, column.name) in VALUE_RULES:
            _check_bounds(parsed, raw, column, VALUE_RULES[table.name, column.name], source, lines, log)
        values[column.name] = parsed
        raws[column.name] = raw
    typed = pd.DataFrame(values, index=frame.index)
    _check_order(table, typed, raws, source, lines, log)
    _check_duplicate_keys(table, typed, source, lines, log)
    if table is schema.survey_responses:
        _check_score_scales(typed, source, lines, log)
    return ValidTable(table, typed, source, lines)


def is_id(column: sa.Column) -> bool:
    """True for the id columns (the keys databases index): text columns of a primary key or
    a foreign key, and every ``*_id`` column."""
    return column_kind(column) == "text" and (
        column.primary_key or bool(column.foreign_keys) or column.name.endswith("_id")
    )


def _check_text(
    text: pd.Series, column: sa.Column, source: str, lines: np.ndarray, log: IssueLog
) -> pd.Series:
    """Text no database refuses: no NUL character (PostgreSQL cannot store one), at most
    :data:`MAX_TEXT_LENGTH` characters, ids at most :data:`MAX_ID_LENGTH`. Returns ``text``
    with the refused values missing (so that a reference check does not report them again)."""
    given = text.notna()
    if not given.any():
        return text
    limit, what = (MAX_ID_LENGTH, "id") if is_id(column) else (MAX_TEXT_LENGTH, "text")
    nul = given & text.str.contains("\x00", regex=False).fillna(False).astype(bool)
    too_long = given & ~nul & (text.str.len() > limit).fillna(False).astype(bool)
    log.add_rows(
        source,
        lines,
        np.flatnonzero(nul.to_numpy()),
        column.name,
        lambda p: [
            f"contains a NUL character (\\x00), which databases cannot store: {v}"
            for v in _quoted(text.iloc[p])
        ],
    )
    log.add_rows(
        source,
        lines,
        np.flatnonzero(too_long.to_numpy()),
        column.name,
        lambda p: [f"{what} longer than {limit:,d} characters: {v}" for v in _quoted(text.iloc[p])],
    )
    refused = nul | too_long
    return text.mask(refused) if refused.any() else text


def _number_text(value: float) -> str:
    number = float(value)
    if number.is_integer() and abs(number) < 1e16:
        return str(int(number))
    return repr(number)


def _check_bounds(
    numbers: pd.Series,
    raw: pd.Series,
    column: sa.Column,
    bounds: Bounds,
    source: str,
    lines: np.ndarray,
    log: IssueLog,
) -> None:
    """Numbers outside ``bounds`` (:data:`VALUE_RULES`)."""
    values = numbers.astype("float64")
    outside = pd.Series(False, index=numbers.index)
    if bounds.low is not None:
        outside |= (values < bounds.low).fillna(False).astype(bool)
    if bounds.high is not None:
        outside |= (values > bounds.high).fillna(False).astype(bool)
    log.add_rows(
        source,
        lines,
        np.flatnonzero(outside.to_numpy()),
        column.name,
        lambda p: [f"{_number_text(v)} is out of range (must be {bounds})" for v in values.iloc[p]],
    )


def _time_text(raw: object, value: pd.Timestamp) -> str:
    """A date or timestamp for a message: as the file wrote it (text), else in ISO 8601 (UTC)."""
    if isinstance(raw, str):
        return shown_name(raw.strip())
    text = value.isoformat()
    return text.removesuffix("T00:00:00")


def _time_texts(raw: pd.Series, values: pd.Series, positions: np.ndarray) -> list[str]:
    return [_time_text(r, v) for r, v in zip(raw.iloc[positions], values.iloc[positions], strict=True)]


def _check_window(
    values: pd.Series,
    raw: pd.Series,
    column: sa.Column,
    window: DateWindow,
    source: str,
    lines: np.ndarray,
    log: IssueLog,
) -> pd.Series:
    """Dates and timestamps outside ``window``; returns ``values`` with those missing (so that
    the order rules do not report them again)."""
    given = values.notna()
    if not given.any():
        return values
    latest, horizon = window.latest(column.table.name, column.name)
    early = given & (values < pd.Timestamp(window.earliest))
    late = given & (values >= pd.Timestamp(latest) + pd.Timedelta(days=1))
    log.add_rows(
        source,
        lines,
        np.flatnonzero(early.to_numpy()),
        column.name,
        lambda p: [
            f"{v} is before the earliest accepted date {window.earliest.isoformat()}"
            for v in _time_texts(raw, values, p)
        ],
    )
    log.add_rows(
        source,
        lines,
        np.flatnonzero(late.to_numpy()),
        column.name,
        lambda p: [
            f"{v} is after the latest accepted date {latest.isoformat()} ({horizon})"
            for v in _time_texts(raw, values, p)
        ],
    )
    refused = early | late
    return values.mask(refused) if refused.any() else values


def _check_order(
    table: sa.Table,
    typed: pd.DataFrame,
    raws: dict[str, pd.Series],
    source: str,
    lines: np.ndarray,
    log: IssueLog,
) -> None:
    """:data:`ORDER_RULES`: a later column before its earlier one, reported on the later."""
    for name, earlier, later in ORDER_RULES:
        if name != table.name or earlier not in typed.columns or later not in typed.columns:
            continue
        first, then = typed[earlier], typed[later]
        before = first.notna() & then.notna() & (then < first)
        # a midnight on the day of ``earlier`` may be a date without its time: not before it
        same_day = (then == then.dt.normalize()) & (then.dt.normalize() == first.dt.normalize())
        wrong = (before & ~same_day).fillna(False).astype(bool)
        log.add_rows(
            source,
            lines,
            np.flatnonzero(wrong.to_numpy()),
            later,
            lambda p, a=first, b=then, e=earlier, ra=raws[earlier], rb=raws[later]: [
                f"{v} is before {e} {w}"
                for v, w in zip(_time_texts(rb, b, p), _time_texts(ra, a, p), strict=True)
            ],
        )


def _check_score_scales(typed: pd.DataFrame, source: str, lines: np.ndarray, log: IssueLog) -> None:
    """Scores outside their survey's scale (:data:`crm_data.schema.SCORE_SCALES`)."""
    if "survey" not in typed or "score" not in typed:
        return
    for survey, (low, high, whole) in schema.SCORE_SCALES.items():
        scores = typed["score"].where(typed["survey"] == survey)
        wrong = scores.notna() & (
            (scores < low) | (scores > high) | ((scores != scores.round()) if whole else False)
        )
        scale = f"{low:g}–{high:g}" + (" in whole points" if whole else "")
        log.add_rows(
            source,
            lines,
            np.flatnonzero(wrong.to_numpy()),
            "score",
            lambda p, s=scores, why=f"is outside the {survey} scale {scale}": [
                f"{v:g} {why}" for v in s.iloc[p]
            ],
        )


def _key_text(frame: pd.DataFrame, positions: np.ndarray, keys: list[str]) -> list[str]:
    rows = frame.iloc[positions]
    parts = []
    for key in keys:
        series = rows[key]
        if pd.api.types.is_datetime64_any_dtype(series.dtype):
            parts.append([t.isoformat() for t in series])
        else:
            parts.append([str(v) for v in series])
    return [", ".join(p) for p in zip(*parts, strict=True)]


def _check_duplicate_keys(
    table: sa.Table, typed: pd.DataFrame, source: str, lines: np.ndarray, log: IssueLog
) -> None:
    keys = [c.name for c in table.primary_key.columns]
    if not keys or any(k not in typed.columns for k in keys):
        return
    complete = typed[keys].notna().all(axis=1)
    if not complete.any():
        return
    key_frame = typed.loc[complete, keys]
    repeated = key_frame.duplicated(keep="first")
    if not repeated.any():
        return
    first_position = (
        pd.Series(np.flatnonzero(complete.to_numpy()), index=key_frame.index)
        .groupby([key_frame[k] for k in keys], sort=False, dropna=False)
        .transform("first")
    )
    positions = np.flatnonzero(complete.to_numpy())[repeated.to_numpy()]
    label = "+".join(keys)

    def reasons(shown: np.ndarray) -> list[str]:
        texts = _key_text(typed, shown, keys)
        firsts = first_position.loc[typed.index[shown]].to_numpy()
        return [
            f"duplicate key {quoted(t)} (first on line {lines[f]})"
            for t, f in zip(texts, firsts, strict=True)
        ]

    log.add_rows(source, lines, positions, label, reasons)


def existing_tables(conn: sa.Connection) -> set[str]:
    """The canonical tables that exist in the database of ``conn``."""
    present = set(sa.inspect(conn).get_table_names())
    return {name for name in schema.TABLE_NAMES if name in present}


def _known_in_database(
    conn: sa.Connection | None, present: set[str], column: sa.Column, values: pd.Series
) -> pd.Series:
    """Boolean mask over ``values`` (distinct ids): which exist in ``column`` of the database."""
    if conn is None or column.table.name not in present or values.empty:
        return pd.Series(False, index=values.index)
    if len(values) > _LOOKUP_LIMIT:
        existing = pd.Series([r[0] for r in conn.execute(sa.select(column).distinct())], dtype="str")
        return isin(values, existing)
    found: set[str] = set()
    items = values.tolist()
    for start in range(0, len(items), _LOOKUP_CHUNK):
        chunk = items[start : start + _LOOKUP_CHUNK]
        found.update(r[0] for r in conn.execute(sa.select(column).where(column.in_(chunk))))
    return isin(values, found)


def check_references(
    tables: dict[str, ValidTable], conn: sa.Connection | None, present: set[str], log: IssueLog
) -> None:
    """Every foreign key of :mod:`crm_data.schema`: the parent id is in the import or the database."""
    for name in schema.TABLE_NAMES:
        item = tables.get(name)
        if item is None:
            continue
        for foreign_key in sorted(item.table.foreign_keys, key=lambda k: k.parent.name):
            child = foreign_key.parent.name
            if child not in item.frame.columns:
                continue
            parent_column = foreign_key.column
            parent = parent_column.table.name
            ids = item.frame[child]
            given = ids.notna().to_numpy()
            if not given.any():
                continue
            known = pd.Series(False, index=ids.index)
            parent_item = tables.get(parent)
            if parent_item is not None and parent_column.name in parent_item.frame.columns:
                known = isin(ids, parent_item.frame[parent_column.name].dropna())
            unknown_ids = ids[given & ~known.to_numpy()]
            if unknown_ids.empty:
                continue
            distinct = pd.Series(unknown_ids.unique(), dtype="str")
            in_database = set(distinct[_known_in_database(conn, present, parent_column, distinct).to_numpy()])
            missing = given & ~known.to_numpy() & ~isin(ids, in_database).to_numpy()
            positions = np.flatnonzero(missing)
            target = f"{parent}.{parent_column.name}"
            log.add_rows(
                item.source,
                item.lines,
                positions,
                child,
                lambda p, s=ids, t=target: [
                    f"{v} is not in {t} (neither in this import nor in the database)"
                    for v in _quoted(s.iloc[p])
                ],
            )


def validate(
    inputs: Sequence[TableInput], conn: sa.Connection | None, log: IssueLog, today: dt.date | None = None
) -> dict[str, ValidTable]:
    """Validate every input (one per table) and their references; issues go to ``log``.
    ``today`` (default: today in UTC) sets the accepted dates (:func:`date_window`)."""
    window = date_window(today)
    tables: dict[str, ValidTable] = {}
    sources: dict[str, str] = {}
    for item in inputs:
        if item.table in sources:
            log.add(
                ImportIssue(
                    item.source, None, "", f"table {item.table} is also given by {sources[item.table]}"
                )
            )
            continue
        valid = validate_input(item, log, window)
        if valid is not None:
            sources[item.table] = item.source
            tables[item.table] = valid
    present = existing_tables(conn) if conn is not None else set()
    check_references(tables, conn, present, log)
    log.finish()
    return tables
