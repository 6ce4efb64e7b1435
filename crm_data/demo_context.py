"""The shared state of one demo run: time axis, staff, products, campaigns, the defect
spike, and the id counters that keep ids contiguous across chunks of accounts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from crm_data import demo_vocab as vocab

#: relative number of new accounts per calendar month (Jan..Dec): slow summers and Decembers
ACQUISITION_SEASON = np.array([1.1, 1.08, 1.15, 1.05, 1.0, 0.95, 0.78, 0.8, 1.08, 1.12, 1.02, 0.82])
#: usage-based revenue on top of the MRR per calendar month: a busy Q4, a quiet summer
REVENUE_SEASON = np.array([0.99, 0.97, 1.0, 1.0, 1.01, 0.98, 0.94, 0.93, 1.0, 1.03, 1.07, 1.1])
HISTORY_MONTHS = 72


@dataclass
class DemoContext:
    """Everything the chunks of accounts share."""

    seed: int
    accounts: int
    today: dt.date
    origin: np.datetime64  # first instant of the history (a month start, midnight UTC)
    horizon: float  # days from origin to ``today`` 00:00 (data lie strictly before)
    month_edges: np.ndarray  # days from origin of each month start, then ``horizon``
    month_of_year: np.ndarray  # calendar month (1..12) of each history month
    user_ids: pa.Array
    sales_by_segment: list[np.ndarray]
    sales_users: np.ndarray
    support_users: np.ndarray
    success_users: np.ndarray
    user_skill: np.ndarray  # additive effect on the win probability, per user index
    product_ids: pa.Array
    product_names: pa.Array
    product_prices: np.ndarray
    spike_product: int  # index into vocab.PRODUCTS
    spike_start: float  # days from origin: the spike quarter [start, end)
    spike_end: float
    campaign_ids: pa.Array
    campaign_start: np.ndarray  # days from origin
    campaign_end: np.ndarray
    campaign_retention: np.ndarray  # bool: objective == retention
    campaign_channel: list[str]
    campaign_cost: np.ndarray
    next_id: dict[str, int] = field(default_factory=dict)
    #: filled while the chunks are generated; company-wide costs scale with them
    paying_accounts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    new_accounts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def __post_init__(self) -> None:
        self.paying_accounts = np.zeros(self.n_months, dtype=np.int64)
        self.new_accounts = np.zeros(self.n_months, dtype=np.int64)

    @property
    def n_months(self) -> int:
        return len(self.month_edges) - 1

    def allocate(self, table: str, count: int) -> int:
        """Reserve ``count`` ids of ``table``; returns the number before the first one."""
        start = self.next_id.get(table, 0)
        self.next_id[table] = start + count
        return start

    def month_index(self, days: np.ndarray) -> np.ndarray:
        """The history month (0..n_months-1) containing each day offset."""
        return np.clip(np.searchsorted(self.month_edges, days, side="right") - 1, 0, self.n_months - 1)


def time_axis(today: dt.date) -> tuple[np.datetime64, float, np.ndarray, np.ndarray]:
    """origin, horizon, month edges and months of year for a history of
    :data:`HISTORY_MONTHS` full months before the month of ``today``, plus that partial month."""
    current = np.datetime64(today.replace(day=1), "M")
    first = current - HISTORY_MONTHS
    months = np.arange(first, current + 1)
    origin = first.astype("datetime64[D]")
    starts = (months.astype("datetime64[D]") - origin).astype(float)
    horizon = float((np.datetime64(today, "D") - origin).astype(int))
    edges = np.append(starts, horizon)
    month_of_year = (months.astype(int) % 12) + 1
    return origin, horizon, edges, month_of_year


def spike_quarter(rng: np.random.Generator, origin: np.datetime64, today: dt.date) -> tuple[float, float]:
    """One of the last eight complete calendar quarters, as days from ``origin``."""
    this_quarter = dt.date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    back = int(rng.integers(1, 9))
    month = this_quarter.year * 12 + this_quarter.month - 1 - 3 * back
    start = dt.date(month // 12, month % 12 + 1, 1)
    end_month = month + 3
    end = dt.date(end_month // 12, end_month % 12 + 1, 1)
    day = np.datetime64(start, "D")
    return float((day - origin).astype(int)), float((np.datetime64(end, "D") - origin).astype(int))


def product_arrays() -> tuple[pa.Array, pa.Array, np.ndarray]:
    ids = pa.array([p[0] for p in vocab.PRODUCTS])
    names = pa.array([p[1] for p in vocab.PRODUCTS])
    prices = np.array([p[3] for p in vocab.PRODUCTS])
    return ids, names, prices
