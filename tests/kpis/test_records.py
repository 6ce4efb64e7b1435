"""kpis.records: the records behind one point of a chart are exactly the records the KPI
counts (DuckDB, SQLite, PostgreSQL), with names instead of ids, the limit applied in SQL.

The hand-written CRM of tests/kpis/fixtures.py (its docstring and test_sales / test_churn
hold the arithmetic). Accounts A1 Alpha GmbH (Enterprise, owner u1 Alice), A2 Beta SA
(Enterprise, u2 Bob), A3 Gamma Inc (SMB, u1), A4 Delta LLC (SMB, u2), A5 Epsilon (no
segment, no owner). Every expected count is written out by hand below, then compared with
the KPI's own count for every period.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

import kpis
from kpis import Filters
from kpis.records import KINDS, records_for
from tests.kpis import fixtures
from tests.kpis.fixtures import T

JAN_TO_APR = Filters("2024-01-01", "2024-05-01")
JAN, FEB, MAR = (pd.Timestamp(2024, m, 1) for m in (1, 2, 3))


@pytest.fixture
def crm(db):
    return fixtures.load(db)


@pytest.fixture
def visits_crm(crm, visits_path):
    """``crm``, with the open deals' current stages read from the base tables or from the
    stored visits."""
    return visits_path(crm)


def _ids(records, column: str) -> list[str]:
    return sorted(records.frame[column])


def test_win_rate_deals_are_the_won_and_lost_of_each_month(crm):
    # by closed_at: Jan D7 won; Feb D1, D3, D4 won, D6 lost; Mar D2 lost (1 Mar 00:00); Apr none
    feb = records_for("win_rate", crm, JAN_TO_APR, "month", FEB)
    assert _ids(feb, "deal_id") == ["D1", "D3", "D4", "D6"]
    assert feb.total == 4
    assert sorted(feb.frame["status"]) == ["lost", "won", "won", "won"]
    # names, not ids: D1's account and owner; D4 has no account but its own owner (Bob)
    rows = feb.frame.set_index("deal_id")
    assert (rows.loc["D1", "account"], rows.loc["D1", "owner"], rows.loc["D1", "product"]) == (
        "Alpha GmbH", "Alice", "Core",
    )  # fmt: skip
    assert pd.isna(rows.loc["D4", "account"]) and rows.loc["D4", "owner"] == "Bob"
    assert rows.loc["D1", "cycle_days"] == pytest.approx(30.0)
    assert "owner_id" not in feb.frame and "account_id" not in feb.frame
    rate = kpis.win_rate(crm, JAN_TO_APR, "month")
    for period, won, lost in zip(rate["period"], rate["won"], rate["lost"], strict=True):
        assert records_for("win_rate", crm, JAN_TO_APR, "month", period).total == won + lost
    # Enterprise: Feb D1 won, D6 lost (D4 has no account, D3 is SMB)
    enterprise = JAN_TO_APR.replace(segments=["Enterprise"])
    assert _ids(records_for("win_rate", crm, enterprise, "month", FEB), "deal_id") == ["D1", "D6"]


def test_limit_is_applied_in_sql_and_total_counts_all(crm):
    cut = records_for("win_rate", crm, JAN_TO_APR, "month", FEB, limit=2)
    assert len(cut.frame) == 2 and cut.total == 4 and not cut.complete
    # newest close first: D1 4 Feb, D3 11 Feb, D6 25 Feb, D4 29 Feb -> D4, D6
    assert list(cut.frame["deal_id"]) == ["D4", "D6"]
    with pytest.raises(ValueError, match="limit"):
        records_for("win_rate", crm, JAN_TO_APR, "month", FEB, limit=0)
    with pytest.raises(ValueError, match="kind must be one of"):
        records_for("nothing", crm, JAN_TO_APR)


def test_lead_conversion_and_win_rate_by_group(crm):
    # created in January: D1 (5 Jan), D2 (10 Jan), D5 (20 Jan)
    jan = records_for("lead_conversion", crm, JAN_TO_APR, "month", JAN)
    assert _ids(jan, "deal_id") == ["D1", "D2", "D5"]
    cohorts = kpis.lead_conversion(crm, JAN_TO_APR, "month")
    for period, created in zip(cohorts["period"], cohorts["created"], strict=True):
        assert records_for("lead_conversion", crm, JAN_TO_APR, "month", period).total == created
    # created in the range (D7 was created in Dec 2023): Enterprise D1, D2, D6, D8; SMB D3, D5;
    # (not set): D4 (no account); owner u1: D1, D3, D5, D6
    group = ("segment", "Enterprise")
    assert _ids(records_for("win_rate_by", crm, JAN_TO_APR, group=group), "deal_id") == [
        "D1",
        "D2",
        "D6",
        "D8",
    ]
    not_set = records_for("win_rate_by", crm, JAN_TO_APR, group=("segment", "(not set)"))
    assert _ids(not_set, "deal_id") == ["D4"]
    owner = records_for("win_rate_by", crm, JAN_TO_APR, group=("owner", "u1"))
    assert _ids(owner, "deal_id") == ["D1", "D3", "D5", "D6"]
    assert set(owner.frame["owner"]) == {"Alice"}
    for by in ("segment", "owner", "lead_source", "product"):
        table = kpis.win_rate_by(crm, JAN_TO_APR, by)
        for _, row in table.iterrows():
            found = records_for("win_rate_by", crm, JAN_TO_APR, group=(by, row["group"]))
            assert found.total == row["created"], (by, row["group"])
            closed = found.frame["status"].isin(["won", "lost"]).sum()
            assert closed == row["won"] + row["lost"], (by, row["group"])


def test_sales_cycle_deals_and_histogram_bins(crm):
    q1 = Filters("2024-01-01", "2024-04-01")
    # won in Q1: D7 (46 d), D1 (30 d), D4 (14 d), D3 (10.5 d), longest first
    everything = records_for("sales_cycle", crm, q1)
    assert list(everything.frame["deal_id"]) == ["D7", "D1", "D4", "D3"]
    assert everything.total == kpis.sales_cycle(crm, q1).loc[0, "deals"] == 4
    # bins [0, 20) and [20, 50]: D3, D4 | D1, D7
    bins = kpis.sales_cycle_distribution(crm, q1, bins=[0, 20, 50])
    expected = [["D3", "D4"], ["D1", "D7"]]
    for i, row in bins.iterrows():
        days = (row["bin_start_days"], row["bin_end_days"], i == len(bins) - 1)
        found = records_for("sales_cycle", crm, q1, group=days)
        assert _ids(found, "deal_id") == expected[i]
        assert found.total == row["deals"]


def test_open_deals_behind_the_aging(visits_crm):
    now = dt.datetime(2024, 4, 15)
    # open on 15 Apr: D5 in Proposal (since 10 Feb), D8 in Lead (since 10 Mar)
    aging = kpis.open_deal_aging(visits_crm, JAN_TO_APR, now=now)
    from kpis.records import open_deals

    for stage, count in zip(aging["stage"], aging["open_deals"], strict=True):
        assert open_deals(visits_crm, JAN_TO_APR, stage, now=now).total == count
    proposal = open_deals(visits_crm, JAN_TO_APR, "Proposal", now=now)
    assert list(proposal.frame["deal_id"]) == ["D5"]
    assert proposal.frame.loc[0, "days_in_stage"] == pytest.approx(65.0)  # 10 Feb -> 15 Apr (leap year)
    assert proposal.frame.loc[0, "account"] == "Delta LLC"


def test_deals_behind_the_funnel(crm):
    # created in the range: D1 (Lead, Qualified, Proposal, won), D2 (Lead, Proposal, lost: skips
    # Qualified), D3 (Lead, Qualified, Proposal, won), D4 (Lead, Qualified, won), D5 (Lead, Qualified,
    # Proposal), D6 (Lead, lost), D8 (Lead)
    in_order = records_for("funnel", crm, JAN_TO_APR, group=("Proposal", "in_order"))
    assert _ids(in_order, "deal_id") == ["D1", "D3", "D5"]
    reached = records_for("funnel", crm, JAN_TO_APR, group=("Proposal", "any"))  # D4 won: later stage
    assert _ids(reached, "deal_id") == ["D1", "D2", "D3", "D4", "D5"]
    funnel = kpis.funnel(crm, JAN_TO_APR)
    for _, row in funnel.iterrows():
        for counting in ("in_order", "any"):
            found = records_for("funnel", crm, JAN_TO_APR, group=(row["stage"], counting))
            assert found.total == row[f"reached_{counting}"], (row["stage"], counting)
    assert records_for("funnel", crm, JAN_TO_APR, group=("Closed Lost", "any")).total == 0


def test_deals_behind_the_time_in_each_stage(crm):
    from kpis.records import stage_visit_deals

    now = dt.datetime(2024, 4, 15)
    # Qualified, deals created in the range: D1 (10 Jan), D3 (3 Feb and 7 Feb: two visits), D4 (20 Feb),
    # D5 (25 Jan); D7 was created in Dec 2023
    qualified = stage_visit_deals(crm, JAN_TO_APR, "Qualified", now=now)
    assert _ids(qualified, "deal_id") == ["D1", "D3", "D4", "D5"]
    assert dict(zip(qualified.frame["deal_id"], qualified.frame["visits"], strict=True))["D3"] == 2
    durations = kpis.stage_durations(crm, JAN_TO_APR, now=now)
    for stage, deals in zip(durations["stage"], durations["deals"], strict=True):
        assert stage_visit_deals(crm, JAN_TO_APR, stage, now=now).total == deals, stage
    # a range ending on 1 Mar: the deals created in February (D3, D4, D6), visits observed until then
    february = Filters("2024-02-01", "2024-03-01")
    lead = stage_visit_deals(crm, february, "Lead", now=now)
    assert lead.total == kpis.stage_durations(crm, february, now=now).set_index("stage").loc["Lead", "deals"]


def test_open_deals_behind_the_weighted_pipeline(visits_crm):
    # open: D5 (800, current stage Proposal, probability 0.6), D8 (700, Lead, 0.1)
    pipeline = kpis.weighted_pipeline(visits_crm, JAN_TO_APR)
    everything = records_for("pipeline", visits_crm, JAN_TO_APR)
    assert list(everything.frame["deal_id"]) == ["D5", "D8"]  # largest amount first
    assert list(everything.frame["weighted_amount"]) == pytest.approx([480.0, 70.0])
    for _, row in pipeline.iterrows():
        found = records_for("pipeline", visits_crm, JAN_TO_APR, group=row["stage"])
        assert found.total == row["open_deals"], row["stage"]
        assert found.frame["amount"].sum() == pytest.approx(row["amount"])


def test_tickets_behind_complaint_weeks(crm):
    # defect / complaint tickets with a product: T1 P1 Wed 3 Jan (week of Mon 1 Jan), T4 P1 Mon 5 Feb,
    # T5 P2 Tue 20 Feb (week of 19 Feb)
    week = records_for("complaints", crm, JAN_TO_APR, group=("P2", pd.Timestamp(2024, 2, 19)))
    assert _ids(week, "ticket_id") == ["T5"]
    assert list(week.frame["product"]) == ["Addon"]
    spikes = kpis.complaint_spikes(crm, JAN_TO_APR)
    assert spikes["observed"].sum() == 3
    for _, row in spikes.iterrows():
        found = records_for("complaints", crm, JAN_TO_APR, group=(row["product_id"], row["week"]))
        assert found.total == row["observed"], (row["product_id"], row["week"])


def test_tickets_behind_fcr_and_the_breakdown(crm):
    # resolved: Jan T1 (1 contact), T2 (2); Feb T3 (1 Feb 00:00, 1), T4 (unknown); Mar T6 (1)
    feb = records_for("first_contact", crm, JAN_TO_APR, "month", FEB)
    assert _ids(feb, "ticket_id") == ["T3", "T4"]
    assert dict(zip(feb.frame["ticket_id"], feb.frame["first_contact"], strict=True)) == {
        "T3": True,
        "T4": False,
    }
    fcr = kpis.first_contact_resolution(crm, JAN_TO_APR, "month")
    for period, resolved, first in zip(fcr["period"], fcr["resolved"], fcr["first_contact"], strict=True):
        found = records_for("first_contact", crm, JAN_TO_APR, "month", period)
        assert found.total == resolved
        assert int(found.frame["first_contact"].astype(bool).sum()) == first
    # opened in January: T1 defect, T2 billing, T3 question (31 Jan 20:00); by product Core: T1, T2
    defect = records_for("tickets", crm, JAN_TO_APR, "month", JAN, ("category", "defect"))
    assert _ids(defect, "ticket_id") == ["T1"]
    core = records_for("tickets", crm, JAN_TO_APR, "month", JAN, ("product", "Core"))
    assert _ids(core, "ticket_id") == ["T1", "T2"]
    for by in ("category", "product", "channel", "priority"):
        table = kpis.ticket_breakdown(crm, JAN_TO_APR, by, "month")
        for _, row in table.iterrows():
            found = records_for("tickets", crm, JAN_TO_APR, "month", row["period"], (by, row["group"]))
            assert found.total == row["tickets"], (by, row["period"], row["group"])


def test_responses_behind_nps_and_ces(crm):
    # NPS January: R1 10, R2 9, R3 7, R4 3, R5 6 (23:59:59 on 31 Jan); February R6 8, R7 0
    jan = records_for("nps", crm, JAN_TO_APR, "month", JAN)
    assert _ids(jan, "response_id") == ["R1", "R2", "R3", "R4", "R5"]
    categories = dict(zip(jan.frame["response_id"], jan.frame["category"], strict=True))
    assert categories == {
        "R1": "promoter", "R2": "promoter", "R3": "passive", "R4": "detractor", "R5": "detractor",
    }  # fmt: skip
    nps = kpis.nps(crm, JAN_TO_APR, "month")
    for _, row in nps.iterrows():
        found = records_for("nps", crm, JAN_TO_APR, "month", row["period"])
        assert found.total == row["responses"]
        counts = found.frame["category"].value_counts()
        assert (
            counts.get("promoter", 0) == row["promoters"] and counts.get("detractor", 0) == row["detractors"]
        )
    # one bar of the score distribution: score 10 -> R1 only
    scores = kpis.nps_score_distribution(crm, JAN_TO_APR)
    for score, count in zip(scores["score"], scores["responses"], strict=True):
        assert records_for("nps", crm, JAN_TO_APR, group=score).total == count
    # CES January support: C1, C2, C3; February "(not set)" touchpoint: C6
    support = records_for("ces", crm, JAN_TO_APR, "month", JAN, "support")
    assert _ids(support, "response_id") == ["C1", "C2", "C3"]
    assert _ids(records_for("ces", crm, JAN_TO_APR, "month", FEB, "(not set)"), "response_id") == ["C6"]
    ces = kpis.ces(crm, JAN_TO_APR, "month")
    for _, row in ces.iterrows():
        found = records_for("ces", crm, JAN_TO_APR, "month", row["period"], row["touchpoint"])
        assert found.total == row["responses"], (row["period"], row["touchpoint"])


def test_payments_behind_revenue(crm):
    # January: Y1 110 (1 Jan 00:00), Y2 50; February: Y3 20, Y4 −25 (refund)
    feb = records_for("revenue", crm, JAN_TO_APR, "month", FEB)
    assert list(feb.frame["payment_id"]) == ["Y3", "Y4"]  # largest amount first
    assert list(feb.frame["account"]) == ["Gamma Inc", "Beta SA"]
    revenue = kpis.revenue(crm, JAN_TO_APR, "month")
    for period, total in zip(revenue["period"], revenue["revenue"], strict=True):
        found = records_for("revenue", crm, JAN_TO_APR, "month", period)
        assert found.frame["amount"].sum() == pytest.approx(total)


def test_customers_behind_churn_new_and_mrr(crm):
    # 1 Jan: A1, A2, A3 (starts exactly 1 Jan), A5 active; A2 (ends 1 Feb 00:00) and A5 churn
    jan = records_for("churn", crm, JAN_TO_APR, "month", JAN)
    assert _ids(jan, "account_id") == ["A1", "A2", "A3", "A5"]
    assert list(jan.frame["churned"]) == [True, True, False, False]  # churned first
    assert sorted(jan.frame.loc[jan.frame["churned"], "account"]) == ["Beta SA", "Epsilon"]
    # MRR at 1 Jan: A1 100 + 10, A2 50, A3 20, A5 40 = 220
    assert jan.frame["mrr_at_start"].sum() == pytest.approx(220.0)
    assert _ids(records_for("churned", crm, JAN_TO_APR, "month", FEB), "account_id") == ["A4"]
    assert _ids(records_for("new_customers", crm, JAN_TO_APR, "month", JAN), "account_id") == ["A4"]
    base = kpis.customer_base(crm, JAN_TO_APR, "month", costs=False)
    for _, row in base.iterrows():
        period = row["period"]
        at_start = records_for("churn", crm, JAN_TO_APR, "month", period)
        assert at_start.total == row["customers_at_start"]
        assert int(at_start.frame["churned"].astype(bool).sum()) == row["churned"]
        assert at_start.frame["mrr_at_start"].sum() == pytest.approx(row["mrr_at_start"])
        assert records_for("churned", crm, JAN_TO_APR, "month", period).total == row["churned"]
        assert records_for("new_customers", crm, JAN_TO_APR, "month", period).total == row["new_customers"]
    # quarter: at 1 Jan A1, A2, A3, A5; at 1 Apr only A1 -> A2, A3, A5 churned
    q1 = records_for("churn", crm, JAN_TO_APR, "quarter", JAN)
    assert sorted(q1.frame.loc[q1.frame["churned"], "account_id"]) == ["A2", "A3", "A5"]


def test_customer_months_behind_churn_by(crm):
    # Enterprise: A1 at the start of Jan–Apr, A2 at the start of Jan (churned) -> 5 customer-months
    enterprise = records_for("churn_by", crm, JAN_TO_APR, group=("segment", "Enterprise"))
    assert enterprise.total == 5
    assert list(enterprise.frame["account_id"])[:1] == ["A2"]  # the churned month first
    for by in ("segment", "owner_id", "region"):
        table = kpis.churn_by(crm, JAN_TO_APR, by)
        for _, row in table.iterrows():
            found = records_for("churn_by", crm, JAN_TO_APR, group=(by, row["group"]))
            assert found.total == row["customers_at_start"], (by, row["group"])
            assert int(found.frame["churned"].astype(bool).sum()) == row["churned"]


def test_cohort_accounts(crm):
    # January 2024 cohort: A3 (1 Jan), A4 (15 Jan); 1 Feb both active; 1 Mar only A3
    f = Filters("2023-06-01", "2024-02-01")
    cohorts = kpis.cohort_retention(crm, f, as_of=T(2024, 4, 15))
    jan = cohorts[cohorts["cohort"] == JAN].set_index("months_since_start")
    march = records_for("cohort", crm, f, period=JAN, group=2)
    assert _ids(march, "account_id") == ["A3", "A4"]
    assert dict(zip(march.frame["account_id"], march.frame["retained"], strict=True)) == {
        "A3": True,
        "A4": False,
    }
    for _, row in cohorts.iterrows():
        found = records_for("cohort", crm, f, period=row["cohort"], group=row["months_since_start"])
        assert found.total == row["customers"]
        assert int(found.frame["retained"].astype(bool).sum()) == row["retained"]
    assert jan.loc[2, "retained"] == 1


def test_campaign_responses_and_retention_costs(crm):
    fixtures.insert(crm, "campaigns", [
        {"campaign_id": "C1", "name": "Spring mail", "channel": "email", "started_on": dt.date(2024, 1, 1),
         "cost": 1000.0},
    ])  # fmt: skip
    fixtures.insert(crm, "campaign_responses", [
        {"campaign_id": "C1", "account_id": "A1", "sent_at": T(2024, 1, 1), "converted_at": T(2024, 1, 5)},
        {"campaign_id": "C1", "account_id": "A3", "sent_at": T(2024, 1, 1), "converted_at": None},
        {"campaign_id": "C1", "account_id": None, "sent_at": T(2024, 1, 1), "converted_at": None},
    ])  # fmt: skip
    found = records_for("campaign", crm, JAN_TO_APR, group="C1")
    funnel = kpis.campaign_funnel(crm, JAN_TO_APR).set_index("campaign_id")
    assert found.total == funnel.loc["C1", "sent"] == 3
    assert found.frame.loc[0, "account"] == "Alpha GmbH"  # the conversion first
    converted = records_for("campaign", crm, JAN_TO_APR, group=("C1", "converted"))
    assert converted.total == funnel.loc["C1", "converted"] == 1
    assert records_for("campaign", crm, JAN_TO_APR, group=("C1", "sent")).total == 3
    smb = records_for("campaign", crm, JAN_TO_APR.replace(segments=["SMB"]), group="C1")
    assert list(smb.frame["account"]) == ["Gamma Inc"]
    # retention costs: Jan K1 100, K2 50, K4 20 (31 Jan); Feb K3 30; Mar K6 10 (K5 is acquisition)
    jan = records_for("retention_cost", crm, JAN_TO_APR, "month", JAN)
    assert _ids(jan, "cost_id") == ["K1", "K2", "K4"]
    cost = kpis.retention_cost(crm, JAN_TO_APR, "month")
    for _, row in cost.iterrows():
        found = records_for("retention_cost", crm, JAN_TO_APR, "month", row["period"])
        assert found.frame["amount"].sum() == pytest.approx(row["retention_costs"])
        loyalty = records_for("retention_cost", crm, JAN_TO_APR, "month", row["period"], "loyalty")
        assert loyalty.frame["amount"].sum() == pytest.approx(row["loyalty"])


def test_payments_and_costs_behind_an_accounts_profit(crm):
    # A2 (Beta SA): payments Y2 50 (15 Jan), Y4 −25 (refund, 10 Feb); cost K2 loyalty 50 (20 Jan)
    # -> profit 50 − 25 − 50 = −25
    found = records_for("account_ledger", crm, JAN_TO_APR, group="A2")
    assert list(found.frame["record_id"]) == ["Y4", "K2", "Y2"]  # newest first
    assert list(found.frame["amount"]) == pytest.approx([-25.0, -50.0, 50.0])
    assert set(found.frame["account"]) == {"Beta SA"} and found.total == 3
    profit = kpis.customer_profitability(crm, JAN_TO_APR).set_index("account_id")
    for account, row in profit.iterrows():
        found = records_for("account_ledger", crm, JAN_TO_APR, group=account)
        assert found.frame["amount"].sum() == pytest.approx(row["profit"]), account
    # outside the filters: no records
    assert records_for("account_ledger", crm, JAN_TO_APR.replace(segments=["SMB"]), group="A2").total == 0


def test_kpi_keys_name_their_kind(crm):
    from kpis.records import KPI_KINDS
    from kpis.registry import KPIS

    assert set(KPI_KINDS) <= {k.key for k in KPIS} and set(KPI_KINDS.values()) <= set(KINDS)
    by_key = records_for("first_contact_resolution", crm, JAN_TO_APR, "month", FEB)
    assert _ids(by_key, "ticket_id") == ["T3", "T4"]
    with pytest.raises(ValueError, match="company-wide"):
        records_for("web_ctr", crm, JAN_TO_APR)


def test_every_kind_is_tested():
    tested = {
        "win_rate", "lead_conversion", "win_rate_by", "sales_cycle", "open_deals", "first_contact", "tickets",
        "nps", "ces", "revenue", "churn", "mrr_retention", "churned", "new_customers", "churn_by", "cohort",
        "campaign", "retention_cost", "pipeline", "complaints", "funnel", "account_ledger", "stage_visits",
    }  # fmt: skip
    assert set(KINDS) == tested
