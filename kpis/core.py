"""Helpers every KPI module shares: connections, running a statement, the period grid,
proportion intervals."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data.dialects import FREQS

#: Fewer observations than this and a rate carries ``low_sample = True``.
LOW_SAMPLE = 30
Z95 = 1.959963984540054


class connection:
    """``with connection(conn_or_engine) as c``: reuse a Connection, or open (and close) one."""

    def __init__(self, bind: sa.Connection | sa.Engine) -> None:
        self.bind = bind
        self.opened: sa.Connection | None = None

    def __enter__(self) -> sa.Connection:
        if isinstance(self.bind, sa.Connection):
            return self.bind
        self.opened = self.bind.connect()
        return self.opened

    def __exit__(self, *exc: object) -> None:
        if self.opened is not None:
            self.opened.close()


def read_frame(bind: sa.Connection | sa.Engine, statement: sa.Executable) -> pd.DataFrame:
    """Run ``statement`` and return its (small, aggregated) result as a DataFrame."""
    with connection(bind) as c:
        result = c.execute(statement)
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def period_starts(start: dt.date, end: dt.date, freq: str) -> list[pd.Timestamp]:
    """First days of the calendar periods whose first day lies in ``[start, end)``."""
    if freq not in FREQS:
        raise ValueError(f"freq must be one of {FREQS}, not {freq!r}")
    alias = {"month": "MS", "quarter": "QS", "year": "YS"}[freq]
    return [
        p for p in pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=alias) if p < pd.Timestamp(end)
    ]


def period_end(period: pd.Timestamp, freq: str) -> pd.Timestamp:
    """The first instant after the period that starts at ``period``."""
    months = {"month": 1, "quarter": 3, "year": 12}[freq]
    return period + pd.DateOffset(months=months)


def on_period_grid(
    frame: pd.DataFrame, periods: list[pd.Timestamp], fill: dict[str, object] | None = None
) -> pd.DataFrame:
    """Reindex an aggregate with a ``period`` column onto every period, in order; missing
    periods get ``fill`` values (default NaN)."""
    grid = pd.DataFrame({"period": pd.to_datetime(periods)})
    if frame.empty:
        out = grid
        for column in frame.columns:
            if column != "period":
                out[column] = float("nan")
    else:
        keys = pd.Index(naive_timestamps(frame["period"]))
        if keys.is_unique:  # an aggregate: reindexing is a left merge, at a third of the cost
            rest = frame.drop(columns="period").set_axis(keys).reindex(grid["period"])
            if not grid["period"].isin(keys).all():  # the period dtype the merge gave
                grid["period"] = grid["period"].astype(keys.dtype)
            out = pd.concat([grid, rest.reset_index(drop=True)], axis=1)
        else:
            frame = frame.copy()
            frame["period"] = naive_timestamps(frame["period"])
            out = grid.merge(frame, on="period", how="left")
    for column, value in (fill or {}).items():
        out[column] = out[column].fillna(value)
    return out.reset_index(drop=True)


def period_rows(
    bind: sa.Connection | sa.Engine,
    statement: sa.Executable,
    periods: list[pd.Timestamp],
    counts: tuple[str, ...] = (),
    sums: tuple[str, ...] = (),
    values: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Run an aggregate whose first column is a period start and put it on the period grid.

    One row per period of ``periods``, in order (rows for other periods are dropped);
    ``counts`` become int64 (0 where missing or NULL), ``sums`` float (0.0 where missing or
    NULL), ``values`` float (NaN where missing or NULL); the statement's columns after the
    period are ``counts``, then ``sums``, then ``values``. The same numbers as
    ``on_period_grid(read_frame(...))`` with fills, without a DataFrame merge per call.
    """
    return grid_frame(period_found(bind, statement), periods, counts, sums, values)


def period_found(
    bind: sa.Connection | sa.Engine, statement: sa.Executable, params: dict[str, object] | None = None
) -> dict[pd.Timestamp, tuple]:
    """Run an aggregate whose first column is a period start (with ``params``: a template's
    values): period (see :func:`naive_key`) -> the row's other values."""
    with connection(bind) as c:
        return {naive_key(row[0]): tuple(row[1:]) for row in c.execute(statement, params)}


def grid_frame(
    found: dict[pd.Timestamp, tuple],
    periods: list[pd.Timestamp],
    counts: tuple[str, ...] = (),
    sums: tuple[str, ...] = (),
    values: tuple[str, ...] = (),
) -> pd.DataFrame:
    """:func:`period_rows` for rows already fetched: ``found`` maps a period start (see
    :func:`naive_key`) to the row's values (``counts``, then ``sums``, then ``values``)."""
    return pd.DataFrame(grid_columns(found, periods, counts, sums, values))


def grid_columns(
    found: dict[pd.Timestamp, tuple],
    periods: list[pd.Timestamp],
    counts: tuple[str, ...] = (),
    sums: tuple[str, ...] = (),
    values: tuple[str, ...] = (),
) -> dict[str, Any]:
    """:func:`grid_frame`'s columns (``period``, then the names) as arrays, for a KPI that
    adds its own columns before building its frame once."""
    grid = pd.to_datetime(periods)
    names = [*counts, *sums, *values]
    rows = [found.get(p) for p in grid]
    data: dict[str, Any] = {"period": grid}
    for j, name in enumerate(names):
        if name in counts:
            data[name] = np.array(
                [0 if r is None or r[j] is None else int(r[j]) for r in rows], dtype="int64"
            )
        else:
            missing = 0.0 if name in sums else math.nan
            data[name] = np.array(
                [missing if r is None or r[j] is None else float(r[j]) for r in rows], dtype="float64"
            )
    return data


def naive_key(value: object) -> pd.Timestamp:
    """A period start from any driver as a naive UTC Timestamp (a dictionary key)."""
    stamp = pd.Timestamp(value)
    return stamp.tz_convert(None) if stamp.tzinfo is not None else stamp


def naive_timestamps(values: pd.Series) -> pd.Series:
    """Timestamps from any database driver as naive UTC ``datetime64[ns]``."""
    stamps = pd.to_datetime(values, utc=True)
    return stamps.dt.tz_localize(None).astype("datetime64[ns]")


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; (NaN, NaN) when ``n == 0``."""
    if not n:
        return math.nan, math.nan
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return centre - half, centre + half


def ratio_interval(
    numerator: np.ndarray,
    denominator: np.ndarray,
    numerator_squares: np.ndarray,
    products: np.ndarray,
    denominator_squares: np.ndarray,
    n: np.ndarray,
    z: float = Z95,
) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method (linearisation) interval of a ratio of sums R = Σy ÷ Σx over n units,
    from per-period sums that add up over any grouping (so roll-ups can hold them).

    With Σy = ``numerator``, Σx = ``denominator``, Σy² = ``numerator_squares``, Σxy =
    ``products``, Σx² = ``denominator_squares``: Q = Σ(y_i − R·x_i)² = Σy² − 2R·Σxy + R²·Σx²
    (negative rounding clamped to 0), Var(R) ≈ n ÷ (n − 1) · Q ÷ (Σx)², bounds R ∓ z·√Var(R).
    NaN where Σx = 0 or n < 2. Element-wise over arrays; bounds not clipped."""
    x, y = np.asarray(denominator, dtype="float64"), np.asarray(numerator, dtype="float64")
    units = np.asarray(n, dtype="float64")
    valid = (x != 0) & (units >= 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(valid, y / x, np.nan)
        q = (
            np.asarray(numerator_squares)
            - 2 * r * np.asarray(products)
            + r * r * np.asarray(denominator_squares)
        )
        variance = units / (units - 1) * np.maximum(q, 0.0) / (x * x)
        half = np.where(valid, z * np.sqrt(variance), np.nan)
    return r - half, r + half


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, NaN when the denominator is 0 (nothing to measure)."""
    return numerator / denominator if denominator else math.nan


def period_table(periods: list[pd.Timestamp], freq: str, name: str = "periods") -> sa.CTE:
    """A CTE ``(period, period_end)`` with one row per period, the boundaries as bound
    parameters (``SELECT :s AS period, :e AS period_end UNION ALL ...``), so one statement
    can evaluate every period at once. ``periods`` must not be empty."""
    if not periods:
        raise ValueError("period_table needs at least one period")
    rows = [
        sa.select(
            sa.literal(p.to_pydatetime(), sa.DateTime()).label("period"),
            sa.literal(period_end(p, freq).to_pydatetime(), sa.DateTime()).label("period_end"),
        )
        for p in periods
    ]
    return (rows[0] if len(rows) == 1 else sa.union_all(*rows)).cte(name)


def as_of(today: dt.date | None = None) -> dt.date:
    """The day the data runs up to, exclusive: ``today`` (injectable for tests), else today
    in UTC. Records of this day are not complete yet."""
    return today or dt.datetime.now(dt.UTC).date()


def is_partial(period: object, freq: str, end: dt.date, today: dt.date | None = None) -> bool:
    """True when the period starting at ``period`` is not complete in a view of ``[…, end)``
    as of ``today``: its end lies after the range end or after today (:func:`as_of`), so it
    holds only some of its days (the current month, or a month the range cuts).

    The one definition of a partial period: charts mark these, exports flag them and
    period-over-period changes leave them out."""
    cut = pd.Timestamp(min(end, as_of(today)))
    return period_end(pd.Timestamp(period), freq) > cut
