"""The floor: the Overview's KPIs as hand-written DuckDB SQL, one statement each.

What the product's SQLAlchemy-built queries are measured against. Each function runs on a
raw ``duckdb`` connection and takes the same window and account filter as the product:
``start``/``end`` dates (half-open, monthly periods) and optional region / industry.
"""

from __future__ import annotations

import datetime as dt

import duckdb

ACCOUNT_FILTER = """
    AND (CAST(? AS VARCHAR) IS NULL OR {col} IN (
        SELECT account_id FROM accounts
        WHERE (CAST(? AS VARCHAR) IS NULL OR region = ?) AND (CAST(? AS VARCHAR) IS NULL OR industry = ?)))
"""


def _acct(col: str, region: str | None, industry: str | None) -> tuple[str, list[object]]:
    active = region or industry
    flag = "x" if active else None
    return ACCOUNT_FILTER.format(col=col), [flag, region, region, industry, industry]


def _periods_cte() -> str:
    return """periods AS (
        SELECT CAST(s AS TIMESTAMP) AS s, CAST(s + INTERVAL 1 MONTH AS TIMESTAMP) AS e
        FROM generate_series(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP) - INTERVAL 1 MONTH, INTERVAL 1 MONTH) g(s))"""


def revenue(con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, region=None, industry=None):
    where, params = _acct("account_id", region, industry)
    return con.execute(
        f"""SELECT date_trunc('month', paid_at) AS period, sum(amount) AS revenue,
                   count(DISTINCT account_id) FILTER (WHERE amount > 0) AS paying_accounts
            FROM payments WHERE paid_at >= ? AND paid_at < ? {where}
            GROUP BY 1 ORDER BY 1""",
        [start, end, *params],
    ).fetchall()


def customers_churn_nrr_retention_cost(con, start, end, region=None, industry=None):
    """Active customers, churn, NRR and retention cost per month (they share the per-account
    activity at each period boundary)."""
    where, params = _acct("sub.account_id", region, industry)
    cwhere, cparams = _acct("account_id", region, industry)
    return con.execute(
        f"""WITH {_periods_cte()},
        per_account AS (
            SELECT p.s, sub.account_id,
                   bool_or(sub.started_at <= p.s AND (sub.ended_at IS NULL OR sub.ended_at > p.s)) AS at_s,
                   bool_or(sub.started_at <= p.e AND (sub.ended_at IS NULL OR sub.ended_at > p.e)) AS at_e,
                   sum(sub.mrr) FILTER (WHERE sub.started_at <= p.s AND (sub.ended_at IS NULL OR sub.ended_at > p.s)) AS mrr_s,
                   sum(sub.mrr) FILTER (WHERE sub.started_at <= p.e AND (sub.ended_at IS NULL OR sub.ended_at > p.e)) AS mrr_e
            FROM periods p JOIN subscriptions sub
              ON sub.started_at <= p.e AND (sub.ended_at IS NULL OR sub.ended_at > p.s)
            WHERE TRUE {where}
            GROUP BY 1, 2),
        per_period AS (
            SELECT s, count(*) FILTER (WHERE at_s) AS customers_at_start,
                   count(*) FILTER (WHERE at_s AND NOT at_e) AS churned,
                   count(*) FILTER (WHERE at_s AND at_e) AS retained,
                   sum(mrr_s) FILTER (WHERE at_s) AS mrr_start,
                   sum(coalesce(mrr_e, 0)) FILTER (WHERE at_s) AS mrr_end
            FROM per_account GROUP BY 1),
        retention_costs AS (
            SELECT date_trunc('month', incurred_on) AS s, sum(amount) AS cost
            FROM costs WHERE purpose = 'retention' AND incurred_on >= ? AND incurred_on < ? {cwhere}
            GROUP BY 1)
        SELECT p.s, customers_at_start, churned, churned / nullif(customers_at_start, 0) AS churn_rate,
               mrr_end / nullif(mrr_start, 0) AS nrr, c.cost / nullif(retained, 0) AS cost_per_retained
        FROM per_period p LEFT JOIN retention_costs c ON c.s = p.s ORDER BY 1""",
        [start, end, *params, start, end, *cparams],
    ).fetchall()


def nps_ces(con, start, end, region=None, industry=None):
    where, params = _acct("account_id", region, industry)
    return con.execute(
        f"""SELECT date_trunc('month', responded_at) AS period, survey, count(*) AS responses,
                   count(*) FILTER (WHERE survey = 'nps' AND score >= 9) AS promoters,
                   count(*) FILTER (WHERE survey = 'nps' AND score <= 6) AS detractors,
                   avg(score) AS mean_score
            FROM survey_responses
            WHERE survey IN ('nps', 'ces') AND responded_at >= ? AND responded_at < ? {where}
            GROUP BY 1, 2 ORDER BY 1, 2""",
        [start, end, *params],
    ).fetchall()


def win_rate(con, start, end, region=None, industry=None):
    where, params = _acct("account_id", region, industry)
    return con.execute(
        f"""SELECT date_trunc('month', closed_at) AS period,
                   count(*) FILTER (WHERE status = 'won') AS won, count(*) FILTER (WHERE status = 'lost') AS lost
            FROM deals WHERE status IN ('won', 'lost') AND closed_at >= ? AND closed_at < ? {where}
            GROUP BY 1 ORDER BY 1""",
        [start, end, *params],
    ).fetchall()


def sales_cycle(con, start, end, region=None, industry=None):
    where, params = _acct("account_id", region, industry)
    return con.execute(
        f"""SELECT count(*), avg(d), quantile_cont(d, 0.5), quantile_cont(d, 0.9)
            FROM (SELECT (epoch(closed_at) - epoch(created_at)) / 86400.0 AS d FROM deals
                  WHERE status = 'won' AND closed_at >= ? AND closed_at < ? {where})""",
        [start, end, *params],
    ).fetchall()


def first_contact_resolution(con, start, end, region=None, industry=None):
    where, params = _acct("account_id", region, industry)
    return con.execute(
        f"""SELECT date_trunc('month', resolved_at) AS period, count(*) AS resolved,
                   count(*) FILTER (WHERE contacts_until_resolved = 1) AS first_contact
            FROM tickets WHERE resolved_at >= ? AND resolved_at < ? {where}
            GROUP BY 1 ORDER BY 1""",
        [start, end, *params],
    ).fetchall()


OVERVIEW = [
    revenue,
    customers_churn_nrr_retention_cost,
    nps_ces,
    win_rate,
    sales_cycle,
    first_contact_resolution,
]


def overview(
    con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, region=None, industry=None
) -> list:
    """Every Overview KPI once, as the floor."""
    return [kpi(con, start, end, region, industry) for kpi in OVERVIEW]
