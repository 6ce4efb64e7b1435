"""Currencies: deal and payment amounts in one reporting currency, converted at import.

The ONE place where money changes currency. Every KPI and roll-up sums ``amount`` as it
is; the importer makes ``amount`` mean the reporting currency:

* an input row of ``deals`` / ``payments`` with a ``currency`` (ISO 4217, upper case) keeps
  the amount as written in ``amount_original`` (filled from ``amount`` when not given) and
  gets ``amount = amount_original × rate_to_reporting``, the rate of
  :data:`crm_data.schema.exchange_rates` in force on the record's day: the currency's row
  with the latest ``valid_from`` on or before that day, else (a day before the currency's
  first row) its first row. The day is ``paid_at`` for a payment, ``closed_at`` for a
  closed deal and the import day for an open one (its value today).
* The conversion is one SQL expression (:func:`converted_amount`), run on the import's
  staging rows before they are upserted (so a re-import changes nothing) and, when the
  rates or the reporting currency changed, on the stored rows too.
* A row whose currency IS the reporting currency: ``amount = amount_original``. A NULL
  currency (demo data, older imports, single-currency exports) is the reporting currency
  and is left alone.
* A currency with no rate at all, or any currency while no reporting currency is known, is
  stored unconverted (``amount = amount_original``): the import warns, and records those
  currencies in ``crm_insights_meta`` (:data:`UNCONVERTED`), so the dashboard says that
  money figures mix them (``ui.currency``).

The reporting currency is the setting :data:`REPORTING_CURRENCY` of ``crm_insights_meta``:
set by an import (Salesforce's corporate currency from ``CurrencyType``, a mapping block
feeding ``crm_insights_meta``; ``crm-insights import --reporting-currency``), else taken
from the data when it holds a single currency. It cannot change once amounts were
converted into it (the stored rates are rates into it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema
from crm_data.validation import ImportIssue, IssueLog, TableInput, existing_tables

#: crm_insights_meta key: the ISO 4217 code of the reporting currency.
REPORTING_CURRENCY = "reporting_currency"
#: crm_insights_meta key: the currencies stored unconverted by the last import, comma-separated.
UNCONVERTED = "unconverted_currencies"
#: The settings an import may give (a mapping block feeding crm_insights_meta).
SETTINGS = frozenset({REPORTING_CURRENCY})
#: The tables whose amounts carry a currency, and the time column that dates a row's rate
#: (a deal without closed_at — still open — uses the import day).
MONEY_TABLES: dict[str, str] = {"deals": "closed_at", "payments": "paid_at"}
CODE = re.compile(r"^[A-Z]{3}$")


def _meta() -> sa.Table:
    from crm_data.importing import meta  # the importer owns the settings table

    return meta


# ---- settings --------------------------------------------------------------------------


def read_setting(conn: sa.Connection, key: str) -> str | None:
    """The value of ``key`` in crm_insights_meta, or None (no table, no such key)."""
    meta = _meta()
    if not sa.inspect(conn).has_table(meta.name):
        return None
    return conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar_one_or_none()


def write_setting(conn: sa.Connection, key: str, value: str | None) -> None:
    """Set (or, with None, remove) ``key`` in crm_insights_meta, in the caller's transaction."""
    from crm_data.importing import meta_metadata

    meta = _meta()
    meta_metadata.create_all(conn, checkfirst=True)
    conn.execute(meta.delete().where(meta.c.key == key))
    if value is not None:
        conn.execute(meta.insert().values(key=key, value=value))


def unconverted_currencies(conn: sa.Connection) -> list[str]:
    """The currencies the last import stored unconverted (see the module doc), sorted."""
    value = read_setting(conn, UNCONVERTED)
    return sorted(filter(None, (value or "").split(",")))


# ---- the import's inputs -----------------------------------------------------------------


def _lines(item: TableInput) -> np.ndarray:
    if item.lines is not None:
        return np.asarray(item.lines, dtype=np.int64)
    return np.arange(len(item.frame), dtype=np.int64) + 2


def _text(values: pd.Series) -> pd.Series:
    """Trimmed text, blanks (and missing values) as None."""
    return pd.Series(
        [None if v is None or pd.isna(v) or not str(v).strip() else str(v).strip() for v in values],
        index=values.index,
        dtype=object,
    )


def _column(frame: pd.DataFrame, name: str) -> str | None:
    """The frame's label of canonical column ``name`` (matched ignoring case and blanks)."""
    return next((c for c in frame.columns if str(c).strip().lower() == name), None)


def split_settings(inputs: Sequence[TableInput], log: IssueLog) -> tuple[list[TableInput], dict[str, str]]:
    """The canonical inputs, and the settings given by inputs of table crm_insights_meta
    (known keys, ISO 4217 codes; one value per key, else an error with its line)."""
    meta = _meta()
    canonical: list[TableInput] = []
    settings: dict[str, str] = {}
    origin: dict[str, str] = {}
    for item in inputs:
        if item.table != meta.name:
            canonical.append(item)
            continue
        keys, values = _column(item.frame, "key"), _column(item.frame, "value")
        lines = _lines(item)
        for position in range(len(item.frame)):
            key = str(item.frame[keys].iat[position]).strip() if keys else ""
            value = item.frame[values].iat[position] if values else None
            value = None if value is None or pd.isna(value) else str(value).strip().upper()
            line = int(lines[position])
            if key not in SETTINGS:
                log.add(
                    ImportIssue(item.source, line, "key", f"{key!r} is not a setting ({', '.join(SETTINGS)})")
                )
            elif not value or not CODE.match(value):
                log.add(
                    ImportIssue(item.source, line, "value", f"{value!r} is not an ISO 4217 currency code")
                )
            elif key in settings and settings[key] != value:
                log.add(
                    ImportIssue(
                        item.source,
                        line,
                        "value",
                        f"{key} {value!r} contradicts {settings[key]!r} given by {origin[key]}",
                    )
                )
            else:
                settings[key], origin[key] = value, f"{item.source}:{line}"
    return canonical, settings


def normalise_inputs(inputs: Sequence[TableInput], log: IssueLog) -> list[TableInput]:
    """Deals, payments and exchange rates with their currency codes trimmed and upper-cased
    (a value that is no three-letter code is an error with its line), and, for rows with a
    currency, ``amount_original`` filled from ``amount`` (the amount as written; the
    importer converts ``amount``), or ``amount`` from ``amount_original``; a rate must be
    above zero."""
    out: list[TableInput] = []
    for item in inputs:
        if item.table not in (*MONEY_TABLES, "exchange_rates"):
            out.append(item)
            continue
        currency = _column(item.frame, "currency")
        if currency is None:
            out.append(item)
            continue
        frame = item.frame.copy()
        lines = _lines(item)
        codes = pd.Series(
            [v.upper() if v else None for v in _text(frame[currency])], index=frame.index, dtype=object
        )
        bad = np.array([v is not None and not CODE.match(v) for v in codes], dtype=bool)
        log.add_rows(
            item.source,
            lines,
            np.flatnonzero(bad),
            "currency",
            lambda p, raw=frame[currency]: [
                f"{str(v)!r} is not an ISO 4217 currency code (three letters, such as PEN or USD)"
                for v in raw.iloc[p]
            ],
        )
        frame[currency] = codes
        if item.table == "exchange_rates":
            rate = _column(frame, "rate_to_reporting")
            if rate is not None:
                numbers = pd.to_numeric(frame[rate], errors="coerce")
                log.add_rows(
                    item.source,
                    lines,
                    np.flatnonzero((numbers <= 0).fillna(False).to_numpy()),
                    "rate_to_reporting",
                    lambda p, raw=frame[rate]: [f"a rate must be above 0, not {v!r}" for v in raw.iloc[p]],
                )
        else:
            amount, original = _column(frame, "amount"), _column(frame, "amount_original")
            has_currency = codes.notna()
            if original is None and amount is not None:
                frame["amount_original"] = frame[amount].where(has_currency, None)
            elif original is not None and amount is not None:
                missing = has_currency & _text(frame[original]).isna()
                frame[original] = frame[original].astype(object).where(~missing, frame[amount])
            elif original is not None:
                frame["amount"] = frame[original]
        out.append(replace(item, frame=frame))
    return out


def _input_currencies(inputs: Sequence[TableInput]) -> set[str]:
    found: set[str] = set()
    for item in inputs:
        column = _column(item.frame, "currency") if item.table in MONEY_TABLES else None
        if column is not None:
            found.update(str(v) for v in item.frame[column].dropna() if CODE.match(str(v)))
    return found


def _stored_currencies(conn: sa.Connection) -> set[str]:
    present = existing_tables(conn)
    found: set[str] = set()
    for name in MONEY_TABLES:
        table = schema.metadata.tables[name]
        if name in present and "currency" in _columns_of(conn, name):
            found.update(
                r[0]
                for r in conn.execute(
                    sa.select(table.c.currency).where(table.c.currency.is_not(None)).distinct()
                )
            )
    return found


def _columns_of(conn: sa.Connection, table: str) -> set[str]:
    return schema.table_columns(conn, table)


def _has_rates(conn: sa.Connection) -> bool:
    rates = schema.exchange_rates
    if "exchange_rates" not in existing_tables(conn):
        return False
    return conn.execute(sa.select(sa.exists(sa.select(rates.c.currency)))).scalar_one()


# ---- the conversion ------------------------------------------------------------------------


def converted_amount(
    target: sa.Table, reporting: str | None, today: dt.datetime, day: ColumnElement | None = None
) -> ColumnElement:
    """``amount`` of ``target``'s rows (deals, payments, or their staging table): see the
    module doc. ``day`` dates the rate (default: the table's time column, the import day
    while it is empty or absent)."""
    original = target.c.amount_original
    if reporting is None:
        return original
    if day is None:
        name = MONEY_TABLES["payments" if "paid_at" in target.c else "deals"]
        now = sa.literal(today, sa.DateTime())
        day = sa.func.coalesce(target.c[name], now) if name in target.c else now
    rates = schema.exchange_rates
    on_day = rates.alias("rate_on_day")
    first = rates.alias("first_rate")
    rate_on_day = (
        sa.select(on_day.c.rate_to_reporting)
        .where(on_day.c.currency == target.c.currency, on_day.c.valid_from <= day)
        .order_by(on_day.c.valid_from.desc())
        .limit(1)
        .scalar_subquery()
    )
    first_rate = (
        sa.select(first.c.rate_to_reporting)
        .where(first.c.currency == target.c.currency)
        .order_by(first.c.valid_from)
        .limit(1)
        .scalar_subquery()
    )
    rate = sa.func.coalesce(rate_on_day, first_rate, sa.literal(1.0, sa.Double()))
    return sa.case((target.c.currency == sa.literal(reporting), original), else_=original * rate)


@dataclass
class Conversion:
    """What one import does about currencies: the reporting currency it converts into and
    the hook that converts the staging rows (``crm_data.importing``)."""

    reporting: str | None
    given: dict[str, str] = field(default_factory=dict)
    today: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC).replace(tzinfo=None))
    changed_reporting: bool = False

    def convert_staging(self, conn: sa.Connection, table: sa.Table, staging: sa.Table) -> None:
        """Convert the staging rows of deals / payments before they are upserted."""
        if table.name not in MONEY_TABLES or not {"currency", "amount_original", "amount"} <= set(
            staging.c.keys()
        ):
            return
        conn.execute(
            sa.update(staging)
            .values(amount=converted_amount(staging, self.reporting, self.today))
            .where(staging.c.currency.is_not(None), staging.c.amount_original.is_not(None))
        )

    def finish(self, conn: sa.Connection, written: dict[str, int], log: IssueLog) -> dict[str, int]:
        """After the upsert: convert the stored rows again when the rates or the reporting
        currency changed; record the settings and the unconverted currencies; warn about
        them. Returns the rows changed per table."""
        changed: dict[str, int] = {}
        if self.reporting is not None and (self.changed_reporting or written.get("exchange_rates")):
            for name in MONEY_TABLES:
                table = schema.metadata.tables[name]
                new = converted_amount(table, self.reporting, self.today)
                result = conn.execute(
                    sa.update(table)
                    .values(amount=new)
                    .where(
                        table.c.currency.is_not(None),
                        table.c.amount_original.is_not(None),
                        table.c.amount.is_distinct_from(new),
                    ),
                    execution_options={"preserve_rowcount": True},
                )
                changed[name] = max(result.rowcount or 0, 0)
        if self.reporting is not None:
            write_setting(conn, REPORTING_CURRENCY, self.reporting)
        if self.changed_reporting or any(written.get(name) for name in (*MONEY_TABLES, "exchange_rates")):
            self._record_unconverted(conn, log)  # else what the last import recorded still holds
            self._warn_before_first_rate(conn, log)
        return changed

    def _record_unconverted(self, conn: sa.Connection, log: IssueLog) -> None:
        counts: dict[str, dict[str, int]] = {}
        rates = schema.exchange_rates
        for name in MONEY_TABLES:
            table = schema.metadata.tables[name]
            query = (
                sa.select(table.c.currency, sa.func.count())
                .where(table.c.currency.is_not(None))
                .group_by(table.c.currency)
            )
            if self.reporting is not None:
                query = query.where(
                    table.c.currency != self.reporting,
                    ~sa.exists(sa.select(rates.c.currency).where(rates.c.currency == table.c.currency)),
                )
            for code, count in conn.execute(query):
                counts.setdefault(str(code), {})[name] = int(count)
        if read_setting(conn, UNCONVERTED) or counts:
            write_setting(conn, UNCONVERTED, ",".join(sorted(counts)) or None)
        if not counts:
            return
        listed = ", ".join(
            f"{code} ({', '.join(f'{n:,d} {table}' for table, n in per.items())})"
            for code, per in sorted(counts.items())
        )
        if self.reporting is None:
            why = (
                f"no reporting currency is set, so amounts in {listed} are stored as written, NOT converted: "
                "money figures would mix them. Import the currency settings (Salesforce: CurrencyType.csv) "
                "or give --reporting-currency, with exchange rates"
            )
        else:
            why = (
                f"no exchange rate into {self.reporting} for {listed}: these amounts are stored as written, "
                "NOT converted, and money figures mix them (the dashboard says so). Import exchange rates "
                "(Salesforce: DatedConversionRate.csv or CurrencyType.csv; or an exchange_rates.csv)"
            )
        log.add(ImportIssue("currencies", None, "currency", why, "warning"))

    def _warn_before_first_rate(self, conn: sa.Connection, log: IssueLog) -> None:
        if self.reporting is None or not _has_rates(conn):
            return
        rates = schema.exchange_rates
        firsts = (
            sa.select(rates.c.currency, sa.func.min(rates.c.valid_from).label("first"))
            .group_by(rates.c.currency)
            .subquery()
        )
        for name, column in MONEY_TABLES.items():
            table = schema.metadata.tables[name]
            day = sa.func.coalesce(table.c[column], sa.literal(self.today, sa.DateTime()))
            rows = conn.execute(
                sa.select(table.c.currency, firsts.c.first, sa.func.count())
                .select_from(table.join(firsts, firsts.c.currency == table.c.currency))
                .where(
                    table.c.currency != self.reporting,
                    table.c.amount_original.is_not(None),
                    day < firsts.c.first,
                )
                .group_by(table.c.currency, firsts.c.first)
                .order_by(table.c.currency)
            ).all()
            for code, first, count in rows:
                log.add(
                    ImportIssue(
                        "currencies",
                        None,
                        "currency",
                        f"{count:,d} {name} in {code} are dated before its first exchange rate "
                        f"({pd.Timestamp(first):%Y-%m-%d}): converted with that first rate",
                        "warning",
                    )
                )


def plan(
    conn: sa.Connection,
    settings: dict[str, str],
    inputs: Sequence[TableInput],
    log: IssueLog,
    today: dt.datetime | None = None,
) -> Conversion:
    """The reporting currency of this import (see the module doc); an error in ``log`` when
    it contradicts the one the database's amounts were converted into."""
    stored = read_setting(conn, REPORTING_CURRENCY)
    given = settings.get(REPORTING_CURRENCY)
    conversion = Conversion(reporting=None, given=dict(settings))
    if today is not None:
        conversion.today = today
    if given and stored and given != stored:
        if _has_rates(conn) or _stored_currencies(conn) - {stored}:
            log.add(
                ImportIssue(
                    "currencies",
                    None,
                    "currency",
                    f"this import says the reporting currency is {given}, but the amounts and exchange rates "
                    f"of the database are in {stored}: import into a new database to change it",
                )
            )
            conversion.reporting = stored
            return conversion
        conversion.changed_reporting = True
    if given:
        conversion.reporting = given
        conversion.changed_reporting = conversion.changed_reporting or stored is None
        return conversion
    if stored:
        conversion.reporting = stored
        return conversion
    present = _input_currencies(inputs) | _stored_currencies(conn)
    if len(present) == 1:
        (only,) = present
        conversion.reporting = only
        conversion.changed_reporting = True
        log.add(
            ImportIssue(
                "currencies",
                None,
                "currency",
                f"reporting currency {only}: the only currency of the data (set it with the currency "
                "settings of the export or --reporting-currency when it should be another)",
                "warning",
            )
        )
    return conversion


Hook = Callable[[sa.Connection, sa.Table, sa.Table], None]

__all__ = [
    "CODE",
    "MONEY_TABLES",
    "REPORTING_CURRENCY",
    "SETTINGS",
    "UNCONVERTED",
    "Conversion",
    "converted_amount",
    "normalise_inputs",
    "plan",
    "read_setting",
    "split_settings",
    "unconverted_currencies",
    "write_setting",
]
