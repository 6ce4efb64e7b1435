"""``crm-insights serve`` on a network address needs sign-in (or --allow-anonymous); the
shipped Streamlit options keep XSRF protection on and limit uploads; an upload's name is
never a path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from crm_data.accounts import AccountStore
from crm_data.cli import main
from ui import serve
from ui.uploads import MAX_UPLOAD_MB, safe_file_name

PASSWORD = "a long enough password"


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[dict]:
    """Record Streamlit starts instead of running a server; a demo-less database URL."""
    from streamlit.web import bootstrap

    runs: list[dict] = []
    monkeypatch.setattr(bootstrap, "load_config_options", lambda flag_options: None)
    monkeypatch.setattr(bootstrap, "run", lambda script, is_hello, args, options: runs.append(dict(options)))
    monkeypatch.delenv("CRM_AUTH_DATABASE_URL", raising=False)
    monkeypatch.delenv("CRM_ALLOW_ANONYMOUS", raising=False)
    monkeypatch.chdir(tmp_path)  # no .streamlit/secrets.toml here
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CRM_DATABASE_URL", f"duckdb:///{tmp_path / 'crm.duckdb'}")
    yield runs
    os.environ.pop("CRM_ALLOW_ANONYMOUS", None)


def test_a_network_address_without_sign_in_is_refused(started, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--address", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "refusing to listen on 0.0.0.0 without sign-in" in err
    assert "users add NAME --role admin" in err and "[auth]" in err and "--allow-anonymous" in err
    assert started == []
    assert main(["serve"]) == 0  # 127.0.0.1: anonymous, the laptop default
    assert started[-1]["server.address"] == "127.0.0.1"


def test_allow_anonymous_overrides(started) -> None:
    assert main(["serve", "--address", "0.0.0.0", "--allow-anonymous"]) == 0
    assert started[-1]["server.address"] == "0.0.0.0"
    assert os.environ["CRM_ALLOW_ANONYMOUS"] == "1"


def test_an_account_or_single_sign_on_is_enough(started, tmp_path: Path) -> None:
    store = AccountStore.open(os.environ["CRM_DATABASE_URL"])
    store.add("boss", role="admin", password=PASSWORD, actor="test")
    store.dispose()
    assert main(["serve", "--address", "0.0.0.0"]) == 0
    (tmp_path / "crm-auth.sqlite").unlink()
    secrets = tmp_path / "sso.toml"
    secrets.write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\ncookie_secret = "s"\n')
    assert main(["serve", "--address", "0.0.0.0", "--secrets", str(secrets)]) == 0
    assert started[-1]["secrets.files"] == [str(secrets.resolve())]
    assert main(["serve", "--address", "0.0.0.0", "--secrets", str(tmp_path / "none.toml")]) == 2
    # the working directory's .streamlit/secrets.toml, as Streamlit reads it
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text(secrets.read_text())
    assert main(["serve", "--address", "0.0.0.0"]) == 0
    assert "secrets.files" not in started[-1]


def test_xsrf_protection_and_the_upload_limit_are_on() -> None:
    options = serve.flag_options("127.0.0.1", 8600)
    assert options["server.enableXsrfProtection"] is True
    assert options["server.enableCORS"] is True
    assert options["server.maxUploadSize"] == MAX_UPLOAD_MB
    assert options["server.address"] == "127.0.0.1"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("..", "fallback.csv"),
        ("C:\\Users\\x\\Account.csv", "Account.csv"),
        (".bashrc.csv", "bashrc.csv"),
        ("deals.exe", "fallback.csv"),
        ("a\x00b;rm -rf.csv", "a_b_rm -rf.csv"),
        ("hubspot-crm-exports-all-deals-2024-06-30.csv", "hubspot-crm-exports-all-deals-2024-06-30.csv"),
        ("x" * 300 + ".csv", "x" * 116 + ".csv"),
    ],
)
def test_upload_names_are_cleaned(name: str, expected: str) -> None:
    cleaned = safe_file_name(name, "fallback.csv")
    assert cleaned == expected
    assert "/" not in cleaned and "\\" not in cleaned and not cleaned.startswith(".")
