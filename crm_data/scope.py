"""A user's scope — the most a signed-in user may see — as a value, and the WHERE
conditions that keep a CRM table's records inside it.

The data layer needs it without the KPI layer (``crm_data.pg_scope`` writes it into
PostgreSQL policies, ``crm_data.quality`` counts findings inside it); :mod:`kpis.filters`
re-exports :class:`Scope` and applies it beside the filter lists (``kpis.filters.scope``),
which :func:`conditions` mirrors for a scope alone (a test holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from crm_data import schema

#: Filter field -> accounts column, for the account-level lists.
ACCOUNT_DIMENSIONS: dict[str, str] = {
    "segments": "segment",
    "industries": "industry",
    "regions": "region",
    "countries": "country",
    "company_sizes": "company_size",
    "acquisition_channels": "acquisition_channel",
}


#: The dimensions a user's scope can restrict, in the order they are shown.
SCOPE_DIMENSIONS: tuple[str, ...] = ("regions", "countries", "segments", "industries", "owners")


def _as_tuple(values: object) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    return tuple(sorted({str(v) for v in values}))


def _as_limit(values: object) -> tuple[str, ...] | None:
    """None (no limit) stays None; anything else becomes a sorted tuple (``()``: nothing)."""
    return None if values is None else _as_tuple(values)


def singular(name: str) -> str:
    """One value's word for a filter list or scope dimension: ``regions`` → ``region``,
    ``industries`` → ``industry``, ``company_sizes`` → ``company size``."""
    return "industry" if name == "industries" else name[:-1].replace("_", " ")


@dataclass(frozen=True)
class Scope:
    """The most a user may see. ``None`` = no limit on that dimension; a tuple = only these
    values (``()``: none at all). Hashable (part of the ``Filters`` cache key)."""

    regions: tuple[str, ...] | None = None
    countries: tuple[str, ...] | None = None
    segments: tuple[str, ...] | None = None
    industries: tuple[str, ...] | None = None
    owners: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in SCOPE_DIMENSIONS:
            object.__setattr__(self, name, _as_limit(getattr(self, name)))

    @property
    def restricted(self) -> bool:
        """True when any dimension is limited."""
        return any(getattr(self, name) is not None for name in SCOPE_DIMENSIONS)

    def limits(self) -> dict[str, tuple[str, ...]]:
        """The limited dimensions: ``{"regions": ("EMEA",)}``."""
        return {n: getattr(self, n) for n in SCOPE_DIMENSIONS if getattr(self, n) is not None}

    def intersect(self, other: Scope) -> Scope:
        """What both allow."""
        values: dict[str, tuple[str, ...] | None] = {}
        for name in SCOPE_DIMENSIONS:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine is None or theirs is None:
                values[name] = theirs if mine is None else mine
            else:
                values[name] = tuple(v for v in mine if v in theirs)
        return Scope(**values)

    def allows(self, name: str, value: str) -> bool:
        """True when ``value`` of dimension ``name`` (a Filters field) is inside the scope."""
        limit = getattr(self, name, None) if name in SCOPE_DIMENSIONS else None
        return limit is None or value in limit

    def describe(self) -> str:
        """``region EMEA; segment SMB`` or ``everything``."""
        parts = [
            f"{singular(name)} {', '.join(values) or '(none)'}" for name, values in self.limits().items()
        ]
        return "; ".join(parts) or "everything"

    def as_dict(self) -> dict[str, list[str]]:
        """The limits as JSON-ready lists (stored with a user's account)."""
        return {name: list(values) for name, values in self.limits().items()}

    @classmethod
    def from_dict(cls, values: dict[str, object] | None) -> Scope:
        """The inverse of :meth:`as_dict` (unknown keys are ignored)."""
        values = values or {}
        return cls(**{name: values[name] for name in SCOPE_DIMENSIONS if name in values})


EVERYTHING = Scope()


def conditions(scope: Scope, table: sa.Table | sa.FromClause) -> list[ColumnElement[bool]]:
    """WHERE conditions keeping ``table``'s rows inside ``scope`` (``kpis.filters.scope``
    with no chosen lists, the same shape): the scope's owners by the table's own owner
    column (``owner_id``, else ``user_id``); everything selected through the account — the
    account dimensions the scope limits and, for a table without an owner column, its
    owners — as one semi-join ``account_id IN (SELECT account_id FROM accounts WHERE ...)``;
    nothing of a table without an account or owner column once the scope is restricted."""
    columns = table.c
    accounts = schema.accounts
    found: list[ColumnElement[bool]] = []
    through_account = [
        accounts.c[ACCOUNT_DIMENSIONS[name]].in_(values) if values else sa.false()
        for name, values in scope.limits().items()
        if name in ACCOUNT_DIMENSIONS
    ]
    own = "owner_id" if "owner_id" in columns else ("user_id" if "user_id" in columns else None)
    if scope.owners is not None:
        if not scope.owners:
            found.append(sa.false())
        elif own is not None:
            found.append(columns[own].in_(scope.owners))
        else:
            through_account.append(accounts.c.owner_id.in_(scope.owners))
    if through_account and "account_id" in columns:
        found.append(columns.account_id.in_(sa.select(accounts.c.account_id).where(*through_account)))
    if scope.restricted and not ({"account_id", "owner_id", "user_id"} & set(columns.keys())):
        found.append(sa.false())  # company-wide records (no account): outside any scope
    return found


__all__ = ["ACCOUNT_DIMENSIONS", "EVERYTHING", "SCOPE_DIMENSIONS", "Scope", "conditions"]
