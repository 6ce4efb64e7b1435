"""What the demo data promise (crm_data.demo's docstring), as checks on its rows.

Each check takes the rows of every table (as read back from a database, or straight
from :func:`crm_data.demo.demo_frames`) and the ``today`` they were generated for, and
fails with a message. ``test_demo`` runs them on three databases for one pinned day;
``test_demo_any_day`` runs them in memory for every day of a year, so a story that holds
only on some calendar days cannot land.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm_data import schema
from crm_data.quality import SOFT_REFERENCES

Rows = dict[str, pd.DataFrame]
#: full calendar months of history before the month of ``today``
HISTORY_MONTHS = 72


def history_covers_six_years_and_reaches_today(rows: Rows, today: dt.date) -> None:
    month = pd.Timestamp(today.replace(day=1))
    midnight = pd.Timestamp(today)
    origin = month - pd.DateOffset(months=HISTORY_MONTHS)  # 72 full months before this one
    created = pd.to_datetime(rows["accounts"]["created_at"])
    assert origin <= created.min() < origin + pd.DateOffset(months=2), created.min()
    for table, column in [("deals", "created_at"), ("payments", "paid_at"), ("tickets", "opened_at")]:
        values = pd.to_datetime(rows[table][column])
        assert origin <= values.min() < origin + pd.DateOffset(months=12), table
        if today.day > 3:  # the current month has a few days of data
            assert values.max() >= month, table
        assert values.max() < midnight, f"{table}.{column} reaches into the future"
    days = pd.to_datetime(rows["web_traffic"]["date"])
    assert days.max() == midnight - pd.Timedelta(days=1)
    assert days.min() == origin


def enum_columns_hold_allowed_values(rows: Rows, today: dt.date) -> None:
    for (table, column), allowed in schema.ENUMS.items():
        values = set(rows[table][column].dropna().unique())
        assert values, f"{table}.{column} is empty"
        assert values <= allowed, f"{table}.{column}: {values - allowed}"
    assert set(rows["accounts"]["segment"]) == {"SMB", "Mid-Market", "Enterprise"}
    assert {"EMEA", "North America", "LATAM", "APAC"} == set(rows["accounts"]["region"])
    assert set(rows["survey_responses"].query("survey == 'ces'")["touchpoint"]) >= {
        "support", "signup", "website_visit", "return_exchange"
    }  # fmt: skip
    scores = rows["survey_responses"].groupby("survey")["score"].agg(["min", "max"])
    assert scores.loc["nps", "min"] >= 0 and scores.loc["nps", "max"] <= 10
    assert scores.loc["ces", "min"] >= 1 and scores.loc["ces", "max"] <= 7
    assert rows["survey_responses"]["comment"].notna().any()


REFERENCES = [
    # child table, column, parent table, parent key (declared foreign keys and soft ones)
    *[
        (t.name, fk.parent.name, fk.column.table.name, fk.column.name)
        for t in schema.TABLES
        for fk in t.foreign_keys
    ],
    *SOFT_REFERENCES,  # the references the data-quality check follows
]


def every_reference_has_its_parent(rows: Rows, today: dt.date) -> None:
    assert len(REFERENCES) > 20
    for child, column, parent, key in REFERENCES:
        # distinct values, compared in Arrow: Python sets of them (one object per value) took
        # 35 ms of the 300-account day's checks, pandas' isin 117 ms, this 15 ms
        values = pa.array(rows[child][column].dropna().unique())
        known = pa.array(rows[parent][key].unique())
        orphans = pc.filter(values, pc.invert(pc.is_in(values, value_set=known))).to_pylist()
        assert not orphans, f"{child}.{column} -> {parent}.{key}: {sorted(orphans)[:5]}"
    # a contact referenced by a response belongs to the response's account
    merged = (
        rows["survey_responses"]
        .dropna(subset=["contact_id"])
        .merge(rows["contacts"], on="contact_id", suffixes=("", "_contact"))
    )
    assert (merged["account_id"] == merged["account_id_contact"]).all()


def stage_history_is_ordered_inside_each_deal(rows: Rows, today: dt.date) -> None:
    deals = rows["deals"].set_index("deal_id")
    history = rows["deal_stage_history"].merge(rows["pipeline_stages"], on="stage")
    history = history.sort_values(["deal_id", "entered_at"]).join(deals, on="deal_id")
    assert set(history["deal_id"].unique()) == set(deals.index.unique())
    assert (history["entered_at"] >= history["created_at"]).all()
    assert (history["closed_at"].isna() | (history["entered_at"] <= history["closed_at"])).all()
    first = history.groupby("deal_id")["entered_at"].min()
    assert (first == deals.loc[first.index, "created_at"]).all()
    last = history.groupby("deal_id").tail(1).set_index("deal_id")
    closed = deals["status"] != "open"
    assert (last.loc[closed[closed].index, "entered_at"] == deals.loc[closed, "closed_at"]).all()
    assert (last.loc[deals.index[deals["status"] == "won"], "stage"] == "Closed Won").all()
    assert (last.loc[deals.index[deals["status"] == "lost"], "stage"] == "Closed Lost").all()
    assert not last.loc[deals.index[deals["status"] == "open"], "is_closed"].astype(bool).any()
    # lost reasons only on lost deals; open deals without a close date
    assert deals.loc[deals["status"] == "lost", "lost_reason"].notna().all()
    assert deals.loc[deals["status"] != "lost", "lost_reason"].isna().all()
    assert deals.loc[deals["status"] == "open", "closed_at"].isna().all()
    # some won deals skip a stage, some re-enter Proposal
    stages_per_won = history[history["status"] == "won"].groupby("deal_id")["stage"].nunique()
    assert (stages_per_won < 5).any()
    assert (history.groupby(["deal_id", "stage"]).size() > 1).any()


def stage_durations_differ_by_segment(rows: Rows, today: dt.date) -> None:
    won = (
        rows["deals"]
        .query("status == 'won'")
        .merge(rows["accounts"][["account_id", "segment"]], on="account_id")
    )
    days = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86400
    median = days.groupby(won["segment"]).median()
    assert median["SMB"] < median["Mid-Market"] < median["Enterprise"]


def _quarter(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values).dt.to_period("Q")


def one_product_has_a_defect_spike_in_one_recent_quarter(rows: Rows, today: dt.date) -> None:
    tickets = rows["tickets"]
    defects = tickets[tickets["category"] == "defect"].assign(quarter=_quarter(tickets["opened_at"]))
    current = pd.Timestamp(today).to_period("Q")
    complete = defects[defects["quarter"] < current]
    per_quarter = complete.groupby(["product_id", "quarter"]).size()
    product, spike = per_quarter.idxmax()
    assert spike >= current - 8, "the spike lies in the last two years"
    own = per_quarter.loc[product]
    first = own.index.min()
    quarters = pd.period_range(first, current - 1, freq="Q")
    own = own.reindex(quarters, fill_value=0)
    others = own.drop(spike)
    assert own[spike] >= 3 * others.mean(), (product, spike, own.to_dict())
    assert own[spike] >= 10


def churn_is_higher_with_low_nps_and_unresolved_tickets(rows: Rows, today: dt.date) -> None:
    subs = rows["subscriptions"]
    running = subs["ended_at"].isna().groupby(subs["account_id"]).any()
    churned = ~running  # every subscription has ended
    nps = rows["survey_responses"].query("survey == 'nps'").groupby("account_id")["score"].mean()
    low, high = nps.index[nps <= 6], nps.index[nps >= 9]
    assert len(low) >= 15 and len(high) >= 15
    assert churned[low].mean() >= 1.5 * churned[high].mean(), (churned[low].mean(), churned[high].mean())
    tickets = rows["tickets"]
    old = tickets["opened_at"] < pd.Timestamp(today) - pd.Timedelta(days=60)
    unresolved = tickets[old & tickets["resolved_at"].isna()]["account_id"].unique()
    with_tickets = tickets["account_id"].unique()
    without = np.setdiff1d(with_tickets, unresolved)
    assert len(unresolved) >= 10
    assert churned[unresolved].mean() >= 1.3 * churned[without].mean()


def payments_follow_mrr_with_refunds(rows: Rows, today: dt.date) -> None:
    payments = rows["payments"]
    assert (payments["amount"] < 0).any(), "refunds"
    assert (payments["amount"] > 0).mean() > 0.98
    # last complete month: invoices ≈ MRR running mid-month (± seasonal usage, partial starts)
    month = (pd.Timestamp(today.replace(day=1)) - pd.DateOffset(months=1)).to_period("M")
    mid = month.to_timestamp() + pd.Timedelta(days=14)
    subs = rows["subscriptions"]
    running = subs[(subs["started_at"] <= mid) & (subs["ended_at"].isna() | (subs["ended_at"] > mid))]
    invoiced = payments[(payments["amount"] > 0) & (payments["paid_at"].dt.to_period("M") == month)][
        "amount"
    ].sum()
    assert 0.8 <= invoiced / running["mrr"].sum() <= 1.25
    # subscription amounts depend on the segment
    mrr = subs.merge(rows["accounts"], on="account_id").groupby("segment")["mrr"].median()
    assert mrr["SMB"] < mrr["Mid-Market"] < mrr["Enterprise"]


def costs_in_every_category_and_purpose(rows: Rows, today: dt.date) -> None:
    costs = rows["costs"]
    assert set(costs["category"].unique()) == set(schema.COST_CATEGORIES)
    assert {"acquisition", "retention"} <= set(costs["purpose"].unique())
    assert costs["account_id"].notna().any() and costs["account_id"].isna().any()
    assert (costs["amount"] > 0).all()


def quality_problems_are_injected(rows: Rows, today: dt.date) -> None:
    accounts = rows["accounts"]
    normalised = accounts["name"].str.lower().str.replace(r"\s+(inc\.|ltd)$", "", regex=True)
    spellings = accounts.groupby(normalised)["name"].nunique()
    assert (spellings > 1).any(), "duplicate accounts by name variant"
    contacts = rows["contacts"]
    spellings = contacts.groupby([contacts["account_id"], contacts["email"].str.lower()])["email"].nunique()
    assert (spellings > 1).any(), "the same e-mail in another case"
    assert rows["deals"]["amount"].isna().any()
    history = rows["deal_stage_history"].groupby("deal_id")["entered_at"].max()
    open_deals = rows["deals"].query("status == 'open'")["deal_id"]
    assert (history[open_deals] < pd.Timestamp(today) - pd.Timedelta(days=120)).any(), "stale open deals"


def subscriptions_do_not_overlap(rows: Rows, today: dt.date) -> None:
    """One running subscription per account and product at a time: overlaps are not among
    the problems the demo injects (``check`` would report them)."""
    subs = rows["subscriptions"].sort_values(["account_id", "product_id", "started_at"])
    running = subs["ended_at"].isna()
    ends = subs["ended_at"].where(~running, subs["started_at"].max() + pd.Timedelta(days=1))
    previous_end = ends.groupby([subs["account_id"], subs["product_id"]]).shift()
    overlapping = subs[subs["started_at"] < previous_end]
    assert overlapping.empty, overlapping.head().to_dict("records")


#: every check, in the order of the docstring's story
CHECKS = [
    history_covers_six_years_and_reaches_today,
    enum_columns_hold_allowed_values,
    every_reference_has_its_parent,
    stage_history_is_ordered_inside_each_deal,
    stage_durations_differ_by_segment,
    one_product_has_a_defect_spike_in_one_recent_quarter,
    churn_is_higher_with_low_nps_and_unresolved_tickets,
    payments_follow_mrr_with_refunds,
    subscriptions_do_not_overlap,
    costs_in_every_category_and_purpose,
    quality_problems_are_injected,
]
