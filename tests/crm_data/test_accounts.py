"""crm_data.accounts: accounts with Argon2 hashes, roles, scopes, the lock-out and the audit
log in app tables (never the CRM ``users`` table), on DuckDB, SQLite and PostgreSQL; and
``crm-insights users`` on the command line."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import sqlite3
import stat
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from crm_data import accounts, cli
from crm_data.accounts import AccountError, AccountStore, auth_url
from kpis.filters import SCOPE_DIMENSIONS, Scope

PASSWORD = "correct horse battery"


@pytest.fixture(params=["duckdb", "sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, make_db: Callable[..., sa.Engine]) -> AccountStore:
    return AccountStore(make_db(request.param, create=True))


def test_accounts_roles_scopes_and_hashes(store: AccountStore) -> None:
    assert not store.any_accounts()
    added = store.add(
        "ana", role="analyst", scope={"regions": ["EMEA"], "segments": ["SMB"]}, password=PASSWORD, actor="t"
    )
    store.add("Alice@Example.com", role="viewer", scope={"regions": ["NA"]}, sso=True, actor="t")
    assert store.any_accounts()
    assert added.may("viewer") and added.may("analyst") and not added.may("admin")
    assert Scope.from_dict(added.scope) == Scope(regions=("EMEA",), segments=("SMB",))
    assert [a.name for a in store.accounts()] == ["alice@example.com", "ana"]  # e-mails lower-cased
    with store.engine.connect() as conn:
        stored = conn.execute(
            sa.select(accounts.app_accounts.c.password_hash).where(accounts.app_accounts.c.name == "ana")
        ).scalar_one()
        crm_users = conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert crm_users == 0  # the CRM users table is not touched
    with pytest.raises(AccountError, match="exists already"):
        store.add("ana", role="viewer", password=PASSWORD, actor="t")
    with pytest.raises(AccountError, match="unknown role"):
        store.add("bob", role="root", password=PASSWORD, actor="t")
    with pytest.raises(AccountError, match="unknown scope"):
        store.add("bob", role="viewer", scope={"planets": ["Mars"]}, password=PASSWORD, actor="t")
    with pytest.raises(AccountError, match="at least 12"):
        store.add("bob", role="viewer", password="short", actor="t")
    with pytest.raises(AccountError, match="e-mail"):
        store.add("bob", role="viewer", sso=True, actor="t")
    changed = store.update("ana", role="admin", scope={"regions": ["APAC"]}, actor="t")
    assert changed.role == "admin" and changed.scope == {"regions": ["APAC"]}
    assert store.update("ana", scope={}, actor="t").scope == {}
    store.remove("alice@example.com", actor="t")
    assert store.get("alice@example.com") is None
    log = store.audit_log()
    assert list(log["action"])[::-1] == [
        "user_added",
        "user_added",
        "user_changed",
        "user_changed",
        "user_removed",
    ]
    assert json.loads(log["details"].iloc[-1])["scope"] == {"regions": ["EMEA"], "segments": ["SMB"]}


def test_sign_in_and_the_lock_out(store: AccountStore) -> None:
    store.add("ana", role="viewer", password=PASSWORD, actor="t")
    store.add("sso@example.com", role="viewer", sso=True, actor="t")
    t0 = dt.datetime(2026, 1, 1, 9, 0)
    assert store.sign_in("ana", PASSWORD, now=t0).account.name == "ana"
    assert store.sign_in("sso@example.com", "", now=t0).reason == "wrong"  # no password sign-in for SSO
    assert store.sign_in("nobody", PASSWORD, now=t0).reason == "wrong"
    for i in range(accounts.MAX_FAILURES - 1):
        assert store.sign_in("ana", "wrong password!", now=t0 + dt.timedelta(minutes=i + 1)).reason == "wrong"
    fifth = store.sign_in("ana", "wrong password!", now=t0 + dt.timedelta(minutes=5))
    assert fifth.reason == "locked" and fifth.locked_until == t0 + dt.timedelta(minutes=20)
    # locked: even the right password is refused, and these attempts do not extend the lock
    assert store.sign_in("ana", PASSWORD, now=t0 + dt.timedelta(minutes=10)).reason == "locked"
    assert store.sign_in("ana", PASSWORD, now=t0 + dt.timedelta(minutes=19)).reason == "locked"
    assert store.sign_in("ana", PASSWORD, now=t0 + dt.timedelta(minutes=21)).account is not None
    # failures spread over more than 15 minutes do not lock
    t1 = t0 + dt.timedelta(hours=1)
    for i in range(accounts.MAX_FAILURES + 2):
        assert store.sign_in("ana", "wrong password!", now=t1 + dt.timedelta(minutes=4 * i)).reason == "wrong"
    # a success resets the count
    store.sign_in("ana", PASSWORD, now=t1 + dt.timedelta(minutes=40))
    assert store.locked_until("ana", now=t1 + dt.timedelta(minutes=41)) is None
    actions = set(store.audit_log()["action"])
    assert {"sign_in", "sign_in_failed", "sign_in_locked"} <= actions


def test_scope_keys_are_the_kpi_layers() -> None:
    assert accounts.SCOPE_KEYS == SCOPE_DIMENSIONS


def test_auth_database_beside_the_crm_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(accounts.AUTH_URL_VARIABLE, raising=False)
    assert auth_url(f"duckdb:///{tmp_path}/crm.duckdb") == f"sqlite:///{tmp_path}/crm-auth.sqlite"
    assert auth_url(f"sqlite:///{tmp_path}/x.sqlite") == f"sqlite:///{tmp_path}/x-auth.sqlite"
    assert auth_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    assert auth_url("duckdb:///x.duckdb", {accounts.AUTH_URL_VARIABLE: "sqlite:///elsewhere.sqlite"}) == (
        "sqlite:///elsewhere.sqlite"
    )
    store = AccountStore.open(f"duckdb:///{tmp_path}/crm.duckdb")
    store.add("ana", role="viewer", password=PASSWORD, actor="t")
    store.dispose()
    path = tmp_path / "crm-auth.sqlite"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # a second process may write while the dashboard holds its own connection (SQLite, not DuckDB)
    holder = AccountStore.open(f"duckdb:///{tmp_path}/crm.duckdb")
    with holder.engine.connect():
        other = sqlite3.connect(path, timeout=5)
        other.execute(
            "INSERT INTO app_audit VALUES ('x', '2026-01-01 00:00:00.000000', 'a', 'b', 'c', '{}', '')"
        )
        other.commit()
        other.close()
        holder.record("dashboard", "export", "x.csv")
    assert len(holder.audit_log()) == 3
    holder.dispose()


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return cli.main(argv)


def test_users_command(tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv(accounts.AUTH_URL_VARIABLE, raising=False)
    url = f"duckdb:///{tmp_path}/crm.duckdb"
    add = [
        "users",
        "add",
        "rm-emea",
        "--url",
        url,
        "--role",
        "viewer",
        "--region",
        "EMEA",
        "--segment",
        "SMB",
    ]
    assert run_cli([*add, "--owner", "U001", "--password-stdin"], monkeypatch, PASSWORD + "\n") == 0
    assert "sees regions EMEA; segments SMB; owners U001" in capsys.readouterr().out
    assert (
        run_cli(
            ["users", "add", "alice@example.com", "--sso", "--role", "analyst", "--url", url], monkeypatch
        )
        == 0
    )
    assert run_cli(["users", "add", "short", "--password-stdin", "--url", url], monkeypatch, "abc\n") == 1
    assert "at least 12" in capsys.readouterr().err
    assert (
        run_cli(["users", "add", "nopass", "--url", url], monkeypatch) == 1
    )  # no terminal, no --password-stdin
    assert "--password-stdin" in capsys.readouterr().err
    assert run_cli(["users", "update", "rm-emea", "--role", "analyst", "--url", url], monkeypatch) == 0
    assert (
        run_cli(["users", "set-password", "rm-emea", "--password-stdin", "--url", url], monkeypatch, "x" * 14)
        == 0
    )
    capsys.readouterr()
    assert run_cli(["users", "list", "--url", url], monkeypatch) == 0
    listed = capsys.readouterr().out
    assert "alice@example.com" in listed and "sso" in listed and "rm-emea" in listed and "analyst" in listed
    store = AccountStore.open(url)
    assert store.sign_in("rm-emea", "x" * 14).account.scope == {
        "owners": ["U001"],
        "regions": ["EMEA"],
        "segments": ["SMB"],
    }
    assert run_cli(["users", "remove", "rm-emea", "--url", url], monkeypatch) == 0
    assert run_cli(["users", "remove", "rm-emea", "--url", url], monkeypatch) == 1
    log = store.audit_log()
    assert {"user_added", "user_changed", "password_set", "user_removed", "sign_in"} <= set(log["action"])
    assert all(actor.startswith("cli:") for actor in log[log["action"] == "user_added"]["actor"])
    store.dispose()
    assert not (tmp_path / "crm.duckdb").exists()  # the CRM file is not created by `users`


def test_many_names_from_one_address_are_refused(make_db: Callable[..., sa.Engine]) -> None:
    store = AccountStore(make_db("sqlite"))
    store.add("ana", role="viewer", password=PASSWORD, actor="t")
    t0 = dt.datetime(2026, 1, 1, 9, 0)
    for i in range(accounts.MAX_ADDRESS_FAILURES):
        answer = store.sign_in(
            f"guess{i}", "Winter2026!", address="10.9.9.9", now=t0 + dt.timedelta(seconds=i)
        )
        assert answer.reason == "wrong"
    refused = store.sign_in("ana", PASSWORD, address="10.9.9.9", now=t0 + dt.timedelta(minutes=1))
    assert refused.reason == "locked"
    assert (
        store.sign_in("ana", PASSWORD, address="10.1.1.1", now=t0 + dt.timedelta(minutes=1)).account
        is not None
    )
    later = t0 + dt.timedelta(seconds=accounts.MAX_ADDRESS_FAILURES) + accounts.LOCKOUT_WINDOW
    assert store.sign_in("ana", PASSWORD, address="10.9.9.9", now=later).account is not None
