"""Complaint spikes: defect / complaint tickets per product per week against that product's
own baseline, so that production hears about a defective product early.

The database counts tickets per (product, ISO week); only that small aggregate comes back.
The baseline (a rolling mean over the zero-filled weekly series) and the Poisson tail are
computed on it in pandas / scipy.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from kpis.core import connection, naive_timestamps
from kpis.filters import Filters, scope

Bind = sa.Connection | sa.Engine

#: Ticket categories that count as complaints about a product.
COMPLAINT_CATEGORIES: tuple[str, ...] = ("defect", "complaint")
#: Weeks in the baseline window before the week tested.
BASELINE_WEEKS = 12
#: The Poisson rate never goes below this (a product with no history is not flagged by one ticket).
MIN_RATE = 0.5
#: A week is a spike when P(X ≥ observed | λ) is below this ...
SPIKE_P_VALUE = 0.01
#: ... and at least this many tickets were observed.
MIN_OBSERVED = 3

COLUMNS = ["product_id", "product_name", "week", "observed", "expected", "p_value", "is_spike"]


def _weeks(f: Filters) -> list[pd.Timestamp]:
    """Mondays in ``[start, end)``."""
    first = pd.Timestamp(f.start) + pd.Timedelta(days=(7 - f.start.weekday()) % 7)
    return list(pd.date_range(first, pd.Timestamp(f.end) - pd.Timedelta(microseconds=1), freq="7D"))


def _weekly(conn: Bind, f: Filters, product_id: str | None) -> pd.DataFrame:
    weeks = _weeks(f)
    if not weeks:
        return pd.DataFrame(columns=COLUMNS)
    window_start = weeks[0] - pd.Timedelta(weeks=BASELINE_WEEKS)
    tickets, products = schema.tickets, schema.products
    conditions = [
        tickets.c.category.in_(COMPLAINT_CATEGORIES),
        tickets.c.product_id.is_not(None),
        tickets.c.opened_at >= window_start.to_pydatetime(),
        tickets.c.opened_at < f.end_ts,
        *scope(f, tickets),
    ]
    if product_id is not None:
        conditions.append(tickets.c.product_id == product_id)
    with connection(conn) as c:
        week = period_start(c.dialect, tickets.c.opened_at, "week").label("week")
        counts = c.execute(
            sa.select(tickets.c.product_id, week, sa.func.count().label("observed"))
            .where(*conditions)
            .group_by(tickets.c.product_id, week)
        ).fetchall()
        ids = sorted({row[0] for row in counts})
        names = dict(
            c.execute(sa.select(products.c.product_id, products.c.name).where(products.c.product_id.in_(ids))).all()
        ) if ids else {}  # fmt: skip
    if not counts:
        return pd.DataFrame(columns=COLUMNS)
    frame = pd.DataFrame(counts, columns=["product_id", "week", "observed"])
    frame["week"] = naive_timestamps(frame["week"])
    all_weeks = pd.date_range(window_start, weeks[-1], freq="7D")
    parts = []
    for pid in ids:
        series = (
            frame[frame["product_id"] == pid]
            .set_index("week")["observed"]
            .reindex(all_weeks, fill_value=0)
            .astype(int)
        )
        baseline = series.shift(1).rolling(BASELINE_WEEKS).mean()
        part = pd.DataFrame(
            {"week": all_weeks, "observed": series.to_numpy(), "expected": baseline.to_numpy()}
        )
        part = part[part["week"] >= weeks[0]]
        part.insert(0, "product_name", names.get(pid))
        part.insert(0, "product_id", pid)
        parts.append(part)
    out = pd.concat(parts).reset_index(drop=True)
    rate = out["expected"].clip(lower=MIN_RATE)
    # imported here: scipy.stats costs ~0.5 s, which `import kpis` (every CLI command) need not pay
    from scipy.stats import poisson

    out["p_value"] = poisson.sf(out["observed"] - 1, rate)
    out["is_spike"] = (out["p_value"] < SPIKE_P_VALUE) & (out["observed"] >= MIN_OBSERVED)
    out["week"] = out["week"].astype("datetime64[ns]")
    return out[COLUMNS].astype({"observed": int, "expected": float, "p_value": float, "is_spike": bool})


def complaint_spikes(conn: Bind, f: Filters) -> pd.DataFrame:
    """Weekly defect / complaint tickets per product, flagged against the product's own baseline.

    observed = defect or complaint tickets per product and ISO week (Monday start) by
    opened_at; expected = the product's mean weekly count over the previous 12 weeks
    (weeks without tickets count as 0); is_spike = P(X ≥ observed) < 0.01 for X ~
    Poisson(max(expected, 0.5)) and observed ≥ 3.

    * weeks start Monday 00:00 UTC; the week itself is not in its baseline; zero weeks
      are filled in, including weeks before the product's first ticket;
    * p_value = P(X ≥ observed) for X ~ Poisson(λ = max(expected, 0.5)) (the floor keeps
      a product without history from being flagged by a single ticket).

    Rows: every product with such a ticket in the window, for every week whose Monday lies
    in ``[start, end)`` (zero weeks included), tickets counted up to ``end``; segment /
    owner / product filters narrow the tickets (tickets without an account count only while
    no account-level filter is set). Columns: product_id, product_name, week, observed,
    expected, p_value, is_spike.
    """
    return _weekly(conn, f, None)


def complaint_weekly(conn: Bind, f: Filters, product_id: str) -> pd.DataFrame:
    """The evidence behind :func:`complaint_spikes` for one product: its weekly series in
    ``[start, end)`` with observed, expected (the 12-week baseline), p_value and is_spike —
    same rule, same columns (empty when the product has no such tickets)."""
    return _weekly(conn, f, product_id)
