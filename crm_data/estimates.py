"""Values the importer estimates when an export lacks them, each flagged by a warning.

A mapping asks for it with ``estimate`` in a column spec (``crm_data.mappings``), which
reaches the importer as :attr:`crm_data.validation.TableInput.estimated`. Only blank cells
are estimated, before validation; a value the export gives is kept as it is.

``accounts.created_at`` (``estimate = "earliest_record"``), for an Account export without
``CreatedDate`` (a Salesforce report, a file trimmed in a spreadsheet):

* an account already in the database keeps its stored ``created_at`` (a later import of
  a file without the column changes nothing);
* else the earliest date of the account's own records in the same import: deals
  (``created_at``), contacts (``created_at``), tickets (``opened_at``), subscriptions
  (``started_at``), payments (``paid_at``), interactions (``occurred_at``), survey
  responses (``responded_at``) — the account existed by then at the latest;
* else (no record of its own in the import) the import day, midnight UTC: the day the
  account was first seen.

Each kind is one warning marked ESTIMATED, with the count and examples (file line →
value), so the user knows which creation dates are not the CRM's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.validation import ImportIssue, IssueLog, TableInput, existing_tables

#: (table, column) -> the ``estimate`` value a mapping gives to ask for it.
ESTIMATES: dict[tuple[str, str], str] = {("accounts", "created_at"): "earliest_record"}

#: The records of an account whose time says it existed by then: (table, time column).
OWN_RECORDS: tuple[tuple[str, str], ...] = (
    ("deals", "created_at"),
    ("contacts", "created_at"),
    ("tickets", "opened_at"),
    ("subscriptions", "started_at"),
    ("payments", "paid_at"),
    ("interactions", "occurred_at"),
    ("survey_responses", "responded_at"),
)
_EXAMPLES = 3
_CHUNK = 1_000


def _timestamps(values: pd.Series) -> pd.Series:
    """Text or typed timestamps -> naive UTC ``datetime64``; unreadable ones NaT (validation
    reports them)."""
    parsed = pd.to_datetime(values, errors="coerce", utc=True, format="ISO8601")
    return parsed.dt.tz_convert(None)


def _blank(values: pd.Series) -> pd.Series:
    return values.isna() | values.astype(str).str.strip().eq("")


def _text(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%d %H:%M:%S")


def _earliest_own_records(inputs: Sequence[TableInput]) -> pd.Series:
    """Per account id, the earliest time of its records in ``inputs`` (see OWN_RECORDS)."""
    parts = []
    for item in inputs:
        for table, column in OWN_RECORDS:
            if item.table != table or "account_id" not in item.frame or column not in item.frame:
                continue
            times = _timestamps(item.frame[column])
            part = pd.DataFrame({"account_id": item.frame["account_id"], "at": times}).dropna()
            parts.append(part)
    if not parts:
        return pd.Series(dtype="datetime64[us]")
    every = pd.concat(parts, ignore_index=True)
    every["account_id"] = every["account_id"].astype(str)
    return every.groupby("account_id")["at"].min()


def _stored(conn: sa.Connection | None, ids: list[str]) -> dict[str, object]:
    """``created_at`` of the accounts among ``ids`` that are already in the database."""
    if conn is None or not ids or "accounts" not in existing_tables(conn):
        return {}
    accounts = schema.accounts
    found: dict[str, object] = {}
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        rows = conn.execute(
            sa.select(accounts.c.account_id, accounts.c.created_at).where(accounts.c.account_id.in_(chunk))
        )
        found.update({str(i): at for i, at in rows if at is not None})
    return found


def fill_estimates(
    inputs: Sequence[TableInput], conn: sa.Connection | None, log: IssueLog, today: dt.date | None = None
) -> list[TableInput]:
    """``inputs`` with the blank cells of their ``estimated`` columns filled (see the module
    doc), each kind of estimate reported to ``log`` as a warning."""
    today = today or dt.datetime.now(dt.UTC).date()
    out: list[TableInput] = []
    for item in inputs:
        wanted = [c for c in item.estimated if (item.table, c) in ESTIMATES and c in item.frame]
        if not wanted or "account_id" not in item.frame:
            out.append(item)
            continue
        frame = item.frame.copy()
        for column in wanted:
            frame[column] = _estimate_created(item, frame, column, inputs, conn, log, today)
        out.append(replace(item, frame=frame, estimated=()))
    return out


def _estimate_created(
    item: TableInput,
    frame: pd.DataFrame,
    column: str,
    inputs: Sequence[TableInput],
    conn: sa.Connection | None,
    log: IssueLog,
    today: dt.date,
) -> pd.Series:
    values = frame[column].astype(object).where(frame[column].notna(), None)
    blank = _blank(frame[column]) & ~_blank(frame["account_id"])
    if not blank.any():
        return values
    lines = list(item.lines) if item.lines is not None else [i + 2 for i in range(len(frame))]
    ids = frame["account_id"].astype(str).str.strip()
    stored = _stored(conn, sorted(set(ids[blank])))
    earliest = _earliest_own_records(inputs)
    name = frame.get("name", ids)
    kept: list[int] = []
    from_records: list[int] = []
    first_seen: list[int] = []
    for position in [int(p) for p in blank.to_numpy().nonzero()[0]]:
        account = ids.iat[position]
        if account in stored:
            values.iat[position] = _text(pd.Timestamp(stored[account]))
            kept.append(position)
        elif account in earliest.index:
            values.iat[position] = _text(earliest[account])
            from_records.append(position)
        else:
            values.iat[position] = _text(pd.Timestamp(today))
            first_seen.append(position)

    def examples(positions: list[int]) -> str:
        shown = "; ".join(
            f"line {lines[p]}: {name.iat[p]!s} → {str(values.iat[p])[:10]}" for p in positions[:_EXAMPLES]
        )
        more = len(positions) - _EXAMPLES
        return f" (e.g. {shown}{f'; and {more:,d} more' if more > 0 else ''})"

    where = f"{item.table}.{column}"
    if from_records:
        log.add(
            ImportIssue(
                item.source,
                None,
                column,
                f"ESTIMATED {where} of {len(from_records):,d} account(s) without a creation date: the "
                "earliest date of the account's own records in this import (deals, contacts, tickets, "
                f"…){examples(from_records)}",
                "warning",
            )
        )
    if first_seen:
        log.add(
            ImportIssue(
                item.source,
                None,
                column,
                f"ESTIMATED {where} of {len(first_seen):,d} account(s) without a creation date and "
                f"without any record of their own in this import: the import day, {today:%Y-%m-%d} "
                f"(first seen){examples(first_seen)}",
                "warning",
            )
        )
    if kept:
        log.add(
            ImportIssue(
                item.source,
                None,
                column,
                f"{len(kept):,d} account(s) without a creation date in the file keep the one already in "
                f"the database{examples(kept)}",
                "warning",
            )
        )
    return values
