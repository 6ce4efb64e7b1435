"""The pandas baseline: the Overview's KPIs computed on tables loaded into memory.

A straightforward implementation an analyst would write: load the fact tables once
(timed separately), then filter and aggregate with pandas for every filter change.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import sqlalchemy as sa

TABLES = {
    "accounts": ["account_id", "region", "industry"],
    "subscriptions": ["account_id", "mrr", "started_at", "ended_at"],
    "payments": ["account_id", "paid_at", "amount"],
    "survey_responses": ["account_id", "survey", "score", "responded_at"],
    "deals": ["account_id", "status", "created_at", "closed_at"],
    "tickets": ["account_id", "resolved_at", "contacts_until_resolved"],
    "costs": ["account_id", "incurred_on", "purpose", "category", "amount"],
}


def load(engine: sa.Engine) -> dict[str, pd.DataFrame]:
    """Every table the Overview needs, in memory."""
    with engine.connect() as c:
        frames = {
            name: pd.read_sql(sa.text(f"SELECT {', '.join(cols)} FROM {name}"), c)
            for name, cols in TABLES.items()
        }
    frames["costs"]["incurred_on"] = pd.to_datetime(frames["costs"]["incurred_on"])
    return frames


def _scoped(frame: pd.DataFrame, accounts: pd.Index | None) -> pd.DataFrame:
    return frame if accounts is None else frame[frame["account_id"].isin(accounts)]


def _in(frame: pd.DataFrame, column: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return frame[(frame[column] >= start) & (frame[column] < end)]


def overview(data: dict[str, pd.DataFrame], start: dt.date, end: dt.date, region=None, industry=None) -> list:
    """Every Overview KPI once, monthly over ``[start, end)``."""
    s, e = pd.Timestamp(start), pd.Timestamp(end)
    accounts = None
    if region or industry:
        a = data["accounts"]
        mask = np.ones(len(a), bool)
        if region:
            mask &= a["region"].eq(region).to_numpy()
        if industry:
            mask &= a["industry"].eq(industry).to_numpy()
        accounts = pd.Index(a.loc[mask, "account_id"])
    out = []

    pay = _in(_scoped(data["payments"], accounts), "paid_at", s, e)
    month = pay["paid_at"].dt.to_period("M")
    positive = pay["amount"] > 0
    out.append(
        pd.DataFrame(
            {
                "revenue": pay.groupby(month)["amount"].sum(),
                "gross_revenue": pay["amount"].where(positive, 0.0).groupby(month).sum(),
                "refunds": (-pay["amount"]).where(pay["amount"] < 0, 0.0).groupby(month).sum(),
                "paying_accounts": pay[positive].groupby(month[positive])["account_id"].nunique(),
            }
        )
    )

    subs = _scoped(data["subscriptions"], accounts)
    ended = subs["ended_at"].fillna(pd.Timestamp.max)
    mrr = subs["mrr"].fillna(0.0)
    costs = _in(_scoped(data["costs"], accounts), "incurred_on", s, e)
    costs = costs[costs["purpose"] == "retention"]
    cost_by_month = costs.groupby(costs["incurred_on"].dt.to_period("M"))["amount"].sum()
    rows = []
    for ps in pd.date_range(s, e - pd.DateOffset(months=1), freq="MS"):
        pe = ps + pd.DateOffset(months=1)
        at_s = (subs["started_at"] <= ps) & (ended > ps)
        at_e = (subs["started_at"] <= pe) & (ended > pe)
        mrr_s = mrr[at_s].groupby(subs.loc[at_s, "account_id"]).sum()
        mrr_e = mrr[at_e].groupby(subs.loc[at_e, "account_id"]).sum()
        start_ids = mrr_s.index
        retained = start_ids.intersection(mrr_e.index)
        change = mrr_e.reindex(retained) - mrr_s.reindex(retained)
        rows.append(
            {
                "period": ps,
                "customers_at_start": len(start_ids),
                "new_customers": len(mrr_e.index.difference(start_ids)),
                "churned": len(start_ids) - len(retained),
                "customers_at_end": len(mrr_e),
                "retained": len(retained),
                "mrr_at_start": mrr_s.sum(),
                "expansion": change[change > 0].sum(),
                "contraction": -change[change < 0].sum(),
                "churned_mrr": mrr_s.drop(retained).sum(),
                "retention_costs": cost_by_month.get(ps.to_period("M"), 0.0),
            }
        )
    out.append(pd.DataFrame(rows))

    surveys = _in(_scoped(data["survey_responses"], accounts), "responded_at", s, e)
    surveys = surveys[surveys["survey"].isin(["nps", "ces"])]
    score = surveys["score"].astype(float)
    g = surveys.assign(
        period=surveys["responded_at"].dt.to_period("M"),
        promoter=score >= 9,
        detractor=score <= 6,
        easy=score >= 5,
        squares=score * score,
    )
    out.append(
        g.groupby(["period", "survey"]).agg(
            responses=("score", "size"),
            promoters=("promoter", "sum"),
            detractors=("detractor", "sum"),
            total=("score", "sum"),
            total_squares=("squares", "sum"),
            easy=("easy", "sum"),
        )
    )

    deals = _scoped(data["deals"], accounts)
    closed = _in(deals[deals["status"].isin(["won", "lost"])], "closed_at", s, e)
    still_open = _in(deals[deals["status"] == "open"], "created_at", s, e)
    out.append(
        (
            closed.groupby([closed["closed_at"].dt.to_period("M"), "status"]).size(),
            still_open.groupby(still_open["created_at"].dt.to_period("M")).size(),
        )
    )
    won = closed[closed["status"] == "won"]
    days = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86400
    by_month = days.groupby(won["closed_at"].dt.to_period("M"))
    out.append(
        pd.DataFrame(
            {
                "deals": by_month.size(),
                "mean_days": by_month.mean(),
                "median_days": by_month.quantile(0.5),
                "p90_days": by_month.quantile(0.9),
            }
        )
    )

    tickets = _in(_scoped(data["tickets"], accounts), "resolved_at", s, e)
    out.append(
        tickets.groupby(tickets["resolved_at"].dt.to_period("M"))["contacts_until_resolved"].agg(
            resolved="size", first_contact=lambda x: (x == 1).sum()
        )
    )
    return out


def headline(results: list) -> dict[str, float]:
    """Totals over the window of a few numbers (the floor's ``headline`` names)."""
    rev, base, surveys, (closed, still_open), cycle, fcr = results
    status = closed.groupby(level="status").sum()
    by_survey = surveys.groupby(level="survey").sum()

    def survey(name: str, column: str) -> float:
        return float(by_survey.at[name, column]) if name in by_survey.index else 0.0

    return {
        "revenue": float(rev["revenue"].sum()),
        "refunds": float(rev["refunds"].sum()),
        "paying_accounts": float(rev["paying_accounts"].fillna(0).sum()),
        **{
            k: float(base[k].sum())
            for k in ("customers_at_start", "new_customers", "churned", "retained", "mrr_at_start")
        },
        "expansion": float(base["expansion"].sum()),
        "churned_mrr": float(base["churned_mrr"].sum()),
        "retention_costs": float(base["retention_costs"].sum()),
        "nps_responses": survey("nps", "responses"),
        "promoters": survey("nps", "promoters"),
        "ces_responses": survey("ces", "responses"),
        "ces_easy": survey("ces", "easy"),
        "won": float(status.get("won", 0)),
        "lost": float(status.get("lost", 0)),
        "open_created": float(still_open.sum()),
        "won_deals_cycle": float(cycle["deals"].sum()),
        "median_cycle_days_sum": float(cycle["median_days"].sum()),
        "resolved": float(fcr["resolved"].sum()),
        "first_contact": float(fcr["first_contact"].sum()),
    }
