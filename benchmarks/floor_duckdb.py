"""The floor: the Overview's KPIs as hand-written DuckDB SQL.

What the product's SQLAlchemy-built queries are measured against. It computes the same
aggregates as the Overview's ``kpis`` calls (see ``benchmarks.overview``): every count and
sum the product's KPI frames are made of, per month; ratios and intervals are left out
(the product computes them in Python from these numbers in microseconds).

Each function runs on a raw ``duckdb`` connection and takes the same window and account
filter as the product: ``start``/``end`` dates (half-open, monthly periods) and optional
region / industry. The account filter is a semi-join on the accounts' primary key.
"""

from __future__ import annotations

import datetime as dt

import duckdb


def _acct(
    col: str,
    region: str | None,
    industry: str | None,
    owner: str | None = None,
    product: str | None = None,
    own_owner: str | None = None,
    own_product: str | None = None,
) -> tuple[str, list[object]]:
    """`` AND ...`` for the set filters on a table whose account column is ``col``.

    Region / industry / owner through the account: one semi-join on the accounts' primary
    key. A table with its own owner column (``own_owner``: deals.owner_id) or product
    column (``own_product``: deals, subscriptions, tickets) is filtered by it directly;
    otherwise the product selects the accounts with a subscription to it."""
    conditions, params = [], []
    if region:
        conditions.append("region = ?")
        params.append(region)
    if industry:
        conditions.append("industry = ?")
        params.append(industry)
    if owner and not own_owner:
        conditions.append("owner_id = ?")
        params.append(owner)
    sql = (
        f" AND {col} IN (SELECT account_id FROM accounts WHERE {' AND '.join(conditions)})"
        if conditions
        else ""
    )
    if owner and own_owner:
        sql += f" AND {own_owner} = ?"
        params.append(owner)
    if product and own_product:
        sql += f" AND {own_product} = ?"
        params.append(product)
    elif product:
        sql += f" AND {col} IN (SELECT account_id FROM subscriptions WHERE product_id = ?)"
        params.append(product)
    return sql, params


def _ts(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time())


PERIODS = """periods AS (
    SELECT CAST(s AS TIMESTAMP) AS s, CAST(s + INTERVAL 1 MONTH AS TIMESTAMP) AS e
    FROM generate_series(CAST(? AS TIMESTAMP), CAST(? AS TIMESTAMP) - INTERVAL 1 MONTH, INTERVAL 1 MONTH) g(s))"""


def revenue(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    region=None,
    industry=None,
    owner=None,
    product=None,
):
    where, params = _acct("account_id", region, industry, owner, product)
    return con.execute(
        f"""SELECT date_trunc('month', paid_at) AS period, sum(amount) AS revenue,
                   sum(amount) FILTER (WHERE amount > 0) AS gross_revenue,
                   -sum(amount) FILTER (WHERE amount < 0) AS refunds,
                   count(DISTINCT account_id) FILTER (WHERE amount > 0) AS paying_accounts
            FROM payments WHERE paid_at >= ? AND paid_at < ? {where}
            GROUP BY 1 ORDER BY 1""",
        [_ts(start), _ts(end), *params],
    ).fetchall()


def customer_base(con, start, end, region=None, industry=None, owner=None, product=None):
    """Active customers, churn, MRR retention and retention cost per month: they share the
    per-account activity at each month's start s and end e (one range join)."""
    where, params = _acct("sub.account_id", region, industry, owner, product, own_product="sub.product_id")
    cwhere, cparams = _acct("account_id", region, industry, owner, product)
    return con.execute(
        f"""WITH {PERIODS},
        per_account AS (
            SELECT p.s, sub.account_id,
                   bool_or(sub.started_at <= p.s AND coalesce(sub.ended_at, TIMESTAMP '9999-12-31') > p.s) AS at_s,
                   bool_or(sub.started_at <= p.e AND coalesce(sub.ended_at, TIMESTAMP '9999-12-31') > p.e) AS at_e,
                   sum(coalesce(sub.mrr, 0)) FILTER (
                       WHERE sub.started_at <= p.s AND coalesce(sub.ended_at, TIMESTAMP '9999-12-31') > p.s) AS mrr_s,
                   sum(coalesce(sub.mrr, 0)) FILTER (
                       WHERE sub.started_at <= p.e AND coalesce(sub.ended_at, TIMESTAMP '9999-12-31') > p.e) AS mrr_e
            FROM periods p JOIN subscriptions sub
              ON sub.started_at <= p.e AND coalesce(sub.ended_at, TIMESTAMP '9999-12-31') > p.s
            WHERE TRUE {where}
            GROUP BY 1, 2),
        per_period AS (
            SELECT s, count(*) FILTER (WHERE at_s) AS customers_at_start,
                   count(*) FILTER (WHERE at_e AND NOT at_s) AS new_customers,
                   count(*) FILTER (WHERE at_s AND NOT at_e) AS churned,
                   count(*) FILTER (WHERE at_e) AS customers_at_end,
                   count(*) FILTER (WHERE at_s AND at_e) AS retained,
                   sum(mrr_s) FILTER (WHERE at_s) AS mrr_at_start,
                   sum(mrr_e - mrr_s) FILTER (WHERE at_s AND at_e AND mrr_e > mrr_s) AS expansion,
                   sum(mrr_s - mrr_e) FILTER (WHERE at_s AND at_e AND mrr_e < mrr_s) AS contraction,
                   sum(mrr_s) FILTER (WHERE at_s AND NOT at_e) AS churned_mrr
            FROM per_account GROUP BY 1),
        retention_costs AS (
            SELECT date_trunc('month', incurred_on) AS s, sum(amount) AS retention_costs,
                   sum(amount) FILTER (WHERE category = 'personnel') AS personnel,
                   sum(amount) FILTER (WHERE category = 'production') AS production,
                   sum(amount) FILTER (WHERE category = 'overhead') AS overhead,
                   sum(amount) FILTER (WHERE category = 'marketing') AS marketing,
                   sum(amount) FILTER (WHERE category = 'loyalty') AS loyalty
            FROM costs WHERE purpose = 'retention' AND incurred_on >= ? AND incurred_on < ? {cwhere}
            GROUP BY 1)
        SELECT periods.s, customers_at_start, new_customers, churned, customers_at_end, retained,
               mrr_at_start, expansion, contraction, churned_mrr,
               c.retention_costs, c.personnel, c.production, c.overhead, c.marketing, c.loyalty
        FROM periods
        LEFT JOIN per_period p USING (s) LEFT JOIN retention_costs c USING (s) ORDER BY periods.s""",
        [_ts(start), _ts(end), *params, start, end, *cparams],
    ).fetchall()


def nps_ces(con, start, end, region=None, industry=None, owner=None, product=None):
    where, params = _acct("account_id", region, industry, owner, product)
    return con.execute(
        f"""SELECT date_trunc('month', responded_at) AS period, survey, count(*) AS responses,
                   count(*) FILTER (WHERE score >= 9) AS promoters,
                   count(*) FILTER (WHERE score <= 6) AS detractors,
                   sum(CAST(score AS DOUBLE)) AS total,
                   sum(CAST(score AS DOUBLE) * score) AS total_squares,
                   count(*) FILTER (WHERE score >= 5) AS easy
            FROM survey_responses
            WHERE survey IN ('nps', 'ces') AND responded_at >= ? AND responded_at < ? {where}
            GROUP BY 1, 2 ORDER BY 1, 2""",
        [_ts(start), _ts(end), *params],
    ).fetchall()


def win_rate(con, start, end, region=None, industry=None, owner=None, product=None):
    """Won / lost by closed_at and still-open deals by created_at, per month."""
    where, params = _acct("account_id", region, industry, owner, product, "owner_id", "product_id")
    return con.execute(
        f"""SELECT date_trunc('month', CASE WHEN status = 'open' THEN created_at ELSE closed_at END) AS period,
                   count(*) FILTER (WHERE status = 'won') AS won,
                   count(*) FILTER (WHERE status = 'lost') AS lost,
                   count(*) FILTER (WHERE status = 'open') AS open_created
            FROM deals
            WHERE ((status IN ('won', 'lost') AND closed_at >= ? AND closed_at < ?)
                   OR (status = 'open' AND created_at >= ? AND created_at < ?)) {where}
            GROUP BY 1 ORDER BY 1""",
        [_ts(start), _ts(end), _ts(start), _ts(end), *params],
    ).fetchall()


def sales_cycle(con, start, end, region=None, industry=None, owner=None, product=None):
    """Won deals' created → closed days per month of closed_at: count, mean, median, p90."""
    where, params = _acct("account_id", region, industry, owner, product, "owner_id", "product_id")
    return con.execute(
        f"""SELECT period, count(*), avg(d), quantile_cont(d, 0.5), quantile_cont(d, 0.9)
            FROM (SELECT date_trunc('month', closed_at) AS period,
                         (epoch(closed_at) - epoch(created_at)) / 86400.0 AS d FROM deals
                  WHERE status = 'won' AND closed_at >= ? AND closed_at < ? {where})
            GROUP BY 1 ORDER BY 1""",
        [_ts(start), _ts(end), *params],
    ).fetchall()


def first_contact_resolution(con, start, end, region=None, industry=None, owner=None, product=None):
    where, params = _acct("account_id", region, industry, owner, product, own_product="product_id")
    return con.execute(
        f"""SELECT date_trunc('month', resolved_at) AS period, count(*) AS resolved,
                   count(*) FILTER (WHERE contacts_until_resolved = 1) AS first_contact
            FROM tickets WHERE resolved_at >= ? AND resolved_at < ? {where}
            GROUP BY 1 ORDER BY 1""",
        [_ts(start), _ts(end), *params],
    ).fetchall()


OVERVIEW = [revenue, customer_base, nps_ces, win_rate, sales_cycle, first_contact_resolution]


def overview(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    region: str | None = None,
    industry: str | None = None,
    owner: str | None = None,
    product: str | None = None,
) -> list:
    """Every Overview KPI once, as the floor (optionally for one owner and/or one product,
    with the product's rules of ``kpis.filters.scope``)."""
    return [kpi(con, start, end, region, industry, owner, product) for kpi in OVERVIEW]


def _total(rows, index: int) -> float:
    return float(sum(r[index] or 0 for r in rows))


def headline(results: list) -> dict[str, float]:
    """Totals over the window of a few numbers, to check the product computes the same."""
    rev, base, surveys, wins, cycle, fcr = results
    nps = [r for r in surveys if r[1] == "nps"]
    ces = [r for r in surveys if r[1] == "ces"]
    return {
        "revenue": _total(rev, 1),
        "refunds": _total(rev, 3),
        "paying_accounts": _total(rev, 4),
        "customers_at_start": _total(base, 1),
        "new_customers": _total(base, 2),
        "churned": _total(base, 3),
        "retained": _total(base, 5),
        "mrr_at_start": _total(base, 6),
        "expansion": _total(base, 7),
        "churned_mrr": _total(base, 9),
        "retention_costs": _total(base, 10),
        "nps_responses": _total(nps, 2),
        "promoters": _total(nps, 3),
        "ces_responses": _total(ces, 2),
        "ces_easy": _total(ces, 7),
        "won": _total(wins, 1),
        "lost": _total(wins, 2),
        "open_created": _total(wins, 3),
        "won_deals_cycle": _total(cycle, 1),
        "median_cycle_days_sum": _total(cycle, 3),
        "resolved": _total(fcr, 1),
        "first_contact": _total(fcr, 2),
    }
