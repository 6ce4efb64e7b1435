"""Sign-in accounts, roles, scopes and the audit log of the dashboard.

Kept apart from the CRM data: the app's own tables (``app_accounts``, ``app_audit``), never
the CRM ``users`` table (sales reps, not people who sign in).

Where they live (:func:`auth_url`):

* ``$CRM_AUTH_DATABASE_URL`` when set;
* a DuckDB or SQLite CRM file: a small SQLite file beside it, ``<name>-auth.sqlite``
  (``data/crm-auth.sqlite`` for ``data/crm.duckdb``), readable by its owner only. The
  dashboard holds the DuckDB file open read-only and DuckDB lets one process write a file
  only while no other holds it, so sign-in attempts and audit rows cannot go into it;
  SQLite lets the dashboard and ``crm-insights users`` write the same file at once (each
  write a short transaction; a writer waits up to ``BUSY_TIMEOUT`` seconds);
* PostgreSQL: the same database (the tables are created beside the CRM tables). A
  dashboard that connects as a read-only role needs INSERT/UPDATE/DELETE on them, or
  ``CRM_AUTH_DATABASE_URL`` pointing at a database it may write.

The tables are created on first use (``metadata.create_all(checkfirst=True)``, as
``kpis.rollups`` creates its state table), on DuckDB, SQLite and PostgreSQL alike.

Accounts: a *name* (a login name, or an e-mail address for single sign-on), a *role*
(viewer < analyst < admin), a *scope* (regions, countries, segments, industries, owners:
``kpis.filters.Scope`` as a dict) and either an Argon2id password hash (argon2-cffi) or
``sso`` (signs in through the OpenID Connect provider, matched by e-mail).

Lock-out: ``MAX_FAILURES`` (5) failed sign-ins of one name within ``LOCKOUT_WINDOW``
(15 minutes), counted since its last successful sign-in, lock that name until
``LOCKOUT_WINDOW`` after the last of them (so for 15 minutes). Attempts while locked are refused without
checking the password and do not extend the lock. Unknown names are counted the same way
and take as long to refuse (a hash is verified all the same). ``MAX_ADDRESS_FAILURES`` (20)
failures from one client address within the window, whatever the names, refuse that
address the same way (when the address is known).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

#: The roles, least first: each includes what the ones before it may do.
ROLES: tuple[str, ...] = ("viewer", "analyst", "admin")
#: The dimensions a scope can limit (``kpis.filters.SCOPE_DIMENSIONS``).
SCOPE_KEYS: tuple[str, ...] = ("regions", "countries", "segments", "industries", "owners")
MAX_FAILURES = 5
#: Failed sign-ins from one client address (any names) within LOCKOUT_WINDOW that refuse
#: further attempts from it (guessing one password for many names).
MAX_ADDRESS_FAILURES = 20
LOCKOUT_WINDOW = dt.timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 12
BUSY_TIMEOUT = 15  # seconds a SQLite writer waits for another
AUTH_URL_VARIABLE = "CRM_AUTH_DATABASE_URL"

metadata = sa.MetaData()

app_accounts = sa.Table(
    "app_accounts",
    metadata,
    sa.Column("name", sa.String(254), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("scope", sa.Text(), nullable=False),  # JSON: {"regions": ["EMEA"], ...}
    sa.Column("sso", sa.Boolean(), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=True),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
)

app_audit = sa.Table(
    "app_audit",
    metadata,
    sa.Column("event_id", sa.String(32), primary_key=True),
    sa.Column("occurred_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("actor", sa.String(254), nullable=False),  # who did it
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(254), nullable=False),  # the account signed in, the file exported …
    sa.Column("details", sa.Text(), nullable=False),  # JSON
    sa.Column("address", sa.String(64), nullable=False),  # client IP when known
    sa.Index("ix_app_audit_target_action_at", "target", "action", "occurred_at"),
    sa.Index("ix_app_audit_at", "occurred_at"),
)

#: Audit actions.
SIGN_IN, SIGN_IN_FAILED, SIGN_IN_LOCKED, SIGN_OUT, SESSION_EXPIRED = (
    "sign_in",
    "sign_in_failed",
    "sign_in_locked",
    "sign_out",
    "session_expired",
)
SSO_REFUSED = "sso_refused"
EXPORT, IMPORT = "export", "import"
USER_ADDED, USER_REMOVED, USER_CHANGED, PASSWORD_SET = (
    "user_added",
    "user_removed",
    "user_changed",
    "password_set",
)


class AccountError(ValueError):
    """A request the accounts refuse (unknown name, bad role, short password …); the
    message says why."""


@dataclass(frozen=True)
class Account:
    """A person who may sign in."""

    name: str
    role: str
    scope: dict[str, list[str]] = field(default_factory=dict)
    sso: bool = False

    def may(self, role: str) -> bool:
        """True when this account's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def describe_scope(self) -> str:
        """``regions EMEA; segments SMB`` or ``everything``."""
        return "; ".join(f"{k} {', '.join(v) or '(none)'}" for k, v in self.scope.items()) or "everything"


@dataclass(frozen=True)
class SignIn:
    """The answer to a sign-in attempt: ``account`` when it succeeded, else ``reason``
    (``"wrong"`` name or password, or ``"locked"`` until ``locked_until``)."""

    account: Account | None
    reason: str = ""
    locked_until: dt.datetime | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def auth_url(crm_url: str, environ: Mapping[str, str] | None = None) -> str:
    """The database of the accounts and the audit log for the CRM database ``crm_url``
    (see the module docstring)."""
    environ = os.environ if environ is None else environ
    if environ.get(AUTH_URL_VARIABLE):
        return environ[AUTH_URL_VARIABLE]
    url = sa.make_url(crm_url)
    backend = url.get_backend_name()
    if backend in ("duckdb", "sqlite"):
        database = url.database or ""
        if database in ("", ":memory:") or database.startswith("file:"):
            return "sqlite://"
        path = Path(database)
        return f"sqlite:///{path.with_name(path.stem + '-auth.sqlite')}"
    return crm_url


def _normal_name(name: str) -> str:
    text = (name or "").strip()
    if not text or len(text) > 254 or any(c.isspace() or ord(c) < 32 for c in text):
        raise AccountError(f"not a valid account name: {name!r} (no spaces, 1–254 characters)")
    return text.lower() if "@" in text else text


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()  # Argon2id, argon2-cffi's RFC 9106 low-memory profile


class AccountStore:
    """The accounts and the audit log in one database (any SQLAlchemy engine)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._ready = False
        self._dummy_hash: str | None = None

    @classmethod
    def open(cls, crm_url: str) -> AccountStore:
        """The store of the CRM database ``crm_url`` (created on first use)."""
        return cls(make_auth_engine(auth_url(crm_url)))

    def dispose(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------ tables

    def ensure(self) -> None:
        """Create the tables when missing (once per store)."""
        if self._ready:
            return
        with self.engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
        database = self.engine.url.database
        if self.engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
            Path(database).chmod(0o600)  # password hashes: readable by the owner only
        self._ready = True

    def exists(self) -> bool:
        """True when the accounts table exists (without creating anything, not even a file)."""
        url = self.engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if on_file and not Path(url.database).exists():
            return False
        try:
            with self.engine.connect() as conn:
                return sa.inspect(conn).has_table(app_accounts.name)
        except sa.exc.DBAPIError:
            return False

    # ------------------------------------------------------------ accounts

    def any_accounts(self) -> bool:
        """True when at least one account exists (sign-in is then required)."""
        if not self.exists():
            return False
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(app_accounts)).scalar_one() > 0

    def get(self, name: str) -> Account | None:
        try:
            key = _normal_name(name)
        except AccountError:
            return None
        if not self.exists():
            return None
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(app_accounts).where(app_accounts.c.name == key)).first()
        return None if row is None else _account(row)

    def accounts(self) -> list[Account]:
        if not self.exists():
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(app_accounts).order_by(app_accounts.c.name)).all()
        return [_account(r) for r in rows]

    def add(
        self,
        name: str,
        *,
        role: str,
        scope: Mapping[str, Iterable[str]] | None = None,
        password: str | None = None,
        sso: bool = False,
        actor: str,
        address: str = "",
    ) -> Account:
        """Create an account: a password account (``password``) or an SSO one (``sso``)."""
        key = _normal_name(name)
        role = _checked_role(role)
        clean = _checked_scope(scope)
        if sso == (password is not None):
            raise AccountError("an account has either a password or --sso, not both and not neither")
        if sso and "@" not in key:
            raise AccountError(f"a single sign-on account is the person's e-mail address, not {name!r}")
        digest = _hasher().hash(_checked_password(password)) if password is not None else None
        self.ensure()
        now = _now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(app_accounts.c.name).where(app_accounts.c.name == key)).first():
                raise AccountError(f"an account {key!r} exists already (change it with `users update`)")
            conn.execute(
                app_accounts.insert().values(
                    name=key,
                    role=role,
                    scope=json.dumps(clean, sort_keys=True),
                    sso=sso,
                    password_hash=digest,
                    created_at=now,
                    updated_at=now,
                )
            )
            self._audit(conn, actor, USER_ADDED, key, {"role": role, "scope": clean, "sso": sso}, address)
        return Account(key, role, clean, sso)

    def update(
        self,
        name: str,
        *,
        role: str | None = None,
        scope: Mapping[str, Iterable[str]] | None = None,
        actor: str,
        address: str = "",
    ) -> Account:
        """Change an account's role and/or scope (``scope`` replaces the old one; ``{}``: everything)."""
        current = self._existing(name)
        changes: dict[str, object] = {}
        if role is not None:
            changes["role"] = _checked_role(role)
        if scope is not None:
            changes["scope"] = _checked_scope(scope)
        if not changes:
            raise AccountError(
                "nothing to change: give --role and/or scope options (--everything to clear it)"
            )
        values = {**changes, "updated_at": _now()}
        if "scope" in values:
            values["scope"] = json.dumps(changes["scope"], sort_keys=True)
        with self.engine.begin() as conn:
            conn.execute(app_accounts.update().where(app_accounts.c.name == current.name).values(**values))
            before = {"role": current.role, "scope": current.scope}
            self._audit(
                conn, actor, USER_CHANGED, current.name, {"before": before, "after": changes}, address
            )
        return self._existing(name)

    def remove(self, name: str, *, actor: str, address: str = "") -> None:
        current = self._existing(name)
        with self.engine.begin() as conn:
            conn.execute(app_accounts.delete().where(app_accounts.c.name == current.name))
            self._audit(conn, actor, USER_REMOVED, current.name, {"role": current.role}, address)

    def set_password(self, name: str, password: str, *, actor: str, address: str = "") -> None:
        current = self._existing(name)
        if current.sso:
            raise AccountError(f"{current.name} signs in through single sign-on: it has no password here")
        digest = _hasher().hash(_checked_password(password))
        with self.engine.begin() as conn:
            conn.execute(
                app_accounts.update()
                .where(app_accounts.c.name == current.name)
                .values(password_hash=digest, updated_at=_now())
            )
            self._audit(conn, actor, PASSWORD_SET, current.name, {}, address)

    def _existing(self, name: str) -> Account:
        account = self.get(name)
        if account is None:
            raise AccountError(f"no account {name!r} (see `users list`)")
        return account

    # ------------------------------------------------------------ signing in

    def sign_in(
        self, name: str, password: str, *, address: str = "", now: dt.datetime | None = None
    ) -> SignIn:
        """Check a name and password, with the lock-out (module docstring); audited."""
        from argon2.exceptions import InvalidHashError, VerificationError

        now = now or _now()
        try:
            key = _normal_name(name)
        except AccountError:
            key = (name or "").strip()[:254] or "(empty)"
        self.ensure()
        with self.engine.begin() as conn:
            locked_until = self._locked_until(conn, key, now) or self._address_locked_until(
                conn, address, now
            )
            if locked_until is not None:
                self._audit(conn, key, SIGN_IN_LOCKED, key, {"until": locked_until.isoformat()}, address, now)
                return SignIn(None, "locked", locked_until)
            row = conn.execute(sa.select(app_accounts).where(app_accounts.c.name == key)).first()
        hasher = _hasher()
        stored = row.password_hash if row is not None and not row.sso else None
        try:
            ok = hasher.verify(stored or self._dummy(), password or "") and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        with self.engine.begin() as conn:
            if not ok:
                self._audit(conn, key, SIGN_IN_FAILED, key, {}, address, now)
                locked_until = self._locked_until(conn, key, now)
                return SignIn(None, "locked" if locked_until else "wrong", locked_until)
            if hasher.check_needs_rehash(stored):
                conn.execute(
                    app_accounts.update()
                    .where(app_accounts.c.name == key)
                    .values(password_hash=hasher.hash(password))
                )
            self._audit(conn, key, SIGN_IN, key, {"how": "password"}, address, now)
        return SignIn(_account(row))

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = _hasher().hash(uuid.uuid4().hex)
        return self._dummy_hash

    def _locked_until(self, conn: sa.Connection, key: str, now: dt.datetime) -> dt.datetime | None:
        """When ``key`` is locked: until when; else None."""
        a = app_audit.c
        last_success = conn.execute(
            sa.select(sa.func.max(a.occurred_at)).where(a.target == key, a.action == SIGN_IN)
        ).scalar_one()
        since = now - 2 * LOCKOUT_WINDOW
        if last_success is not None and last_success > since:
            since = last_success
        failures = [
            row[0]
            for row in conn.execute(
                sa.select(a.occurred_at)
                .where(a.target == key, a.action == SIGN_IN_FAILED, a.occurred_at > since)
                .order_by(a.occurred_at.desc())
                .limit(MAX_FAILURES)
            )
        ]
        # MAX_FAILURES failures within one window, the last of them less than a window ago
        if len(failures) < MAX_FAILURES or failures[0] - failures[-1] > LOCKOUT_WINDOW:
            return None
        until = failures[0] + LOCKOUT_WINDOW
        return until if until > now else None

    def _address_locked_until(
        self, conn: sa.Connection, address: str, now: dt.datetime
    ) -> dt.datetime | None:
        """When ``address`` is refused for too many failures (any names): until when; else None."""
        if not address:
            return None
        a = app_audit.c
        failures = [
            row[0]
            for row in conn.execute(
                sa.select(a.occurred_at)
                .where(a.address == address, a.action == SIGN_IN_FAILED, a.occurred_at > now - LOCKOUT_WINDOW)
                .order_by(a.occurred_at.desc())
                .limit(MAX_ADDRESS_FAILURES)
            )
        ]
        if len(failures) < MAX_ADDRESS_FAILURES:
            return None
        return failures[0] + LOCKOUT_WINDOW

    def locked_until(self, name: str, now: dt.datetime | None = None) -> dt.datetime | None:
        """When ``name`` is locked out: until when; else None."""
        self.ensure()
        with self.engine.connect() as conn:
            return self._locked_until(conn, _normal_name(name), now or _now())

    # ------------------------------------------------------------ audit log

    def record(
        self,
        actor: str,
        action: str,
        target: str = "",
        details: Mapping[str, object] | None = None,
        address: str = "",
    ) -> None:
        """Add one row to the audit log."""
        self.ensure()
        with self.engine.begin() as conn:
            self._audit(conn, actor, action, target, details or {}, address)

    @staticmethod
    def _audit(
        conn: sa.Connection,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, object],
        address: str,
        at: dt.datetime | None = None,
    ) -> None:
        conn.execute(
            app_audit.insert().values(
                event_id=uuid.uuid4().hex,
                occurred_at=at or _now(),
                actor=(actor or "")[:254],
                action=action,
                target=(target or "")[:254],
                details=json.dumps(dict(details), sort_keys=True, default=str),
                address=(address or "")[:64],
            )
        )

    def audit_log(
        self, *, since: dt.datetime | None = None, actions: Iterable[str] = (), limit: int = 10_000
    ) -> pd.DataFrame:
        """The newest ``limit`` audit rows (newest first): at, actor, action, target, details, address."""
        columns = ["occurred_at", "actor", "action", "target", "details", "address"]
        if not self.exists():
            return pd.DataFrame(columns=columns)
        a = app_audit.c
        statement = sa.select(*(a[c] for c in columns)).order_by(a.occurred_at.desc()).limit(limit)
        if since is not None:
            statement = statement.where(a.occurred_at >= since)
        actions = list(actions)
        if actions:
            statement = statement.where(a.action.in_(actions))
        with self.engine.connect() as conn:
            rows = conn.execute(statement).all()
        return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def make_auth_engine(url: str) -> sa.Engine:
    """A read-write engine for the accounts database (SQLite: waits for other writers)."""
    from crm_data.engines import make_engine

    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        database = sa_url.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
            return sa.create_engine(sa_url, connect_args={"timeout": BUSY_TIMEOUT})
        return sa.create_engine("sqlite://", poolclass=sa.pool.StaticPool)  # one shared in-memory database
    return make_engine(url)


def _account(row: sa.Row) -> Account:
    return Account(row.name, row.role, json.loads(row.scope or "{}"), bool(row.sso))


def _checked_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
    return role


def _checked_scope(scope: Mapping[str, Iterable[str]] | None) -> dict[str, list[str]]:
    clean: dict[str, list[str]] = {}
    for key, values in (scope or {}).items():
        if key not in SCOPE_KEYS:
            raise AccountError(f"unknown scope {key!r}: one of {', '.join(SCOPE_KEYS)}")
        if values is None:
            continue
        listed = sorted({str(v).strip() for v in values if str(v).strip()})
        if listed:
            clean[key] = listed
    return clean


def _checked_password(password: str | None) -> str:
    if password is None or len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password
