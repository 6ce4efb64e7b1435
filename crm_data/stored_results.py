"""Results computed once and read back by any process: key → JSON text, beside the accounts.

A caller in an upper layer (the revenue forecast: :mod:`forecasting.store`) stores what
costs seconds to compute under a key it derives from everything the result depends on
(its input's values, its arguments and the version of the code that computed it), so a
stored row is never stale: other data, other arguments or other code give another key.
This module only keeps the rows; it knows nothing of what they hold.

Where (:meth:`ResultStore.open`, :meth:`ResultStore.beside`): like the data-quality report
(:mod:`crm_data.quality_snapshot`), beside the sign-in accounts
(:func:`crm_data.accounts.auth_url`) — a SQLite file beside a DuckDB or SQLite CRM file,
the CRM database itself on PostgreSQL (or ``$CRM_AUTH_DATABASE_URL``) — because the
dashboard holds a DuckDB file read-only. An in-memory CRM database has no store (nothing
outlives the process).

Table ``app_stored_results`` (created on first write): ``result_key`` (primary key),
``kind`` (what the body is, e.g. ``forecast``), ``version`` (the code's version the key
includes), ``computed_at`` (naive UTC), ``body`` (JSON text). A write replaces the row of
its key, drops the rows of its kind written by another version (their keys can never be
asked for again) and keeps at most :data:`MAX_ROWS` rows of its kind (the oldest go).

Text only, never pickles: whoever can write the database must not be able to run code in
the dashboard; a reader checks what it reads back (:mod:`forecasting.store` decodes and
validates, and recomputes what does not pass). Reading never creates the file and never
raises for a database problem (a missing file or table, a role without access): the row is
then just not there.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import sqlalchemy as sa

#: Rows kept per kind (a forecast of a 72-month series: ≈ 7 kB of JSON).
MAX_ROWS = 500

metadata = sa.MetaData()
results_table = sa.Table(
    "app_stored_results",
    metadata,
    sa.Column("result_key", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("computed_at", sa.DateTime(), nullable=False),
    sa.Column("body", sa.Text(), nullable=False),
)


@dataclass(frozen=True)
class StoredResult:
    """One stored row."""

    key: str
    kind: str
    version: str
    computed_at: dt.datetime
    body: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class BesideAccounts:
    """A store of the application's own tables beside a CRM database's sign-in accounts
    (:func:`crm_data.accounts.auth_url`), on ``engine``; ``owned``: the store made that
    engine (:meth:`dispose` closes it). Subclasses say how to :meth:`open` one."""

    def __init__(self, engine: sa.Engine, owned: bool = False) -> None:
        self.engine = engine
        self._owned = owned

    @classmethod
    def open(cls, crm_url: str) -> Self | None:
        raise NotImplementedError

    @staticmethod
    def in_crm_database(crm: sa.Engine) -> bool:
        """Whether the stores of the CRM engine ``crm`` live in the CRM database itself
        (PostgreSQL: :func:`crm_data.accounts.auth_url` is the CRM URL) rather than in a
        database of their own."""
        from crm_data import accounts

        url = crm.url.render_as_string(hide_password=False)
        return accounts.auth_url(url) == url

    @classmethod
    def beside(cls, crm: sa.Engine) -> Self | None:
        """:meth:`open` for a CRM engine: that engine itself when the store is in the CRM
        database (:meth:`in_crm_database`; the engine's own settings, e.g. its schema, then
        apply — and a read-only engine then only reads)."""
        if cls.in_crm_database(crm):
            return cls(crm)
        return cls.open(crm.url.render_as_string(hide_password=False))

    def dispose(self) -> None:
        """Close the store's own engine (not a CRM engine it was given)."""
        if self._owned:
            self.engine.dispose()


class ResultStore(BesideAccounts):
    """The stored results of a CRM database (any SQLAlchemy engine the app may write)."""

    @classmethod
    def open(cls, crm_url: str) -> ResultStore | None:
        """The store of the CRM database ``crm_url`` (beside its sign-in accounts), with an
        engine of its own; None for an in-memory CRM database."""
        from crm_data import accounts

        url = accounts.auth_url(crm_url)
        if url == "sqlite://":
            return None
        return cls(accounts.make_auth_engine(url), owned=True)

    def _no_file(self) -> bool:
        """A SQLite store whose file does not exist yet (reading must not create it)."""
        url = self.engine.url
        database = url.database
        return (
            url.get_backend_name() == "sqlite"
            and database not in (None, "", ":memory:")
            and not str(database).startswith("file:")  # a URI (read-only): opening it creates nothing
            and not Path(str(database)).exists()
        )

    def get(self, key: str) -> StoredResult | None:
        """The row of ``key``, or None (not stored, or the store cannot be read)."""
        if self._no_file():
            return None
        try:
            with self.engine.connect() as conn:
                row = conn.execute(
                    sa.select(results_table).where(results_table.c.result_key == key)
                ).one_or_none()
        except (sa.exc.SQLAlchemyError, OSError):  # no table yet, no access, a damaged file
            return None
        if row is None:
            return None
        return StoredResult(row.result_key, row.kind, row.version, row.computed_at, row.body)

    def put(
        self,
        key: str,
        kind: str,
        version: str,
        body: str,
        computed_at: dt.datetime | None = None,
        keep: int = MAX_ROWS,
    ) -> bool:
        """Store ``body`` under ``key`` in one transaction (module docstring: the row of
        the same key replaced, rows of ``kind`` of another version dropped, at most
        ``keep`` rows of ``kind``). False when the store cannot be written (a read-only
        role or file, a concurrent writer of the same key): never raises for that."""
        return self.put_many({key: body}, kind, version, computed_at, keep)

    def put_many(
        self,
        bodies: Mapping[str, str],
        kind: str,
        version: str,
        computed_at: dt.datetime | None = None,
        keep: int = MAX_ROWS,
    ) -> bool:
        """:meth:`put` of each ``key: body`` of ``bodies``, all in one transaction."""
        when = computed_at or _now()
        rows = [
            {"result_key": key, "kind": kind, "version": version, "computed_at": when, "body": body}
            for key, body in bodies.items()
        ]
        if not rows:
            return True
        table = results_table
        try:
            with self.engine.begin() as conn:
                metadata.create_all(conn, checkfirst=True)
                conn.execute(table.delete().where(table.c.result_key.in_(list(bodies))))
                conn.execute(table.delete().where(table.c.kind == kind, table.c.version != version))
                conn.execute(table.insert(), rows)
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.kind == kind)
                ).scalar_one()
                if count > keep:
                    oldest = (
                        sa.select(table.c.result_key)
                        .where(table.c.kind == kind, table.c.result_key.not_in(list(bodies)))
                        .order_by(table.c.computed_at, table.c.result_key)
                        .limit(count - keep)
                    )
                    keys = list(conn.execute(oldest).scalars())
                    conn.execute(table.delete().where(table.c.result_key.in_(keys)))
        except (sa.exc.SQLAlchemyError, OSError):
            return False
        return True

    def keys(self, kind: str | None = None) -> list[str]:
        """The stored keys (of ``kind``), oldest first; empty when nothing can be read."""
        if self._no_file():
            return []
        query = sa.select(results_table.c.result_key).order_by(
            results_table.c.computed_at, results_table.c.result_key
        )
        if kind is not None:
            query = query.where(results_table.c.kind == kind)
        try:
            with self.engine.connect() as conn:
                return list(conn.execute(query).scalars())
        except (sa.exc.SQLAlchemyError, OSError):
            return []

    def clear(self, kind: str | None = None) -> None:
        """Forget every stored row (of ``kind``)."""
        if self._no_file():
            return
        with self.engine.begin() as conn:
            if not sa.inspect(conn).has_table(results_table.name):
                return
            statement = results_table.delete()
            if kind is not None:
                statement = statement.where(results_table.c.kind == kind)
            conn.execute(statement)
