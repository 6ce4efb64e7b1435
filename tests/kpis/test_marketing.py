"""kpis.marketing: campaign funnel, web metrics, social metrics (DuckDB, SQLite, PostgreSQL)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import sqlalchemy as sa

from kpis.filters import Filters
from kpis.marketing import campaign_funnel, social_metrics, web_metrics
from tests.kpis.more_fixtures import BASE, assert_databases_agree, day, load, ts

CAMPAIGNS = [
    {"campaign_id": "C1", "name": "Spring mail", "channel": "email", "objective": "acquisition",
     "started_on": day("2024-01-01"), "cost": 1000.0},  # first day of the range: in
    {"campaign_id": "C2", "name": "Retention push", "channel": "email", "objective": "retention",
     "started_on": day("2024-03-31"), "cost": 500.0},
    {"campaign_id": "C3", "name": "Old", "channel": "email", "objective": "acquisition",
     "started_on": day("2023-12-31"), "cost": 100.0},  # before the range
    {"campaign_id": "C4", "name": "No cost", "channel": "social", "objective": "acquisition",
     "started_on": day("2024-02-10"), "cost": None},
]  # fmt: skip


def response(campaign, account, sent=None, opened=None, clicked=None, converted=None):
    stamp = {
        k: ts(v) if v else None
        for k, v in {
            "sent_at": sent,
            "opened_at": opened,
            "clicked_at": clicked,
            "converted_at": converted,
        }.items()
    }
    return {"campaign_id": campaign, "account_id": account, **stamp}  # fmt: skip


RESPONSES = [
    response("C1", "A1", "2024-01-01", "2024-01-02", "2024-01-02", "2024-01-05"),
    response("C1", "A2", "2024-01-01", "2024-01-03", "2024-01-03"),
    response("C1", "A3", "2024-01-01", "2024-01-04"),
    response("C1", None, "2024-01-01", "2024-01-02", "2024-01-02", "2024-01-09"),  # no account
    response("C2", "A1", "2024-03-31"),
    response("C2", "A4", "2024-03-31", "2024-04-02"),
    response("C3", "A1", "2023-12-31", None, None, "2024-01-02"),
]


def traffic(date, source, sessions, pageviews, impressions, clicks, signups):
    return {"date": day(date), "source": source, "sessions": sessions, "pageviews": pageviews,
            "impressions": impressions, "clicks": clicks, "signups": signups}  # fmt: skip


WEB = [
    traffic("2023-12-31", "google", 999, 999, 999, 999, 999),  # before the range
    traffic("2024-01-01", "google", 100, 300, 1000, 50, 5),
    traffic("2024-01-31", "direct", 50, 100, 0, 0, 2),
    traffic("2024-02-15", "google", 200, 500, 3000, 60, 4),
    traffic("2024-02-15", "direct", 0, 0, None, None, None),  # NULL counts as 0
    traffic("2024-04-01", "google", 10, 20, 100, 1, 0),  # Q2
]


def social(date, platform, followers, impressions, engagements, mentions):
    return {"date": day(date), "platform": platform, "followers": followers, "impressions": impressions,
            "engagements": engagements, "mentions": mentions}  # fmt: skip


SOCIAL = [
    social("2024-01-01", "linkedin", 100, 1000, 50, 2),
    social("2024-01-31", "linkedin", 120, 500, 25, 1),
    social("2024-02-10", "linkedin", 130, 0, 0, 0),
    social("2024-02-29", "linkedin", None, 100, 10, 0),  # last day of Feb without a follower count
    social("2024-01-15", "x", 50, 200, 20, 5),
    social("2024-04-01", "x", 70, 0, 0, 0),  # Q2
]

Q1 = Filters("2024-01-01", "2024-04-01")


@pytest.fixture
def engine(db: sa.Engine) -> sa.Engine:
    load(db, BASE, {"campaigns": CAMPAIGNS, "campaign_responses": RESPONSES, "web_traffic": WEB,
                    "social_media": SOCIAL})  # fmt: skip
    return db


def test_campaign_funnel(engine: sa.Engine) -> None:
    out = campaign_funnel(engine, Q1)
    assert list(out.columns) == [
        "campaign_id", "name", "channel", "objective", "cost", "campaign_cost", "share_of_sends", "sent",
        "opened", "clicked", "converted", "open_rate", "click_rate", "conversion_rate", "cost_per_conversion",
    ]  # fmt: skip
    # no filter: every campaign's whole cost (share 1)
    assert out["share_of_sends"].tolist() == [1.0, 1.0, 1.0]
    assert out["cost"].iloc[[0, 2]].tolist() == out["campaign_cost"].iloc[[0, 2]].tolist() == [1000.0, 500.0]
    # started_on in Q1, by started_on: C1 (Jan 1), C4 (Feb 10), C2 (Mar 31); C3 (Dec 31) left out
    assert out["campaign_id"].tolist() == ["C1", "C4", "C2"]
    c1, c4, c2 = (out.iloc[i] for i in range(3))
    # C1: sent 4, opened 4, clicked 3, converted 2 -> 1.0, 0.75, 0.5; cost 1000 / 2 = 500
    assert [c1.sent, c1.opened, c1.clicked, c1.converted] == [4, 4, 3, 2]
    assert [c1.open_rate, c1.click_rate, c1.conversion_rate] == pytest.approx([1.0, 0.75, 0.5])
    assert c1.cost_per_conversion == pytest.approx(500.0)
    # C2: sent 2, opened 1, nothing converted -> cost per conversion NaN (not a division error)
    assert [c2.sent, c2.opened, c2.clicked, c2.converted] == [2, 1, 0, 0]
    assert c2.open_rate == pytest.approx(0.5) and math.isnan(c2.cost_per_conversion)
    # C4: no responses, no cost -> zeros and NaN rates
    assert c4.sent == 0 and math.isnan(c4.open_rate) and math.isnan(c4.cost_per_conversion)


def test_campaign_funnel_segment_filter(engine: sa.Engine) -> None:
    smb = campaign_funnel(engine, Q1.replace(segments=["SMB"])).set_index("campaign_id")
    # SMB = A1, A3: C1 keeps A1 (converted) and A3 (opened); the account-less response drops out
    # -> sent 2, opened 2, clicked 1, converted 1
    assert smb.loc["C1", ["sent", "opened", "clicked", "converted"]].tolist() == [2, 2, 1, 1]
    # the cost follows the sends: C1 sent 4 in all (A1, A2, A3, no account), 2 to SMB
    # -> share 2/4, cost 1000 × 0.5 = 500, per conversion 500 / 1 = 500 (not the whole 1000)
    assert smb.loc["C1", ["campaign_cost", "share_of_sends", "cost"]].tolist() == pytest.approx(
        [1000.0, 0.5, 500.0]
    )
    assert smb.loc["C1", "cost_per_conversion"] == pytest.approx(500.0)
    # C2 sent 2 (A1, A4), 1 to SMB -> 500 × 1/2 = 250; nothing converted -> NaN per conversion
    assert smb.loc["C2", "sent"] == 1
    assert smb.loc["C2", ["share_of_sends", "cost"]].tolist() == pytest.approx([0.5, 250.0])
    assert math.isnan(smb.loc["C2", "cost_per_conversion"])
    # C4 sent nothing at all: no share to allocate by -> NaN, not 0 and not the whole cost
    assert math.isnan(smb.loc["C4", "share_of_sends"]) and math.isnan(smb.loc["C4", "cost"])
    # owner U2 (A2, through the account): C1 1 of 4 -> 250; C2 none of 2 -> 0
    u2 = campaign_funnel(engine, Q1.replace(owners=["U2"])).set_index("campaign_id")
    assert u2.loc[["C1", "C2"], "cost"].tolist() == pytest.approx([250.0, 0.0])
    empty = campaign_funnel(engine, Q1.replace(segments=["Nobody"]))
    assert empty["sent"].tolist() == [0, 0, 0] and empty["open_rate"].isna().all()


def test_campaign_cost_is_allocated_by_the_share_of_sends(db: sa.Engine) -> None:
    # the campaign: $2,737.18, 68 sends, 11 of them to the Enterprise account A2
    campaign = {"campaign_id": "C9", "name": "Autumn", "channel": "email", "objective": "acquisition",
                "started_on": day("2024-02-01"), "cost": 2737.18}  # fmt: skip
    sends = [response("C9", "A2", "2024-02-01") for _ in range(11)]
    sends += [response("C9", "A3" if i % 2 else None, "2024-02-01") for i in range(57)]
    sends[0]["converted_at"] = ts("2024-02-03")
    load(db, BASE, {"campaigns": [campaign], "campaign_responses": sends})
    whole = campaign_funnel(db, Q1).iloc[0]
    assert (whole.sent, whole.cost) == (68, pytest.approx(2737.18))
    enterprise = campaign_funnel(db, Q1.replace(segments=["Enterprise"])).iloc[0]
    # 2,737.18 × 11 / 68 = 442.78 allocated; 1 conversion -> 442.78 per conversion
    assert enterprise.sent == 11 and enterprise.converted == 1
    assert enterprise.share_of_sends == pytest.approx(11 / 68)
    assert enterprise.cost == pytest.approx(2737.18 * 11 / 68) == pytest.approx(442.78, abs=0.005)
    assert enterprise.cost_per_conversion == pytest.approx(442.78, abs=0.005)
    assert enterprise.campaign_cost == pytest.approx(2737.18)


def test_campaign_share_of_sends_counts_the_report_recipients(db: sa.Engine) -> None:
    # a vendor report says 10 recipients while only 4 responses were imported: SMB's 2 sends
    # are 2 of 10 -> 1000 × 0.2 = 200 (not 2 of 4 -> 500)
    campaigns = [dict(CAMPAIGNS[0], recipients=10)]
    load(db, BASE, {"campaigns": campaigns, "campaign_responses": RESPONSES[:4]})
    assert campaign_funnel(db, Q1).iloc[0].sent == 10
    smb = campaign_funnel(db, Q1.replace(segments=["SMB"])).iloc[0]
    assert (smb.sent, smb.share_of_sends, smb.cost) == (2, pytest.approx(0.2), pytest.approx(200.0))


def test_web_metrics(engine: sa.Engine) -> None:
    out = web_metrics(engine, Q1, "month")
    assert list(out.columns) == [
        "period", "sessions", "pageviews", "impressions", "clicks", "signups", "ctr", "signup_rate",
    ]  # fmt: skip
    # Jan: sessions 100 + 50 = 150, pageviews 400, impressions 1000, clicks 50, signups 7
    #   ctr = 50 / 1000 = 0.05, signup_rate = 7 / 150
    # Feb: 200, 500, 3000, 60, 4 -> ctr 0.02, signup_rate 0.02; Mar: zeros, NaN
    assert out["sessions"].tolist() == [150, 200, 0]
    assert out["pageviews"].tolist() == [400, 500, 0]
    assert out["impressions"].tolist() == [1000, 3000, 0]
    assert out["signups"].tolist() == [7, 4, 0]
    assert out["ctr"].iloc[:2].tolist() == pytest.approx([0.05, 0.02])
    assert out["signup_rate"].iloc[:2].tolist() == pytest.approx([7 / 150, 0.02])
    assert math.isnan(out["ctr"].iloc[2]) and math.isnan(out["signup_rate"].iloc[2])
    quarters = web_metrics(engine, Filters("2024-01-01", "2025-01-01"), "quarter")
    # Q1: clicks 110 / impressions 4000 = 0.0275; Q2: 1 / 100 = 0.01; Q3, Q4 empty
    assert quarters["clicks"].tolist() == [110, 1, 0, 0]
    assert quarters["ctr"].iloc[:2].tolist() == pytest.approx([0.0275, 0.01])
    year = web_metrics(engine, Filters("2024-01-01", "2025-01-01"), "year")
    assert year["sessions"].tolist() == [360]  # 150 + 200 + 10; the 2023 row is outside


def test_social_metrics(engine: sa.Engine) -> None:
    out = social_metrics(engine, Q1, "month")
    assert list(out.columns) == [
        "period", "platform", "followers", "impressions", "engagements", "mentions", "engagement_rate",
    ]  # fmt: skip
    assert out["platform"].tolist() == ["linkedin", "x"] * 3
    assert out["period"].tolist() == [
        pd.Timestamp(p) for p in ["2024-01-01"] * 2 + ["2024-02-01"] * 2 + ["2024-03-01"] * 2
    ]
    # Jan linkedin: followers on Jan 31 = 120; impressions 1500, engagements 75, mentions 3 -> 0.05
    # Jan x: 50; 200, 20, 5 -> 0.1
    # Feb linkedin: Feb 29 has no follower count -> Feb 10's 130; impressions 100, engagements 10 -> 0.1
    # Feb x, Mar both: no rows -> followers NaN, zeros, rate NaN
    assert out["followers"].iloc[:3].tolist() == [120.0, 50.0, 130.0]
    assert out["followers"].iloc[3:].isna().all()
    assert out["impressions"].tolist() == [1500, 200, 100, 0, 0, 0]
    assert out["engagements"].tolist() == [75, 20, 10, 0, 0, 0]
    assert out["mentions"].tolist() == [3, 5, 0, 0, 0, 0]
    assert out["engagement_rate"].iloc[:3].tolist() == pytest.approx([0.05, 0.1, 0.1])
    assert out["engagement_rate"].iloc[3:].isna().all()
    quarters = social_metrics(engine, Filters("2024-01-01", "2024-07-01"), "quarter")
    # Q1 linkedin: followers 130 (latest known), impressions 1600, engagements 85 -> 85/1600; Q2 x: 70
    q = quarters.set_index(["period", "platform"])
    assert q.loc[(pd.Timestamp("2024-01-01"), "linkedin"), "followers"] == 130.0
    assert q.loc[(pd.Timestamp("2024-01-01"), "linkedin"), "engagement_rate"] == pytest.approx(85 / 1600)
    assert q.loc[(pd.Timestamp("2024-04-01"), "x"), "followers"] == 70.0
    assert math.isnan(q.loc[(pd.Timestamp("2024-04-01"), "x"), "engagement_rate"])


def test_results_agree_across_databases(make_db) -> None:
    year = Filters("2023-01-01", "2025-01-01")

    def compute(engine: sa.Engine) -> dict[str, pd.DataFrame]:
        return {
            "campaign_funnel": campaign_funnel(engine, year),
            "web_metrics": web_metrics(engine, year, "month"),
            "social_metrics": social_metrics(engine, year, "quarter"),
        }

    rows = {
        "campaigns": CAMPAIGNS,
        "campaign_responses": RESPONSES,
        "web_traffic": WEB,
        "social_media": SOCIAL,
    }
    assert_databases_agree(make_db, [BASE, rows], compute)
