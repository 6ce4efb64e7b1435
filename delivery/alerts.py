"""Alert rules: tell people when a KPI crosses a line, once per rule and period.

A rule (table ``app_alert_rules``) is a KPI key of ``kpis.registry``, filters (the list
fields of ``kpis.filters.Filters`` as a dict, e.g. ``{"segments": ["Enterprise"]}``), a
grain (month, quarter, year; week for complaint spikes), a condition, a threshold and the
channels to tell (e-mail addresses and webhook URLs). Conditions, on the **last complete
period** before ``today`` (the period holding ``today`` is still running and never fires):

* ``above`` / ``below``: the period's value > / < threshold (in the KPI's unit: rates as
  fractions, 0.03 = 3 %; NPS in points; money in the reporting currency; days);
* ``change_by``: value − the previous period's value, against a signed threshold: a
  negative threshold fires on a fall at least that large (change ≤ threshold: "NPS falls
  by 10 points" = −10), a positive one on a rise at least that large (change ≥ threshold);
* ``outside_forecast`` (KPI ``revenue``, monthly): the month's revenue lies outside the
  forecast's interval (threshold: the level, 95 or 80 %) made by
  ``forecasting.revenue.revenue_forecast`` from the full months before it (as of that
  month's first day, one month ahead);
* ``complaint_spike`` (KPI ``complaint_spikes``, weekly): some product has a spike in the
  last complete ISO week (``kpis.complaints.complaint_spikes``: P(X ≥ observed) < 0.01 for
  X ~ Poisson(max(12-week mean, 0.5)) and observed ≥ 3); a ``products`` filter limits it
  to those products.

A rule keeps its author's scope (``kpis.filters.Scope``: what they may see) and is
evaluated within it; the Alerts page shows a rule and its alerts only to users whose scope
holds the rule's. A value that cannot be computed (no data: NaN) never fires.

A rule that fires writes one event (``app_alert_events``, unique per rule and period: the
next run finds it and does not fire again) and then delivers it to each channel through ``delivery.channels.deliver``
(target ``alert <rule id> <period>``); a channel whose delivery failed is sent again by
every later run until it succeeds (a removed rule's deliveries stop). One run at a time
(``app_alert_lock``): a second run started meanwhile raises :class:`RunInProgress` rather
than send the same owed deliveries twice.

The tables live beside ``app_accounts`` (``delivery.channels.app_engine``). Plain Python.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from delivery import channels
from delivery.channels import MailSettings, is_webhook, metadata
from kpis.filters import LIST_FIELDS, SCOPE_DIMENSIONS

CONDITIONS: tuple[str, ...] = ("above", "below", "change_by", "outside_forecast", "complaint_spike")
GRAINS: tuple[str, ...] = ("month", "quarter", "year", "week")
#: KPIs with one value per period (``function(conn, filters, freq)``): above, below, change_by.
PERIOD_KPIS: tuple[str, ...] = (
    "churn_rate",
    "nps",
    "ces",
    "win_rate",
    "sales_cycle",
    "first_contact_resolution",
    "retention_cost",
    "revenue",
    "active_customers",
    "net_revenue_retention",
    "revenue_churn",
    "lead_conversion",
    "web_ctr",
)
#: Filter fields a rule may set (``kpis.filters.Filters``' lists).
FILTER_FIELDS: tuple[str, ...] = (*LIST_FIELDS, "pipelines")
FORECAST_LEVELS: tuple[int, ...] = (80, 95)

app_alert_rules = sa.Table(
    "app_alert_rules",
    metadata,
    sa.Column("rule_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kpi", sa.String(64), nullable=False),
    sa.Column("filters", sa.Text(), nullable=False),  # JSON {"segments": ["Enterprise"]}
    sa.Column("grain", sa.String(16), nullable=False),
    sa.Column("condition", sa.String(32), nullable=False),
    sa.Column("threshold", sa.Float(), nullable=True),
    sa.Column("channels", sa.Text(), nullable=False),  # JSON ["a@example.com", "https://hooks…"]
    sa.Column("scope", sa.Text(), nullable=False),  # JSON kpis.filters.Scope.as_dict() of its author
    sa.Column("created_by", sa.String(254), nullable=False),
    sa.Column("created_at", sa.DateTime(), nullable=False),
    # ids are never reused (SQLite: AUTOINCREMENT; PostgreSQL's sequence never goes back), so a
    # new rule cannot inherit a removed one's alerts and deliveries ("alert 3 2026-11-01")
    sqlite_autoincrement=True,
)

app_alert_events = sa.Table(
    "app_alert_events",
    metadata,
    sa.Column("event_id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("rule_id", sa.Integer(), nullable=False),
    sa.Column("period", sa.Date(), nullable=False),  # first day of the period that fired
    sa.Column("fired_at", sa.DateTime(), nullable=False),  # naive UTC
    sa.Column("value", sa.Float(), nullable=True),
    sa.Column("message", sa.Text(), nullable=False),
    sa.Column("details", sa.Text(), nullable=False),  # JSON
    sa.Column("channels", sa.Text(), nullable=False),  # JSON: the rule's channels when it fired
    sa.UniqueConstraint("rule_id", "period", name="uq_app_alert_events_rule_period"),
)


#: One run at a time (``crm-insights alerts run`` from a timer, *Evaluate now* on the page):
#: a run holds this row; one older than ``RUN_LOCK_STALE`` is taken to be a crashed run's.
app_alert_lock = sa.Table(
    "app_alert_lock",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("holder", sa.String(254), nullable=False),  # host:pid
    sa.Column("since", sa.DateTime(), nullable=False),  # naive UTC
)
RUN_LOCK_STALE = dt.timedelta(minutes=30)


class AlertError(ValueError):
    """A rule the alerts refuse (unknown KPI, condition that does not fit, bad channel …)."""


class RunInProgress(RuntimeError):
    """Another run holds the lock (it would send the same owed deliveries a second time)."""


@dataclass(frozen=True)
class Rule:
    """One alert rule (see the module docstring)."""

    rule_id: int
    name: str
    kpi: str
    filters: dict[str, list[str]]
    grain: str
    condition: str
    threshold: float | None
    channels: tuple[str, ...]
    created_by: str = ""
    #: The author's scope (``kpis.filters.Scope.as_dict()``): the rule never sees beyond it.
    scope: dict[str, list[str]] = field(default_factory=dict)

    def visible_to(self, scope: object) -> bool:
        """True when a user with ``scope`` (a ``kpis.filters.Scope``) may see this rule and
        its alerts: the rule's scope lies within theirs."""
        for name in SCOPE_DIMENSIONS:
            outer = getattr(scope, name)
            if outer is None:
                continue
            inner = self.scope.get(name)
            if inner is None or not set(inner) <= set(outer):
                return False
        return True

    def describe(self) -> str:
        """``Churn rate (segments Enterprise), month above 3.0 %`` — one line."""
        kpi = _kpi(self.kpi)
        where = "; ".join(f"{k} {', '.join(v)}" for k, v in self.filters.items())
        head = f"{kpi.title}{f' ({where})' if where else ''}, {self.grain}"
        if self.condition in ("above", "below"):
            return f"{head} {self.condition} {format_value(self.threshold, kpi.unit)}"
        if self.condition == "change_by":
            word = "falls" if (self.threshold or 0) < 0 else "rises"
            return f"{head}: {word} by {format_change(abs(self.threshold or 0), kpi.unit)} or more on the previous {self.grain}"
        if self.condition == "outside_forecast":
            return f"{head} outside the forecast's {int(self.threshold or 95)} % interval"
        return f"{head}: a complaint spike on a product"


@dataclass(frozen=True)
class Evaluation:
    """A rule on one period: ``fired``, the value, a one-line ``message`` and ``details``."""

    rule: Rule
    period: dt.date
    fired: bool
    value: float | None
    message: str
    details: dict[str, object] = field(default_factory=dict)


@dataclass
class RunReport:
    """What :func:`run` did: the evaluations, the new events, the deliveries (rule, period,
    recipient, ok) and rules that could not be evaluated (rule id, error)."""

    evaluations: list[Evaluation] = field(default_factory=list)
    fired: list[Evaluation] = field(default_factory=list)
    deliveries: list[tuple[int, dt.date, str, bool]] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)

    @property
    def failed_deliveries(self) -> int:
        return sum(1 for *_, ok in self.deliveries if not ok)


# ---------------------------------------------------------------- values and periods


def _kpi(key: str):
    from kpis.registry import get

    try:
        return get(key)
    except KeyError as error:
        raise AlertError(error.args[0]) from None


def format_value(value: float | None, unit: str) -> str:
    """A value as people read it: 3.0 %, +12.5 (NPS), 1,234.50, 4.2 days, 17."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "no data"
    if unit == "ratio":
        return f"{100 * value:.1f} %"
    if unit == "nps":
        return f"{value:+.1f}"
    if unit == "money":
        return f"{value:,.2f}"
    if unit == "days":
        return f"{value:.1f} days"
    if unit == "count":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def format_change(change: float, unit: str) -> str:
    """A change: 2.0 percentage points, 10.0 points, 1,000.00, 3.0 days."""
    if unit == "ratio":
        return f"{100 * change:.1f} percentage points"
    if unit in ("nps", "score"):
        return f"{change:.1f} points"
    return format_value(change, unit)


def period_start(day: dt.date, grain: str) -> dt.date:
    """The first day of the period of ``grain`` holding ``day`` (weeks start on Monday)."""
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    if grain == "quarter":
        return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    if grain == "year":
        return dt.date(day.year, 1, 1)
    raise AlertError(f"unknown grain {grain!r}: one of {', '.join(GRAINS)}")


def shift(start: dt.date, grain: str, n: int) -> dt.date:
    """The first day of the period ``n`` periods after the one starting at ``start``."""
    if grain == "week":
        return start + dt.timedelta(weeks=n)
    months = {"month": 1, "quarter": 3, "year": 12}[grain] * n
    index = start.year * 12 + start.month - 1 + months
    return dt.date(index // 12, index % 12 + 1, 1)


def last_complete_period(today: dt.date, grain: str) -> tuple[dt.date, dt.date]:
    """``[start, end)`` of the last period that is over by ``today`` (exclusive: data runs up
    to the start of ``today``): the one before the period holding ``today``."""
    end = period_start(today, grain)
    return shift(end, grain, -1), end


def period_label(start: dt.date, grain: str) -> str:
    """``Nov 2026``, ``Q4 2026``, ``2026``, ``week of 23 Nov 2026``."""
    if grain == "month":
        return f"{start:%b %Y}"
    if grain == "quarter":
        return f"Q{(start.month - 1) // 3 + 1} {start.year}"
    if grain == "year":
        return str(start.year)
    return f"week of {start.day} {start:%b %Y}"


# ---------------------------------------------------------------- rules


def parse_threshold(text: str | float | None, kpi_key: str, condition: str) -> float | None:
    """A threshold as typed: ``3%`` or ``0.03`` for a rate, ``-10`` for NPS points, ``95`` for
    a forecast interval; None for a complaint spike. Raises :class:`AlertError` saying why."""
    if condition == "complaint_spike":
        return None
    if condition == "outside_forecast" and text in (None, ""):
        return 95.0
    if text is None or (isinstance(text, str) and not text.strip()):
        raise AlertError(f"the condition {condition} needs a threshold")
    raw = str(text).strip().replace("\u2212", "-")
    percent = raw.endswith("%")
    try:
        value = float(raw.rstrip("%").strip().replace(",", ""))
    except ValueError:
        raise AlertError(f"not a number: threshold {text!r}") from None
    if math.isnan(value) or math.isinf(value):
        raise AlertError(f"not a number: threshold {text!r}")
    if condition == "outside_forecast":
        return value
    unit = _kpi(kpi_key).unit
    if percent:
        if unit != "ratio":
            raise AlertError(f"{kpi_key} is not a rate: give the threshold without %, not {text!r}")
        value /= 100
    elif unit == "ratio" and condition in ("above", "below") and not 0 <= value <= 1:
        raise AlertError(
            f"{kpi_key} is a rate between 0 and 1: write {value:g}% or {value / 100:g}, not {text!r}"
        )
    elif unit == "ratio" and condition == "change_by" and not -1 <= value <= 1:
        raise AlertError(f"{kpi_key} changes by at most 1 (100 %): write {value:g}% for percentage points")
    return value


def check_rule(
    kpi: str,
    filters: Mapping[str, Iterable[str]] | None,
    grain: str,
    condition: str,
    threshold: float | None,
    recipients: Iterable[str],
) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """Check a rule's parts; the cleaned filters and channels. Raises :class:`AlertError`."""
    definition = _kpi(kpi)
    if condition not in CONDITIONS:
        raise AlertError(f"unknown condition {condition!r}: one of {', '.join(CONDITIONS)}")
    if grain not in GRAINS:
        raise AlertError(f"unknown grain {grain!r}: one of {', '.join(GRAINS)}")
    if condition in ("above", "below", "change_by"):
        if kpi not in PERIOD_KPIS:
            raise AlertError(
                f"{definition.title} has no single value per period: {condition} works on "
                f"{', '.join(PERIOD_KPIS)}"
            )
        if grain == "week":
            raise AlertError(f"{condition} works per month, quarter or year, not per week")
        if threshold is None:
            raise AlertError(f"the condition {condition} needs a threshold")
        if condition == "change_by" and threshold == 0:
            raise AlertError("change_by needs a threshold other than 0: −10 for a fall of 10, 10 for a rise")
    elif condition == "outside_forecast":
        if kpi != "revenue" or grain != "month":
            raise AlertError("outside_forecast works on the revenue forecast: --kpi revenue --grain month")
        if threshold not in FORECAST_LEVELS:
            raise AlertError(f"the forecast's interval is 80 or 95 %, not {threshold}")
    elif condition == "complaint_spike" and (kpi != "complaint_spikes" or grain != "week"):
        raise AlertError(
            "complaint_spike works on complaint_spikes per week: --kpi complaint_spikes --grain week"
        )
    clean: dict[str, list[str]] = {}
    for key, values in (filters or {}).items():
        if key not in FILTER_FIELDS:
            raise AlertError(f"unknown filter {key!r}: one of {', '.join(FILTER_FIELDS)}")
        listed = sorted({str(v).strip() for v in (values or []) if str(v).strip()})
        if listed:
            clean[key] = listed
    channel_list: list[str] = []
    for recipient in recipients:
        text = str(recipient).strip()
        if not text:
            continue
        if is_webhook(text):
            import httpx

            try:
                if not httpx.URL(text).host:
                    raise ValueError
            except (ValueError, httpx.InvalidURL):
                raise AlertError(f"not a webhook URL: {text!r}") from None
        elif "@" not in text or any(c.isspace() or c in ",;<>" for c in text):
            raise AlertError(f"a channel is an e-mail address or an http(s):// webhook URL, not {text!r}")
        if text not in channel_list:
            channel_list.append(text)
    if not channel_list:
        raise AlertError("a rule needs at least one channel: an e-mail address or a webhook URL")
    return clean, tuple(channel_list)


class AlertStore:
    """The rules and their events, in the app database of the CRM database ``url``."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url
        self.engine = channels.app_engine(url)  # creates app_deliveries and the alert tables

    def add(
        self,
        kpi: str,
        *,
        condition: str,
        threshold: float | str | None = None,
        grain: str = "month",
        filters: Mapping[str, Iterable[str]] | None = None,
        channels: Iterable[str] = (),
        name: str = "",
        created_by: str = "",
        scope: object = None,
    ) -> Rule:
        """Add a rule (checked by :func:`check_rule`; a text threshold by :func:`parse_threshold`)."""
        if threshold is None or isinstance(threshold, str):
            value = parse_threshold(threshold, kpi, condition)
        else:
            value = float(threshold)
        clean, channel_list = check_rule(kpi, filters, grain, condition, value, channels)
        if any(ord(c) < 32 for c in name):
            raise AlertError("a rule's name is one line of text (it becomes the e-mail's subject)")
        limits = scope.as_dict() if scope is not None else {}  # type: ignore[attr-defined]
        draft = Rule(0, name.strip(), kpi, clean, grain, condition, value, channel_list, created_by, limits)
        name = name.strip()[:200] or draft.describe()[:200]
        with self.engine.begin() as conn:
            result = conn.execute(
                app_alert_rules.insert().values(
                    name=name,
                    kpi=kpi,
                    filters=json.dumps(clean, sort_keys=True),
                    grain=grain,
                    condition=condition,
                    threshold=value,
                    channels=json.dumps(list(channel_list)),
                    scope=json.dumps(limits, sort_keys=True),
                    created_by=created_by[:254],
                    created_at=channels_now(),
                )
            )
            rule_id = int(result.inserted_primary_key[0])
        return Rule(rule_id, name, kpi, clean, grain, condition, value, channel_list, created_by, limits)

    def remove(self, rule_id: int) -> Rule:
        """Remove a rule (its events stay in the history; its pending deliveries stop)."""
        rule = self.get(rule_id)
        with self.engine.begin() as conn:
            conn.execute(app_alert_rules.delete().where(app_alert_rules.c.rule_id == rule.rule_id))
        return rule

    def get(self, rule_id: int) -> Rule:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(app_alert_rules).where(app_alert_rules.c.rule_id == int(rule_id))
            ).first()
        if row is None:
            raise AlertError(f"no alert rule {rule_id} (see `alerts list`)")
        return _rule(row)

    def rules(self) -> list[Rule]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(app_alert_rules).order_by(app_alert_rules.c.rule_id)).all()
        return [_rule(r) for r in rows]

    def events(self, limit: int = 1000) -> pd.DataFrame:
        """The newest ``limit`` events, newest first: event_id, rule_id, period, fired_at,
        value, message, channels (comma-separated)."""
        e = app_alert_events.c
        columns = ["event_id", "rule_id", "period", "fired_at", "value", "message", "channels"]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(*(e[c] for c in columns))
                .order_by(e.fired_at.desc(), e.event_id.desc())
                .limit(limit)
            ).all()
        frame = pd.DataFrame([tuple(r) for r in rows], columns=columns)
        frame["channels"] = frame["channels"].map(lambda c: ", ".join(json.loads(c or "[]")))
        return frame

    def deliveries(self, limit: int = 1000) -> pd.DataFrame:
        """The newest ``limit`` alert delivery attempts (``delivery.channels.deliveries``)."""
        return channels.deliveries(kind="alert", limit=limit, url=self.url)

    def _record(self, evaluation: Evaluation, fired_at: dt.datetime) -> bool:
        """Write the event; False when the rule fired for this period already."""
        try:
            with self.engine.begin() as conn:
                exists = conn.execute(
                    sa.select(app_alert_events.c.event_id).where(
                        app_alert_events.c.rule_id == evaluation.rule.rule_id,
                        app_alert_events.c.period == evaluation.period,
                    )
                ).first()
                if exists is not None:
                    return False
                conn.execute(
                    app_alert_events.insert().values(
                        rule_id=evaluation.rule.rule_id,
                        period=evaluation.period,
                        fired_at=fired_at,
                        value=_finite(evaluation.value),
                        message=evaluation.message,
                        details=json.dumps(evaluation.details, sort_keys=True, default=str),
                        channels=json.dumps(list(evaluation.rule.channels)),
                    )
                )
        except sa.exc.IntegrityError:  # another run wrote it at the same moment
            return False
        return True

    def pending(self) -> list[tuple[Rule, dt.date, str, str, str]]:
        """Deliveries owed: (rule, period, recipient, message, details JSON) of events of
        existing rules whose channel has no successful delivery yet."""
        e, r = app_alert_events.c, app_alert_rules.c
        event_columns = [e.period.label("event_period"), e.message.label("event_message"),
                         e.details.label("event_details"), e.channels.label("event_channels")]  # fmt: skip
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(app_alert_rules, *event_columns)
                .join_from(app_alert_events, app_alert_rules, r.rule_id == e.rule_id)
                .order_by(e.event_id)
            ).all()
        done = channels.delivered_pairs("alert", url=self.url)
        owed = []
        for row in rows:
            rule = _rule(row)
            period = _as_date(row.event_period)
            for recipient in json.loads(row.event_channels or "[]"):
                if (_target(rule.rule_id, period)[:254], recipient[:1000]) not in done:
                    owed.append((rule, period, recipient, row.event_message, row.event_details))
        return owed


def channels_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _rule(row: sa.Row) -> Rule:
    return Rule(
        rule_id=int(row.rule_id),
        name=row.name,
        kpi=row.kpi,
        filters=json.loads(row.filters or "{}"),
        grain=row.grain,
        condition=row.condition,
        threshold=row.threshold,
        channels=tuple(json.loads(row.channels or "[]")),
        created_by=row.created_by,
        scope=json.loads(row.scope or "{}"),
    )


def _target(rule_id: int, period: dt.date) -> str:
    return f"alert {rule_id} {period.isoformat()}"


# ---------------------------------------------------------------- evaluation


def _filters(rule: Rule, start: dt.date, end: dt.date):
    from kpis.filters import Filters, Scope

    return Filters(start, end, **rule.filters, scope=Scope.from_dict(rule.scope))


def _series_value(conn: sa.Connection | sa.Engine, rule: Rule, start: dt.date, end: dt.date) -> pd.Series:
    """The KPI's value per period in ``[start, end)`` (index: period start dates)."""
    definition = _kpi(rule.kpi)
    kwargs = {"by_touchpoint": False} if rule.kpi == "ces" else {}
    frame = definition.function(conn, _filters(rule, start, end), rule.grain, **kwargs)
    if frame["period"].duplicated().any():
        raise AlertError(f"{definition.title} gave several rows per period: it cannot be alerted on")
    periods = [pd.Timestamp(p).date() for p in frame["period"]]
    return pd.Series(pd.to_numeric(frame[definition.value_column], errors="coerce").to_numpy(), index=periods)


def evaluate(conn: sa.Connection | sa.Engine, rule: Rule, today: dt.date) -> Evaluation:
    """The rule on the last complete period before ``today`` (module docstring): fired or
    not, with the value and a message such as ``Churn rate (segments Enterprise), Nov 2026:
    4.0 % is above 3.0 %``."""
    definition = _kpi(rule.kpi)
    start, end = last_complete_period(today, rule.grain)
    label = period_label(start, rule.grain)
    where = "; ".join(f"{k} {', '.join(v)}" for k, v in rule.filters.items())
    head = f"{definition.title}{f' ({where})' if where else ''}, {label}"
    unit = definition.unit
    if rule.condition in ("above", "below"):
        value = _series_value(conn, rule, start, end).get(start, math.nan)
        threshold = float(rule.threshold)  # type: ignore[arg-type]
        fired = bool(value > threshold) if rule.condition == "above" else bool(value < threshold)
        relation = rule.condition if fired else f"not {rule.condition}"
        message = f"{head}: {format_value(value, unit)} is {relation} {format_value(threshold, unit)}"
        return Evaluation(rule, start, fired, _finite(value), message, {"threshold": threshold})
    if rule.condition == "change_by":
        before = shift(start, rule.grain, -1)
        series = _series_value(conn, rule, before, end)
        value, previous = series.get(start, math.nan), series.get(before, math.nan)
        change = value - previous
        threshold = float(rule.threshold)  # type: ignore[arg-type]
        fired = bool(change <= threshold) if threshold < 0 else bool(change >= threshold)
        word = "fell" if change < 0 else "rose"
        message = (
            f"{head}: {format_value(value, unit)}, {word} by {format_change(abs(change), unit)} from "
            f"{format_value(previous, unit)} in {period_label(before, rule.grain)}"
            if math.isfinite(change)
            else f"{head}: {format_value(value, unit)}; previous {format_value(previous, unit)}"
        )
        details = {"previous": _finite(previous), "change": _finite(change), "threshold": threshold}
        return Evaluation(rule, start, fired, _finite(value), message, details)
    if rule.condition == "outside_forecast":
        return _outside_forecast(conn, rule, start, end, head)
    return _complaint_spike(conn, rule, start, end, head)


def _outside_forecast(
    conn: sa.Connection | sa.Engine, rule: Rule, start: dt.date, end: dt.date, head: str
) -> Evaluation:
    from forecasting.revenue import revenue_forecast

    level = int(rule.threshold or 95)
    actual = _series_value(conn, rule, start, end).get(start, math.nan)
    # as of the month's first day: the models see every full month before it (full_history)
    history = _filters(rule, shift(start, "month", -1), start)
    result = revenue_forecast(conn, history, horizon=1, today=start, full_history=True)
    row = result.forecast[pd.to_datetime(result.forecast["period"]).dt.date == start]
    if row.empty or not math.isfinite(actual):
        message = f"{head}: no forecast or no revenue to compare ({result.reliability or 'no data'})"
        return Evaluation(rule, start, False, _finite(actual), message, {"model": result.model})
    low, high, mean = (float(row.iloc[0][c]) for c in (f"lo{level}", f"hi{level}", "mean"))
    fired = not low <= actual <= high
    side = "below" if actual < low else "above" if actual > high else "inside"
    message = (
        f"{head}: revenue {format_value(actual, 'money')} is {side} the forecast's {level} % interval "
        f"{format_value(low, 'money')} – {format_value(high, 'money')} (forecast {format_value(mean, 'money')}, "
        f"{result.model})"
    )
    details = {"low": low, "high": high, "mean": mean, "level": level, "model": result.model}
    return Evaluation(rule, start, fired, actual, message, details)


def _complaint_spike(
    conn: sa.Connection | sa.Engine, rule: Rule, start: dt.date, end: dt.date, head: str
) -> Evaluation:
    from kpis.complaints import complaint_spikes

    frame = complaint_spikes(conn, _filters(rule, start, end))
    spikes = frame[frame["is_spike"]].sort_values(["p_value", "product_id"])
    products = [
        {
            "product_id": r.product_id,
            "product": r.product_name or r.product_id,
            "observed": int(r.observed),
            "expected": float(r.expected),
            "p_value": float(r.p_value),
        }
        for r in spikes.itertuples()
    ]
    if products:
        listed = "; ".join(
            f"{p['product']}: {p['observed']} tickets (12-week mean {p['expected']:.1f})" for p in products
        )
        message = f"{head}: complaint spike — {listed}"
    else:
        message = f"{head}: no complaint spike"
    value = float(max((p["observed"] for p in products), default=0))
    return Evaluation(rule, start, bool(products), value, message, {"products": products})


# ---------------------------------------------------------------- running


@contextmanager
def run_lock(store: AlertStore, now: dt.datetime | None = None) -> Iterator[None]:
    """Hold the run lock for the block; :class:`RunInProgress` when another run holds it
    (a lock older than ``RUN_LOCK_STALE`` is taken over)."""
    import os
    import socket

    now = now or channels_now()
    holder = f"{socket.gethostname()}:{os.getpid()}"[:254]
    lock = app_alert_lock.c
    with store.engine.begin() as conn:
        conn.execute(app_alert_lock.delete().where(lock.name == "run", lock.since < now - RUN_LOCK_STALE))
    try:
        with store.engine.begin() as conn:
            conn.execute(app_alert_lock.insert().values(name="run", holder=holder, since=now))
    except sa.exc.IntegrityError:
        with store.engine.connect() as conn:
            row = conn.execute(sa.select(app_alert_lock).where(lock.name == "run")).first()
        since = f"{row.since:%Y-%m-%d %H:%M} UTC" if row is not None else "a moment ago"
        who = row.holder if row is not None else "another process"
        raise RunInProgress(
            f"another alerts run ({who}) has been running since {since}: try again when it has "
            f"finished (a lock older than {int(RUN_LOCK_STALE.total_seconds() // 60)} minutes is taken over)"
        ) from None
    try:
        yield
    finally:
        with store.engine.begin() as conn:
            conn.execute(
                app_alert_lock.delete().where(lock.name == "run", lock.holder == holder, lock.since == now)
            )


def _mail_text(rule: Rule, message: str) -> tuple[str, str]:
    subject = f"[CRM Insights] {rule.name}"
    text = (
        f"{message}\n\n"
        f"Rule {rule.rule_id}: {rule.describe()}\n"
        "Sent by `crm-insights alerts run`; the Alerts page lists the rules and their history.\n"
    )
    return subject, text


def _send(
    rule: Rule,
    period: dt.date,
    recipient: str,
    message: str,
    settings: MailSettings | None,
    url: str | None,
    wait: Callable[[float], None],
    attempts: int,
) -> bool:
    target = _target(rule.rule_id, period)
    if is_webhook(recipient):
        payload = {"text": f"*{rule.name}*\n{message}"}

        def send() -> None:
            channels.post_webhook(recipient, payload)

    else:
        if settings is None:  # nothing to retry within this run: say what to set, try next run
            channels.record_attempt(
                "alert",
                target,
                recipient,
                1,
                "e-mail is not set up: set CRM_SMTP_HOST and CRM_SMTP_FROM",
                url=url,
            )
            return False
        subject, text = _mail_text(rule, message)

        def send() -> None:
            channels.send_mail(settings, [recipient], subject, text)

    return channels.deliver("alert", target, recipient, send, attempts=attempts, wait=wait, url=url)


def run(
    conn: sa.Connection | sa.Engine,
    store: AlertStore,
    today: dt.date,
    *,
    mail: MailSettings | None = None,
    rule_ids: Sequence[int] | None = None,
    wait: Callable[[float], None] | None = None,
    attempts: int = channels.ATTEMPTS,
) -> RunReport:
    """Evaluate every rule (or ``rule_ids``) on its last complete period before ``today``,
    write one event per rule that fires (never twice for a period), then deliver every
    owed delivery — the new events' and the failed ones of earlier runs. ``mail``: the SMTP
    server (default ``MailSettings.from_env()``). A rule that cannot be evaluated is listed
    in ``errors`` and does not stop the others. One run at a time (:func:`run_lock`):
    raises :class:`RunInProgress` while another holds it."""
    import time

    if mail is None:
        mail = MailSettings.from_env()
    wait = wait or time.sleep
    with run_lock(store):
        return _run(conn, store, today, mail, rule_ids, wait, attempts)


def _run(
    conn: sa.Connection | sa.Engine,
    store: AlertStore,
    today: dt.date,
    mail: MailSettings | None,
    rule_ids: Sequence[int] | None,
    wait: Callable[[float], None],
    attempts: int,
) -> RunReport:
    report = RunReport()
    wanted = None if rule_ids is None else {int(i) for i in rule_ids}
    fired_at = channels_now()
    for rule in store.rules():
        if wanted is not None and rule.rule_id not in wanted:
            continue
        try:
            evaluation = evaluate(conn, rule, today)
        except (AlertError, ValueError, KeyError, sa.exc.SQLAlchemyError) as error:
            report.errors.append((rule.rule_id, f"{type(error).__name__}: {error}"))
            continue
        report.evaluations.append(evaluation)
        if evaluation.fired and store._record(evaluation, fired_at):
            report.fired.append(evaluation)
    for rule, period, recipient, message, _details in store.pending():
        if wanted is not None and rule.rule_id not in wanted:
            continue
        ok = _send(rule, period, recipient, message, mail, store.url, wait, attempts)
        report.deliveries.append((rule.rule_id, period, recipient, ok))
    return report
