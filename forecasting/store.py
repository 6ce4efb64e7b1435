"""Forecasts stored beside the database: computed once, read back by any later process.

A forecast of a 72-month series costs 1.6–3.9 s of CPU whatever the number of accounts
(``forecasting.selection``: 18 SARIMAX fits, Theta's, ETS's), and ``FORECASTS`` keeps it
only in the process that computed it. Here it is kept in the database's result store
(:class:`crm_data.stored_results.ResultStore`: a SQLite file beside a DuckDB or SQLite
file, the database itself on PostgreSQL), so that

* :func:`stored_forecast` (what ``revenue_forecast`` calls) looks the forecast up in
  ``FORECASTS``, then in the store, and only then computes it — and stores it;
* :func:`compute_ahead` computes and stores the forecast the Forecast page opens on (the
  whole company's monthly revenue over the full history up to the default date range's end,
  12 months ahead, the automatic model: :func:`default_history_filters`), run after every
  demo and import that changed rows (:func:`listen`, a committed listener of
  :mod:`crm_data.hooks`) and by ``python -m crm_data forecasts``. The page's other
  defaults (the period grain, e.g. "3 years, quarters") read the same monthly series: the
  page widens the date range to the full history and forecasts by month.

**Never stale**: the key (:func:`stored_key`) is a hash of the in-process key
(:func:`forecasting.result.forecast_key`: the series' dates, values bit for bit and name,
and the arguments) and of :func:`method_version` — a hash of every source file of the
``forecasting`` package but the :data:`STORAGE_MODULES`, the versions of statsmodels,
scipy, numpy and pandas, the Python
version and the machine's architecture. New data (a new month, an import), other arguments
or other code give another key; a row of another version is never asked for again (and is
dropped by the next write).

**Read back identical**: the body is JSON (:func:`encode`) — floats as their shortest
repr (exact), dates as integer nanoseconds, every frame's column dtypes, index and column
index, the history's ``freq`` — and :func:`decode` builds the same ``ForecastResult``,
field by field. No pickle: whoever can write the database cannot run code in the
dashboard. A row that does not decode or fails a check (wrong key, unknown format, a
field missing or of the wrong type, an unexpected dtype) is ignored: the forecast is
computed again and stored over it.

**Reading imports no statsmodels** (≈ 0.8 s of a server's first view): this module and
``forecasting.result`` need numpy, pandas and SQLAlchemy only; ``forecasting.selection``
is imported when a forecast must be computed.

``$CRM_FORECAST_STORE``: ``on`` (default), ``read`` (read stored forecasts, store
nothing — the page benchmark's workers, so that a filter change pays what a new selection
pays) or ``off`` (no store — the test suite, unless a test turns it on).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import itertools
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import hooks
from crm_data.scope import singular
from crm_data.stored_results import MAX_ROWS, ResultStore
from forecasting.result import (
    FORECAST_COLUMNS,
    FORECASTS,
    MODELS,
    ForecastResult,
    HeldOutCoverage,
    forecast_key,
)
from kpis.filters import LIST_FIELDS, Filters, Scope, data_date_range, default_range, dimension_values

#: What the rows of this module hold (``app_stored_results.kind``).
KIND = "forecast"
#: The body's layout; another value is not read.
FORMAT = 1
#: The environment variable that turns the store off or makes it read-only.
STORE_VARIABLE = "CRM_FORECAST_STORE"
#: The Forecast page's defaults (its horizon slider, "Automatic", "All history" on).
PAGE_HORIZON = 12
PAGE_MODEL: str | None = None
#: The distributions whose versions are part of :func:`method_version`.
DEPENDENCIES = ("statsmodels", "scipy", "numpy", "pandas")
#: The dtypes a stored frame's column may have (anything else is not stored, nor read).
DATETIME_DTYPES = ("datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]")
PLAIN_DTYPES = ("float64", "int64", "bool", "object", "str", "string", *DATETIME_DTYPES)


def mode() -> str:
    """``on``, ``read`` or ``off``, from :data:`STORE_VARIABLE` (module docstring)."""
    value = os.environ.get(STORE_VARIABLE, "on").strip().lower()
    if value in ("off", "0", "false", "no"):
        return "off"
    if value in ("read", "read-only", "readonly"):
        return "read"
    return "on"


# --- the key ---------------------------------------------------------------------------------

_version: str | None = None
_version_lock = threading.Lock()


#: The modules that only store results and read them back, left out of
#: :func:`method_version`: an edit there computes nothing differently, so the stored
#: results stay valid. What they write carries a ``FORMAT`` number (this module's and
#: :mod:`forecasting.fit_store`'s), raised whenever the body changes; a row of another
#: format is not read.
STORAGE_MODULES = ("store.py", "fit_store.py")


def version_of(root: Path, installed: Mapping[str, str], leave_out: Iterable[str] = ()) -> str:
    """A hash of every ``*.py`` file under ``root`` (relative path and bytes) but those
    named in ``leave_out`` (relative paths), the ``installed`` versions (name -> version),
    the Python version and the machine's architecture."""
    left_out = set(leave_out)
    digest = hashlib.blake2b(digest_size=16)
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() in left_out:
            continue
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for name, version in sorted(installed.items()):
        digest.update(f"{name}=={version}\n".encode())
    digest.update(f"python {sys.version_info[:2]} {platform.machine()}\n".encode())
    return digest.hexdigest()


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def method_version() -> str:
    """The version of the forecasting method a stored forecast was computed by:
    :func:`version_of` the ``forecasting`` package's sources but the
    :data:`STORAGE_MODULES`, and the installed :data:`DEPENDENCIES` (statsmodels, scipy,
    numpy, pandas). Computed once per process (≈ 10 ms)."""
    global _version
    with _version_lock:
        if _version is None:
            root = Path(__file__).resolve().parent
            installed = {name: _installed(name) for name in DEPENDENCIES}
            _version = version_of(root, installed, leave_out=STORAGE_MODULES)
        return _version


def stored_key(key: bytes) -> str:
    """The store's key of the in-process key ``key`` (:func:`forecasting.result.forecast_key`):
    40 hex digits of a hash of it and :func:`method_version`."""
    return hashlib.blake2b(key + method_version().encode(), digest_size=20).hexdigest()


# --- the body: a ForecastResult as JSON, and back ------------------------------------------


def _plain_value(value: Any) -> Any:
    """An object column's value as JSON holds it (str, int, float, bool or None)."""
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"a value of type {type(value).__name__} is not stored")


def _values(values: pd.Series | pd.Index) -> dict[str, Any]:
    """A column's (or an index's) dtype and values, exactly (module docstring)."""
    dtype = str(values.dtype)
    if dtype not in PLAIN_DTYPES:
        raise TypeError(f"a column of dtype {dtype} is not stored")
    if dtype in DATETIME_DTYPES:
        data: list[Any] = values.to_numpy().view("i8").tolist()
    elif dtype == "object":
        data = [_plain_value(v) for v in values.tolist()]
    elif dtype in ("str", "string"):  # a missing value (NaN or NA) as None
        data = [None if pd.isna(v) else _plain_value(v) for v in values.astype(object).tolist()]
    else:
        data = values.to_numpy().tolist()
    return {"dtype": dtype, "values": data}


def _restore_values(spec: Any) -> Any:
    """The array :func:`_values` describes; ValueError when it does not hold what it says."""
    if not isinstance(spec, dict) or set(spec) != {"dtype", "values"} or not isinstance(spec["values"], list):
        raise ValueError("not a column")
    dtype, data = spec["dtype"], spec["values"]
    if dtype == "float64" and all(isinstance(v, float) for v in data):
        return np.array(data, dtype=np.float64)
    if dtype == "int64" and all(isinstance(v, int) and not isinstance(v, bool) for v in data):
        return np.array(data, dtype=np.int64)
    if dtype == "bool" and all(isinstance(v, bool) for v in data):
        return np.array(data, dtype=bool)
    if dtype in DATETIME_DTYPES and all(isinstance(v, int) and not isinstance(v, bool) for v in data):
        return np.array(data, dtype=np.int64).view(dtype)
    if dtype == "object" and all(v is None or isinstance(v, str | bool | int | float) for v in data):
        array = np.empty(len(data), dtype=object)
        array[:] = data
        return array
    if dtype in ("str", "string") and all(v is None or isinstance(v, str) for v in data):
        restored = pd.array(data, dtype=dtype)
        if str(restored.dtype) != dtype:
            raise ValueError(f"{dtype} values did not come back as {dtype}")
        return restored
    raise ValueError(f"not a {dtype!r} column")


def _name(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"a name of type {type(value).__name__} is not stored")


def _index(index: pd.Index) -> dict[str, Any]:
    if isinstance(index, pd.RangeIndex):
        return {"range": [index.start, index.stop, index.step], "name": _name(index.name)}
    spec = {**_values(index), "name": _name(index.name)}
    if isinstance(index, pd.DatetimeIndex):
        if index.tz is not None:
            raise TypeError("a time-zone aware index is not stored")
        spec["freq"] = index.freqstr
    return spec


def _restore_index(spec: Any) -> pd.Index:
    if not isinstance(spec, dict):
        raise ValueError("not an index")
    name = _name(spec.get("name"))
    if "range" in spec:
        if set(spec) != {"range", "name"}:
            raise ValueError("not a range index")
        start, stop, step = spec["range"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, stop, step)):
            raise ValueError("not a range index")
        return pd.RangeIndex(start, stop, step, name=name)
    values = _restore_values({"dtype": spec.get("dtype"), "values": spec.get("values")})
    if spec.get("dtype") in DATETIME_DTYPES:
        if set(spec) != {"dtype", "values", "name", "freq"}:
            raise ValueError("not a date index")
        freq = spec["freq"]
        if freq is not None and not isinstance(freq, str):
            raise ValueError("not a date index's frequency")
        return pd.DatetimeIndex(values, name=name, freq=freq)
    if set(spec) != {"dtype", "values", "name"}:
        raise ValueError("not an index")
    return pd.Index(values, name=name, dtype=spec["dtype"])


def _frame(frame: pd.DataFrame) -> dict[str, Any]:
    names = [_name(c) for c in frame.columns]
    if None in names or len(set(names)) != len(names):
        raise TypeError("a frame's column names must be distinct strings to be stored")
    return {
        "columns": names,
        "columns_dtype": str(frame.columns.dtype),
        "index": _index(frame.index),
        "data": [_values(frame[c]) for c in frame.columns],
    }


def _restore_frame(spec: Any) -> pd.DataFrame:
    if not isinstance(spec, dict) or set(spec) != {"columns", "columns_dtype", "index", "data"}:
        raise ValueError("not a frame")
    names, data = spec["columns"], spec["data"]
    if (
        not isinstance(names, list)
        or not isinstance(data, list)
        or len(names) != len(data)
        or not all(isinstance(n, str) for n in names)
        or len(set(names)) != len(names)
        or spec["columns_dtype"] not in ("object", "str", "string")
    ):
        raise ValueError("not a frame")
    index = _restore_index(spec["index"])
    columns = [_restore_values(column) for column in data]
    if any(len(column) != len(index) for column in columns):
        raise ValueError("a frame's columns and index differ in length")
    # each column with its dtype said (an object column of text stays object)
    frame = pd.DataFrame(
        {
            i: pd.Series(values, index=index, dtype=values.dtype, copy=False)
            for i, values in enumerate(columns)
        },
        index=index,
    )
    frame.columns = pd.Index(names, dtype=spec["columns_dtype"])
    if [str(t) for t in frame.dtypes] != [column["dtype"] for column in data]:
        raise ValueError("a frame's columns did not come back with their dtypes")
    return frame


def _series(series: pd.Series) -> dict[str, Any]:
    return {"name": _name(series.name), "index": _index(series.index), **_values(series)}


def _restore_series(spec: Any) -> pd.Series:
    if not isinstance(spec, dict) or set(spec) != {"name", "index", "dtype", "values"}:
        raise ValueError("not a series")
    index = _restore_index(spec["index"])
    values = _restore_values({"dtype": spec["dtype"], "values": spec["values"]})
    if len(values) != len(index):
        raise ValueError("a series' values and index differ in length")
    series = pd.Series(values, index=index, name=_name(spec["name"]), dtype=values.dtype, copy=False)
    if str(series.dtype) != spec["dtype"]:
        raise ValueError("a series did not come back with its dtype")
    return series


_FIELDS = frozenset(f.name for f in fields(ForecastResult))
_TEXTS = ("model", "reason", "spec", "reliability", "intervals")
_FLAGS = ("reliable", "calibrated")


def _exactly(value: Any, kind: type) -> Any:
    """``value`` when it is of type ``kind`` itself (not a numpy scalar, not a bool for an
    int): JSON gives back exactly that type."""
    if type(value) is not kind:
        raise TypeError(f"a {type(value).__name__} where a {kind.__name__} is stored")
    return value


def encode(result: ForecastResult, key: str = "") -> str:
    """``result`` as JSON text (module docstring), under the store's ``key`` (checked when
    read back). TypeError when something in it cannot be stored exactly."""
    held = result.held_out
    body = {
        "format": FORMAT,
        "key": key,
        **{name: _exactly(getattr(result, name), str) for name in _TEXTS},
        **{name: _exactly(getattr(result, name), bool) for name in _FLAGS},
        "forecast": _frame(result.forecast),
        "backtest": _frame(result.backtest),
        "history": _series(result.history),
        "notes": [_exactly(note, str) for note in result.notes],
        "held_out": [
            *(
                _exactly(getattr(held, name), float)
                for name in ("coverage80", "coverage95", "model80", "model95")
            ),
            *(_exactly(getattr(held, name), int) for name in ("points", "folds")),
        ],
    }
    stored = set(body) - {"format", "key"}
    if stored != _FIELDS:  # a field added to ForecastResult must be stored too
        raise TypeError(f"ForecastResult's fields changed: {sorted(_FIELDS ^ stored)}")
    return json.dumps(body, separators=(",", ":"), allow_nan=True)


def decode(text: str, key: str = "") -> ForecastResult:
    """The ``ForecastResult`` :func:`encode` wrote under ``key``. ValueError (or another
    exception of the checks) when the text is not such a body: never trusted blindly."""
    body = json.loads(text)
    if not isinstance(body, dict) or body.get("format") != FORMAT or body.get("key") != key:
        raise ValueError("not a stored forecast of this key and format")
    if set(body) - {"format", "key"} != _FIELDS:
        raise ValueError("a stored forecast's fields differ from ForecastResult's")
    if not all(isinstance(body[name], str) for name in _TEXTS):
        raise ValueError("a stored forecast's text is not text")
    if not all(isinstance(body[name], bool) for name in _FLAGS):
        raise ValueError("a stored forecast's flag is not true or false")
    if body["model"] not in (*MODELS, "none"):
        raise ValueError(f"unknown model {body['model']!r}")
    notes = body["notes"]
    if not isinstance(notes, list) or not all(isinstance(note, str) for note in notes):
        raise ValueError("a stored forecast's notes are not text")
    held = body["held_out"]
    if (
        not isinstance(held, list)
        or len(held) != 6
        or not all(isinstance(v, float) for v in held[:4])
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in held[4:])
    ):
        raise ValueError("not a held-out coverage")
    forecast = _restore_frame(body["forecast"])
    if list(forecast.columns) != FORECAST_COLUMNS:
        raise ValueError("not a forecast frame")
    return ForecastResult(
        body["model"],
        forecast,
        _restore_frame(body["backtest"]),
        _restore_series(body["history"]),
        list(notes),
        body["reason"],
        body["spec"],
        reliable=body["reliable"],
        reliability=body["reliability"],
        calibrated=body["calibrated"],
        held_out=HeldOutCoverage(*held),
        intervals=body["intervals"],
    )


# --- the store -------------------------------------------------------------------------------


@dataclass
class ForecastStore:
    """Forecasts in a :class:`~crm_data.stored_results.ResultStore`. ``writable`` False:
    read only (``$CRM_FORECAST_STORE=read``)."""

    results: ResultStore
    writable: bool = True

    def get(self, key: bytes | None) -> ForecastResult | None:
        """The stored forecast of the in-process key ``key``; None when there is none or the
        row does not pass :func:`decode`'s checks (it is then computed again)."""
        if key is None:
            return None
        address = stored_key(key)
        row = self.results.get(address)
        if row is None or row.kind != KIND or row.version != method_version():
            return None
        try:
            return decode(row.body, address)
        except Exception:  # anything wrong in a stored row: not trusted, computed again
            return None

    def put(self, key: bytes | None, result: ForecastResult) -> bool:
        """Store ``result`` under the in-process key ``key``; False when it was not stored
        (read only, a result that cannot be stored exactly, a store that cannot be
        written)."""
        if key is None or not self.writable:
            return False
        address = stored_key(key)
        try:
            body = encode(result, address)
        except (TypeError, ValueError):
            return False
        return self.results.put(address, KIND, method_version(), body)

    @classmethod
    def open(cls, crm_url: str) -> ForecastStore | None:
        """The store beside the CRM database ``crm_url``, with a writing engine of its own
        (kept for the process); None when ``$CRM_FORECAST_STORE`` is off or the database
        is in memory."""
        if mode() == "off":
            return None
        results = _opened(crm_url)
        return None if results is None else cls(results, writable=mode() == "on")

    @classmethod
    def beside(cls, conn: sa.Connection | sa.Engine) -> ForecastStore | None:
        """The store beside the database of ``conn``: on PostgreSQL the database itself
        through ``conn``'s engine (a read-only engine then only reads), else
        :meth:`open`."""
        if mode() == "off":
            return None
        engine = conn.engine if isinstance(conn, sa.Connection) else conn
        if ResultStore.in_crm_database(engine):
            return cls(ResultStore(engine), writable=mode() == "on")
        return cls.open(engine.url.render_as_string(hide_password=False))


_opened_stores: dict[str, ResultStore | None] = {}
_opened_lock = threading.Lock()


def _opened(crm_url: str) -> ResultStore | None:
    """:meth:`ResultStore.open`, once per CRM database and process (its engine stays open:
    a SQLite file's connections are cheap, and opening one costs more than a read)."""
    with _opened_lock:
        if crm_url not in _opened_stores:
            _opened_stores[crm_url] = ResultStore.open(crm_url)
        return _opened_stores[crm_url]


def stored_forecast(
    series: pd.Series,
    horizon: int = 12,
    model: str | None = None,
    *,
    folds: int = 12,
    refit: bool = False,
    store: ForecastStore | None = None,
) -> ForecastResult:
    """``forecast(series, horizon, model, folds=folds, refit=refit)``, looked up first in
    ``FORECASTS``, then in ``store``; computed (and stored there) only when neither has it.
    A forecast read back is kept in ``FORECASTS`` too. Without ``store``: ``forecast()``."""
    key = forecast_key(series, horizon, model, folds, refit)
    kept = FORECASTS.get(key)
    if kept is not None:
        return kept
    if store is not None:
        found = store.get(key)
        if found is not None:
            FORECASTS.put(key, found)
            return found
    from forecasting.selection import forecast  # statsmodels: only to compute

    result = forecast(series, horizon, model, folds=folds, refit=refit)
    if store is not None:
        store.put(key, result)
    return result


# --- computed ahead --------------------------------------------------------------------------


def default_history_filters(conn: sa.Connection | sa.Engine, today: dt.date | None = None) -> Filters | None:
    """The filters of the Forecast page's revenue series on the dashboard's default view:
    the default date range (:func:`kpis.filters.default_range`), widened to the first month
    with data ("All history", as the page's ``history_filters`` does), no segment, owner or
    product chosen, the whole company's scope; None when the database holds no dated record."""
    bounds = data_date_range(conn)
    if bounds is None:
        return None
    start, end = default_range(bounds, today)
    filters = Filters(start, end)
    if bounds[0] < start:
        filters = filters.replace(start=bounds[0].replace(day=1))
    return filters


@dataclass(frozen=True)
class Selection:
    """One series to compute ahead: what it is (``what``, as the command prints it) and the
    filters the Forecast page reads it with."""

    what: str
    filters: Filters


def ahead_selections(
    conn: sa.Connection | sa.Engine,
    today: dt.date | None = None,
    *,
    scopes: Iterable[tuple[str, Scope]] = (),
    each: Sequence[str] = (),
) -> list[Selection]:
    """The series :func:`compute_ahead` forecasts, on the page's default view
    (:func:`default_history_filters`): the whole company; then each distinct restricted
    scope of ``scopes`` (``(account name, scope)`` pairs: what a signed-in user with that
    scope opens the page on); then each value of each filter list named in ``each``
    (:data:`kpis.filters.LIST_FIELDS`, e.g. ``regions``, ``owners``, ``products``: one
    value chosen in the filter bar). An entry naming several lists joined by commas
    (``regions,industries``) stands for each combination of one value of each (one region
    and one industry chosen together): the product of their numbers of values. Empty when
    the database holds no dated record.

    Raises ``ValueError`` for a name that is not a filter list, and when there would be more
    selections than the store keeps (:data:`crm_data.stored_results.MAX_ROWS`: the first
    ones would be dropped to keep the last)."""
    combinations = [
        tuple(dict.fromkeys(part.strip() for part in entry.split(","))) for entry in dict.fromkeys(each)
    ]
    unknown = [name for names in combinations for name in names if name not in LIST_FIELDS]
    if unknown:
        raise ValueError(f"not filter lists: {', '.join(unknown)} (choose from {', '.join(LIST_FIELDS)})")
    base = default_history_filters(conn, today)
    if base is None:
        return []
    chosen = [Selection("revenue forecast, whole company", base)]
    by_scope: dict[Scope, list[str]] = {}
    for name, scope in scopes:
        if scope.restricted:
            by_scope.setdefault(scope, []).append(name)
    for scope, names in by_scope.items():
        chosen.append(Selection(f"revenue forecast, {scope.describe()} (for {', '.join(sorted(names))})",
                                base.within(scope)))  # fmt: skip
    values = dimension_values(conn) if each else {}
    for names in combinations:
        for picked in itertools.product(*(values.get(name, []) for name in names)):
            pairs = list(zip(names, picked, strict=True))
            what = ", ".join(f"{singular(name)} {value}" for name, value in pairs)
            chosen.append(Selection(f"revenue forecast, {what}", base.replace(**{n: (v,) for n, v in pairs})))
    if len(chosen) > MAX_ROWS:
        raise ValueError(
            f"{len(chosen)} selections, more than the {MAX_ROWS} forecasts the store keeps: name fewer lists "
            "or fewer combinations"
        )
    return chosen


def signed_in_scopes(crm_url: str) -> list[tuple[str, Scope]]:
    """``(name, scope)`` of every sign-in account of the CRM database ``crm_url``
    (:mod:`crm_data.accounts`; none when sign-in is not set up): what
    :func:`ahead_selections` needs to compute each restricted user's own view ahead."""
    from crm_data.accounts import AccountStore

    accounts = AccountStore.open(crm_url)
    try:
        return [(account.name, Scope.from_dict(account.scope)) for account in accounts.accounts()]
    finally:
        accounts.dispose()


@dataclass(frozen=True)
class Ahead:
    """What :func:`compute_ahead` did for one series: ``computed`` (False: already
    stored), ``stored`` (False: computed but the store could not be written), the series'
    months, and the seconds it took."""

    what: str
    computed: bool
    stored: bool
    months: int
    seconds: float
    #: The Customers & churn page's model fits of the same selection
    #: (:func:`forecasting.fit_store.fit_ahead`): how many were new and stored, the seconds.
    fits: int = 0
    fits_seconds: float = 0.0

    def line(self) -> str:
        if not self.months:
            return f"{self.what}: no revenue in this selection, nothing to forecast"
        if not self.computed:
            done = "already stored"
        elif self.stored:
            done = f"computed and stored in {self.seconds:.1f} s"
        else:
            done = f"computed in {self.seconds:.1f} s but NOT stored (the store beside the database is read-only)"
        if self.fits:
            fits = f"{self.fits} fit" + ("s" if self.fits != 1 else "")
            done += f" · customer models: {fits} stored in {self.fits_seconds:.1f} s"
        return f"{self.what} ({self.months} months): {done}"


def _page_forecast(series: pd.Series) -> tuple[ForecastResult, float]:
    """The Forecast page's default forecast of ``series`` and the seconds it took (a process
    pool's task)."""
    from forecasting.selection import forecast  # statsmodels: only to compute

    began = time.perf_counter()
    return forecast(series, PAGE_HORIZON, PAGE_MODEL), time.perf_counter() - began


def compute_ahead(
    conn: sa.Connection | sa.Engine,
    store: ForecastStore,
    today: dt.date | None = None,
    selections: Sequence[Selection] | None = None,
    jobs: int = 1,
) -> list[Ahead]:
    """Compute and store the forecasts the Forecast page opens on (module docstring) unless
    they are stored already: for each of ``selections`` (default: the whole company,
    :func:`ahead_selections`) the revenue series' SQL (≈ 0.01–0.04 s at a million
    accounts; one product or owner up to ≈ 0.4 s) and a lookup; a forecast (≈ 1 s of CPU
    each) when the series is new. ``today`` (default: today in UTC) as the page would see
    it. ``jobs`` > 1: the new forecasts are computed by that many processes at once (the
    series are read here; a forecast is a function of its series alone, so each is the
    one this process would compute). They are started by ``multiprocessing``'s *spawn*
    method, which imports the calling program's main module in each: a script that calls
    this with ``jobs`` > 1 needs the usual ``if __name__ == "__main__":`` guard (the
    command line has it)."""
    from forecasting.revenue import monthly_revenue

    chosen = ahead_selections(conn, today) if selections is None else list(selections)
    series_of: list[tuple[Selection, pd.Series, bytes | None, float]] = []
    for selection in chosen:
        began = time.perf_counter()
        series, _notes = monthly_revenue(conn, selection.filters, today)
        key = forecast_key(series, PAGE_HORIZON, PAGE_MODEL, 12, False)
        series_of.append((selection, series, key, time.perf_counter() - began))
    new = [i for i, (_, series, key, _) in enumerate(series_of) if len(series) and store.get(key) is None]
    # one forecast per distinct series: two selections with the same series share it (a
    # series that cannot be hashed, key None, is its own)
    first_of: dict[bytes | int, int] = {}
    for i in new:
        first_of.setdefault(series_of[i][2] or i, i)
    results: dict[bytes | int, tuple[ForecastResult, float]] = {}
    if jobs > 1 and len(first_of) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no fork of a process holding DuckDB's threads
        with ProcessPoolExecutor(max_workers=min(jobs, len(first_of)), mp_context=context) as pool:
            futures = {key: pool.submit(_page_forecast, series_of[i][1]) for key, i in first_of.items()}
            results = {key: future.result() for key, future in futures.items()}
        for key, (result, _seconds) in results.items():  # forecast() kept those of this process
            FORECASTS.put(key if isinstance(key, bytes) else None, result)
    else:
        results = {key: _page_forecast(series_of[i][1]) for key, i in first_of.items()}
    computed = set(first_of.values())
    done: list[Ahead] = []
    for i, (selection, series, key, reading) in enumerate(series_of):
        fits, fits_seconds = _fits_ahead(conn, store, selection, today) if len(series) else (0, 0.0)
        if i not in computed:  # no revenue, already stored, or the same series as an earlier selection
            done.append(Ahead(selection.what, False, True, len(series), reading, fits, fits_seconds))
            continue
        result, seconds = results[key or i]
        stored = store.put(key, result)
        done.append(Ahead(selection.what, True, stored, len(series), reading + seconds, fits, fits_seconds))
    return done


def _fits_ahead(
    conn: sa.Connection | sa.Engine, store: ForecastStore, selection: Selection, today: dt.date | None
) -> tuple[int, float]:
    """:func:`forecasting.fit_store.fit_ahead` of ``selection`` into ``store``'s results
    when it can be written: (fits stored, seconds)."""
    if not store.writable:
        return 0, 0.0
    from forecasting.fit_store import fit_ahead

    began = time.perf_counter()
    stored = fit_ahead(conn, store.results, selection.filters, today)
    return stored, time.perf_counter() - began


def compute_ahead_beside(engine: sa.Engine, today: dt.date | None = None) -> list[Ahead]:
    """:func:`compute_ahead` into the store beside the database of ``engine``
    (:meth:`ForecastStore.beside`) of the whole company and of every restricted scope of its
    sign-in accounts (:func:`signed_in_scopes`: ≈ 1 s of CPU per scope whose series changed);
    nothing (an empty list) when ``$CRM_FORECAST_STORE`` is not ``on`` or the database has
    no store (in memory)."""
    if mode() != "on":
        return []
    store = ForecastStore.beside(engine)
    if store is None:
        return []
    scopes = signed_in_scopes(engine.url.render_as_string(hide_password=False))
    return compute_ahead(engine, store, today, ahead_selections(engine, today, scopes=scopes))


#: The tables the default series depends on: the payments summed, and the tables whose
#: dates set the default range's end (:func:`kpis.filters.data_date_range`).
SERIES_TABLES = frozenset({"payments", "subscriptions", "deals", "tickets"})


def on_tables_committed(engine: sa.Engine, change: hooks.Change) -> str | None:
    """The committed listener (:mod:`crm_data.hooks`): :func:`compute_ahead` with the
    writer's ``today``, into the store beside the database, when a table of
    :data:`SERIES_TABLES` changed; one sentence when it could not."""
    if mode() != "on" or not change.names & SERIES_TABLES:
        return None
    try:
        done = compute_ahead_beside(engine, change.today)
    except (sa.exc.SQLAlchemyError, OSError) as error:
        reason = " ".join(str(getattr(error, "orig", error) or error).split())[:300]
        return f"the revenue forecast was not computed ahead for the Forecast page: {reason}"
    if not all(ahead.stored for ahead in done):
        return "the revenue forecast was computed but could not be stored beside the database"
    return None


def listen() -> None:
    """Wire :func:`on_tables_committed` to :mod:`crm_data.hooks` (once; the application
    calls it: the command line, the Import page)."""
    hooks.add_committed_listener(on_tables_committed)


def forget_opened() -> None:
    """Close the stores :meth:`ForecastStore.open` kept (they are opened again on next use)."""
    with _opened_lock:
        stores = list(_opened_stores.values())
        _opened_stores.clear()
    for results in stores:
        if results is not None:
            results.dispose()


__all__ = [
    "KIND",
    "SERIES_TABLES",
    "STORE_VARIABLE",
    "Ahead",
    "ForecastStore",
    "compute_ahead",
    "compute_ahead_beside",
    "decode",
    "default_history_filters",
    "encode",
    "forget_opened",
    "listen",
    "method_version",
    "mode",
    "on_tables_committed",
    "stored_forecast",
    "stored_key",
]
