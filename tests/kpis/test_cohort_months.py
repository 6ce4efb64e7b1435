"""kpis.revenue.cohort_retention and kpis.churn.churn_by at the edges of their month arithmetic.

Activity is counted on integer month indexes (``crm_data.dialects.month_ceiling_index``)
instead of a range join with a grid of month starts, and an account's subscriptions are
united by a bit mask per 60 months (DuckDB, PostgreSQL) or a window (SQLite). Every
expected number below is worked out by hand from the rows (comments show it); each test
runs on DuckDB, SQLite and PostgreSQL through the ``db`` fixture.

Active at the first instant t of a month = a subscription with started_at ≤ t < ended_at.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import month_ceiling_index, month_index
from kpis.churn import churn_by
from kpis.core import period_starts
from kpis.filters import Filters
from kpis.revenue import _cohort_counts, _cohort_counts_windowed, cohort_retention
from tests.kpis.more_fixtures import BASE, load, ts

ACCOUNT = dict(BASE["accounts"][0])
#: A..F SMB, G..M Enterprise, J without a segment (churn_by's "(not set)")
SEGMENTS = {**dict.fromkeys("ABCDEF", "SMB"), **dict.fromkeys("GHIKM", "Enterprise"), "J": None}
ACCOUNTS = [
    {**ACCOUNT, "account_id": name, "name": name, "segment": SEGMENTS[name]} for name in "ABCDEFGHIJKM"
]


def _sub(sid: str, account: str, started: str, ended: str | None) -> dict:
    return {
        "subscription_id": sid,
        "account_id": account,
        "product_id": "P1",
        "mrr": 10.0,
        "started_at": ts(started),
        "ended_at": ts(ended) if ended else None,
    }


SUBSCRIPTIONS = [
    # Dec 2023 cohort: G. G1 ends exactly on Jan 1 (not active then); G2 starts exactly
    # on Jan 1 (active then) and ends exactly on Feb 1 (not active then).
    _sub("G1", "G", "2023-12-31 23:00:00", "2024-01-01 00:00:00"),
    _sub("G2", "G", "2024-01-01 00:00:00", "2024-02-01 00:00:00"),
    # Jan 2024 cohort: A, B, C, D, E, F.
    # A starts on the cohort month's first instant, ends exactly on Mar 1: Feb only.
    _sub("A1", "A", "2024-01-01 00:00:00", "2024-03-01 00:00:00"),
    # B: open-ended from Jan 15: Feb .. Jun.
    _sub("B1", "B", "2024-01-15 00:00:00", None),
    # C: the last microsecond of January up to Feb 1 exactly: never active at a month start.
    _sub("C1", "C", "2024-01-31 23:59:59.999999", "2024-02-01 00:00:00"),
    # D: ended before it started: never active (its start still makes it a Jan customer).
    _sub("D1", "D", "2024-01-10 00:00:00", "2024-01-05 00:00:00"),
    # E: E2 inside E1, E3 overlapping E1's end: Feb .. Jun, each month counted once.
    _sub("E1", "E", "2024-01-20 00:00:00", "2024-05-10 00:00:00"),
    _sub("E2", "E", "2024-02-10 00:00:00", "2024-03-20 00:00:00"),
    _sub("E3", "E", "2024-04-15 00:00:00", "2024-06-20 00:00:00"),
    # F: Feb (F1), a gap in Mar, Apr (F2 starts exactly on Apr 1, ends exactly on May 1).
    _sub("F1", "F", "2024-01-05 00:00:00", "2024-02-15 00:00:00"),
    _sub("F2", "F", "2024-04-01 00:00:00", "2024-05-01 00:00:00"),
    # Feb 2024 cohort: H, I. H1 starts on Feb 1's first instant and ends before Mar 1;
    # H2 ended (Feb 5) before it started (Mar 10), across a month start: never active.
    _sub("H1", "H", "2024-02-01 00:00:00", "2024-02-20 00:00:00"),
    _sub("H2", "H", "2024-03-10 00:00:00", "2024-02-05 00:00:00"),
    # I: from Feb 29 noon, open-ended: Mar .. Jun.
    _sub("I1", "I", "2024-02-29 12:00:00", None),
    # J: first start in Nov 2023, outside the cohorts: its January start does not count.
    _sub("J1", "J", "2023-11-15 00:00:00", None),
    _sub("J2", "J", "2024-01-10 00:00:00", None),
    # Jan 2019 cohort (the long range): K from Jan 15 2019 to exactly Mar 1 2024, with K2
    # inside it; M only up to exactly Mar 1 2019.
    _sub("K1", "K", "2019-01-15 00:00:00", "2024-03-01 00:00:00"),
    _sub("K2", "K", "2023-06-10 00:00:00", "2023-08-01 00:00:00"),
    _sub("M1", "M", "2019-01-31 00:00:00", "2019-03-01 00:00:00"),
]
# The data end: min(as_of, latest start or end = E3's 2024-06-20) = as_of = Jun 15 2024,
# so months run up to Jun 1 2024.
AS_OF = ts("2024-06-15 00:00:00")


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, {**BASE, "accounts": ACCOUNTS}, {"subscriptions": SUBSCRIPTIONS})
    return db


def _retained(out: pd.DataFrame, cohort: str) -> list[int]:
    rows = out[out["cohort"] == pd.Timestamp(cohort)].sort_values("months_since_start")
    assert list(rows["months_since_start"]) == list(range(len(rows)))
    return [int(n) for n in rows["retained"]]


def test_month_edges(engine: sa.Engine) -> None:
    out = cohort_retention(engine, Filters("2023-12-01", "2024-03-01"), as_of=AS_OF)
    sizes = out.groupby("cohort")["customers"].first()
    assert sizes.to_dict() == {
        pd.Timestamp("2023-12-01"): 1,
        pd.Timestamp("2024-01-01"): 6,
        pd.Timestamp("2024-02-01"): 2,
    }
    # Dec: k0 G; Jan 1 G2 (starts then; G1 ends then); Feb 1 G2 ended exactly then -> 0
    assert _retained(out, "2023-12-01") == [1, 1, 0, 0, 0, 0, 0]
    # Jan: Feb 1 A B E F; Mar 1 B E (A ends exactly then, F in its gap); Apr 1 B E F
    # (F2 starts exactly then); May 1 B E (F2 ends exactly then); Jun 1 B E
    assert _retained(out, "2024-01-01") == [6, 4, 2, 3, 2, 2]
    # Feb: Mar 1 .. Jun 1 I only (H1 ended Feb 20, H2 never active)
    assert _retained(out, "2024-02-01") == [2, 1, 1, 1, 1]
    jan = out[out["cohort"] == pd.Timestamp("2024-01-01")]
    assert list(jan["retention_rate"]) == pytest.approx([1, 4 / 6, 2 / 6, 3 / 6, 2 / 6, 2 / 6])


def test_more_than_sixty_months(engine: sa.Engine) -> None:
    # Jan 2019 .. Jun 2024 = months k 0..65 of the Jan 2019 cohort {K, M}: Feb 1 2019 K, M;
    # Mar 1 2019 .. Feb 1 2024 (k 2..61; k 60, 61 in the second 60-month mask) K alone,
    # counted once where K2 overlaps; Mar 1 2024 on (k 62..65) nobody: K1 ended exactly then
    out = cohort_retention(engine, Filters("2019-01-01", "2019-02-01"), as_of=AS_OF)
    assert _retained(out, "2019-01-01") == [2, 2] + [1] * 60 + [0] * 4


def test_data_end_before_the_cohorts(engine: sa.Engine) -> None:
    # as_of Dec 15 2023: no month start of the cohorts' after their own -> k = 0 only
    out = cohort_retention(engine, Filters("2024-01-01", "2024-03-01"), as_of=ts("2023-12-15"))
    assert out[["months_since_start", "customers", "retained"]].values.tolist() == [[0, 6, 6], [0, 2, 2]]


def test_bit_masks_and_window_agree(engine: sa.Engine) -> None:
    # both ways of uniting an account's months (bit masks where the database has bit_or,
    # the window elsewhere) give the same counts on every database
    for start, end in (("2023-12-01", "2024-03-01"), ("2019-01-01", "2019-02-01")):
        f = Filters(start, end)
        cohorts = period_starts(f.start, f.end, "month")
        base = cohorts[0].year * 12 + cohorts[0].month - 1
        last_month = pd.Timestamp("2024-06-01")
        with engine.connect() as c:
            expected = _cohort_counts(c, f, cohorts, last_month)
            windowed = _cohort_counts_windowed(c, f, cohorts, base, last_month.year * 12 + 5 - base)
        assert windowed == expected


@pytest.mark.parametrize(
    ("stamp", "index", "ceiling"),
    [
        ("2024-01-01 00:00:00", 2024 * 12, 2024 * 12),  # a month's first instant: its own month
        ("2024-01-01 00:00:00.000001", 2024 * 12, 2024 * 12 + 1),
        ("2023-12-31 23:59:59.999999", 2023 * 12 + 11, 2024 * 12),  # across the year
        ("2024-02-29 12:00:00", 2024 * 12 + 1, 2024 * 12 + 2),
    ],
)
def test_month_indexes(db: sa.Engine, stamp: str, index: int, ceiling: int) -> None:
    load(db, {**BASE, "accounts": ACCOUNTS}, {"subscriptions": [_sub("X", "A", stamp, None)]})
    started = schema.subscriptions.c.started_at
    with db.connect() as c:
        got = c.execute(
            sa.select(month_index(db.dialect, started), month_ceiling_index(db.dialect, started))
        ).one()
    assert tuple(got) == (index, ceiling)


@pytest.mark.parametrize("products", [(), ("P1",)])  # the roll-up where it applies; the base tables
def test_churn_by_month_edges(engine: sa.Engine, products: tuple[str, ...]) -> None:
    # active at Jan 1 / Feb 1 / Mar 1 / Apr 1 2024 (the three months' starts and the end):
    # G  yes no  no  no   (G1 ends exactly Jan 1, G2 starts exactly Jan 1, ends exactly Feb 1)
    # A  yes yes no  no   (starts exactly Jan 1, ends exactly Mar 1)
    # B  no  yes yes yes;  C, D never (C ends exactly Feb 1, D ended before it started)
    # E  no  yes yes yes  (overlapping E1, E2, E3: once);  F no yes no yes (F2 from exactly Apr 1)
    # H  no  yes no  no   (H2 ended before it started);  I no no yes yes
    # J  yes yes yes yes; K yes yes no no (K1 ends exactly Mar 1); M never
    # SMB (A-F): Jan A (kept); Feb A B E F, A F churned; Mar B E -> 7 at start, 2 churned
    # Enterprise (G H I K M): Jan G K, G churned; Feb H K, both churned; Mar I -> 5, 3
    # (not set) (J): one each month, never churned -> 3, 0
    f = Filters("2024-01-01", "2024-04-01", products=products)
    out = churn_by(engine, f, "segment")
    assert out[["group", "customers_at_start", "churned"]].values.tolist() == [
        ["(not set)", 3, 0],
        ["Enterprise", 5, 3],
        ["SMB", 7, 2],
    ]
    owners = churn_by(engine, f, "owner_id")  # not a roll-up dimension: the base tables
    assert owners[["group", "customers_at_start", "churned"]].values.tolist() == [["U1", 15, 5]]


def test_month_masks_of_the_matching_subscriptions_only(engine: sa.Engine) -> None:
    """``month_masks(only=…)`` ORs the bits of the subscriptions matching ``only`` alone
    (NULL for an account with none), as cohort_retention asks for the subscriptions
    started in its range. Months 0..5 = Jan .. Jun 2024, only = started on or after
    Jan 10: A (A1 from Jan 1) none → NULL, without ``only`` Jan, Feb = 0b11; B from Jan 15,
    open: Feb .. Jun = 0b111110; E (E1 Feb .. May, E2 Mar, E3 May, Jun): 0b111110; F: F1
    (from Jan 5: Feb) left out, F2 Apr = 0b1000, without ``only`` 0b1010. SQLite: None."""
    from kpis.month_masks import month_masks

    sub = schema.subscriptions
    base = 2024 * 12
    started = sub.c.started_at >= sa.literal(ts("2024-01-10 00:00:00"), sa.DateTime())
    only = month_masks(engine.dialect, base, 5, only=started)
    every = month_masks(engine.dialect, base, 5)
    if engine.dialect.name == "sqlite":
        assert only is None and every is None
        return
    statement = (
        sa.select(sub.c.account_id, only[0], every[0])
        .where(sub.c.account_id.in_(["A", "B", "E", "F"]))
        .group_by(sub.c.account_id)
        .order_by(sub.c.account_id)
    )
    with engine.connect() as c:
        rows = [tuple(r) for r in c.execute(statement)]
    assert rows == [
        ("A", None, 0b11),
        ("B", 0b111110, 0b111110),
        ("E", 0b111110, 0b111110),
        ("F", 0b1000, 0b1010),
    ]
