"""The global filter bar: date range, period and segment filters, the same on every page.

Call ``global_filters()`` as the FIRST thing on every page (after ``st.set_page_config``).
It draws the sidebar (the page links of ``ui.navigation``, then the filters) and returns a ``View`` (``.filters: kpis.Filters``, ``.freq``,
``.describe()``).

How the values travel (see ../shared/notes/streamlit-pages.md, measured here):

* each filter's value lives in a non-widget session key (``_flt_<name>``); widget keys
  are dropped by Streamlit when a page that does not draw them runs, the copies survive
  page switches;
* a new session seeds those keys from the URL query string; every run writes the current
  values back to ``st.query_params``, so a copied link restores exactly the same view;
* URL values are validated against the values present in the database; anything else
  (a typo, ``' OR 1=1 --``) is ignored with a visible notice. Values only ever reach SQL
  as bound parameters inside ``kpis``.
* ``ui.auth.gate()`` runs first (the sign-in form stops the page before anything is
  drawn); the signed-in user's scope limits the values offered (and so the URL values
  accepted) and is attached to the returned Filters (``Filters.within``): the KPI layer
  applies it to every query, whatever the URL, the session or the filter bar say.
* the lists narrow each other (``kpis.filters.narrowed_options``): the account lists and
  the owner list offer only the values found together with what the OTHER lists chose
  (Region = APAC: APAC's countries, the owners of its accounts and of their deals), from
  one grouped query (``kpis.filters.dimension_combinations``) cached per database and
  scope. Products and pipelines are offered in full. A chosen value the others no longer
  leave is KEPT (a shared link stays as it was) and one caption says that nothing matches
  them together, rather than dropping it silently.
* the date range applies at once: a second calendar click reruns the page (a first click
  alone, a 1-tuple, keeps the last full range); a typed date is applied by Streamlit only
  when its calendar closes, so ``DATE_TYPING_SCRIPT`` closes it on Enter and after a
  complete end date.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import streamlit as st

from charts.figures import period_text
from charts.theme import label as code_label
from crm_data.engines import database_url
from kpis.core import as_of, is_partial
from kpis.customer_base import start_sharing
from kpis.filters import Filters, Scope, default_range, dimension_combinations, narrowed_options
from ui import auth, data

FREQS: dict[str, str] = {"month": "Month", "quarter": "Quarter", "year": "Year"}

#: (Filters field, URL parameter = widget key, label), in sidebar order.
DIMENSIONS: list[tuple[str, str, str]] = [
    ("segments", "segment", "Segment"),
    ("industries", "industry", "Industry"),
    ("regions", "region", "Region"),
    ("countries", "country", "Country"),
    ("company_sizes", "company_size", "Company size"),
    ("acquisition_channels", "acquisition_channel", "Acquisition channel"),
    ("owners", "owner", "Owner"),
    ("products", "product", "Product"),
    ("pipelines", "pipeline", "Pipeline"),
]
#: Dimensions drawn only when the data has more than one value (one pipeline: no choice).
ONLY_WITH_CHOICE = frozenset({"pipelines"})

START_PARAM, END_PARAM, FREQ_PARAM = "from", "to", "period"
DATE_KEY, FREQ_KEY = "date_range", "freq"
SEEDED_KEY = "_flt_seeded"
NOTICES_KEY = "_flt_notices"
MAX_SHOWN = 60  # characters of a rejected URL value shown back to the user


#: Streamlit's date input commits a TYPED date only when its calendar closes (Esc or a click
#: elsewhere; measured with streamlit 1.67 in chromium: Enter and a complete date do nothing,
#: while a second calendar click applies at once). This script, constant and installed once
#: per browser tab, closes the calendar (an Escape key event) on Enter, and 0.7 s after the
#: last digit of a complete end date, so a typed range applies without a click elsewhere.
DATE_TYPING_SCRIPT = """<script>
(() => {
  if (document.__crmDateTyping) return;
  document.__crmDateTyping = true;
  const FIELD = '[data-testid="stSidebar"] [data-testid="stDateInputField"]';
  let timer = null;
  const close = (target) => target.dispatchEvent(new KeyboardEvent("keydown",
    {key: "Escape", code: "Escape", keyCode: 27, bubbles: true, cancelable: true}));
  const segments = (field) => Array.from(field.querySelectorAll('[role="spinbutton"]'));
  document.addEventListener("keydown", (event) => {
    const field = event.target.closest ? event.target.closest(FIELD) : null;
    if (!field) return;
    clearTimeout(timer);
    if (event.key === "Enter") close(event.target);
  }, true);
  document.addEventListener("keyup", (event) => {
    const field = event.target.closest ? event.target.closest(FIELD) : null;
    if (!field || !/^[0-9]$/.test(event.key)) return;
    const parts = segments(field);
    const complete = parts.length > 0 && parts.every((p) => p.getAttribute("aria-valuenow") !== null);
    if (event.target !== parts[parts.length - 1] || !complete) return;
    clearTimeout(timer);
    timer = setTimeout(() => close(event.target), 700);
  }, true);
})();
</script>"""


def _store(name: str) -> str:
    return f"_flt_{name}"


@dataclass(frozen=True)
class View:
    """What the user is looking at: the filters, the period length and the notices.

    ``today`` is the data's "today" (see :func:`data_today`; None: today in UTC): a period
    ending after it, or after the range end, is partial (``is_partial``)."""

    filters: Filters
    freq: str = "month"
    labels: dict[str, dict[str, str]] = field(default_factory=dict, compare=False, hash=False)
    today: dt.date | None = field(default=None, compare=False, hash=False)
    #: Who is looking (``ui.auth.User``); None outside the dashboard.
    user: auth.User | None = field(default=None, compare=False, hash=False)

    def describe(self) -> str:
        """The active filters in one line, for captions and exports."""
        f = self.filters
        last = f.end - dt.timedelta(days=1)
        parts = [f"{f.start:%d %b %Y} – {last:%d %b %Y}", f"per {self.freq}"]
        for name, _param, label in DIMENSIONS:
            values = getattr(f, name)
            if values:
                names = self.labels.get(name, {})
                parts.append(f"{label}: " + ", ".join(names.get(v, code_label(v)) for v in values))
        if len(parts) == 2:
            parts.append("all accounts")
        if f.scope.restricted:
            parts.append(f"within {f.scope.describe()}")
        return " · ".join(parts)

    def file_tag(self) -> str:
        """The active filters for a file name, as ``describe()`` says them in words:
        ``2025-12-01_2026-11-30_segment-enterprise`` — first and last day, then each
        dimension that is set (its URL name and values, slugged; ``charts.export.file_name``
        caps the length), then ``scoped`` when the user's scope limits the data."""
        from charts.export import slug

        f = self.filters
        last = f.end - dt.timedelta(days=1)
        parts = [f"{f.start:%Y-%m-%d}", f"{last:%Y-%m-%d}"]
        for name, param, _label in DIMENSIONS:
            values = getattr(f, name)
            if values:
                names = self.labels.get(name, {})
                parts.append(slug(" ".join([param, *(names.get(v, v) for v in values)])))
        if f.scope.restricted:
            parts.append("scoped")
        return "_".join(parts)

    def period_label(self, period: object) -> str:
        """``2026-04-01`` -> "Apr 2026" / "Q2 2026" / "2026" for this view's period."""
        return period_label(period, self.freq)

    @property
    def cut(self) -> dt.date:
        """The first day this view has no data for: the range end, or the data's today if
        that is earlier (exclusive)."""
        return min(self.filters.end, as_of(self.today))

    def is_partial(self, period: object) -> bool:
        """True when ``period`` (a period start) is not complete in this view: it ends after
        the range end or after today (``kpis.core.is_partial``, the one definition)."""
        return is_partial(period, self.freq, self.filters.end, self.today)


def period_label(period: object, freq: str) -> str:
    """A period start as the user says it: "Apr 2026", "Q2 2026" or "2026"."""
    return period_text(period, freq)


def data_today(bounds: tuple[dt.date, dt.date] | None, today: dt.date | None = None) -> dt.date:
    """The data's "today": the day after the last day with data, or today (UTC) if that is
    earlier. A history that ended on 15 Mar 2019 makes March 2019 a partial month."""
    today = as_of(today)
    return today if bounds is None else min(bounds[1] + dt.timedelta(days=1), today)


def _date_limits(
    bounds: tuple[dt.date, dt.date] | None, default: tuple[dt.date, dt.date]
) -> tuple[dt.date, dt.date]:
    """The earliest and latest day the date picker offers (inclusive)."""
    low = min(bounds[0], default[0]) if bounds else default[0]
    high = max(bounds[1], default[1] - dt.timedelta(days=1)) if bounds else default[1]
    return dt.date(low.year, 1, 1), dt.date(high.year, 12, 31)


def _shown(value: str) -> str:
    text = value if len(value) <= MAX_SHOWN else value[:MAX_SHOWN] + "…"
    return "".join("\\" + c if c in "\\`*_{}[]()#+-.!|<>~$" else c for c in text)


def _parse_day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except (ValueError, AttributeError):
        return None


def _seed_from_url(
    known: dict[str, list[str]], default: tuple[dt.date, dt.date], limits: tuple[dt.date, dt.date]
) -> list[str]:
    """Fill the session keys from the query string (validated); return notices."""
    ss = st.session_state
    params = st.query_params
    notices: list[str] = []

    start, end = default
    raw_start, raw_end = params.get(START_PARAM), params.get(END_PARAM)
    if raw_start is not None or raw_end is not None:
        parsed_start = _parse_day(raw_start) if raw_start is not None else start
        parsed_last = _parse_day(raw_end) if raw_end is not None else end - dt.timedelta(days=1)
        if parsed_start is None or parsed_last is None:
            notices.append("Ignored an unreadable date in the link; showing the default date range.")
        elif parsed_last < parsed_start:
            notices.append("Ignored a date range that ends before it starts; showing the default date range.")
        else:
            low, high = limits
            clamped_start, clamped_last = max(parsed_start, low), min(parsed_last, high)
            if (clamped_start, clamped_last) != (parsed_start, parsed_last) or clamped_last < clamped_start:
                notices.append(f"The link's dates were limited to {low:%d %b %Y} – {high:%d %b %Y}.")
            if clamped_last >= clamped_start:
                start, end = clamped_start, clamped_last + dt.timedelta(days=1)
    ss[_store("range")] = (start, end)

    freq = params.get(FREQ_PARAM, "month")
    if freq not in FREQS:
        notices.append(f"Ignored unknown period “{_shown(freq)}”; showing months.")
        freq = "month"
    ss[_store("freq")] = freq

    for name, param, label in DIMENSIONS:
        chosen, rejected = [], []
        for value in params.get_all(param):
            (chosen if value in known.get(name, []) and value not in chosen else rejected).append(value)
        rejected = [v for v in rejected if v not in chosen]
        if rejected:
            notices.append(
                f"Ignored unknown {label.lower()} value(s) in the link: "
                + ", ".join(f"“{_shown(v)}”" for v in rejected[:5])
                + (" …" if len(rejected) > 5 else "")
            )
        ss[_store(name)] = chosen
    return notices


def kept_note(conflicts: list[str]) -> str:
    """The caption under the lists when chosen values exclude each other: ``conflicts`` are
    "region APAC", "country France" (the values no account of the other lists has)."""
    return (
        f":orange[:material/warning: No account matches {' with '.join(conflicts)}: kept as chosen, so "
        "nothing is counted — remove or change one of them.]"
    )


@st.cache_data(ttl=data.CACHE_TTL, show_spinner=False)
def _combinations(url: str, scope: Scope) -> pd.DataFrame:
    return dimension_combinations(data.engine(), scope)


def combinations(url: str, scope: Scope) -> pd.DataFrame:
    """``kpis.filters.dimension_combinations`` of the database at ``url``, cached per
    database and scope like the option lists."""
    with data._friendly_database_errors():
        return _combinations(url, scope)


def _reset() -> None:
    ss = st.session_state
    for key in [k for k in ss if str(k).startswith("_flt_")]:
        del ss[key]
    for _name, param, _label in DIMENSIONS:
        ss.pop(param, None)
    ss.pop(DATE_KEY, None)
    ss.pop(FREQ_KEY, None)
    st.query_params.clear()
    ss[SEEDED_KEY] = "reset"


def _sync_url(start: dt.date, end: dt.date, freq: str, chosen: dict[str, list[str]]) -> None:
    wanted: dict[str, str | list[str]] = {
        START_PARAM: start.isoformat(),
        END_PARAM: (end - dt.timedelta(days=1)).isoformat(),
        FREQ_PARAM: freq,
    }
    for name, param, _label in DIMENSIONS:
        if chosen[name]:
            wanted[param] = list(chosen[name])
    params = st.query_params
    for key, value in wanted.items():
        current = params.get_all(key)
        as_list = value if isinstance(value, list) else [value]
        if current != as_list:
            params[key] = value
    for _name, param, _label in DIMENSIONS:
        if param not in wanted and param in params:
            del params[param]


def global_filters() -> View:
    """Draw the sidebar filter bar and return the current ``View``. Call first on every page."""
    from charts.theme import use_theme
    from ui.navigation import navigation
    from ui.report import warm_export_server

    user = auth.gate()  # first: nothing of the page before sign-in
    use_theme()
    navigation()  # the page links also show when the database is missing
    data.require_database()
    warm_export_server()  # once per process, in the background: the first export is fast
    # this run's KPIs built on the customer base (churn, active customers, NRR, retention
    # cost, and last year's of each) share one computation per selection
    start_sharing()
    url = database_url()
    # only values inside the user's scope are offered; URL values outside it are ignored
    known = data.dimension_values(url, user.scope)
    labels = data.dimension_labels(url)
    bounds = data.data_date_range(url)
    default = default_range(bounds)
    limits = _date_limits(bounds, default)
    ss = st.session_state

    notices: list[str] = []
    if SEEDED_KEY not in ss:
        notices = _seed_from_url(known, default, limits)
        ss[SEEDED_KEY] = True
    elif ss[SEEDED_KEY] == "reset":
        _seed_from_url(known, default, limits)  # the URL is empty now: defaults
        ss[SEEDED_KEY] = True

    sidebar = st.sidebar
    sidebar.header("Filters")
    for notice in notices:
        sidebar.warning(notice, icon=":material/link_off:")

    # Date range: the widget shows inclusive days, Filters holds a half-open range. Every
    # widget key is re-assigned before its widget is drawn (from the widget's own value, else
    # from the non-widget copy): after a page switch Streamlit would otherwise start the
    # widget from its default.
    start, end = ss.get(_store("range"), default)
    current = ss.get(DATE_KEY)
    if isinstance(current, tuple | list) and len(current) == 2 and all(current):
        start, end = current[0], current[1] + dt.timedelta(days=1)
    start, last = max(start, limits[0]), min(end - dt.timedelta(days=1), limits[1])
    if last < start:
        start, last = default[0], default[1] - dt.timedelta(days=1)
    if not (isinstance(current, tuple | list) and len(current) == 1):  # keep a half-picked range
        ss[DATE_KEY] = (start, last)
    picked = sidebar.date_input(
        "Date range",
        min_value=limits[0],
        max_value=limits[1],
        key=DATE_KEY,
        format="YYYY-MM-DD",
        help="Inclusive days, in UTC. Default: the last 12 full months and the current month.",
    )
    sidebar.html(DATE_TYPING_SCRIPT, unsafe_allow_javascript=True)  # typed dates apply at once
    if isinstance(picked, tuple | list) and len(picked) == 2 and picked[0] and picked[1]:
        start, last = picked[0], picked[1]
    else:
        sidebar.caption("Pick an end date too; until then the previous range applies.")
    end = last + dt.timedelta(days=1)
    ss[_store("range")] = (start, end)

    freq = ss.get(FREQ_KEY, ss.get(_store("freq"), "month"))
    ss[FREQ_KEY] = freq if freq in FREQS else "month"
    freq = sidebar.radio("Period", list(FREQS), format_func=FREQS.__getitem__, key=FREQ_KEY, horizontal=True)
    ss[_store("freq")] = freq

    # The lists narrow each other (Region = APAC offers only APAC's countries and owners): the
    # values every list holds now come first, then each list offers what the others leave.
    current = {
        name: [v for v in ss.get(param, ss.get(_store(name), [])) if v in known.get(name, [])]
        for name, param, _label in DIMENSIONS
    }
    offered = narrowed_options(known, combinations(url, user.scope), current)
    chosen: dict[str, list[str]] = {}
    conflicts: list[str] = []
    for name, param, label in DIMENSIONS:
        options = known.get(name, [])
        if name in ONLY_WITH_CHOICE and len(options) < 2:
            ss[_store(name)] = chosen[name] = []
            continue
        # a chosen value the other lists no longer leave is kept (the link stays as shared) and said
        kept = [v for v in current[name] if v not in offered.get(name, options)]
        ss[param] = current[name]
        names = labels.get(name, {})
        values = sidebar.multiselect(
            label,
            offered.get(name, options) + kept,
            key=param,
            placeholder="All",
            format_func=(lambda v, names=names: names.get(v, code_label(v))),  # imported codes as words
        )
        if kept:
            conflicts.append(f"{label.lower()} " + ", ".join(_shown(names.get(v, v)) for v in kept))
        ss[_store(name)] = list(values)
        chosen[name] = list(values)

    if conflicts:
        sidebar.caption(kept_note(conflicts))
    sidebar.button("Reset filters", on_click=_reset, icon=":material/restart_alt:")
    sidebar.caption("The address bar keeps these filters: copy it to share exactly this view.")

    _sync_url(start, end, freq, chosen)
    # the scope rides with the filters into every KPI, roll-up, drill-down, export and forecast
    filters = Filters(start=start, end=end, **{name: tuple(v) for name, v in chosen.items()}).within(
        user.scope
    )
    return View(filters=filters, freq=freq, labels=labels, today=data_today(bounds), user=user)
