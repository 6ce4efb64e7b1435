"""win_rate, sales_cycle, sales_cycle_distribution, stage_durations on the hand-written fixture.

Deals (account, owner, product, created -> closed, status):
  D1 A1 u1 P1  5 Jan -> 4 Feb won (30 d)     D2 A2 u2 P1 10 Jan -> 1 Mar 00:00 lost
  D3 A3 u1 P2  1 Feb -> 11 Feb 12:00 won (10.5 d)   D4 (no account) u2 P1 15 Feb -> 29 Feb won (14 d)
  D5 A4 u1 P1 20 Jan, open             D6 A1 u1 P2  5 Feb -> 25 Feb lost
  D7 A5 u2 P1  1 Dec 2023 -> 16 Jan won (46 d)      D8 A2 u2 P2 10 Mar, open
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from kpis import Filters, sales_cycle, sales_cycle_distribution, stage_durations, win_rate
from kpis.core import wilson_interval
from kpis.sales import km_quantiles
from tests.kpis import fixtures
from tests.kpis.fixtures import column

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
Q1 = Filters("2024-01-01", "2024-04-01")
NAN = math.nan


@pytest.fixture
def crm(db):
    return fixtures.load(db)


@pytest.fixture
def staged(crm, visits_path):
    """The fixture, stage_durations reading the base tables or the stored visits."""
    return visits_path(crm)


def test_monthly_win_rate(crm):
    frame = win_rate(crm, JAN_TO_APR, "month")
    # by closed_at: Jan D7 won; Feb D1, D3, D4 won, D6 lost; Mar D2 lost (closed exactly 1 Mar 00:00)
    assert list(frame["won"]) == [1, 3, 0, 0]
    assert list(frame["lost"]) == [0, 1, 1, 0]
    assert column(frame, "win_rate") == pytest.approx([1.0, 0.75, 0.0, NAN], nan_ok=True)
    # Wilson 3/4: centre (0.75 + 1.9208/4)/(1 + 3.8415/4) = 0.627528, half 1.96·sqrt(0.046875 + 0.060024)/1.96037
    #   = 0.326885 -> [0.300642, 0.954413]
    assert (frame.loc[1, "ci_low"], frame.loc[1, "ci_high"]) == pytest.approx((0.300642, 0.954413), abs=1e-6)
    assert (frame.loc[0, "ci_low"], frame.loc[0, "ci_high"]) == pytest.approx(wilson_interval(1, 1))
    assert math.isnan(frame.loc[3, "ci_low"])
    assert frame["low_sample"].all()
    # variant: open deals created in the period count as not won: Jan D5, Mar D8
    #   Jan 1/(1 + 0 + 1) = 0.5; Feb 3/4; Mar 0/(0 + 1 + 1) = 0; Apr nothing -> NaN
    assert list(frame["open_created"]) == [1, 0, 1, 0]
    assert column(frame, "win_rate_all_deals") == pytest.approx([0.5, 0.75, 0.0, NAN], nan_ok=True)


def test_win_rate_segment_excludes_deals_without_account(crm):
    # Enterprise = A1, A2: Jan D7 is A5 -> nothing; Feb D1 won, D6 lost (D4 has no account, D3 is SMB);
    # Mar D2 lost, D8 open created
    frame = win_rate(crm, JAN_TO_APR.replace(segments=["Enterprise"]), "month")
    assert list(frame["won"]) == [0, 1, 0, 0]
    assert list(frame["lost"]) == [0, 1, 1, 0]
    assert column(frame, "win_rate") == pytest.approx([NAN, 0.5, 0.0, NAN], nan_ok=True)
    assert column(frame, "win_rate_all_deals") == pytest.approx([NAN, 0.5, 0.0, NAN], nan_ok=True)


def test_win_rate_owner_and_product(crm):
    # u2: D7 won (Jan), D4 won (Feb; its own owner, no account needed), D2 lost (Mar)
    owner = win_rate(crm, JAN_TO_APR.replace(owners=["u2"]), "month")
    assert list(owner["won"]) == [1, 1, 0, 0]
    assert list(owner["lost"]) == [0, 0, 1, 0]
    # P2: D3 won, D6 lost (Feb) -> 1/2
    product = win_rate(crm, JAN_TO_APR.replace(products=["P2"]), "month")
    assert column(product, "win_rate") == pytest.approx([NAN, 0.5, NAN, NAN], nan_ok=True)


def test_quarterly_and_yearly_win_rate(crm):
    # Q1: won D7, D1, D3, D4 = 4; lost D6, D2 = 2 -> 4/6; open created D5, D8 -> 4/8
    frame = win_rate(crm, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(frame["won"]) == [4, 0, 0, 0]
    assert frame.loc[0, "win_rate"] == pytest.approx(4 / 6)
    assert frame.loc[0, "win_rate_all_deals"] == pytest.approx(0.5)
    years = win_rate(crm, Filters("2023-01-01", "2025-01-01"), "year")
    # 2023: nothing closed; D7 was created in 2023 but is won -> not open
    assert list(years["won"]) == [0, 4]
    assert math.isnan(years.loc[0, "win_rate"])


def test_sales_cycle(crm):
    # won deals closed in [1 Jan, 1 Apr): 10.5 (D3), 14 (D4), 30 (D1), 46 (D7)
    # mean = 100.5/4 = 25.125; median: position 1.5 -> 14 + 0.5·16 = 22; p90: position 2.7 -> 30 + 0.7·16 = 41.2
    frame = sales_cycle(crm, Q1)
    assert frame.loc[0, "deals"] == 4
    assert [frame.loc[0, c] for c in ("mean_days", "median_days", "p90_days")] == pytest.approx(
        [25.125, 22.0, 41.2]
    )


def test_sales_cycle_per_month(crm):
    # won deals by closed_at month: Jan D7 (46); Feb D1 (30), D3 (10.5), D4 (14); Mar none; Apr none
    # Feb: mean 54.5/3 = 18.1667; median 14; p90: position 1.8 -> 14 + 0.8·16 = 26.8
    frame = sales_cycle(crm, JAN_TO_APR, freq="month")
    assert list(frame.columns) == ["period", "deals", "mean_days", "median_days", "p90_days"]
    assert [str(p.date()) for p in frame["period"]] == [
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
        "2024-04-01",
    ]
    assert list(frame["deals"]) == [1, 3, 0, 0]
    assert [frame.loc[0, c] for c in ("mean_days", "median_days", "p90_days")] == pytest.approx([46.0] * 3)
    assert [frame.loc[1, c] for c in ("mean_days", "median_days", "p90_days")] == pytest.approx(
        [54.5 / 3, 14.0, 26.8]
    )
    assert frame.loc[2:, ["mean_days", "median_days", "p90_days"]].isna().all(axis=None)
    # a quarter holds all four (same numbers as test_sales_cycle); each row = the single-range call
    quarter = sales_cycle(crm, Q1, freq="quarter")
    assert quarter.loc[0, "deals"] == 4
    assert quarter.loc[0, "median_days"] == pytest.approx(sales_cycle(crm, Q1).loc[0, "median_days"])


def test_sales_cycle_segment_and_empty(crm):
    # Enterprise: D1 only (D4 has no account and is excluded) -> 30 everywhere
    frame = sales_cycle(crm, Q1.replace(segments=["Enterprise"]))
    assert frame.loc[0, "deals"] == 1
    assert [frame.loc[0, c] for c in ("mean_days", "median_days", "p90_days")] == pytest.approx([30.0] * 3)
    empty = sales_cycle(crm, Filters("2023-01-01", "2024-01-01"))
    assert empty.loc[0, "deals"] == 0
    assert empty[["mean_days", "median_days", "p90_days"]].isna().all(axis=None)


def test_sales_cycle_distribution(crm):
    # 4 equal bins over [0, 46]: width 11.5 -> 10.5 | 14 | 30 | 46 (last bin closed on the right)
    frame = sales_cycle_distribution(crm, Q1, bins=4)
    assert column(frame, "bin_start_days") == pytest.approx([0.0, 11.5, 23.0, 34.5])
    assert column(frame, "bin_end_days") == pytest.approx([11.5, 23.0, 34.5, 46.0])
    assert list(frame["deals"]) == [1, 1, 1, 1]
    # explicit edges: [0, 15) 10.5 and 14; [15, 30) none; [30, 45] 30 (on the edge); 46 is outside
    edges = sales_cycle_distribution(crm, Q1, bins=[0, 15, 30, 45])
    assert list(edges["deals"]) == [2, 0, 1]
    assert sales_cycle_distribution(crm, Filters("2023-01-01", "2024-01-01"), bins=4).empty
    with pytest.raises(ValueError):
        sales_cycle_distribution(crm, Q1, bins=[10, 5])


def test_stage_durations_with_censoring(staged):
    # deals created in [1 Jan, 1 Apr): D1..D6, D8 (D7 was created in 2023). Censoring at C = 1 Apr 2024.
    # Lead visits: D1 5, D2 5, D3 2, D4 5, D5 5, D6 20 (-> Closed Lost), D8 open since 10 Mar -> censored 22
    #   KM: t=2 n=7 d=1 S=6/7; t=5 n=6 d=4 S=6/7·2/6=2/7=0.286 -> median 5; t=20 n=2 d=1 S=1/7=0.143;
    #   t=22 censored -> S never <= 0.1 -> p90 NaN. Moved on: D1, D2, D3, D4, D5 of 7 -> 5/7
    # Qualified: D1 10, D3 2 and 2 (re-entered), D4 9, D5 16 -> 4 deals, 5 visits, all finished
    #   S: 2 -> 3/5, 9 -> 2/5 (median 9), 10 -> 1/5, 16 -> 0 (p90 16, d = n zero guard). Moved on 4/4
    # Proposal: D1 15, D2 46 (to 1 Mar), D3 2 and 2.5 (re-entered), D5 open since 10 Feb -> censored 51
    #   S: 2 -> 4/5, 2.5 -> 3/5, 15 -> 2/5 (median 15), 46 -> 1/5, 51 censored -> p90 NaN.
    #   Moved on: D1 won, D3 won; D2 lost, D5 open -> 2/4
    # Negotiation: only D7 (outside the window) -> no visits. Closed Won/Lost are not rows.
    frame = stage_durations(staged, Q1)
    assert list(frame["stage"]) == ["Lead", "Qualified", "Proposal", "Negotiation"]
    assert list(frame["position"]) == [1, 2, 3, 4]
    assert list(frame["deals"]) == [7, 4, 4, 0]
    assert list(frame["finished"]) == [6, 5, 4, 0]
    assert list(frame["censored"]) == [1, 0, 1, 0]
    assert column(frame, "median_days") == pytest.approx([5.0, 9.0, 15.0, NAN], nan_ok=True)
    assert column(frame, "p90_days") == pytest.approx([NAN, 16.0, NAN, NAN], nan_ok=True)
    assert column(frame, "conversion_to_next") == pytest.approx([5 / 7, 1.0, 0.5, NAN], nan_ok=True)


def test_censored_open_deal_moves_the_median_away_from_the_naive_one(staged):
    # Proposal: a naive median of the finished visits only (2, 2.5, 15, 46) would be (2.5 + 15)/2 = 8.75;
    # D5, still open after 51 days (censored), keeps the KM median at 15.
    frame = stage_durations(staged, Q1).set_index("stage")
    assert frame.loc["Proposal", "median_days"] == pytest.approx(15.0)
    assert frame.loc["Proposal", "median_days"] != pytest.approx(8.75)


def test_stage_durations_censoring_time_is_now_when_earlier(staged):
    # now = 1 Mar 2024 < end: C = 1 Mar. D8 entered Lead on 10 Mar (after C) -> not observed.
    # Lead: 2, 5, 5, 5, 5, 20, all finished: S 5/6, 1/6 (median 5), 0 at 20 (p90 20)
    # Proposal: D5 censored at 1 Mar -> 20 d; D2's visit finished on 1 Mar (46 d) stays finished:
    #   S: 2 -> 4/5, 2.5 -> 3/5, 15 -> 2/5 (median 15), 20 censored, 46 n=1 d=1 -> 0 (p90 46)
    frame = stage_durations(staged, Q1, now=dt.datetime(2024, 3, 1)).set_index("stage")
    assert frame.loc["Lead", ["deals", "finished", "censored"]].tolist() == [6, 6, 0]
    assert frame.loc["Lead", ["median_days", "p90_days"]].tolist() == pytest.approx([5.0, 20.0])
    assert frame.loc["Proposal", ["median_days", "p90_days"]].tolist() == pytest.approx([15.0, 46.0])
    assert frame.loc["Proposal", "censored"] == 1


def test_stage_durations_a_visit_ending_after_the_censoring_time_is_censored(staged):
    # now = 20 Feb 2024 < end: C = 20 Feb. Observed: visits entered before C. A visit that ended
    # by C is finished; one with no end or an end after C is censored at C (C − entered_at).
    # Lead: D1 5, D2 5, D3 2, D4 15 Feb -> 20 Feb = 5 (ends exactly at C: finished), D5 5;
    #   D6 5 Feb -> 25 Feb (Closed Lost, after C) -> censored at 15. D8 (10 Mar) not observed.
    #   KM: t=2 n=6 d=1 S=5/6; t=5 n=5 d=4 S=1/6 -> median 5; 15 censored -> p90 NaN.
    #   (Counted finished at its full 20 days, D6 gave S(20) = 0 -> p90 20.)
    # Qualified: D1 10, D3 2 and 2, D5 16; D4 entered on 20 Feb = C -> not observed.
    #   KM: t=2 n=4 d=2 S=0.5 -> median 2; t=10 S=0.25; t=16 S=0 -> p90 16.
    #   (D4's 9 days after C counted as finished: 5 visits, median 9.)
    # Proposal: D1 15, D3 2 and 2.5 finished; D2 15 Jan -> 1 Mar (after C) censored at 31 + 5 = 36;
    #   D5 open since 10 Feb censored at 10.
    #   KM: t=2 n=5 S=0.8; t=2.5 n=4 S=0.6; 10 censored; t=15 n=2 d=1 S=0.3 -> median 15;
    #   36 censored -> p90 NaN. (D2 finished at 46 gave p90 46.)
    # Moved on (the deals' whole history): Lead D1, D2, D3, D4, D5 of 6 (D6 lost);
    #   Qualified D1, D3, D5 of 3; Proposal D1, D3 of 4.
    frame = stage_durations(staged, Q1, now=dt.datetime(2024, 2, 20)).set_index("stage")
    assert frame["deals"].tolist() == [6, 3, 4, 0]
    assert frame["finished"].tolist() == [5, 4, 3, 0]
    assert frame["censored"].tolist() == [1, 0, 2, 0]
    assert frame["median_days"].tolist() == pytest.approx([5.0, 2.0, 15.0, NAN], nan_ok=True)
    assert frame["p90_days"].tolist() == pytest.approx([NAN, 16.0, NAN, NAN], nan_ok=True)
    assert frame["conversion_to_next"].tolist() == pytest.approx([5 / 6, 1.0, 0.5, NAN], nan_ok=True)


def test_stage_durations_segment_median_exactly_half(staged):
    # Enterprise = A1, A2: D1, D2, D6, D8 (D4 has no account -> excluded)
    # Lead: 5, 5, 20, 22 censored: t=5 n=4 d=2 -> S = 0.5 exactly -> median 5; t=20 -> 0.25; p90 NaN
    # Qualified: D1 10 -> 10, 10. Proposal: D1 15, D2 46 -> S 0.5 at 15 (median), 0 at 46 (p90)
    # Lead moved on: D1, D2 of D1, D2, D6, D8 -> 0.5
    frame = stage_durations(staged, Q1.replace(segments=["Enterprise"])).set_index("stage")
    assert frame["deals"].tolist() == [4, 1, 2, 0]
    assert frame["median_days"].tolist() == pytest.approx([5.0, 10.0, 15.0, NAN], nan_ok=True)
    assert frame["p90_days"].tolist() == pytest.approx([NAN, 10.0, 46.0, NAN], nan_ok=True)
    assert frame.loc["Lead", "conversion_to_next"] == pytest.approx(0.5)


def test_stage_durations_empty_selection(staged):
    frame = stage_durations(staged, Q1.replace(segments=["Nobody"]))
    assert list(frame["deals"]) == [0, 0, 0, 0]
    assert frame[["median_days", "p90_days", "conversion_to_next"]].isna().all(axis=None)


# A stage missing from pipeline_stages ("Discovery": no position) entered at the same instant
# as a known stage. Rule: at equal entered_at, a visit to an unknown stage comes BEFORE the
# visits to known stages (NULL position first), on every database.
#   E1 won:  Lead 5 Jan | Discovery 5 Jan | Qualified 15 Jan | Closed Won 25 Jan (closed 25 Jan)
#   E2 open: Lead 1 Feb | Qualified 11 Feb | Discovery 11 Feb
UNKNOWN_STAGE_DEALS = [
    fixtures._deal("E1", "A1", "u1", "P1", 100.0, dt.datetime(2024, 1, 5), dt.datetime(2024, 1, 25), "won"),
    fixtures._deal("E2", "A1", "u1", "P1", 100.0, dt.datetime(2024, 2, 1), None, "open"),
]
UNKNOWN_STAGE_HISTORY = [
    dict(deal_id=deal, stage=stage, entered_at=dt.datetime(2024, month, day))
    for deal, stage, month, day in [
        ("E1", "Lead", 1, 5), ("E1", "Discovery", 1, 5), ("E1", "Qualified", 1, 15), ("E1", "Closed Won", 1, 25),
        ("E2", "Lead", 2, 1), ("E2", "Qualified", 2, 11), ("E2", "Discovery", 2, 11),
    ]
]  # fmt: skip


def test_stage_durations_unknown_stage_at_the_same_instant_sorts_first(db, visits_path):
    fixtures.load(db, only=("accounts", "users", "products", "pipeline_stages"))
    fixtures.insert(db, "deals", UNKNOWN_STAGE_DEALS)
    fixtures.insert(db, "deal_stage_history", UNKNOWN_STAGE_HISTORY)
    visits_path(db)
    # Order per deal (Discovery first at a tie): E1 Discovery, Lead (5 Jan), Qualified, Closed Won;
    # E2 Lead, Discovery, Qualified (11 Feb). C = min(1 Apr, now) = 1 Apr 2024.
    # Lead: E1 5 Jan -> 15 Jan = 10 d; E2 1 Feb -> 11 Feb = 10 d: S(10) = 0 -> median = p90 = 10.
    #   (Discovery last at the tie would end E1's Lead at 5 Jan: 0 d.)
    # Qualified: E1 15 Jan -> 25 Jan (closed) = 10 d; E2 open since 11 Feb -> censored at 1 Apr
    #   (19 + 31 = 50 d): t=10 n=2 d=1 S=0.5 -> median 10, p90 NaN.
    #   (Discovery last would end E2's Qualified at 11 Feb: finished, 0 d.)
    # Moved on: Lead E1 (won), E2 (Qualified) -> 2/2; Qualified E1 (won), E2 no -> 1/2.
    frame = stage_durations(db, Q1).set_index("stage")
    assert frame["deals"].tolist() == [2, 2, 0, 0]
    assert frame["finished"].tolist() == [2, 1, 0, 0]
    assert frame["censored"].tolist() == [0, 1, 0, 0]
    assert frame["median_days"].tolist() == pytest.approx([10.0, 10.0, NAN, NAN], nan_ok=True)
    assert frame["p90_days"].tolist() == pytest.approx([10.0, NAN, NAN, NAN], nan_ok=True)
    assert frame["conversion_to_next"].tolist() == pytest.approx([1.0, 0.5, NAN, NAN], nan_ok=True)


# kpis.sales.km_quantiles: the Kaplan–Meier of the stored visits read on DuckDB, on sorted arrays.
@pytest.mark.parametrize(
    ("finished", "censored", "qs", "expected"),
    [
        # finished 1, 2, 3, 5, 6; censored 2, 4 (n = 7). S(1) = 6/7; S(2): 6 at risk (the visit
        # censored at 2 still is), 1 ends -> 5/7 = 0.714; S(3): 4 at risk -> 5/7·3/4 = 0.536;
        # S(5): 2 at risk -> 0.268 (median 5); S(6) = 0 (p90 6). S ≤ 0.75 first at 2, ≤ 0.6 at 3.
        ([1, 2, 3, 5, 6], [2, 4], (0.5, 0.1, 0.75, 0.6), [5.0, 6.0, 2.0, 3.0]),
        # no censoring: S(2) = 0.5 exactly -> the median is 2 (the tolerance); S(3) = 0.25, S(4) = 0
        ([4, 1, 3, 2], [], (0.5, 0.1), [2.0, 4.0]),
        # S(1) = 3/4, then only censored visits: never at 0.5 -> NaN
        ([1], [5, 5, 5], (0.5, 0.1), [NAN, NAN]),
        # a finished and a censored visit of one duration: both at risk at 2 -> S(2) = 2/3,
        # then 1 at risk at 3 -> 0: median 3
        ([2, 3], [2], (0.5,), [3.0]),
        # censored first, twice: at risk at 4 are 2 -> S(4) = 1/2 -> median 4; S(7) = 0
        ([4, 7], [1, 1, 3], (0.5, 0.1), [4.0, 7.0]),
        ([], [], (0.5, 0.1), [NAN, NAN]),
    ],
)
def test_km_quantiles_on_sorted_durations(finished, censored, qs, expected):
    durations = np.sort(np.array(finished + censored, dtype=np.float64))
    got = km_quantiles(durations, np.array(censored, dtype=np.float64), qs)
    assert got == pytest.approx(expected, nan_ok=True)
