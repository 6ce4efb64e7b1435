"""Realistic, seeded, reproducible demo data for all 17 canonical tables.

``generate(engine, accounts=5000, seed=42)`` creates the schema if needed, clears the
tables (children first) and refills them in ONE transaction (up to 100,000 accounts), so
a failure leaves the old data in place; bigger runs commit per chunk of accounts to
bound memory and leave empty tables on failure. Same ``accounts``, ``seed`` and
``today`` give identical rows on every database.

What the data contain
---------------------
* **History**: the 72 full calendar months before the month of ``today`` plus the current,
  partial month; nothing at or after ``today`` 00:00 UTC. The first two years are the
  company's slow start (12 % of the accounts), so the last four years begin with a
  customer base.
* **Accounts**: segments SMB / Mid-Market / Enterprise (62/28/10 %), ten industries,
  regions North America / EMEA / LATAM / APAC with countries and cities, company sizes
  by segment, seven acquisition channels; after the start, new accounts per month double
  over the history, with fewer in summer and December. Each account has a latent
  *health* and a *support friction* flag.
* **Staff**: 20–60 users in teams (Sales SMB / Mid-Market / Enterprise, Customer Success,
  Support), each team with a manager who reports to the head of revenue; salespeople
  differ in skill (win rate by owner differs).
* **Products**: eight products in four families with list prices per seat and month.
* **Pipeline**: Lead(1) → Qualified(2) → Proposal(3) → Negotiation(4) → Closed Won /
  Closed Lost (both position 5) with probabilities. About five deals per account;
  stage durations are lognormal with medians that grow from SMB to Enterprise; some
  deals skip Lead, Qualified or Proposal, ~4 % re-enter Proposal from Negotiation;
  deals still running at ``today`` are open; lost deals have a lost reason; lead sources
  move the win rate (referrals win more, outbound less).
* **Subscriptions**: the first won deal makes the account a customer (MRR by segment:
  seats × list price − discount); later won deals add add-on subscriptions (expansion);
  ~30 % of first subscriptions change plan (upgrade ×1.35 / downgrade ×0.7: the old row
  ends, a new row starts); ~22 % of add-ons get cancelled; churn ends every running row.
  An account has at most one running row per product: a later deal for a product it
  already has (more seats) ends the running row and starts one with the summed MRR.
  The monthly churn hazard rises ×2.1 per standard deviation of lower health (which is
  what drives NPS down) and ×1.8 with support friction; on top, 60 % of the customers
  with a ticket that is never resolved leave within a few months of it (friction makes
  such a ticket ~12× more likely).
* **Payments**: one invoice per customer and month on its billing day = running MRR ×
  a seasonal usage factor (busy Q4, quiet summer); ~0.6 % are followed by a refund (a
  negative amount).
* **Tickets**: categories, priorities, channels, first response and resolution times;
  ``contacts_until_resolved`` is 1 for most tickets (fewer with friction or for
  defects); ~1 % never get resolved, plus the one stuck ticket of the accounts above. **Defect spike**: one core product (``DemoContext.spike_product``) gets
  many extra defect / complaint tickets in one calendar quarter of the last two years.
* **Surveys**: NPS 0–10 about twice a year (follows health), CES 1–7 after support
  tickets (worse with more contacts), returns/exchanges, signup and website visits, CSAT
  1–5 after support and purchases; ~22 % carry a short comment matching the score.
* **Marketing**: acquisition and retention campaigns every month with sent / opened /
  clicked / converted responses; daily web traffic per source and daily social-media
  figures per platform (mentions jump during the defect spike).
* **Costs**: all five categories (personnel, production, overhead, marketing, loyalty)
  with acquisition / retention / other purposes; company-wide monthly costs plus costs
  booked on single accounts (onboarding, commission, account management, hosting, loyalty
  rewards).

Injected data-quality problems (what ``python -m crm_data check`` should find)
-----------------------------------------------------------------------------
* duplicate accounts: ~0.2 % of accounts (at least one per chunk of accounts) repeat an
  earlier account's company with a name variant (UPPER CASE, " Inc." or " Ltd" added);
* duplicate contacts: ~0.2 % of contacts appear twice at the same account, the second
  time with the e-mail in another case;
* deals missing an amount: ~0.3 % of deals;
* stale open deals: ~0.4 % of deals were abandoned — still open, last stage change more
  than 150 days ago.

Speed and size: everything is vectorised with numpy / Arrow and loaded with
:func:`crm_data.bulk.bulk_insert`; accounts are generated in chunks of
:data:`CHUNK_ACCOUNTS` while a writer thread loads the previous chunk, so memory stays
bounded for a million accounts.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import queue
import sys
import threading
from collections.abc import Collection, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from tqdm import tqdm

from crm_data import demo_vocab as vocab
from crm_data import derived, hooks, schema
from crm_data.bulk import bulk_insert
from crm_data.demo_accounts import CHUNK_TABLES, account_chunk
from crm_data.demo_context import DemoContext, product_arrays, spike_quarter, time_axis
from crm_data.demo_util import as_text, choose, ids, lookup, timestamps
from crm_data.engines import connect_checked
from crm_data.importing import DEMO, mark_contents, recorded_contents
from crm_data.validation import existing_tables

#: accounts generated (and loaded) per step; each chunk has its own random stream, so
#: changing this changes the data (it is a constant for that reason)
CHUNK_ACCOUNTS = 100_000
_DONE = object()
_ABORT = object()


def generate(
    engine: sa.Engine,
    accounts: int = 5000,
    seed: int = 42,
    progress: bool = True,
    today: dt.date | None = None,
) -> dict[str, int]:
    """Create the schema if missing, clear all 17 tables and fill them with demo data.

    ``accounts`` sets the size (everything else scales with it), ``seed`` the random
    stream, ``today`` the last day of the history (default: today in UTC; data lie before
    its midnight); ``progress`` draws a tqdm bar on stderr. Then it reports every table as
    changed (:func:`crm_data.hooks.tables_changed`): the application's listener rebuilds
    the KPI roll-ups (``kpis.rollups.listen``); unwired, they stay unbuilt (the KPIs read
    the tables) until ``python -m crm_data rollups``. After that commit the committed
    listeners run (:func:`crm_data.hooks.tables_committed`; wired by the command line: the
    revenue forecast the Forecast page opens on, ``forecasting.store``); their problems are
    printed as warnings. Returns the number of rows written
    per table (every table, in schema order). It records that the tables hold demo data
    (``crm_data.importing.mark_contents``); :func:`existing_data` tells what it would
    delete that is not.
    """
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    today = today or dt.datetime.now(dt.UTC).date()  # the UTC calendar day
    schema.create_schema(engine)
    ctx, global_tables = build_context(accounts, seed, today)
    counts = {t.name: 0 for t in schema.TABLES}
    bar = tqdm(total=accounts, unit=" accounts", file=sys.stderr, disable=not progress, desc="demo data")
    work: queue.Queue = queue.Queue(maxsize=6)
    failure: list[BaseException] = []
    commit_each_chunk = accounts > CHUNK_ACCOUNTS

    def write() -> None:
        try:
            _write(engine, work, counts, bar, commit_each_chunk)
        except _Aborted:  # the main thread failed and raises its own error
            pass
        except BaseException as error:  # handed to the main thread
            failure.append(error)
            while work.get() not in (_DONE, _ABORT):  # drain so the producer never blocks
                pass

    writer = threading.Thread(target=write, name="demo-writer", daemon=True)
    writer.start()
    finished = False
    try:
        for item in _all_rows(ctx, global_tables):
            if failure:
                break
            work.put(item)
        finished = True
    finally:
        work.put(_DONE if finished and not failure else _ABORT)
        writer.join()
        bar.close()
    if failure:
        raise failure[0]
    if progress and hooks.listeners():
        print("demo data: refreshing the KPI roll-ups", file=sys.stderr)
    change = hooks.Change.unknown([t.name for t in schema.TABLES], today)
    with connect_checked(engine) as conn, conn.begin():
        hooks.tables_changed(conn, change)
    if progress and hooks.committed_listeners():
        print("demo data: computing ahead what the dashboard opens on", file=sys.stderr)
    for problem in hooks.tables_committed(engine, change):  # after the commit: e.g. the revenue forecast
        print(f"warning: {problem}", file=sys.stderr)
    return counts


def existing_data(conn: sa.Connection) -> dict[str, int] | None:
    """What :func:`generate` would delete that is not demo data: the rows of each non-empty
    CRM table, or None when there is nothing such (no CRM tables, all of them empty, or
    their contents recorded as demo data by an earlier :func:`generate`). Tables filled by
    an import, or by another tool, count as not demo data."""
    if recorded_contents(conn) == DEMO:
        return None
    names = existing_tables(conn)
    present = [table for table in schema.TABLES if table.name in names]
    if not present:
        return None
    counts = [sa.select(sa.func.count()).select_from(t).scalar_subquery().label(t.name) for t in present]
    row = conn.execute(sa.select(*counts)).one()
    found = {table.name: int(row[i]) for i, table in enumerate(present) if row[i]}
    return found or None


class _Aborted(Exception):
    """The generator failed: the writer rolls back."""


def _write(
    engine: sa.Engine, work: queue.Queue, counts: dict[str, int], bar: tqdm, commit_each_chunk: bool
) -> None:
    """The writer thread: clear the tables and load every frame from ``work``.

    Up to :data:`CHUNK_ACCOUNTS` accounts it is one transaction. Bigger runs commit after
    each chunk of accounts, which keeps DuckDB's index memory bounded (a million accounts
    in one transaction peaked at 15 GB); if such a run fails after its first commit, the
    tables are emptied again so that no half-built demo is left behind.
    """
    with connect_checked(engine) as conn:
        transaction = conn.begin()
        committed = False
        try:
            _clear(conn)
            mark_contents(conn, DEMO)  # `crm-insights demo` may overwrite these tables again
            while (item := work.get()) is not _DONE:
                if item is _ABORT:
                    raise _Aborted
                table, frame = item
                if table is not None:
                    counts[table.name] += bulk_insert(conn, table, frame)
                elif frame is not None:
                    bar.update(frame)
                else:  # a chunk of accounts is loaded
                    _release_memory()
                    if commit_each_chunk:
                        transaction.commit()
                        committed = True
                        transaction = conn.begin()
            bar.set_postfix_str("committing", refresh=True)
            transaction.commit()
        except BaseException:
            transaction.rollback()
            if committed:
                with conn.begin():
                    _clear(conn)
            raise


def _release_memory() -> None:
    """Hand memory freed by the last chunk back to the system (Arrow's pool and glibc keep
    it otherwise, and a million accounts would then hold several GB for nothing)."""
    pa.default_memory_pool().release_unused()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):  # not glibc (e.g. musl)
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _clear(conn: sa.Connection) -> None:
    """Empty the 17 tables inside the caller's transaction, children first.

    DuckDB cannot delete a parent row whose children were deleted earlier in the same
    transaction (a documented foreign-key limitation), so there the tables are dropped
    and created again, which is transactional too. The derived tables (KPI roll-ups) are
    marked unbuilt (:func:`crm_data.derived.invalidate`: the KPIs read the tables) until
    :func:`generate`'s listeners rebuild them.
    """
    derived.invalidate(conn)
    if conn.dialect.name == "duckdb":
        schema.metadata.drop_all(conn)
        schema.metadata.create_all(conn)
        return
    for table in reversed(schema.TABLES):
        conn.execute(table.delete())


def _all_rows(
    ctx: DemoContext,
    global_tables: list[tuple[sa.Table, pd.DataFrame]],
    wanted: frozenset[str] | None = None,
) -> Iterator[tuple]:
    """The (table, frame) pairs in load order, with progress pairs (None, accounts done)
    and (None, None) after each chunk. ``wanted`` (table names): a chunk stops once it has
    yielded every wanted table it makes, and the company's costs come only when ``costs``
    is wanted — the tables drawn before are drawn from the same random stream as in a
    full run, so the wanted ones hold the same rows."""
    yield from global_tables
    from_chunks = None if wanted is None else wanted - {table.name for table, _ in global_tables}
    for number, first in enumerate(range(0, ctx.accounts, CHUNK_ACCOUNTS)):
        n = min(CHUNK_ACCOUNTS, ctx.accounts - first)
        rng = np.random.default_rng([ctx.seed, number + 1])
        done = 0
        made: set[str] = set()
        for part, item in enumerate(account_chunk(ctx, rng, first, n), start=1):
            yield item
            step = n * part // CHUNK_TABLES - done  # progress: a share of the chunk per table
            done += step
            yield None, step
            made.add(item[0].name)
            if from_chunks is not None and from_chunks <= made:
                break
        yield None, None  # the chunk is loaded
    if wanted is None or schema.costs.name in wanted:
        yield from company_costs(ctx, np.random.default_rng([ctx.seed, 0, 2]))


def demo_frames(
    accounts: int = 300, seed: int = 42, today: dt.date | None = None, tables: Collection[str] | None = None
) -> dict[str, pd.DataFrame]:
    """The demo data as pandas frames, one per table, without a database.

    The same rows :func:`generate` writes for these arguments (``today`` defaults to
    today in UTC), for notebooks and for checking the data's story cheaply over many
    ``today`` values. Holds everything in memory: meant for thousands of accounts, not
    millions. ``tables``: only these tables (same rows; the tables a chunk of accounts
    draws after the last one asked for are not generated).
    """
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    chosen = [t for t in schema.TABLES if tables is None or t.name in tables]
    if tables is not None and len(chosen) != len(set(tables)):
        unknown = sorted(set(tables) - {t.name for t in chosen})
        raise ValueError(f"not a table of the demo: {', '.join(unknown)}")
    ctx, global_tables = build_context(accounts, seed, today or dt.datetime.now(dt.UTC).date())
    parts: dict[str, list[pd.DataFrame]] = {t.name: [] for t in chosen}
    wanted = None if tables is None else frozenset(tables)
    for table, frame in _all_rows(ctx, global_tables, wanted):
        if table is not None and table.name in parts:
            parts[table.name].append(frame)
    return {
        t.name: pd.concat(parts[t.name], ignore_index=True)
        if parts[t.name]
        else pd.DataFrame(columns=[c.name for c in t.columns])
        for t in chosen
    }


def build_context(
    accounts: int, seed: int, today: dt.date
) -> tuple[DemoContext, list[tuple[sa.Table, pd.DataFrame]]]:
    """The shared context and the tables that do not depend on accounts (users, products,
    pipeline stages, campaigns, web traffic, social media)."""
    rng = np.random.default_rng([seed, 0, 1])
    origin, horizon, edges, month_of_year = time_axis(today)
    users, user_frame = _users(rng, accounts)
    product_ids, product_names, prices = product_arrays()
    core = [i for i, p in enumerate(vocab.PRODUCTS) if p[4]][:2]  # the widely used plans
    spike_product = int(rng.choice(core))
    spike_start, spike_end = spike_quarter(rng, origin, today)
    campaigns, campaign_frame = _campaigns(rng, accounts, origin, horizon, edges)
    ctx = DemoContext(
        seed=seed,
        accounts=accounts,
        today=today,
        origin=origin,
        horizon=horizon,
        month_edges=edges,
        month_of_year=month_of_year,
        product_ids=product_ids,
        product_names=product_names,
        product_prices=prices,
        spike_product=spike_product,
        spike_start=spike_start,
        spike_end=spike_end,
        **users,
        **campaigns,
    )
    tables = [
        (schema.users, user_frame),
        (schema.products, _products()),
        (schema.pipeline_stages, _pipeline_stages()),
        (schema.campaigns, campaign_frame),
        (schema.web_traffic, _web_traffic(ctx, rng)),
        (schema.social_media, _social_media(ctx, rng)),
    ]
    return ctx, tables


def _users(rng: np.random.Generator, accounts: int) -> tuple[dict[str, object], pd.DataFrame]:
    total = int(np.clip(round(20 + accounts / 200), 20, 60))
    shares = np.array([s for _, _, s in vocab.TEAMS])
    sizes = np.maximum(2, np.floor(shares / shares.sum() * (total - 1)).astype(int))
    sizes[0] += total - 1 - sizes.sum()
    team = np.concatenate([[-1], np.repeat(np.arange(len(vocab.TEAMS)), sizes)])
    first_of_team = np.concatenate([[0], 1 + np.cumsum(sizes) - sizes])
    is_manager = np.zeros(total, dtype=bool)
    is_manager[first_of_team[1:]] = True
    manager = np.where(team < 0, -1, np.where(is_manager, 0, first_of_team[1:][np.maximum(team, 0)]))
    names_code = rng.choice(len(vocab.FIRST_NAMES) * len(vocab.LAST_NAMES), total, replace=False)
    user_ids = ids("U", 0, total, 3)
    region = choose(rng, [v[0] for v in vocab.GEOGRAPHY.values()], total)
    team_names = [t for t, _, _ in vocab.TEAMS] + ["Leadership"]
    departments = [d for _, d, _ in vocab.TEAMS] + ["Management"]
    frame = pd.DataFrame(
        {
            "user_id": as_text(user_ids),
            "name": as_text(
                pa.array(
                    [
                        f"{vocab.FIRST_NAMES[c // len(vocab.LAST_NAMES)]} {vocab.LAST_NAMES[c % len(vocab.LAST_NAMES)]}"
                        for c in names_code
                    ]
                )
            ),
            "team": as_text(lookup(team_names, np.where(team < 0, len(vocab.TEAMS), team))),
            "department": as_text(lookup(departments, np.where(team < 0, len(vocab.TEAMS), team))),
            "manager_id": as_text(
                pa.array(user_ids.to_pylist(), type=pa.string()).take(
                    pa.array(np.maximum(manager, 0), mask=manager < 0)
                )
            ),
            "region": as_text(lookup(list(vocab.GEOGRAPHY), region)),
        }
    )
    sales_by_segment = [np.flatnonzero(team == k) for k in range(3)]
    skill = np.where(team <= 2, np.clip(0.05 * rng.standard_normal(total), -0.1, 0.1), 0.0)
    users = {
        "user_ids": user_ids,
        "sales_by_segment": sales_by_segment,
        "sales_users": np.flatnonzero((team >= 0) & (team <= 2)),
        "success_users": np.flatnonzero(team == 3),
        "support_users": np.flatnonzero(team == 4),
        "user_skill": skill,
    }
    return users, frame


def _products() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "product_id": [p[0] for p in vocab.PRODUCTS],
            "name": [p[1] for p in vocab.PRODUCTS],
            "family": [p[2] for p in vocab.PRODUCTS],
            "list_price": [p[3] for p in vocab.PRODUCTS],
        }
    )


def _pipeline_stages() -> pd.DataFrame:
    return pd.DataFrame(vocab.PIPELINE, columns=["stage", "position", "probability", "is_closed", "is_won"])


def _campaigns(
    rng: np.random.Generator, accounts: int, origin: np.datetime64, horizon: float, edges: np.ndarray
) -> tuple[dict[str, object], pd.DataFrame]:
    per_month = 1 + rng.poisson(2.5, len(edges) - 1)
    month = np.repeat(np.arange(len(edges) - 1), per_month)
    start = edges[month] + np.floor(rng.random(len(month)) * (edges[month + 1] - edges[month]))
    kind = choose(rng, [s for _, _, s in vocab.CAMPAIGN_CHANNELS], len(month))
    end = np.minimum(start + 7 + np.floor(28 * rng.random(len(month))), horizon - 1)
    keep = start < horizon
    month, start, kind, end = month[keep], start[keep], kind[keep], end[keep]
    channel = [vocab.CAMPAIGN_CHANNELS[k][0] for k in kind]
    objective = [vocab.CAMPAIGN_CHANNELS[k][1] for k in kind]
    per_account = {
        "email": 0.5,
        "paid_search": 4.0,
        "social": 2.5,
        "webinar": 1.5,
        "events": 6.0,
        "in_app": 0.3,
    }
    cost = np.round(
        np.array([per_account[c] for c in channel]) * accounts * np.exp(0.3 * rng.standard_normal(len(kind))),
        2,
    )
    theme = rng.integers(0, len(vocab.CAMPAIGN_THEMES), len(kind))
    months = (origin.astype("datetime64[M]") + month).astype(str)
    names = [
        f"{vocab.CAMPAIGN_THEMES[t]} {m} ({c.replace('_', ' ')})"
        for t, m, c in zip(theme, months, channel, strict=True)
    ]
    campaign_ids = ids("K", 0, len(kind), 4)
    frame = pd.DataFrame(
        {
            "campaign_id": as_text(campaign_ids),
            "name": names,
            "channel": channel,
            "objective": objective,
            "started_on": timestamps(origin, start).astype("datetime64[s]"),
            "ended_on": timestamps(origin, end).astype("datetime64[s]"),
            "cost": cost,
        }
    )
    context = {
        "campaign_ids": campaign_ids,
        "campaign_start": start,
        "campaign_end": end,
        "campaign_retention": np.array([o == "retention" for o in objective]),
        "campaign_channel": channel,
        "campaign_cost": cost,
    }
    return context, frame


def _daily_axis(ctx: DemoContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Day offsets, weekday (0 = Monday) and growth trend (0.55 → 2.0) of every history day."""
    days = np.arange(int(ctx.horizon), dtype=float)
    weekday = (ctx.origin + days.astype("timedelta64[D]")).astype("datetime64[D]").astype(np.int64)
    weekday = (weekday + 3) % 7  # 1970-01-01 was a Thursday
    trend = 0.55 + 1.45 * days / max(ctx.horizon, 1.0)
    return days, weekday, trend


def _web_traffic(ctx: DemoContext, rng: np.random.Generator) -> pd.DataFrame:
    days, weekday, trend = _daily_axis(ctx)
    month = ctx.month_index(days)
    season = np.array([1.05, 1.05, 1.1, 1.0, 1.0, 0.95, 0.82, 0.85, 1.05, 1.1, 1.08, 0.9])[
        ctx.month_of_year[month] - 1
    ]
    week = np.where(weekday >= 5, 0.55, 1.0)
    frames = []
    scale = ctx.accounts / 1000
    for source, per_thousand, impressions_per_session in vocab.WEB_SOURCES:
        level = per_thousand * scale * trend * season * week * np.exp(0.08 * rng.standard_normal(len(days)))
        sessions = rng.poisson(level)
        clicks = rng.binomial(sessions, 0.93)
        impressions = rng.poisson(
            sessions * impressions_per_session * np.exp(0.1 * rng.standard_normal(len(days)))
        )
        impressions = np.maximum(impressions, clicks)
        frames.append(
            pd.DataFrame(
                {
                    "date": timestamps(ctx.origin, days).astype("datetime64[s]"),
                    "source": source,
                    "sessions": sessions,
                    "pageviews": np.round(sessions * (2.2 + 1.3 * rng.random(len(days)))).astype(np.int64),
                    "impressions": impressions,
                    "clicks": clicks,
                    "signups": rng.binomial(sessions, 0.012),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _social_media(ctx: DemoContext, rng: np.random.Generator) -> pd.DataFrame:
    days, weekday, trend = _daily_axis(ctx)
    in_spike = (days >= ctx.spike_start) & (days < ctx.spike_end)
    frames = []
    scale = ctx.accounts / 1000
    for platform, per_thousand in vocab.SOCIAL_PLATFORMS:
        start = per_thousand * scale
        adds = rng.poisson(start * 0.0012 * trend)
        followers = np.round(start + np.cumsum(adds)).astype(np.int64)
        impressions = rng.poisson(
            followers * (0.8 + 0.7 * rng.random(len(days))) * np.where(weekday >= 5, 0.6, 1.0)
        )
        rate = 0.035 if platform == "LinkedIn" else 0.022
        engagements = rng.binomial(impressions, rate)
        mentions = rng.poisson(followers * 0.0015 * np.where(in_spike, 3.0, 1.0))
        frames.append(
            pd.DataFrame(
                {
                    "date": timestamps(ctx.origin, days).astype("datetime64[s]"),
                    "platform": platform,
                    "followers": followers,
                    "impressions": impressions,
                    "engagements": engagements,
                    "mentions": mentions,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def company_costs(ctx: DemoContext, rng: np.random.Generator) -> Iterator[tuple[sa.Table, pd.DataFrame]]:
    """Company-wide monthly costs (no account): salaries, hosting, rent, marketing
    (campaign spend by objective + brand), the loyalty programme. Each line is a fixed
    part (per 1,000 accounts of the demo) plus parts per paying customer and per new
    account of the month, so costs follow the business as it grows."""
    scale = ctx.accounts / 1000
    customers = ctx.paying_accounts.astype(float)
    new = ctx.new_accounts.astype(float)
    ramp = 0.3 + 0.7 * np.arange(ctx.n_months) / max(ctx.n_months - 1, 1)  # a smaller company early on
    lines = [
        # category, purpose, fixed per 1,000 accounts, per paying customer, per new account
        ("personnel", "acquisition", 6000.0, 0.0, 60.0),
        ("personnel", "retention", 2000.0, 30.0, 0.0),
        ("personnel", "other", 12000.0, 0.0, 0.0),
        ("production", "other", 1500.0, 9.0, 0.0),
        ("production", "retention", 0.0, 3.0, 0.0),
        ("overhead", "other", 8000.0, 0.0, 0.0),
        ("marketing", "acquisition", 2500.0, 0.0, 12.0),
        ("loyalty", "retention", 300.0, 1.5, 0.0),
    ]
    day, category, purpose, amount = [], [], [], []
    for cat, use, fixed, per_customer, per_new in lines:
        level = (fixed * scale * ramp + per_customer * customers + per_new * new) * np.exp(
            0.05 * rng.standard_normal(ctx.n_months)
        )
        day.append(ctx.month_edges[:-1] + np.floor(rng.random(ctx.n_months) * 5))
        category += [cat] * ctx.n_months
        purpose += [use] * ctx.n_months
        amount.append(np.round(level, 2))
    day = np.concatenate(day)
    amount = np.concatenate(amount)
    keep = (day < ctx.horizon) & (amount > 0)
    frame = pd.DataFrame(
        {
            "incurred_on": timestamps(ctx.origin, day[keep]).astype("datetime64[s]"),
            "category": np.array(category)[keep],
            "purpose": np.array(purpose)[keep],
            "amount": amount[keep],
        }
    )
    campaigns = pd.DataFrame(
        {
            "incurred_on": timestamps(ctx.origin, ctx.campaign_start).astype("datetime64[s]"),
            "category": "marketing",
            "purpose": np.where(ctx.campaign_retention, "retention", "acquisition"),
            "amount": ctx.campaign_cost,
        }
    )
    frame = pd.concat([frame, campaigns], ignore_index=True).sort_values("incurred_on", kind="stable")
    start = ctx.allocate("costs", len(frame))
    frame.insert(0, "cost_id", as_text(ids("X", start, len(frame), 9)))
    frame.insert(4, "account_id", None)
    yield schema.costs, frame.reset_index(drop=True)
