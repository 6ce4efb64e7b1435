"""Who is looking: the sign-in gate, roles and the user's data scope.

``gate()`` runs first on every page (``ui.filters.global_filters()`` calls it before
drawing anything; the Import and Audit log pages call ``require("admin")`` first). It
returns the signed-in ``User`` or draws the sign-in form and stops the script
(``st.stop()``): nothing of the page runs before sign-in.

When sign-in is required: as soon as an account exists (``crm-insights users add``) or
single sign-on is configured (an ``[auth]`` section in Streamlit's secrets). Without
either, the dashboard is anonymous (an admin who sees everything: the laptop default)
only while the server listens on a loopback address (``server.address`` 127.0.0.1,
localhost, ::1) or ``CRM_ALLOW_ANONYMOUS=1`` (``crm-insights serve --allow-anonymous``);
otherwise every page says how to configure sign-in and stops.

* Built-in accounts: name and password, checked by ``crm_data.accounts`` (Argon2id, 5
  failures in 15 minutes lock the name for 15 minutes). The sign-in lives in this browser
  tab's Streamlit session (server side; no cookie): reloading the tab or opening a link
  in a new tab asks again.
* Single sign-on: ``st.login()`` (OpenID Connect through Authlib, Streamlit's identity
  cookie); the account is the ``app_accounts`` row of the user's e-mail, added with
  ``crm-insights users add EMAIL --sso``. An e-mail without such an account is refused.
* Sessions end after ``IDLE_TIMEOUT`` (30 minutes) without any interaction and after
  ``SESSION_LIMIT`` (12 hours) in any case; a single sign-on session is then signed out
  of Streamlit's cookie too (``st.logout()``).
* Roles (viewer < analyst < admin) and scopes are read from the account on every script
  run (cached ``ACCOUNT_TTL`` seconds): a role or scope change, or a removed account,
  applies within that time.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass

import streamlit as st

from crm_data import accounts as store_module
from crm_data.accounts import Account, AccountStore
from crm_data.engines import database_url
from kpis.filters import EVERYTHING, Scope
from ui.serve import loopback

IDLE_TIMEOUT = dt.timedelta(minutes=30)
SESSION_LIMIT = dt.timedelta(hours=12)
ACCOUNT_TTL = 10  # seconds an account's role and scope are cached
ALLOW_ANONYMOUS_VARIABLE = "CRM_ALLOW_ANONYMOUS"
SESSION_KEY = "_auth_session"  # {"name", "how", "since", "seen"}
VIEWER, ANALYST, ADMIN = store_module.ROLES
ROLE_HELP = {
    VIEWER: "pages and exports within the scope",
    ANALYST: "also record-level drill-downs and data-quality records",
    ADMIN: "also imports, roll-up rebuilds, accounts and the audit log",
}


@dataclass(frozen=True)
class User:
    """The person looking at the dashboard (``how``: password, sso or anonymous)."""

    name: str
    role: str
    scope: Scope
    how: str

    def may(self, role: str) -> bool:
        return store_module.ROLES.index(self.role) >= store_module.ROLES.index(role)

    @property
    def anonymous(self) -> bool:
        return self.how == "anonymous"


ANONYMOUS = User("anonymous", ADMIN, EVERYTHING, "anonymous")


def _plain(text: str) -> str:
    """``text`` shown literally in Streamlit markdown (names and e-mails are not markup)."""
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>~$:" else c for c in str(text))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


@st.cache_resource(show_spinner=False)
def _store(url: str) -> AccountStore:
    return AccountStore.open(url)


def store() -> AccountStore:
    """The accounts and audit log of the dashboard's database (one per process)."""
    return _store(database_url())


@st.cache_data(ttl=ACCOUNT_TTL, show_spinner=False)
def _accounts_exist(url: str) -> bool:
    return _store(url).any_accounts()


@st.cache_data(ttl=ACCOUNT_TTL, show_spinner=False)
def _account(url: str, name: str) -> Account | None:
    return _store(url).get(name)


def forget_accounts() -> None:
    """Drop the cached account look-ups (after an admin changed accounts)."""
    _accounts_exist.clear()
    _account.clear()


def oidc_configured() -> bool:
    """True when Streamlit's secrets hold an ``[auth]`` section (single sign-on)."""
    try:
        return "auth" in st.secrets and bool(st.secrets["auth"])
    except Exception:  # no secrets file at all: Streamlit raises its own FileNotFoundError kind
        return False


def anonymous_allowed() -> bool:
    """Anonymous use: only on a loopback address, or when explicitly allowed."""
    if os.environ.get(ALLOW_ANONYMOUS_VARIABLE, "").strip() == "1":
        return True
    return loopback(st.get_option("server.address"))


def client_address() -> str:
    """The client's IP address as Streamlit sees it ("" when unknown)."""
    try:
        return str(st.context.ip_address or "")
    except Exception:
        return ""


def record(
    action: str, target: str = "", details: dict[str, object] | None = None, actor: str | None = None
) -> None:
    """One audit row by the current user (``actor`` when given, e.g. captured earlier)."""
    who = actor or current_user().name
    store().record(who, action, target, details or {}, client_address())


def current_user() -> User:
    """The signed-in user without drawing anything (``ANONYMOUS`` when there is none)."""
    return st.session_state.get("_auth_user", ANONYMOUS)


def _user_of(account: Account, how: str) -> User:
    return User(account.name, account.role, Scope.from_dict(account.scope), how)


def _end_session(reason: str, action: str) -> None:
    ss = st.session_state
    session = ss.get(SESSION_KEY)
    if session:
        store().record(session["name"], action, session["name"], {"how": session["how"]}, client_address())
    for key in list(ss.keys()):
        del ss[key]  # filters and page state of the previous user go too
    ss["_auth_notice"] = reason


def sign_out() -> None:
    """End this session (a single sign-on session: Streamlit's identity cookie too)."""
    how = st.session_state.get(SESSION_KEY, {}).get("how")
    _end_session("You are signed out.", store_module.SIGN_OUT)
    if how == "sso":
        st.logout()


def _session_user(url: str) -> User | None:
    """The user of this session when it is still valid (idle and absolute limits)."""
    ss = st.session_state
    session = ss.get(SESSION_KEY)
    if not session:
        return None
    now = _now()
    if now - session["seen"] > IDLE_TIMEOUT or now - session["since"] > SESSION_LIMIT:
        minutes = int(IDLE_TIMEOUT.total_seconds() // 60)
        how = session["how"]
        _end_session(
            f"Your session ended after {minutes} minutes without activity (or 12 hours in all): sign in again.",
            store_module.SESSION_EXPIRED,
        )
        if how == "sso":
            st.logout()
        return None
    account = _account(url, session["name"])
    if account is None:
        _end_session("Your account no longer exists.", store_module.SIGN_OUT)
        return None
    session["seen"] = now
    return _user_of(account, session["how"])


def _start_session(account: Account, how: str) -> None:
    now = _now()
    st.session_state[SESSION_KEY] = {"name": account.name, "how": how, "since": now, "seen": now}
    st.session_state.pop("_auth_notice", None)


def _sso_user(url: str) -> User | None:
    """The single sign-on user when Streamlit's identity cookie says so and an account matches."""
    if not oidc_configured():
        return None
    try:
        logged_in = bool(st.user.is_logged_in)
    except Exception:
        return None
    if not logged_in:
        return None
    issued = st.user.get("iat")
    if (
        isinstance(issued, int | float)
        and _now() - dt.datetime.fromtimestamp(issued, dt.UTC).replace(tzinfo=None) > SESSION_LIMIT
    ):
        st.logout()  # the identity cookie outlives SESSION_LIMIT: sign in at the provider again
        st.stop()
    email = str(st.user.get("email") or "").strip().lower()
    verified = st.user.get("email_verified")
    account = _account(url, email) if email and verified is not False else None
    if account is None or not account.sso:
        if not st.session_state.get("_auth_refused"):
            st.session_state["_auth_refused"] = True
            store().record(email or "(no e-mail)", store_module.SSO_REFUSED, email, {}, client_address())
        st.title("CRM Insights")
        st.error(
            f"You signed in as {_plain(email) if email else 'someone without an e-mail address'}, but this dashboard has no "
            "single sign-on account for that address. Ask an administrator to add it "
            "(`crm-insights users add EMAIL --sso --role viewer`).",
            icon=":material/block:",
        )
        st.button("Sign out", on_click=st.logout, key="auth_sso_refused_out")
        st.stop()
    _start_session(account, "sso")
    store().record(account.name, store_module.SIGN_IN, account.name, {"how": "sso"}, client_address())
    return _user_of(account, "sso")


def _sign_in_page() -> None:
    """The sign-in form (and the single sign-on button); stops the script."""
    st.title("CRM Insights — sign in")
    notice = st.session_state.get("_auth_notice")
    if notice:
        st.info(notice, icon=":material/logout:")
    if oidc_configured():
        st.button(
            "Sign in with single sign-on",
            type="primary",
            on_click=st.login,
            key="auth_sso",
            icon=":material/key:",
        )
    with st.form("auth_form", border=True, enter_to_submit=True):
        name = st.text_input("Name", key="auth_name", autocomplete="username")
        password = st.text_input(
            "Password", type="password", key="auth_password", autocomplete="current-password"
        )
        submitted = st.form_submit_button("Sign in", type="secondary" if oidc_configured() else "primary")
    if submitted:
        answer = store().sign_in(name, password, address=client_address())
        if answer.account is not None:
            _start_session(answer.account, "password")
            forget_accounts()
            st.rerun()
        if answer.reason == "locked":
            until = answer.locked_until
            st.error(
                f"Too many failed sign-ins for this name (or from this address): locked until {until:%H:%M} UTC "
                f"({store_module.MAX_FAILURES} failures of a name, or {store_module.MAX_ADDRESS_FAILURES} from "
                "one address, within 15 minutes lock it for 15 minutes).",
                icon=":material/lock_clock:",
            )
        else:
            st.error("Wrong name or password.", icon=":material/error:")
    st.stop()


def _refuse_anonymous() -> None:
    address = st.get_option("server.address") or "all addresses"
    st.title("CRM Insights")
    st.error(
        f"This server listens on {address} and no sign-in is configured, so it shows nothing. Add an "
        "account (`crm-insights users add NAME --role admin`) or configure single sign-on "
        "(`[auth]` in .streamlit/secrets.toml), or listen on 127.0.0.1 only. To serve everyone on the "
        "network without sign-in anyway: `crm-insights serve --allow-anonymous`.",
        icon=":material/shield:",
    )
    st.stop()


def sidebar_badge() -> None:
    """Who is signed in, with a Sign out button (``ui.navigation`` draws it under the links)."""
    user = current_user()
    if user.anonymous:
        return
    box = st.sidebar.container(key="crm_user")
    box.caption(
        f":material/person: **{_plain(user.name)}** · {user.role} · sees {_plain(user.scope.describe())}"
    )
    box.button("Sign out", on_click=sign_out, key="auth_sign_out", icon=":material/logout:")


def gate() -> User:
    """The signed-in user, or the sign-in form and ``st.stop()``. Runs first on every page
    (``ui.navigation.navigation()`` calls it; calling it again in the same run is harmless)."""
    url = database_url()
    if not (oidc_configured() or _accounts_exist(url)):
        if not anonymous_allowed():
            _refuse_anonymous()
        st.session_state["_auth_user"] = ANONYMOUS
        return ANONYMOUS
    user = _session_user(url) or _sso_user(url)
    if user is None:
        st.session_state.pop("_auth_user", None)
        _sign_in_page()
    st.session_state["_auth_user"] = user
    return user


def require(role: str) -> User:
    """``gate()``, then refuse (an error and ``st.stop()``) a user whose role is below ``role``."""
    user = gate()
    if not user.may(role):
        st.error(
            f"This page needs the {role} role ({ROLE_HELP[role]}); you are signed in as {user.name}, "
            f"a {user.role}.",
            icon=":material/block:",
        )
        st.stop()
    return user
