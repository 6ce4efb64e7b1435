"""Tables-changed hooks: how a writer of CRM tables tells the rest of the application what
it changed, without the data layer knowing who listens.

A writer (:mod:`crm_data.importing`, :mod:`crm_data.demo`) calls :func:`tables_changed`
inside its own transaction with a :class:`Change`: which CRM tables changed and, per
table, what it knows of the changed rows (inserted / updated counts, and per date column
the earliest and latest value among the changed rows' old and new values). Every
registered listener (``listener(conn, change)``) runs in that transaction and returns the
derived tables it brought up to date; every other built derived table depending on a
changed table loses its state (:func:`crm_data.derived.invalidate`), so it is not read
until rebuilt.

After its commit the writer calls :func:`tables_committed` with the same change: every
*committed listener* (``listener(engine, change)``) then runs outside any transaction, for
work too slow to hold the writer's locks for — the revenue forecast computed ahead
(``forecasting.store.listen()``). A problem there is the listener's to report (it returns
one sentence, which the writer shows as a warning), never the writer's failure: the data
are committed.

The application wires the listeners: the command line (``crm_data.cli``), the Import page,
the test fixtures call ``kpis.rollups.listen()``, which refreshes the KPI roll-ups (only
the periods the change touched). Unwired — an analyst calling :mod:`crm_data.importing`
from Python — the import still commits, the roll-ups depending on the changed tables are
invalidated and the KPIs read the base tables (slower, same numbers) until ``python -m
crm_data rollups`` rebuilds them. The command line and the Import page also wire
``forecasting.store.listen()`` (a committed listener).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from crm_data import derived


@dataclass(frozen=True)
class DateSpan:
    """The earliest and latest non-NULL value of one date column among the changed rows
    (old and new values; None when all are NULL) and whether any of them is NULL."""

    first: dt.date | None
    last: dt.date | None
    has_null: bool = False


@dataclass(frozen=True)
class TableChange:
    """What a writer knows of its changes to one table. ``known`` False: which rows changed
    is unknown (a bulk rewrite, deletes): a listener must treat every row as changed.
    ``inserted`` / ``updated``: rows added / existing rows whose values changed.
    ``adopted``: inserted keys that rows of other tables referenced already (orphans gaining
    their parent). ``dates``: per date or timestamp column, :class:`DateSpan` of the
    changed rows' old and new values."""

    known: bool = False
    inserted: int = 0
    updated: int = 0
    adopted: bool = False
    dates: Mapping[str, DateSpan] = field(default_factory=dict)

    @property
    def pure_insert(self) -> bool:
        """Known, only new rows, no orphan adopted."""
        return self.known and self.updated == 0 and not self.adopted


#: A change of unknown rows.
UNKNOWN = TableChange()


@dataclass(frozen=True)
class Change:
    """The CRM tables a writer changed (name -> :class:`TableChange`) and the writer's
    ``today`` (None: today in UTC)."""

    tables: Mapping[str, TableChange]
    today: dt.date | None = None

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.tables)

    @classmethod
    def unknown(cls, names: Collection[str], today: dt.date | None = None) -> Change:
        """Every row of ``names`` may have changed."""
        return cls(dict.fromkeys(names, UNKNOWN), today)


#: ``listener(conn, change)`` -> the derived tables it brought up to date.
Listener = Callable[[sa.Connection, Change], Collection[str]]
#: ``listener(engine, change)`` after the writer's commit -> None, or one sentence saying
#: what it could not do.
CommittedListener = Callable[[sa.Engine, Change], str | None]

_listeners: list[Listener] = []
_committed: list[CommittedListener] = []


def add_listener(listener: Listener) -> None:
    """Register ``listener`` (once: adding it again changes nothing)."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    """Unregister ``listener`` (nothing when it is not registered)."""
    if listener in _listeners:
        _listeners.remove(listener)


def listeners() -> tuple[Listener, ...]:
    """The registered listeners, in order."""
    return tuple(_listeners)


def add_committed_listener(listener: CommittedListener) -> None:
    """Register ``listener`` to run after a writer's commit (once: adding it again changes
    nothing)."""
    if listener not in _committed:
        _committed.append(listener)


def remove_committed_listener(listener: CommittedListener) -> None:
    """Unregister ``listener`` (nothing when it is not registered)."""
    if listener in _committed:
        _committed.remove(listener)


def committed_listeners() -> tuple[CommittedListener, ...]:
    """The registered committed listeners, in order."""
    return tuple(_committed)


@contextlib.contextmanager
def unwired() -> Iterator[None]:
    """No listener (of either kind) inside the block (tests: the analyst's case); restored
    after."""
    saved, saved_committed = list(_listeners), list(_committed)
    _listeners.clear()
    _committed.clear()
    try:
        yield
    finally:
        _listeners[:] = saved
        _committed[:] = saved_committed


def tables_changed(conn: sa.Connection, change: Change) -> list[str]:
    """Tell every listener about ``change`` in the caller's transaction, then invalidate
    the built derived tables depending on a changed table that no listener brought up to
    date; return the invalidated names. Nothing when no table changed."""
    if not change.tables:
        return []
    current: set[str] = set()
    for listener in list(_listeners):
        current.update(listener(conn, change))
    return derived.invalidate(conn, change.names, keep=current)


def tables_committed(engine: sa.Engine, change: Change) -> list[str]:
    """Tell every committed listener about ``change`` once the writer has committed it
    (outside any transaction, on the writer's ``engine``); return the sentences of those
    that could not do their work. Nothing when no table changed."""
    if not change.tables:
        return []
    problems = []
    for listener in list(_committed):
        problem = listener(engine, change)
        if problem:
            problems.append(problem)
    return problems


__all__ = [
    "UNKNOWN",
    "Change",
    "CommittedListener",
    "DateSpan",
    "Listener",
    "TableChange",
    "add_committed_listener",
    "add_listener",
    "committed_listeners",
    "listeners",
    "remove_committed_listener",
    "remove_listener",
    "tables_changed",
    "tables_committed",
    "unwired",
]
