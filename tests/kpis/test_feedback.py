"""nps, nps_score_distribution, latest_comments, ces on the hand-written fixture.

NPS responses (survey = nps): Jan R1 A1 10, R2 A2 9, R3 A3 7, R4 A4 3, R5 (no account) 6 at
31 Jan 23:59:59; Feb R6 A1 8 at exactly 1 Feb 00:00, R7 A2 0.
CES responses (survey = ces): Jan support C1 6, C2 4, C3 7; Jan signup C4 2; Feb signup C5 5;
Feb (no touchpoint, no account) C6 3. X1 is a csat response and never counts.
"""

from __future__ import annotations

import math

import pytest

from kpis import Filters, ces, latest_comments, nps, nps_score_distribution, survey_scores
from kpis.core import wilson_interval
from kpis.feedback import nps_interval
from tests.kpis import fixtures
from tests.kpis.fixtures import column

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
NAN = math.nan


@pytest.fixture
def crm(db):
    return fixtures.load(db)


def test_monthly_nps_with_intervals(crm):
    frame = nps(crm, JAN_TO_APR, "month")
    # Jan: 5 responses, promoters 10, 9 -> 2; passive 7 -> 1; detractors 3, 6 -> 2; NPS = 100·0/5 = 0
    #   half width = 1.96·100·sqrt((0.4 + 0.4 − 0²)/5) = 195.996·0.4 = 78.3986
    # Feb: R6 8 (passive; 00:00 of 1 Feb belongs to Feb), R7 0 (detractor) -> NPS = 100·(0 − 1)/2 = −50
    #   half = 195.996·sqrt((0 + 0.5 − 0.25)/2) = 195.996·0.353553 = 69.2952 -> [−119.3 clipped to −100, 19.2952]
    # Mar, Apr: no responses -> NaN
    assert list(frame["responses"]) == [2 + 1 + 2, 2, 0, 0]
    assert list(frame["promoters"]) == [2, 0, 0, 0]
    assert list(frame["passives"]) == [1, 1, 0, 0]
    assert list(frame["detractors"]) == [2, 1, 0, 0]
    assert column(frame, "nps") == pytest.approx([0.0, -50.0, NAN, NAN], nan_ok=True)
    assert column(frame, "ci_low") == pytest.approx([-78.3986, -100.0, NAN, NAN], nan_ok=True, abs=1e-4)
    assert column(frame, "ci_high") == pytest.approx([78.3986, 19.2952, NAN, NAN], nan_ok=True, abs=1e-4)
    assert list(frame["low_sample"]) == [True, True, True, True]


def test_nps_interval_formula():
    # 30 promoters, 10 detractors, 60 passives of 100: NPS 20;
    # half = 1.959964·100·sqrt((0.3 + 0.1 − 0.04)/100) = 195.9964·0.06 = 11.7598
    low, high = nps_interval(30, 10, 100)
    assert (low, high) == pytest.approx((20 - 11.75978, 20 + 11.75978), abs=1e-4)
    assert all(math.isnan(v) for v in nps_interval(0, 0, 0))


def test_segment_filter_drops_responses_without_account(crm):
    # Enterprise + SMB = every account with a segment; R5 has no account -> excluded.
    # Jan: 10, 9, 7, 3 -> promoters 2, detractors 1 -> 100·(2 − 1)/4 = 25
    frame = nps(crm, JAN_TO_APR.replace(segments=["Enterprise", "SMB"]), "month")
    assert list(frame["responses"]) == [4, 2, 0, 0]
    assert column(frame, "nps")[:2] == pytest.approx([25.0, -50.0])
    # Enterprise only, Jan: R1 10, R2 9 -> NPS 100, variance (1 + 0 − 1)/2 = 0 -> [100, 100]
    enterprise = nps(crm, JAN_TO_APR.replace(segments=["Enterprise"]), "month")
    assert enterprise.loc[0, ["nps", "ci_low", "ci_high"]].tolist() == pytest.approx([100.0, 100.0, 100.0])


def test_empty_segment_nps_is_nan(crm):
    frame = nps(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert list(frame["responses"]) == [0, 0, 0, 0]
    assert frame[["nps", "ci_low", "ci_high"]].isna().all().all()


def test_quarterly_nps(crm):
    # Q1: 7 responses, promoters 2 (10, 9), passives 2 (7, 8), detractors 3 (3, 6, 0) -> 100·(2 − 3)/7
    frame = nps(crm, Filters("2024-01-01", "2025-01-01"), "quarter")
    assert list(frame["responses"]) == [7, 0, 0, 0]
    assert frame.loc[0, "nps"] == pytest.approx(-100 / 7)


def test_score_distribution(crm):
    # scores 10, 9, 7, 3, 6, 8, 0 once each; 1, 2, 4, 5 nobody
    frame = nps_score_distribution(crm, JAN_TO_APR)
    assert column(frame, "score") == [float(s) for s in range(11)]
    assert list(frame["responses"]) == [1, 0, 0, 1, 0, 0, 1, 1, 1, 1, 1]
    # only February: 8 and 0
    feb = nps_score_distribution(crm, Filters("2024-02-01", "2024-03-01"))
    assert list(feb["responses"]) == [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0]


def test_latest_comments(crm):
    # comments newest first: R7 (10 Feb), C4 (25 Jan), X1 csat (15 Jan), R4 (8 Jan), R1 (5 Jan);
    # R3's comment is blank and is not a comment
    frame = latest_comments(crm, JAN_TO_APR)
    assert list(frame["comment"]) == ["Broken again", "Signup was hard", "ok", "Too slow", "Great product"]
    assert list(frame.columns) == ["responded_at", "survey", "touchpoint", "score", "comment", "account_id"]
    assert list(latest_comments(crm, JAN_TO_APR, limit=2)["comment"]) == ["Broken again", "Signup was hard"]
    smb = latest_comments(crm, JAN_TO_APR.replace(segments=["SMB"]))
    assert list(smb["account_id"]) == ["A3", "A4"]


def test_ces_per_touchpoint(crm):
    frame = ces(crm, JAN_TO_APR, "month")
    # grid: 4 months × touchpoints seen {(not set), signup, support}
    assert len(frame) == 12
    by_key = frame.set_index([frame["period"].dt.month, "touchpoint"])
    jan_support = by_key.loc[(1, "support")]
    # Jan support: 6, 4, 7 -> mean 17/3 = 5.6667; sd² = (0.1111 + 2.7778 + 1.7778)/2 = 2.3333
    #   half = t(0.975, 2)·sqrt(2.3333/3) = 4.302653·0.881917 = 3.794582 -> [1.872085, 9.461249]
    #   easy (5–7): 6, 7 -> 2/3
    assert jan_support["responses"] == 3
    assert jan_support["ces_mean"] == pytest.approx(17 / 3)
    assert (jan_support["ci_low"], jan_support["ci_high"]) == pytest.approx((1.872085, 9.461249), abs=1e-5)
    assert jan_support["share_easy"] == pytest.approx(2 / 3)
    assert (jan_support["share_easy_ci_low"], jan_support["share_easy_ci_high"]) == pytest.approx(
        wilson_interval(2, 3)
    )
    # Jan signup: one response 2 -> mean 2, no interval below 2 responses, easy 0/1
    jan_signup = by_key.loc[(1, "signup")]
    assert (jan_signup["responses"], jan_signup["ces_mean"], jan_signup["share_easy"]) == (1, 2.0, 0.0)
    assert math.isnan(jan_signup["ci_low"])
    # Feb: signup 5 (easy), (not set) 3; support nobody -> 0 responses, NaN
    assert by_key.loc[(2, "signup"), "ces_mean"] == 5.0
    assert by_key.loc[(2, "(not set)"), "ces_mean"] == 3.0
    assert by_key.loc[(2, "support"), "responses"] == 0
    assert math.isnan(by_key.loc[(2, "support"), "ces_mean"])
    assert frame["low_sample"].all()


def test_ces_all_touchpoints(crm):
    frame = ces(crm, JAN_TO_APR, "month", by_touchpoint=False)
    assert list(frame["touchpoint"]) == ["all"] * 4
    # Jan: 6, 4, 7, 2 -> mean 4.75, sd² = (1.5625 + 0.5625 + 5.0625 + 7.5625)/3 = 4.916667,
    #   half = t(0.975, 3)·sqrt(4.916667/4) = 3.182446·1.108678 = 3.528309; easy 2/4
    # Feb: 5, 3 -> mean 4, easy 1/2
    assert list(frame["responses"]) == [4, 2, 0, 0]
    assert column(frame, "ces_mean") == pytest.approx([4.75, 4.0, NAN, NAN], nan_ok=True)
    assert column(frame, "ci_low")[0] == pytest.approx(4.75 - 3.528309, abs=1e-5)
    assert column(frame, "share_easy") == pytest.approx([0.5, 0.5, NAN, NAN], nan_ok=True)


def test_ces_segment_and_empty(crm):
    # SMB: C3 (A3, Jan support 7), C5 (A4, Feb signup 5); C6 has no account -> excluded
    frame = ces(crm, JAN_TO_APR.replace(segments=["SMB"]), "month")
    assert sorted(frame["touchpoint"].unique()) == ["signup", "support"]
    assert frame["responses"].sum() == 2
    empty = ces(crm, JAN_TO_APR.replace(segments=["Nobody"]), "month")
    assert len(empty) == 4
    assert list(empty["responses"]) == [0, 0, 0, 0]
    assert empty["ces_mean"].isna().all()


def test_survey_scores_gives_nps_and_ces_from_one_query(crm):
    # NPS as in test_monthly_nps_with_intervals: Jan 5 responses, NPS 0; Feb 2, NPS −50; Mar, Apr none.
    # CES as in test_ces_all_touchpoints: Jan 6, 4, 7, 2 -> 4.75, easy 2/4; Feb 5, 3 -> 4, easy 1/2.
    frame = survey_scores(crm, JAN_TO_APR, "month")
    assert list(frame["nps_responses"]) == [5, 2, 0, 0]
    assert column(frame, "nps") == pytest.approx([0.0, -50.0, NAN, NAN], nan_ok=True)
    assert list(frame["ces_responses"]) == [4, 2, 0, 0]
    assert column(frame, "ces_mean") == pytest.approx([4.75, 4.0, NAN, NAN], nan_ok=True)
    assert column(frame, "ces_ci_low")[0] == pytest.approx(4.75 - 3.528309, abs=1e-5)
    assert column(frame, "share_easy") == pytest.approx([0.5, 0.5, NAN, NAN], nan_ok=True)
    # and every number equals the separate KPIs', also under a segment filter
    for f in (JAN_TO_APR, JAN_TO_APR.replace(segments=["SMB"])):
        both, alone = survey_scores(crm, f, "month"), nps(crm, f, "month")
        for mine, theirs in [("nps_responses", "responses"), ("nps", "nps"), ("nps_ci_high", "ci_high")]:
            assert column(both, mine) == pytest.approx(column(alone, theirs), nan_ok=True)
        alone = ces(crm, f, "month", by_touchpoint=False)
        for mine, theirs in [
            ("ces_responses", "responses"),
            ("ces_mean", "ces_mean"),
            ("ces_ci_high", "ci_high"),
        ]:
            assert column(both, mine) == pytest.approx(column(alone, theirs), nan_ok=True)
        assert column(both, "share_easy_ci_low") == pytest.approx(
            column(alone, "share_easy_ci_low"), nan_ok=True
        )


def test_t_quantile_is_scipy_stats_value() -> None:
    """The CES interval's t quantile (scipy.special.stdtrit) is exactly scipy.stats.t.ppf's."""
    from scipy import stats

    from kpis.feedback import _t975

    for df in [*range(1, 400), 1_000, 12_345, 10**6]:
        assert _t975(df) == float(stats.t.ppf(0.975, df)), df
    assert _t975(1) == pytest.approx(12.706204736174698)
    assert _t975(29) == pytest.approx(2.045229642132703)
