"""Goals and quotas: a target for one KPI in one period, optionally for one slice.

A *goal* is (KPI, period, target) and optionally one value each of segment, region,
country, industry and owner (the slice the target is for; none: all accounts). A *quota*
is the goal "won amount per owner per quarter": ``kpi=won_amount, period=2026-Q4,
owner=U007``. Periods are calendar months, quarters or years in UTC, written
``2026-12``, ``2026-Q4`` or ``2026``.

Which KPIs may have goals (:data:`GOAL_KPIS`): those with **one value per period** —
their key, title, unit and direction (higher or lower is better) come from
``kpis.registry``; plus two additive counts the registry shows only as columns, won
amount (Σ amount of won deals by closed_at) and new customers (``active_customers``'
new_customers). KPIs with several values per period (engagement per platform, stage durations, funnel, cohorts, campaigns, complaint spikes) cannot have one.
*Additive* KPIs (revenue, won amount, new customers) add up over the days of a period, so
a partial period is judged against the elapsed share of its target (``kpis.goals``).

Where goals live: the app table ``app_goals`` in the app's own database, the same as the
sign-in accounts (``crm_data.accounts.auth_url``: a SQLite file beside a DuckDB or SQLite
CRM file, the CRM database itself on PostgreSQL, or ``$CRM_AUTH_DATABASE_URL``), created
on first use with ``create_all(checkfirst=True)``. Changes are written to the audit log.

One goal per (KPI, period, slice): adding one that exists changes its target. CSV import
(:meth:`GoalStore.import_csv`, format in :data:`CSV_COLUMNS`) checks every row first and
writes nothing when any row is bad; each problem is ``file:row:column: reason`` (row =
the line number, the header being line 1).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa

from crm_data import accounts

PERIOD_KINDS: tuple[str, ...] = ("month", "quarter", "year")
#: The slice a goal can be for: goal column -> ``kpis.Filters`` field.
DIMENSIONS: dict[str, str] = {
    "segment": "segments",
    "region": "regions",
    "country": "countries",
    "industry": "industries",
    "owner": "owners",
}
#: The CSV columns: kpi, period, target required; the slice columns optional (empty: all).
CSV_COLUMNS: tuple[str, ...] = ("kpi", "period", "target", *DIMENSIONS)
REQUIRED_COLUMNS: tuple[str, ...] = ("kpi", "period", "target")
#: Tries of a write that met another writer's new goal (ids are max + 1; a slice is unique).
WRITE_ATTEMPTS = 3
GOAL_ADDED, GOAL_CHANGED, GOAL_REMOVED, GOALS_IMPORTED = (
    "goal_added",
    "goal_changed",
    "goal_removed",
    "goals_imported",
)

metadata = sa.MetaData()

app_goals = sa.Table(
    "app_goals",
    metadata,
    sa.Column("goal_id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("kpi", sa.String(64), nullable=False),
    sa.Column("period_kind", sa.String(8), nullable=False),
    sa.Column("period_start", sa.Date(), nullable=False),
    sa.Column("target", sa.Float(), nullable=False),
    # "" = not limited (NULLs would not make the unique constraint below hold)
    *(sa.Column(name, sa.String(254), nullable=False, server_default="") for name in DIMENSIONS),
    sa.Column("updated_by", sa.String(254), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.UniqueConstraint("kpi", "period_kind", "period_start", *DIMENSIONS, name="uq_app_goals_slice"),
)


class GoalError(ValueError):
    """A goal the store refuses (unknown KPI, bad period, target out of range …); the
    message says what and why."""


@dataclass(frozen=True)
class GoalKpi:
    """A KPI that may have goals: ``additive`` when its value adds up over a period's days
    (judged by pace); ``company_wide`` when it cannot be sliced by account (no slice)."""

    key: str
    title: str
    unit: str
    higher_is_better: bool
    additive: bool = False
    company_wide: bool = False


def _registry_kpi(key: str, *, additive: bool = False, company_wide: bool = False) -> GoalKpi:
    from kpis import registry

    entry = registry.get(key)
    return GoalKpi(entry.key, entry.title, entry.unit, entry.higher_is_better, additive, company_wide)


def _goal_kpis() -> dict[str, GoalKpi]:
    kpis = [
        _registry_kpi("revenue", additive=True),
        GoalKpi("won_amount", "Won amount", "money", True, additive=True),
        GoalKpi("new_customers", "New customers", "count", True, additive=True),
        _registry_kpi("active_customers"),
        _registry_kpi("churn_rate"),
        _registry_kpi("net_revenue_retention"),
        _registry_kpi("revenue_churn"),
        _registry_kpi("nps"),
        _registry_kpi("ces"),  # all touchpoints together (kpis.ces with by_touchpoint=False)
        _registry_kpi("win_rate"),
        _registry_kpi("lead_conversion"),
        _registry_kpi("sales_cycle"),
        _registry_kpi("first_contact_resolution"),
        _registry_kpi("retention_cost"),
        _registry_kpi("web_ctr", company_wide=True),
    ]
    return {k.key: k for k in kpis}


#: key -> GoalKpi, in the order the Goals page offers them.
GOAL_KPIS: dict[str, GoalKpi] = _goal_kpis()

#: Allowed target range per unit (inclusive); ratios are fractions (3 % = 0.03).
UNIT_RANGES: dict[str, tuple[float, float]] = {
    "ratio": (0.0, 1.0),
    "nps": (-100.0, 100.0),
    "score": (1.0, 7.0),
    "days": (0.0, math.inf),
    "money": (0.0, math.inf),
    "count": (0.0, math.inf),
}


@dataclass(frozen=True)
class Goal:
    """One target. ``period_start`` is the period's first day; the slice values are ""
    when not limited."""

    kpi: str
    period_kind: str
    period_start: dt.date
    target: float
    segment: str = ""
    region: str = ""
    country: str = ""
    industry: str = ""
    owner: str = ""
    goal_id: int | None = None
    updated_by: str = ""
    updated_at: dt.datetime | None = field(default=None, compare=False)

    @property
    def period_end(self) -> dt.date:
        """The first day after the period."""
        return add_months(self.period_start, {"month": 1, "quarter": 3, "year": 12}[self.period_kind])

    @property
    def period(self) -> str:
        """The period as written in the CSV: ``2026-12``, ``2026-Q4`` or ``2026``."""
        return period_text(self.period_kind, self.period_start)

    @property
    def slice(self) -> dict[str, str]:
        """The limited slice dimensions: ``{"owner": "U007"}`` ({} = all accounts)."""
        return {name: getattr(self, name) for name in DIMENSIONS if getattr(self, name)}

    @property
    def kpi_info(self) -> GoalKpi:
        return GOAL_KPIS[self.kpi]

    def key(self) -> tuple:
        """What makes a goal unique: KPI, period and slice."""
        return (self.kpi, self.period_kind, self.period_start, *(getattr(self, n) for n in DIMENSIONS))


def add_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + day.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def period_text(kind: str, start: dt.date) -> str:
    """``2026-12`` / ``2026-Q4`` / ``2026``."""
    if kind == "year":
        return f"{start.year}"
    if kind == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    return f"{start.year}-{start.month:02d}"


_PERIOD = re.compile(r"^\s*(\d{4})(?:-(?:(0[1-9]|1[0-2])|[Qq]([1-4])))?\s*$")


def parse_period(text: str) -> tuple[str, dt.date]:
    """``2026-12`` -> (month, 2026-12-01); ``2026-Q4`` -> (quarter, 2026-10-01); ``2026`` ->
    (year, 2026-01-01). ``GoalError`` for anything else."""
    match = _PERIOD.match(text or "")
    if not match:
        raise GoalError(
            f"not a period: {text!r} (write 2026-12 for a month, 2026-Q4 for a quarter, 2026 for a year)"
        )
    year, month, quarter = match.groups()
    if month:
        return "month", dt.date(int(year), int(month), 1)
    if quarter:
        return "quarter", dt.date(int(year), 3 * int(quarter) - 2, 1)
    return "year", dt.date(int(year), 1, 1)


def parse_target(text: str | float, kpi: GoalKpi) -> float:
    """The target as a number in the KPI's unit; ratios may be written ``3%`` (= 0.03)."""
    raw = str(text).strip()
    percent = raw.endswith("%")
    number_text = raw[:-1].strip() if percent else raw
    try:
        value = float(number_text)
    except ValueError:
        raise GoalError(
            f"not a number: {raw!r} (a plain number with a decimal point, no thousands separators)"
        ) from None
    if not math.isfinite(value):
        raise GoalError(f"not a finite number: {raw!r}")
    if percent:
        if kpi.unit != "ratio":
            raise GoalError(f"{kpi.title} is in {kpi.unit}, not a share: write the target without %")
        value /= 100.0
    low, high = UNIT_RANGES[kpi.unit]
    if not low <= value <= high:
        hint = " (write 3% or 0.03 for three percent)" if kpi.unit == "ratio" else ""
        raise GoalError(f"{kpi.title} target {raw} is outside {low:g} to {high:g}{hint}")
    return value


def format_target(value: float, unit: str) -> str:
    """The target as the CSV and the command line write it (ratios as percentages)."""
    if unit == "ratio":
        return f"{value * 100:g}%"
    return f"{value:g}"


def goal_kpi(key: str) -> GoalKpi:
    """The goal KPI ``key``; ``GoalError`` naming those that may have goals otherwise."""
    try:
        return GOAL_KPIS[key.strip()]
    except (KeyError, AttributeError):
        raise GoalError(f"no goals for KPI {key!r}; one of: {', '.join(GOAL_KPIS)}") from None


def make_goal(
    kpi: str,
    period: str,
    target: str | float,
    slice_values: Mapping[str, str | None] | None = None,
    *,
    owners: Mapping[str, str] | None = None,
) -> Goal:
    """A checked :class:`Goal` from what a person writes. ``owners`` (user id -> name, from
    the CRM ``users`` table) lets ``owner`` be an id or a unique name, and refuses unknown
    owners; without it the owner is taken as written (an id)."""
    info = goal_kpi(kpi)
    kind, start = parse_period(period)
    value = parse_target(target, info)
    values = {name: (str(v).strip() if v is not None else "") for name, v in (slice_values or {}).items()}
    unknown = sorted(set(values) - set(DIMENSIONS))
    if unknown:
        raise GoalError(f"unknown slice {', '.join(unknown)}: one of {', '.join(DIMENSIONS)}")
    if info.company_wide and any(values.values()):
        raise GoalError(f"{info.title} is company-wide (not per account): its goals cannot have a slice")
    if values.get("owner") and owners is not None:
        values["owner"] = resolve_owner(values["owner"], owners)
    for name, text in values.items():
        if len(text) > 254:
            raise GoalError(f"{name} is longer than 254 characters")
    return Goal(info.key, kind, start, value, **values)


def resolve_owner(text: str, owners: Mapping[str, str]) -> str:
    """An owner id from an id or a unique name (``owners``: id -> name)."""
    if text in owners:
        return text
    matches = [uid for uid, name in owners.items() if (name or "").strip().lower() == text.lower()]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise GoalError(f"owner name {text!r} is ambiguous ({', '.join(sorted(matches))}): write the user id")
    raise GoalError(f"no owner {text!r} in the CRM users table (write a user id or a name)")


@dataclass(frozen=True)
class CsvProblem:
    """One bad cell of a goals CSV; ``str`` gives ``file:row:column: reason``."""

    file: str
    row: int | None
    column: str
    reason: str

    def __str__(self) -> str:
        row = "" if self.row is None else self.row
        return f"{self.file}:{row}:{self.column}: {self.reason}"


class GoalImportError(GoalError):
    """A goals CSV with bad rows: ``problems`` lists each; nothing was written."""

    def __init__(self, problems: list[CsvProblem]) -> None:
        self.problems = problems
        shown = "; ".join(str(p) for p in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} problem(s), nothing imported: {shown}{more}")


def parse_csv(text: str, file: str = "goals.csv", *, owners: Mapping[str, str] | None = None) -> list[Goal]:
    """The goals of a CSV (:data:`CSV_COLUMNS`), every row checked; ``GoalImportError``
    with every problem when any row is bad. A goal given twice in the file is a problem."""
    problems: list[CsvProblem] = []
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [(h or "").strip() for h in (reader.fieldnames or [])]
    if not header:
        raise GoalImportError([CsvProblem(file, None, "", "the file is empty (a header row is needed)")])
    reader.fieldnames = header
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    for name in missing:
        problems.append(CsvProblem(file, 1, name, "required column missing"))
    for name in unknown:
        problems.append(
            CsvProblem(file, 1, name, f"unknown column (the columns are {', '.join(CSV_COLUMNS)})")
        )
    if problems:
        raise GoalImportError(problems)
    goals: list[Goal] = []
    seen: dict[tuple, int] = {}
    for row in reader:
        line = reader.line_num  # the line this row ended on (rows are one line each here)
        if None in row:
            problems.append(CsvProblem(file, line, "", f"more values than the {len(header)} columns"))
            continue
        cells = {k: (v or "").strip() for k, v in row.items()}
        if not any(cells.values()):
            continue  # a blank line
        row_problems = _row_problems(cells, file, line, owners)
        if row_problems:
            problems.extend(row_problems)
            continue
        goal = make_goal(
            cells["kpi"],
            cells["period"],
            cells["target"],
            {d: cells.get(d) for d in DIMENSIONS},
            owners=owners,
        )
        if goal.key() in seen:
            problems.append(
                CsvProblem(
                    file, line, "kpi", f"the same goal as row {seen[goal.key()]} (KPI, period and slice)"
                )
            )
            continue
        seen[goal.key()] = line
        goals.append(goal)
    if problems:
        raise GoalImportError(problems)
    return goals


def _row_problems(
    cells: dict[str, str], file: str, line: int, owners: Mapping[str, str] | None
) -> list[CsvProblem]:
    """Each bad cell of one row, by column."""
    problems: list[CsvProblem] = []
    info: GoalKpi | None = None
    try:
        info = goal_kpi(cells.get("kpi", ""))
    except GoalError as error:
        problems.append(CsvProblem(file, line, "kpi", str(error)))
    try:
        parse_period(cells.get("period", ""))
    except GoalError as error:
        problems.append(CsvProblem(file, line, "period", str(error)))
    if info is not None:
        try:
            parse_target(cells.get("target", ""), info)
        except GoalError as error:
            problems.append(CsvProblem(file, line, "target", str(error)))
    for name in DIMENSIONS:
        value = cells.get(name, "")
        if not value:
            continue
        if info is not None and info.company_wide:
            problems.append(CsvProblem(file, line, name, f"{info.title} is company-wide: no slice"))
        elif len(value) > 254:
            problems.append(CsvProblem(file, line, name, "longer than 254 characters"))
        elif name == "owner" and owners is not None:
            try:
                resolve_owner(value, owners)
            except GoalError as error:
                problems.append(CsvProblem(file, line, name, str(error)))
    return problems


def template_csv() -> str:
    """A goals CSV to start from: the header and three example rows (a revenue target, a
    churn-rate ceiling for a segment, a quarterly quota of one owner)."""
    rows = [
        list(CSV_COLUMNS),
        ["revenue", "2026-12", "250000", "", "", "", "", ""],
        ["churn_rate", "2026-Q4", "3%", "Enterprise", "", "", "", ""],
        ["won_amount", "2026-Q4", "120000", "", "", "", "", "U001"],
    ]
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def goals_csv(goals: Iterable[Goal]) -> str:
    """Goals in the import format (an export can be edited and imported again)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for g in goals:
        writer.writerow(
            [g.kpi, g.period, format_target(g.target, g.kpi_info.unit), *(getattr(g, d) for d in DIMENSIONS)]
        )
    return out.getvalue()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _audit_row(conn: sa.Connection, actor: str, action: str, target: str, details: dict) -> None:
    """One row of the dashboard's audit log (``crm_data.accounts.app_audit``), in ``conn``'s transaction."""
    conn.execute(
        accounts.app_audit.insert().values(
            event_id=uuid.uuid4().hex,
            occurred_at=_now(),
            actor=actor[:254],
            action=action,
            target=target[:254],
            details=json.dumps(details, sort_keys=True, default=str),
            address="",
        )
    )


def _goal(row: sa.Row) -> Goal:
    start = row.period_start
    if isinstance(start, dt.datetime):
        start = start.date()
    return Goal(
        kpi=row.kpi,
        period_kind=row.period_kind,
        period_start=start,
        target=float(row.target),
        **{name: getattr(row, name) or "" for name in DIMENSIONS},
        goal_id=int(row.goal_id),
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


class GoalStore:
    """The goals in the app's database (any SQLAlchemy engine; see the module docstring)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._ready = False

    @classmethod
    def open(cls, crm_url: str) -> GoalStore:
        """The store of the CRM database ``crm_url`` (beside its sign-in accounts)."""
        return cls(accounts.make_auth_engine(accounts.auth_url(crm_url)))

    def dispose(self) -> None:
        self.engine.dispose()

    def ensure(self) -> None:
        """Create the goals table (and the audit table) when missing."""
        if self._ready:
            return
        with self.engine.begin() as conn:
            metadata.create_all(conn, checkfirst=True)
            accounts.metadata.create_all(conn, tables=[accounts.app_audit], checkfirst=True)
        self._ready = True

    def _exists(self) -> bool:
        url = self.engine.url
        on_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
        if on_file and not Path(url.database).exists():
            return False
        with self.engine.connect() as conn:
            return sa.inspect(conn).has_table(app_goals.name)

    # ------------------------------------------------------------ reading

    def goals(self, *, kpi: str | None = None) -> list[Goal]:
        """Every goal (of ``kpi``), by KPI, period and slice."""
        if not self._exists():
            return []
        g = app_goals.c
        statement = sa.select(app_goals).order_by(
            g.kpi, g.period_start, g.period_kind, *(g[d] for d in DIMENSIONS)
        )
        if kpi is not None:
            statement = statement.where(g.kpi == kpi)
        with self.engine.connect() as conn:
            return [_goal(r) for r in conn.execute(statement)]

    def get(self, goal_id: int) -> Goal:
        """The goal ``goal_id``; ``GoalError`` when there is none."""
        if self._exists():
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(app_goals).where(app_goals.c.goal_id == int(goal_id))).first()
            if row is not None:
                return _goal(row)
        raise GoalError(f"no goal {goal_id} (see `goals list`)")

    # ------------------------------------------------------------ writing

    def _find(self, conn: sa.Connection, goal: Goal) -> sa.Row | None:
        g = app_goals.c
        conditions = [
            g.kpi == goal.kpi,
            g.period_kind == goal.period_kind,
            g.period_start == goal.period_start,
        ]
        conditions += [g[d] == getattr(goal, d) for d in DIMENSIONS]
        return conn.execute(sa.select(app_goals).where(*conditions)).first()

    def _write(self, conn: sa.Connection, goal: Goal, actor: str) -> tuple[Goal, bool]:
        """Insert ``goal`` or change the target of the same (KPI, period, slice); True when new."""
        now = _now()
        found = self._find(conn, goal)
        if found is not None:
            conn.execute(
                app_goals.update()
                .where(app_goals.c.goal_id == found.goal_id)
                .values(target=goal.target, updated_by=actor, updated_at=now)
            )
            return replace(goal, goal_id=int(found.goal_id), updated_by=actor, updated_at=now), False
        next_id = conn.execute(
            sa.select(sa.func.coalesce(sa.func.max(app_goals.c.goal_id), 0) + 1)
        ).scalar_one()
        values = {
            "goal_id": int(next_id),
            "kpi": goal.kpi,
            "period_kind": goal.period_kind,
            "period_start": goal.period_start,
            "target": goal.target,
            **{d: getattr(goal, d) for d in DIMENSIONS},
            "updated_by": actor,
            "updated_at": now,
        }
        conn.execute(app_goals.insert().values(**values))
        return replace(goal, goal_id=int(next_id), updated_by=actor, updated_at=now), True

    def _audit(
        self, conn: sa.Connection, actor: str, action: str, goal: Goal, details: dict | None = None
    ) -> None:
        info = {
            "kpi": goal.kpi,
            "period": goal.period,
            "target": goal.target,
            **goal.slice,
            **(details or {}),
        }
        _audit_row(conn, actor, action, f"goal {goal.goal_id}", info)

    def add(self, goal: Goal, *, actor: str) -> Goal:
        """Store ``goal`` (a :func:`make_goal` result); the same KPI, period and slice again
        changes its target. Returns the stored goal with its id."""
        self.ensure()
        for attempt in range(WRITE_ATTEMPTS):
            try:
                with self.engine.begin() as conn:
                    stored, new = self._write(conn, goal, actor)
                    self._audit(conn, actor, GOAL_ADDED if new else GOAL_CHANGED, stored)
                return stored
            except sa.exc.IntegrityError:  # another writer took the id or the slice meanwhile
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def update(self, goal_id: int, *, target: str | float, actor: str) -> Goal:
        """Change the target of goal ``goal_id``."""
        current = self.get(goal_id)
        value = parse_target(target, current.kpi_info)
        with self.engine.begin() as conn:
            conn.execute(
                app_goals.update()
                .where(app_goals.c.goal_id == current.goal_id)
                .values(target=value, updated_by=actor, updated_at=_now())
            )
            changed = replace(current, target=value)
            self._audit(conn, actor, GOAL_CHANGED, changed, {"before": current.target})
        return self.get(goal_id)

    def remove(self, goal_id: int, *, actor: str) -> Goal:
        """Delete goal ``goal_id``; returns what it was."""
        current = self.get(goal_id)
        with self.engine.begin() as conn:
            conn.execute(app_goals.delete().where(app_goals.c.goal_id == current.goal_id))
            self._audit(conn, actor, GOAL_REMOVED, current)
        return current

    def import_csv(
        self,
        text: str,
        file: str = "goals.csv",
        *,
        actor: str,
        owners: Mapping[str, str] | None = None,
    ) -> tuple[int, int]:
        """Import a goals CSV: all rows or none (``GoalImportError`` lists every problem and
        nothing is written). Returns (added, changed)."""
        goals = parse_csv(text, file, owners=owners)
        self.ensure()
        for attempt in range(WRITE_ATTEMPTS):
            added = changed = 0
            try:
                with self.engine.begin() as conn:  # one transaction: all rows or none
                    for goal in goals:
                        _stored, new = self._write(conn, goal, actor)
                        added, changed = added + new, changed + (not new)
                    _audit_row(conn, actor, GOALS_IMPORTED, file, {"added": added, "changed": changed})
                return added, changed
            except sa.exc.IntegrityError:  # another writer took an id or a slice meanwhile
                if attempt == WRITE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
