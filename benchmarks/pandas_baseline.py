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
    "costs": ["account_id", "incurred_on", "purpose", "amount"],
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
    out.append(pay.groupby(month)["amount"].sum())

    subs = _scoped(data["subscriptions"], accounts)
    ended = subs["ended_at"].fillna(pd.Timestamp.max)
    costs = _in(_scoped(data["costs"], accounts), "incurred_on", s, e)
    costs = costs[costs["purpose"] == "retention"]
    cost_by_month = costs.groupby(costs["incurred_on"].dt.to_period("M"))["amount"].sum()
    rows = []
    for ps in pd.date_range(s, e - pd.DateOffset(months=1), freq="MS"):
        pe = ps + pd.DateOffset(months=1)
        at_s = (subs["started_at"] <= ps) & (ended > ps)
        at_e = (subs["started_at"] <= pe) & (ended > pe)
        mrr_s = subs[at_s].groupby("account_id")["mrr"].sum()
        mrr_e = subs[at_e].groupby("account_id")["mrr"].sum()
        start_ids = mrr_s.index
        retained = start_ids.intersection(mrr_e.index)
        churned = len(start_ids) - len(retained)
        nrr = mrr_e.reindex(start_ids).fillna(0).sum() / mrr_s.sum() if len(start_ids) else np.nan
        cost = cost_by_month.get(ps.to_period("M"), 0.0)
        rows.append(
            (
                ps,
                len(start_ids),
                churned,
                churned / len(start_ids) if len(start_ids) else np.nan,
                nrr,
                cost / len(retained) if len(retained) else np.nan,
            )
        )
    out.append(rows)

    surveys = _in(_scoped(data["survey_responses"], accounts), "responded_at", s, e)
    surveys = surveys[surveys["survey"].isin(["nps", "ces"])]
    g = surveys.assign(
        period=surveys["responded_at"].dt.to_period("M"),
        promoter=(surveys["score"] >= 9) & (surveys["survey"] == "nps"),
        detractor=(surveys["score"] <= 6) & (surveys["survey"] == "nps"),
    )
    out.append(
        g.groupby(["period", "survey"]).agg(
            responses=("score", "size"),
            promoters=("promoter", "sum"),
            detractors=("detractor", "sum"),
            mean_score=("score", "mean"),
        )
    )

    deals = _scoped(data["deals"], accounts)
    closed = _in(deals[deals["status"].isin(["won", "lost"])], "closed_at", s, e)
    out.append(closed.groupby([closed["closed_at"].dt.to_period("M"), "status"]).size())
    won = closed[closed["status"] == "won"]
    days = (won["closed_at"] - won["created_at"]).dt.total_seconds() / 86400
    out.append((len(days), days.mean(), days.quantile(0.5), days.quantile(0.9)))

    tickets = _in(_scoped(data["tickets"], accounts), "resolved_at", s, e)
    out.append(
        tickets.groupby(tickets["resolved_at"].dt.to_period("M"))["contacts_until_resolved"].agg(
            resolved="size", first_contact=lambda x: (x == 1).sum()
        )
    )
    return out
