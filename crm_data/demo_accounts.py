"""One chunk of demo accounts and everything that hangs off them.

:func:`account_chunk` yields ``(table, frame)`` pairs, parents before children, for a
block of consecutive accounts: accounts, contacts, deals, deal_stage_history,
subscriptions, payments, tickets, survey_responses, interactions, campaign_responses and
account-level costs. All work is vectorised over the chunk; times are float days from
the context's origin until they are turned into timestamps at the end.

The story the data tell (see :mod:`crm_data.demo` for the whole list):

* each account has a latent *health* (standard normal) and a *support friction* flag;
  low health gives low NPS scores, friction gives unresolved and repeated tickets, and
  both raise the monthly churn hazard;
* an account becomes a customer when its first deal is won; later won deals add
  subscriptions (expansion), some subscriptions are up- or downgraded (a new row with the
  new MRR), some add-ons are cancelled, and churn ends every running subscription.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from crm_data import demo_vocab as vocab
from crm_data import schema
from crm_data.demo_context import ACQUISITION_SEASON, REVENUE_SEASON, DemoContext
from crm_data.demo_util import (
    DAYS_PER_MONTH,
    as_text,
    choose,
    choose_rows,
    concat,
    ids,
    lookup,
    maybe_timestamps,
    pick_child,
    repeat_index,
    take,
    timestamps,
)

INF = np.inf
#: share of accounts / contacts / deals given a data-quality problem (at least one each)
DUPLICATE_ACCOUNT_SHARE = 0.002
DUPLICATE_EMAIL_SHARE = 0.002
MISSING_AMOUNT_SHARE = 0.003
STALE_DEAL_SHARE = 0.004
REFUND_SHARE = 0.006
#: the company's early years: few accounts (a share of all) in the first months of the history
EARLY_MONTHS = 24
EARLY_SHARE = 0.12

_CITY_REGION, _CITY_COUNTRY, _CITY_NAME, _CITY_PHONE, _CITY_SHARE = [], [], [], [], []
for _region, (_region_share, _countries) in vocab.GEOGRAPHY.items():
    for _country, _phone, _country_share, _cities in _countries:
        for _city in _cities:
            _CITY_REGION.append(_region)
            _CITY_COUNTRY.append(_country)
            _CITY_NAME.append(_city)
            _CITY_PHONE.append(_phone)
            _CITY_SHARE.append(_region_share * _country_share / len(_cities))


def _ascii(word: str) -> str:
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode()


_ASCII_FIRST = [_ascii(n) for n in vocab.FIRST_NAMES]
_ASCII_LAST = [_ascii(n) for n in vocab.LAST_NAMES]
_SYLLABLES = len(vocab.NAME_SYLLABLES)
_WORDS = len(vocab.NAME_WORDS)
_TWO_SYLLABLE_NAMES = _SYLLABLES**2 * _WORDS
_THREE_SYLLABLE_NAMES = _SYLLABLES**3 * _WORDS
_STAGE_NAMES = [
    s[0] for s in vocab.PIPELINE
]  # Lead, Qualified, Proposal, Negotiation, Closed Won, Closed Lost
_CORE_PLANS = np.array([i for i, p in enumerate(vocab.PRODUCTS) if p[4]])
_ADD_ONS = np.array([i for i, p in enumerate(vocab.PRODUCTS) if not p[4]])


def company_names(first: int, count: int) -> pa.Array:
    """Distinct, pronounceable company names for account numbers ``first .. first+count-1``:
    two syllables and a word for the first 144,000 accounts, three syllables beyond."""
    number = np.arange(first, first + count, dtype=np.int64)
    short = number < _TWO_SYLLABLE_NAMES
    code = np.where(
        short,
        (number * 7919) % _TWO_SYLLABLE_NAMES,
        ((number - _TWO_SYLLABLE_NAMES) * 7919) % _THREE_SYLLABLE_NAMES,
    )
    word = code % _WORDS
    rest = code // _WORDS
    syllables = pa.array(vocab.NAME_SYLLABLES)
    one = take(syllables, rest % _SYLLABLES)
    two = take(syllables, (rest // _SYLLABLES) % _SYLLABLES)
    three = pc.if_else(pa.array(short), "", take(syllables, (rest // _SYLLABLES**2) % _SYLLABLES))
    stem = pc.utf8_capitalize(concat(one, two, three))
    return concat(stem, " ", lookup(vocab.NAME_WORDS, word))


@dataclass
class Accounts:
    n: int
    ids: pa.Array
    names: pa.Array
    domains: pa.Array
    segment: np.ndarray
    city: np.ndarray
    channel: np.ndarray
    owner: np.ndarray
    created: np.ndarray
    health: np.ndarray
    friction: np.ndarray


def account_month_weights(ctx: DemoContext) -> np.ndarray:
    """Relative number of new accounts per history month: a slow start (EARLY_SHARE of the
    accounts in the first EARLY_MONTHS), then steady growth to twice the rate at the end;
    fewer in summer and December; the current, partial month by its elapsed days."""
    month = np.arange(ctx.n_months)
    late = month >= EARLY_MONTHS
    growth = np.where(
        late,
        1.0 + (month - EARLY_MONTHS) / max(ctx.n_months - EARLY_MONTHS, 1),
        0.25 + 0.75 * month / EARLY_MONTHS,
    )
    weights = growth * np.diff(ctx.month_edges) * ACQUISITION_SEASON[ctx.month_of_year - 1]
    early, rest = weights[~late].sum(), weights[late].sum()
    if early > 0 and rest > 0:
        weights[~late] *= EARLY_SHARE / (1 - EARLY_SHARE) * rest / early
    return weights


def _accounts(
    ctx: DemoContext, rng: np.random.Generator, first: int, n: int
) -> tuple[Accounts, pd.DataFrame]:
    segment = choose(rng, vocab.SEGMENT_SHARE, n)
    month = choose(rng, account_month_weights(ctx), n)
    created = ctx.month_edges[month] + rng.random(n) * (ctx.month_edges[month + 1] - ctx.month_edges[month])
    names = company_names(first, n)
    city = choose(rng, _CITY_SHARE, n)
    industry = choose(rng, [s for _, s in vocab.INDUSTRIES], n)
    size_table = np.array([[s for _, s in sizes] for sizes in vocab.COMPANY_SIZES])
    size = choose_rows(rng, size_table, segment)
    size_names = [[name for name, _ in sizes] for sizes in vocab.COMPANY_SIZES]
    size_label = np.array([f"{size_names[s][k]}" for s in range(3) for k in range(2)])
    channel = choose(rng, [s for _, s in vocab.ACQUISITION_CHANNELS], n)
    owner = np.empty(n, dtype=np.int64)
    for s, team in enumerate(ctx.sales_by_segment):
        rows = segment == s
        owner[rows] = team[rng.integers(0, len(team), rows.sum())]
    health = rng.standard_normal(n)
    friction = rng.random(n) < 0.18

    # data-quality problem: a few accounts are the same company entered twice (name variant)
    duplicates = max(1, round(n * DUPLICATE_ACCOUNT_SHARE)) if n >= 20 else 0
    if duplicates:
        copy = np.arange(n - duplicates, n)
        source = rng.choice(n - duplicates, duplicates, replace=False)
        for column in (segment, city, industry, size, channel, owner):
            column[copy] = column[source]
        created[copy] = np.minimum(created[source] + 30 + 300 * rng.random(duplicates), ctx.horizon - 1)
        variant = rng.integers(0, 3, duplicates)
        source_names = take(names, source)
        variants = pc.case_when(
            pc.make_struct(pa.array(variant == 0), pa.array(variant == 1)),
            pc.utf8_upper(source_names),
            concat(source_names, " Inc."),
            concat(source_names, " Ltd"),
        )
        names = pa.concat_arrays([names.slice(0, n - duplicates), variants.cast(pa.string())])

    domains = concat(pc.replace_substring(pc.utf8_lower(names), " ", ""), ".com")
    # a duplicate's domain follows its spelling; normalise variants back to the source domain
    if duplicates:
        domains = pa.concat_arrays([domains.slice(0, n - duplicates), take(domains, source)])
    account_ids = ids("A", first, n, 7)
    ctx.new_accounts += np.bincount(month, minlength=ctx.n_months)
    accounts = Accounts(
        n, account_ids, names, domains, segment, city, channel, owner, created, health, friction
    )
    frame = pd.DataFrame(
        {
            "account_id": as_text(account_ids),
            "name": as_text(names),
            "segment": as_text(lookup(vocab.SEGMENTS, segment)),
            "industry": as_text(lookup([i for i, _ in vocab.INDUSTRIES], industry)),
            "company_size": as_text(lookup(size_label.tolist(), segment * 2 + size)),
            "region": as_text(lookup(_CITY_REGION, city)),
            "country": as_text(lookup(_CITY_COUNTRY, city)),
            "city": as_text(lookup(_CITY_NAME, city)),
            "acquisition_channel": as_text(lookup([c for c, _ in vocab.ACQUISITION_CHANNELS], channel)),
            "owner_id": as_text(take(ctx.user_ids, owner)),
            "created_at": timestamps(ctx.origin, created),
        }
    )
    return accounts, frame


@dataclass
class Contacts:
    first: np.ndarray  # per account: index of its first contact in the chunk
    count: np.ndarray  # per account
    ids: pa.Array


def _contacts(ctx: DemoContext, rng: np.random.Generator, acc: Accounts) -> tuple[Contacts, pd.DataFrame]:
    count = 1 + rng.poisson(np.take([1.0, 2.5, 5.0], acc.segment))
    owner, rank = repeat_index(count)
    total = len(owner)
    # people of one account get distinct names: a random start, then a fixed stride
    combinations = len(vocab.FIRST_NAMES) * len(vocab.LAST_NAMES)
    code = (rng.integers(0, combinations, acc.n)[owner] + rank * 1237) % combinations
    first_name = code // len(vocab.LAST_NAMES)
    last_name = code % len(vocab.LAST_NAMES)
    first_text = lookup(vocab.FIRST_NAMES, first_name)
    last_text = lookup(vocab.LAST_NAMES, last_name)
    names = concat(first_text, " ", last_text)
    local = pc.utf8_lower(concat(lookup(_ASCII_FIRST, first_name), ".", lookup(_ASCII_LAST, last_name)))
    emails = concat(local, "@", take(acc.domains, owner))
    # data-quality problem: the same person entered twice, e-mail in another case
    duplicates = max(1, round(total * DUPLICATE_EMAIL_SHARE)) if total >= 20 else 0
    if duplicates:
        source = np.sort(rng.choice(total, duplicates, replace=False))
        owner = np.concatenate([owner, owner[source]])
        names = pa.concat_arrays([names, take(names, source)])
        upper = pc.if_else(
            pa.array(rng.random(duplicates) < 0.5),
            pc.utf8_upper(take(emails, source)),
            pc.utf8_capitalize(take(emails, source)),
        )
        emails = pa.concat_arrays([emails, upper])
        order = np.argsort(owner, kind="stable")
        owner = owner[order]
        names = take(names, order)
        emails = take(emails, order)
        count = np.bincount(owner, minlength=acc.n)
        total = len(owner)
    first_index = np.cumsum(count) - count
    country_phone = take(pa.array(_CITY_PHONE), acc.city[owner])
    digits = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 10**9, total)), pa.string()), 9, "0")
    phones = concat(country_phone, " ", digits)
    no_phone = rng.random(total) < 0.25
    role = choose(rng, [s for _, s in vocab.ROLES], total)
    created = np.minimum(
        acc.created[owner] + rng.exponential(90.0, total) * (rank_of(count) > 0), ctx.horizon - 1e-3
    )
    start = ctx.allocate("contacts", total)
    contact_ids = ids("C", start, total, 8)
    frame = pd.DataFrame(
        {
            "contact_id": as_text(contact_ids),
            "account_id": as_text(take(acc.ids, owner)),
            "name": as_text(names),
            "email": as_text(emails),
            "phone": as_text(pc.if_else(pa.array(no_phone), pa.scalar(None, pa.string()), phones)),
            "role": as_text(lookup([r for r, _ in vocab.ROLES], role)),
            "created_at": timestamps(ctx.origin, created),
        }
    )
    return Contacts(first_index, count, contact_ids), frame


def rank_of(count: np.ndarray) -> np.ndarray:
    """Rank of each child within its parent, for per-parent ``count``."""
    return repeat_index(count)[1]


@dataclass
class Deals:
    account: np.ndarray
    created: np.ndarray
    closed: np.ndarray  # NaN while open
    status: np.ndarray  # 0 open, 1 won, 2 lost
    product: np.ndarray
    mrr: np.ndarray
    owner: np.ndarray
    ids: pa.Array
    expansion: np.ndarray


@dataclass
class Customers:
    start: np.ndarray  # per account: first won deal closed (inf = never a customer)
    end: np.ndarray  # per account: churn day (inf = still a customer)
    unresolved: np.ndarray  # per account: day of the ticket that is never resolved (NaN = none)


def ticket_rate(acc: Accounts) -> np.ndarray:
    """Support tickets per month while the account is a customer."""
    return np.take([0.15, 0.35, 0.7], acc.segment) * np.where(acc.friction, 1.6, 1.0)


def _deal_paths(
    ctx: DemoContext, rng: np.random.Generator, segment: np.ndarray, created: np.ndarray, won: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stage walks: (stage code per slot, entered day per slot, slot present) for 7 slots
    Lead, Qualified, Proposal, Negotiation, Proposal again, Negotiation again, Closed."""
    n = len(created)
    furthest = np.where(won, 3, choose(rng, [0.34, 0.3, 0.21, 0.15], n))
    present = np.zeros((n, 7), dtype=bool)
    for slot in range(4):
        present[:, slot] = furthest >= slot
    skip_chance = np.take([0.14, 0.09, 0.06], segment)
    present[:, 0] &= ~((furthest >= 1) & (rng.random(n) < 0.05))  # created straight as Qualified
    present[:, 1] &= ~((furthest > 1) & (rng.random(n) < skip_chance))
    present[:, 2] &= ~((furthest > 2) & (rng.random(n) < skip_chance * 0.6))
    reentry = (furthest == 3) & (rng.random(n) < 0.04)
    present[:, 4] = reentry
    present[:, 5] = reentry
    present[:, 6] = True
    codes = np.tile(np.array([0, 1, 2, 3, 2, 3, 4]), (n, 1))
    codes[:, 6] = np.where(won, 4, 5)
    medians = np.array(vocab.STAGE_MEDIAN_DAYS)[segment]  # (n, 4)
    median_per_slot = np.concatenate([medians, medians[:, 2:4] * 0.5, np.zeros((n, 1))], axis=1)
    durations = median_per_slot * np.exp(0.8 * rng.standard_normal((n, 7)))
    # a lost deal lingers in its last stage before somebody closes it
    last_open_slot = furthest
    lingering = np.where(won, 1.0, 1.4)
    durations[np.arange(n), last_open_slot] *= lingering
    durations = np.where(present, durations, 0.0)
    entered = created[:, None] + np.cumsum(durations, axis=1) - durations
    return codes, entered, present


def _deals(
    ctx: DemoContext, rng: np.random.Generator, acc: Accounts
) -> tuple[Deals, Customers, pd.DataFrame, pd.DataFrame]:
    n = acc.n
    slots = 18
    gap = np.take([170.0, 135.0, 105.0], acc.segment)
    gaps = rng.exponential(1.0, (n, slots)) * gap[:, None]
    gaps[:, 0] = rng.random(n) * 2.0
    times = acc.created[:, None] + np.cumsum(gaps, axis=1)
    exists = times < ctx.horizon
    account, rank = np.nonzero(exists)
    created = times[account, rank]
    first = rank == 0
    seg = acc.segment[account]
    count = len(account)

    owner = np.where(
        rng.random(count) < 0.85,
        acc.owner[account],
        ctx.sales_users[rng.integers(0, len(ctx.sales_users), count)],
    )
    later_sources = [s for s, _ in vocab.LATER_LEAD_SOURCES]
    source_names = list(vocab.FIRST_LEAD_SOURCE) + later_sources
    source = np.where(
        first,
        acc.channel[account],
        len(vocab.FIRST_LEAD_SOURCE) + choose(rng, [s for _, s in vocab.LATER_LEAD_SOURCES], count),
    )
    source_effect = np.array([vocab.LEAD_SOURCE_WIN_EFFECT[s] for s in source_names])[source]
    win_chance = (
        np.take([0.36, 0.3, 0.25], seg) + np.where(first, 0.0, 0.05) + source_effect + ctx.user_skill[owner]
    )
    won_plan = rng.random(count) < np.clip(win_chance, 0.03, 0.9)

    codes, entered, present = _deal_paths(ctx, rng, seg, created, won_plan)
    keep = present & (entered < ctx.horizon)
    # data-quality problem: a few deals were abandoned without being closed (stale open deals)
    old = (entered[:, 6] < ctx.horizon - 150) & (created > ctx.horizon - 600) & keep[:, 6]
    stale_n = min(int(old.sum()), max(1, round(count * STALE_DEAL_SHARE)))
    if stale_n:
        stale = rng.choice(np.flatnonzero(old), stale_n, replace=False)
        keep[stale, 6] = False
    closed_now = keep[:, 6]
    closed = np.where(closed_now, entered[:, 6], np.nan)
    won = closed_now & won_plan

    # customers: the first won deal starts the relationship; churn ends it
    start = np.full(n, INF)
    np.minimum.at(start, account[won], closed[won])
    is_customer = np.isfinite(start)
    hazard = (
        np.take([0.024, 0.014, 0.007], acc.segment)
        * np.exp(-0.75 * acc.health)
        * np.where(acc.friction, 1.8, 1.0)
    )
    lifetime = rng.exponential(1.0, n) / hazard * DAYS_PER_MONTH
    # the first ticket that never gets resolved; more than half of those customers leave soon after
    unresolved_rate = ticket_rate(acc) * np.where(acc.friction, 0.25, 0.02)
    unresolved = start + rng.exponential(1.0, n) / unresolved_rate * DAYS_PER_MONTH
    leaves = np.where(rng.random(n) < 0.6, unresolved + 20 + rng.exponential(100.0, n), INF)
    end = np.where(is_customer, np.minimum(start + np.maximum(lifetime, 20.0), leaves), INF)
    end = np.where(end < ctx.horizon, end, INF)
    unresolved = np.where(unresolved < np.minimum(end, ctx.horizon), unresolved, np.nan)

    # after churn the account gets no new deals; deals still running are lost
    alive = created < end[account]
    after_churn = won & (closed > end[account])
    won &= ~after_churn
    account, rank, created, first, seg, owner, source = (
        a[alive] for a in (account, rank, created, first, seg, owner, source)
    )
    codes, entered, keep, closed, won = codes[alive], entered[alive], keep[alive], closed[alive], won[alive]
    codes[:, 6] = np.where(won | ~keep[:, 6], codes[:, 6], 5)
    count = len(account)
    status = np.where(np.isnan(closed), 0, np.where(won, 1, 2))

    expansion = created > start[account]
    core = _CORE_PLANS[choose_rows(rng, np.array(vocab.CORE_PLAN_SHARE), seg)]
    addon = _ADD_ONS[rng.integers(0, len(_ADD_ONS), count)]
    product = np.where(expansion, addon, core)
    seats = (
        np.take(vocab.SEATS_MEDIAN, seg)
        * np.exp(0.5 * rng.standard_normal(count))
        * np.where(expansion, 0.5, 1.0)
    )
    seats = np.maximum(1.0, np.round(seats))
    discount = rng.random(count) * np.take([0.1, 0.15, 0.25], seg)
    mrr = np.round(ctx.product_prices[product] * seats * (1 - discount), 2)
    amount = np.round(12 * mrr, -1)
    missing_amount = np.zeros(count, dtype=bool)
    if count >= 20:
        missing_amount[rng.choice(count, max(1, round(count * MISSING_AMOUNT_SHARE)), replace=False)] = True
    amount = np.where(missing_amount, np.nan, amount)
    lost_reason = choose(rng, [s for _, s in vocab.LOST_REASONS], count)
    lost_reason = np.where(after_churn[alive], 2, lost_reason)  # "No decision": the customer left

    id_start = ctx.allocate("deals", count)
    deal_ids = ids("D", id_start, count, 8)
    kind = pc.if_else(pa.array(expansion), " add-on", "")
    names = concat(take(acc.names, account), " – ", take(ctx.product_names, product), kind)
    deal_frame = pd.DataFrame(
        {
            "deal_id": as_text(deal_ids),
            "account_id": as_text(take(acc.ids, account)),
            "owner_id": as_text(take(ctx.user_ids, owner)),
            "product_id": as_text(take(ctx.product_ids, product)),
            "name": as_text(names),
            "amount": amount,
            "lead_source": as_text(lookup(source_names, source)),
            "created_at": timestamps(ctx.origin, created),
            "closed_at": maybe_timestamps(ctx.origin, closed),
            "status": as_text(lookup(["open", "won", "lost"], status)),
            "lost_reason": as_text(
                lookup([r for r, _ in vocab.LOST_REASONS], lost_reason, missing=status != 2)
            ),
        }
    )
    deal_row, slot = np.nonzero(keep)
    history_frame = pd.DataFrame(
        {
            "deal_id": as_text(take(deal_ids, deal_row)),
            "stage": as_text(lookup(_STAGE_NAMES, codes[deal_row, slot])),
            "entered_at": timestamps(ctx.origin, entered[deal_row, slot]),
        }
    )
    deals = Deals(account, created, closed, status, product, mrr, owner, deal_ids, expansion)
    return deals, Customers(start, end, unresolved), deal_frame, history_frame


@dataclass
class Subscriptions:
    account: np.ndarray
    product: np.ndarray
    mrr: np.ndarray
    start: np.ndarray
    end: np.ndarray  # inf = running
    base: np.ndarray  # bool: the account's first subscription


def _subscriptions(
    ctx: DemoContext, rng: np.random.Generator, acc: Accounts, deals: Deals, cust: Customers
) -> tuple[Subscriptions, pd.DataFrame]:
    won = deals.status == 1
    account = deals.account[won]
    start = deals.closed[won]
    product = deals.product[won]
    mrr = deals.mrr[won]
    base = start == cust.start[account]
    end = cust.end[account].copy()
    reason = np.where(np.isfinite(end), 0, -1)  # 0 = churn, 1 = add-on cancelled, 2 upgrade, 3 downgrade
    # some add-ons are cancelled while the account stays
    cancel = ~base & (rng.random(len(start)) < 0.22)
    cancel_at = start + 30 + rng.exponential(420.0, len(start))
    cancelled = cancel & (cancel_at < np.minimum(end, ctx.horizon))
    end = np.where(cancelled, cancel_at, end)
    reason = np.where(cancelled, 1, reason)
    # plan changes: the running row ends and a new row with the new MRR starts
    change = base & (rng.random(len(start)) < 0.3)
    change_at = start + 45 + rng.exponential(330.0, len(start))
    changed = change & (change_at < np.minimum(end, ctx.horizon))
    upgrade = rng.random(len(start)) < (0.55 + 0.15 * acc.health[account])
    new_account = account[changed]
    new_rows = {
        "account": new_account,
        "product": product[changed],
        "mrr": np.round(mrr[changed] * np.where(upgrade[changed], 1.35, 0.7), 2),
        "start": change_at[changed],
        "end": end[changed],
        "reason": reason[changed],
        "base": np.zeros(changed.sum(), dtype=bool),
    }
    end = np.where(changed, change_at, end)
    reason = np.where(changed, np.where(upgrade, 2, 3), reason)
    account = np.concatenate([account, new_rows["account"]])
    product = np.concatenate([product, new_rows["product"]])
    mrr = np.concatenate([mrr, new_rows["mrr"]])
    start = np.concatenate([start, new_rows["start"]])
    end = np.concatenate([end, new_rows["end"]])
    reason = np.concatenate([reason, new_rows["reason"]])
    base = np.concatenate([base, new_rows["base"]])
    account, product, mrr, start, end, reason, base = _one_row_per_product(
        account, product, mrr, start, end, reason, base
    )
    order = np.lexsort((start, account))
    account, product, mrr, start, end, reason, base = (
        a[order] for a in (account, product, mrr, start, end, reason, base)
    )
    churn_reason = np.where(
        acc.friction, choose(rng, [1, 1, 1, 1, 0.5, 4], acc.n), choose(rng, [4, 2, 2, 1.5, 0.5, 0.3], acc.n)
    )
    reasons = [*vocab.CHURN_REASONS, "addon_cancelled", "upgrade", "downgrade"]
    reason_index = np.where(reason == 0, churn_reason[account], len(vocab.CHURN_REASONS) + reason - 1)
    count = len(account)
    id_start = ctx.allocate("subscriptions", count)
    frame = pd.DataFrame(
        {
            "subscription_id": as_text(ids("S", id_start, count, 8)),
            "account_id": as_text(take(acc.ids, account)),
            "product_id": as_text(take(ctx.product_ids, product)),
            "mrr": mrr,
            "started_at": timestamps(ctx.origin, start),
            "ended_at": maybe_timestamps(ctx.origin, np.where(np.isfinite(end), end, np.nan)),
            "end_reason": as_text(lookup(reasons, np.maximum(reason_index, 0), missing=reason < 0)),
        }
    )
    return Subscriptions(account, product, mrr, start, end, base), frame


def _one_row_per_product(
    account: np.ndarray,
    product: np.ndarray,
    mrr: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    reason: np.ndarray,
    base: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Subscriptions without overlaps: one running row per account and product at a time.

    A second deal won for a product the account already has (more seats) would otherwise
    add an overlapping row of the same product, which the data-quality check rightly flags.
    For the (account, product) pairs whose rows overlap, the rows are replaced by the
    pieces between their start and end days, each with the MRR of the rows running in it:
    the MRR over time is unchanged, a piece that ends where a higher (lower) one starts
    ends as an upgrade (downgrade), and one after which nothing runs keeps the ending
    row's reason (churn before an add-on cancellation). Pairs without overlaps pass as they
    are. Reasons: -1 running, 0 churn, 1 add-on cancelled, 2 upgrade, 3 downgrade.
    """
    key = account.astype(np.int64) * (int(product.max(initial=0)) + 1) + product
    order = np.lexsort((start, key))
    k, s, e = key[order], start[order], end[order]
    same = np.r_[False, k[1:] == k[:-1]]
    # the latest end so far within the pair (reset at each new pair)
    latest = pd.Series(e).groupby(k).cummax().to_numpy()
    overlaps = same & (s < np.r_[-INF, latest[:-1]])
    tangled = np.isin(key, np.unique(k[overlaps]))
    if not tangled.any():
        return account, product, mrr, start, end, reason, base

    rows = np.flatnonzero(tangled)
    finite = np.isfinite(end[rows])
    events = pd.DataFrame(
        {
            "key": np.r_[key[rows], key[rows][finite]],
            "time": np.r_[start[rows], end[rows][finite]],
            "delta": np.r_[mrr[rows], -mrr[rows][finite]],
            # the reason of a row ending here; starts carry none (99 = min() ignores it)
            "reason": np.r_[np.full(len(rows), 99), reason[rows][finite]],
        }
    )
    steps = events.groupby(["key", "time"], sort=True).agg(delta=("delta", "sum"), reason=("reason", "min"))
    steps = steps[steps["delta"].abs() >= 0.005].reset_index()
    level = np.round(steps.groupby("key")["delta"].cumsum().to_numpy(), 2)
    piece_key = steps["key"].to_numpy()
    piece_start = steps["time"].to_numpy()
    last = np.r_[piece_key[1:] != piece_key[:-1], True]
    piece_end = np.where(last, INF, np.r_[piece_start[1:], INF])
    next_level = np.where(last, 0.0, np.r_[level[1:], 0.0])
    next_reason = np.r_[steps["reason"].to_numpy()[1:], -1]
    piece_reason = np.select([last, next_level <= 0, next_level > level], [-1, next_reason, 2], default=3)
    keep = level > 0
    # each piece's account and product: those of any row of its pair; the pair's first
    # piece is the account's first subscription if one of the pair's rows was
    by_key = rows[np.argsort(key[rows], kind="stable")]
    pair_row = by_key[np.searchsorted(key[by_key], piece_key)]
    pair_base = pd.Series(base[rows]).groupby(key[rows]).any().reindex(piece_key).to_numpy()
    first_piece = np.r_[True, piece_key[1:] != piece_key[:-1]]
    clean = ~tangled
    return (
        np.r_[account[clean], account[pair_row][keep]],
        np.r_[product[clean], product[pair_row][keep]],
        np.r_[mrr[clean], level[keep]],
        np.r_[start[clean], piece_start[keep]],
        np.r_[end[clean], piece_end[keep]],
        np.r_[reason[clean], piece_reason[keep]],
        np.r_[base[clean], (first_piece & pair_base)[keep]],
    )


def _payments(
    ctx: DemoContext, rng: np.random.Generator, acc: Accounts, subs: Subscriptions, cust: Customers
) -> pd.DataFrame:
    """One invoice per account and month on the account's billing day: the sum of the MRR
    of the subscriptions running that day, times the month's usage factor; a few refunds."""
    customer = np.isfinite(cust.start)
    billing_day = np.zeros(acc.n)
    start_date = ctx.origin + np.floor(cust.start[customer]).astype(np.int64).astype("timedelta64[D]")
    day_of_month = (start_date - start_date.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64)
    billing_day[customer] = np.minimum(day_of_month, 27) + 0.25 + 0.5 * rng.random(customer.sum())
    # candidate months per subscription: from its start month to its end month
    sub_first = ctx.month_index(subs.start)
    sub_last = ctx.month_index(np.minimum(subs.end, ctx.horizon - 1e-6))
    months = sub_last - sub_first + 1
    sub, k = repeat_index(months)
    month = sub_first[sub] + k
    account = subs.account[sub]
    day = ctx.month_edges[month] + billing_day[account]
    active = (day >= subs.start[sub]) & (day < subs.end[sub]) & (day < ctx.horizon)
    key = account[active] * ctx.n_months + month[active]
    amount = np.bincount(key, weights=subs.mrr[sub][active], minlength=acc.n * ctx.n_months)
    paid = np.flatnonzero(amount > 0)
    pay_account = paid // ctx.n_months
    pay_month = paid % ctx.n_months
    season = REVENUE_SEASON[ctx.month_of_year[pay_month] - 1]
    value = np.round(amount[paid] * season * (1 + 0.02 * rng.standard_normal(len(paid))), 2)
    when = ctx.month_edges[pay_month] + billing_day[pay_account]
    ctx.paying_accounts += np.bincount(pay_month, minlength=ctx.n_months)
    refund_n = max(1, round(len(paid) * REFUND_SHARE)) if len(paid) >= 20 else 0
    refunded = rng.choice(len(paid), refund_n, replace=False) if refund_n else np.zeros(0, dtype=np.int64)
    refund_when = when[refunded] + 2 + 20 * rng.random(refund_n)
    ok = refund_when < ctx.horizon
    refunded, refund_when = refunded[ok], refund_when[ok]
    refund_value = -np.round(
        value[refunded]
        * np.where(rng.random(len(refunded)) < 0.5, 1.0, 0.3 + 0.5 * rng.random(len(refunded))),
        2,
    )
    all_account = np.concatenate([pay_account, pay_account[refunded]])
    all_when = np.concatenate([when, refund_when])
    all_value = np.concatenate([value, refund_value])
    order = np.lexsort((all_when, all_account))
    count = len(order)
    id_start = ctx.allocate("payments", count)
    return pd.DataFrame(
        {
            "payment_id": as_text(ids("Y", id_start, count, 9)),
            "account_id": as_text(take(acc.ids, all_account[order])),
            "paid_at": timestamps(ctx.origin, all_when[order]),
            "amount": all_value[order],
        }
    )


@dataclass
class Tickets:
    account: np.ndarray
    opened: np.ndarray
    first_response: np.ndarray  # NaN = none yet
    resolved: np.ndarray  # NaN = unresolved
    contacts: np.ndarray
    channel: np.ndarray
    category: np.ndarray
    ids: pa.Array


def _tickets(
    ctx: DemoContext, rng: np.random.Generator, acc: Accounts, cust: Customers, deals: Deals
) -> tuple[Tickets, pd.DataFrame]:
    customer = np.isfinite(cust.start)
    window_end = np.minimum(cust.end, ctx.horizon)
    months = np.where(customer, (window_end - cust.start) / DAYS_PER_MONTH, 0.0)
    rate = ticket_rate(acc)
    base_product = np.zeros(acc.n, dtype=np.int64)
    first_won = (deals.status == 1) & (deals.closed == cust.start[deals.account])
    base_product[deals.account[first_won]] = deals.product[first_won]
    count = rng.poisson(rate * np.maximum(months, 0.0))
    account, _ = repeat_index(count)
    opened = cust.start[account] + rng.random(len(account)) * (window_end[account] - cust.start[account])
    product = np.where(
        rng.random(len(account)) < 0.7,
        base_product[account],
        rng.integers(0, len(vocab.PRODUCTS), len(account)),
    )
    category = choose(rng, [s for _, s in vocab.TICKET_CATEGORIES], len(account))
    # the defect spike: accounts on the faulty product file many extra defects / complaints
    spike_from = np.maximum(cust.start, ctx.spike_start)
    spike_to = np.minimum(window_end, ctx.spike_end)
    exposed = customer & (base_product == ctx.spike_product) & (spike_to > spike_from)
    extra = rng.poisson(rate * 0.9 * np.where(exposed, (spike_to - spike_from) / DAYS_PER_MONTH, 0.0))
    spike_account, _ = repeat_index(extra)
    spike_opened = spike_from[spike_account] + rng.random(len(spike_account)) * (
        spike_to[spike_account] - spike_from[spike_account]
    )
    defect = [c for c, _ in vocab.TICKET_CATEGORIES].index("defect")
    complaint = [c for c, _ in vocab.TICKET_CATEGORIES].index("complaint")
    # the ticket that never gets resolved (drawn with the churn, see _deals)
    stuck_account = np.flatnonzero(~np.isnan(cust.unresolved))
    stuck_category = np.take([defect, complaint, [c for c, _ in vocab.TICKET_CATEGORIES].index("billing")],
                             rng.integers(0, 3, len(stuck_account)))  # fmt: skip
    account = np.concatenate([account, spike_account, stuck_account])
    opened = np.concatenate([opened, spike_opened, cust.unresolved[stuck_account]])
    product = np.concatenate(
        [product, np.full(len(spike_account), ctx.spike_product), base_product[stuck_account]]
    )
    category = np.concatenate(
        [category, np.where(rng.random(len(spike_account)) < 0.75, defect, complaint), stuck_category]
    )
    stuck = np.concatenate(
        [np.zeros(len(account) - len(stuck_account), dtype=bool), np.ones(len(stuck_account), dtype=bool)]
    )
    order = np.lexsort((opened, account))
    account, opened, product, category, stuck = (
        account[order],
        opened[order],
        product[order],
        category[order],
        stuck[order],
    )
    n = len(account)
    seg = acc.segment[account]
    priority = choose_rows(rng, np.array(vocab.PRIORITY_SHARE), seg)
    channel = choose(rng, [s for _, s in vocab.TICKET_CHANNELS], n)
    response_hours = np.take([10.0, 5.0, 1.8, 0.5], priority) * np.exp(0.9 * rng.standard_normal(n))
    first_response = opened + response_hours / 24
    resolve_hours = np.take([6.0, 16.0, 60.0, 30.0, 40.0, 12.0], category) * np.exp(
        1.0 * rng.standard_normal(n)
    )
    resolved = first_response + resolve_hours / 24
    friction = acc.friction[account]
    never = stuck | (rng.random(n) < 0.01)
    resolved = np.where(never | (resolved >= ctx.horizon), np.nan, resolved)
    first_response = np.where(first_response >= ctx.horizon, np.nan, first_response)
    one_contact = np.where(friction, 0.5, 0.78) - np.where(category == defect, 0.12, 0.0)
    contacts = np.where((rng.random(n) < one_contact) & ~stuck, 1, 1 + rng.geometric(0.55, n))
    id_start = ctx.allocate("tickets", n)
    ticket_ids = ids("T", id_start, n, 8)
    frame = pd.DataFrame(
        {
            "ticket_id": as_text(ticket_ids),
            "account_id": as_text(take(acc.ids, account)),
            "product_id": as_text(take(ctx.product_ids, product)),
            "channel": as_text(lookup([c for c, _ in vocab.TICKET_CHANNELS], channel)),
            "category": as_text(lookup([c for c, _ in vocab.TICKET_CATEGORIES], category)),
            "priority": as_text(lookup(vocab.PRIORITIES, priority)),
            "opened_at": timestamps(ctx.origin, opened),
            "first_response_at": maybe_timestamps(ctx.origin, first_response),
            "resolved_at": maybe_timestamps(ctx.origin, resolved),
            "contacts_until_resolved": contacts.astype(np.int64),
        }
    )
    return Tickets(account, opened, first_response, resolved, contacts, channel, category, ticket_ids), frame


def _comments(rng: np.random.Generator, survey: str, sentiment: np.ndarray, share: float) -> pa.Array:
    """A short comment for about ``share`` of the responses (null for the rest)."""
    texts: list[str] = []
    offsets = []
    for mood in ("negative", "neutral", "positive"):
        offsets.append((len(texts), len(vocab.COMMENTS[survey][mood])))
        texts.extend(vocab.COMMENTS[survey][mood])
    first = np.array([o for o, _ in offsets])[sentiment]
    size = np.array([c for _, c in offsets])[sentiment]
    pick = first + np.floor(rng.random(len(sentiment)) * size).astype(np.int64)
    return lookup(texts, pick, missing=rng.random(len(sentiment)) >= share)


def _surveys(
    ctx: DemoContext,
    rng: np.random.Generator,
    acc: Accounts,
    con: Contacts,
    cust: Customers,
    subs: Subscriptions,
    tickets: Tickets,
    deals: Deals,
) -> pd.DataFrame:
    parts: list[dict[str, object]] = []
    customer = np.isfinite(cust.start)
    window_end = np.minimum(cust.end, ctx.horizon)
    months = np.where(customer, (window_end - cust.start) / DAYS_PER_MONTH, 0.0)

    # NPS: relationship survey about twice a year; scores follow the account's health
    nps_n = rng.poisson(np.maximum(months, 0) / 6 * 0.8)
    a, _ = repeat_index(nps_n)
    when = cust.start[a] + rng.random(len(a)) * (window_end[a] - cust.start[a])
    score = np.clip(
        np.round(7.7 + 1.7 * acc.health[a] - 1.3 * acc.friction[a] + 1.2 * rng.standard_normal(len(a))), 0, 10
    )
    parts.append(
        {"account": a, "survey": 0, "touchpoint": 5, "score": score, "when": when, "ticket": None,
         "sentiment": np.digitize(score, [6.5, 8.5]), "kind": "nps"}
    )  # fmt: skip

    # CES and CSAT after resolved tickets (support; returns / exchanges their own touchpoint)
    resolved = ~np.isnan(tickets.resolved)
    ret = [c for c, _ in vocab.TICKET_CATEGORIES].index("return_exchange")
    asked = resolved & (rng.random(len(resolved)) < np.where(tickets.category == ret, 0.5, 0.3))
    t = np.flatnonzero(asked)
    hours = (tickets.resolved[t] - tickets.opened[t]) * 24
    ces = np.clip(
        np.round(6.4 - 0.9 * (tickets.contacts[t] - 1) - 0.35 * np.log1p(hours / 24) - 0.6 * (tickets.category[t] == ret)
                 + 0.8 * rng.standard_normal(len(t))), 1, 7,
    )  # fmt: skip
    parts.append(
        {"account": tickets.account[t], "survey": 1, "touchpoint": np.where(tickets.category[t] == ret, 3, 0),
         "score": ces, "when": tickets.resolved[t] + 2 * rng.random(len(t)), "ticket": t,
         "sentiment": np.digitize(ces, [3.5, 4.5]), "kind": "ces"}
    )  # fmt: skip
    asked = resolved & (rng.random(len(resolved)) < 0.25)
    t = np.flatnonzero(asked)
    csat = np.clip(np.round(4.5 - 0.6 * (tickets.contacts[t] - 1) + 0.7 * rng.standard_normal(len(t))), 1, 5)
    parts.append(
        {"account": tickets.account[t], "survey": 2, "touchpoint": 0, "score": csat,
         "when": tickets.resolved[t] + 3 * rng.random(len(t)), "ticket": t,
         "sentiment": np.digitize(csat, [2.5, 3.5]), "kind": "csat"}
    )  # fmt: skip

    # CES at signup, and after website visits (prospects included)
    b = np.flatnonzero(subs.base & (rng.random(len(subs.base)) < 0.45))
    signup = np.clip(
        np.round(5.7 - 0.35 * acc.segment[subs.account[b]] + 1.0 * rng.standard_normal(len(b))), 1, 7
    )
    parts.append(
        {"account": subs.account[b], "survey": 1, "touchpoint": 1, "score": signup,
         "when": subs.start[b] + 3 * rng.random(len(b)), "ticket": None,
         "sentiment": np.digitize(signup, [3.5, 4.5]), "kind": "ces"}
    )  # fmt: skip
    visits = rng.poisson(0.35, acc.n)
    a, _ = repeat_index(visits)
    web = np.clip(np.round(5.0 + 1.3 * rng.standard_normal(len(a))), 1, 7)
    parts.append(
        {"account": a, "survey": 1, "touchpoint": 2, "score": web,
         "when": acc.created[a] + rng.random(len(a)) * (ctx.horizon - acc.created[a]), "ticket": None,
         "sentiment": np.digitize(web, [3.5, 4.5]), "kind": "ces"}
    )  # fmt: skip
    # CSAT after a purchase
    w = np.flatnonzero((deals.status == 1) & (rng.random(len(deals.status)) < 0.3))
    buy = np.clip(np.round(4.3 + 0.7 * rng.standard_normal(len(w))), 1, 5)
    parts.append(
        {"account": deals.account[w], "survey": 2, "touchpoint": 4, "score": buy,
         "when": deals.closed[w] + 5 * rng.random(len(w)), "ticket": None,
         "sentiment": np.digitize(buy, [2.5, 3.5]), "kind": "csat"}
    )  # fmt: skip

    account = np.concatenate([p["account"] for p in parts])
    sizes = [len(p["account"]) for p in parts]
    survey = np.repeat([p["survey"] for p in parts], sizes)
    touchpoint = np.concatenate(
        [np.broadcast_to(p["touchpoint"], (s,)) for p, s in zip(parts, sizes, strict=True)]
    )
    score = np.concatenate([p["score"] for p in parts])
    when = np.concatenate([p["when"] for p in parts])
    ticket = np.concatenate(
        [
            p["ticket"] if p["ticket"] is not None else np.full(s, -1)
            for p, s in zip(parts, sizes, strict=True)
        ]
    )
    comment = pa.concat_arrays([_comments(rng, p["kind"], p["sentiment"], 0.22) for p in parts])
    keep = when < ctx.horizon
    order = np.flatnonzero(keep)[np.lexsort((when[keep], account[keep]))]
    account, survey, touchpoint, score, when, ticket = (
        x[order] for x in (account, survey, touchpoint, score, when, ticket)
    )
    comment = take(comment, order)
    contact = pick_child(rng, con.first[account], con.count[account])
    n = len(account)
    id_start = ctx.allocate("survey_responses", n)
    touchpoints = ["support", "signup", "website_visit", "return_exchange", "purchase", "other"]
    return pd.DataFrame(
        {
            "response_id": as_text(ids("R", id_start, n, 9)),
            "account_id": as_text(take(acc.ids, account)),
            "contact_id": as_text(take(con.ids, np.maximum(contact, 0), missing=contact < 0)),
            "survey": as_text(lookup(["nps", "ces", "csat"], survey)),
            "touchpoint": as_text(lookup(touchpoints, touchpoint)),
            "score": score.astype(float),
            "comment": as_text(comment),
            "responded_at": timestamps(ctx.origin, when),
            "ticket_id": as_text(take(tickets.ids, np.maximum(ticket, 0), missing=ticket < 0)),
        }
    )


def _campaign_responses(
    ctx: DemoContext, rng: np.random.Generator, acc: Accounts, con: Contacts, cust: Customers
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """Campaign sends: acquisition campaigns reach prospects, retention campaigns reach
    customers. Returns the frame and (account, campaign, converted day) of conversions."""
    draws = rng.poisson(10.0, acc.n)
    account, _ = repeat_index(draws)
    campaign = rng.integers(0, len(ctx.campaign_start), len(account))
    sent = ctx.campaign_start[campaign] + rng.random(len(account)) * np.minimum(
        3.0, ctx.campaign_end[campaign] - ctx.campaign_start[campaign]
    )
    is_customer = (sent >= cust.start[account]) & (sent < cust.end[account])
    fits = np.where(ctx.campaign_retention[campaign], is_customer, ~is_customer)
    keep = fits & (sent >= acc.created[account]) & (sent < ctx.horizon)
    account, campaign, sent = account[keep], campaign[keep], sent[keep]
    n = len(account)
    email = np.array([c == "email" for c in ctx.campaign_channel])[campaign]
    opened = sent + rng.exponential(0.6, n)
    is_opened = (rng.random(n) < np.where(email, 0.32, 0.6)) & (opened < ctx.horizon)
    clicked = opened + rng.exponential(0.05, n)
    is_clicked = is_opened & (rng.random(n) < 0.18) & (clicked < ctx.horizon)
    converted = clicked + rng.exponential(4.0, n)
    conversion = np.where(ctx.campaign_retention[campaign], 0.25, 0.12)
    is_converted = is_clicked & (rng.random(n) < conversion) & (converted < ctx.horizon)
    contact = pick_child(rng, con.first[account], con.count[account])
    frame = pd.DataFrame(
        {
            "campaign_id": as_text(take(ctx.campaign_ids, campaign)),
            "account_id": as_text(take(acc.ids, account)),
            "contact_id": as_text(take(con.ids, np.maximum(contact, 0), missing=contact < 0)),
            "sent_at": timestamps(ctx.origin, sent),
            "opened_at": maybe_timestamps(ctx.origin, np.where(is_opened, opened, np.nan)),
            "clicked_at": maybe_timestamps(ctx.origin, np.where(is_clicked, clicked, np.nan)),
            "converted_at": maybe_timestamps(ctx.origin, np.where(is_converted, converted, np.nan)),
        }
    )
    return frame, account[is_converted], campaign[is_converted], converted[is_converted]


def _interactions(
    ctx: DemoContext,
    rng: np.random.Generator,
    acc: Accounts,
    con: Contacts,
    deals: Deals,
    tickets: Tickets,
    conversions: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> pd.DataFrame:
    channels = ["email", "phone", "meeting", "chat", "social", "web"]
    # sales touches while a deal runs
    seg = acc.segment[deals.account]
    per_deal = 1 + rng.poisson(np.take([0.0, 0.5, 1.0], seg))
    d, _ = repeat_index(per_deal)
    deal_end = np.where(np.isnan(deals.closed), ctx.horizon, deals.closed)
    d_when = deals.created[d] + rng.random(len(d)) * (deal_end[d] - deals.created[d])
    d_channel = choose_rows(rng, np.array([[0.55, 0.3, 0.08, 0.05, 0.02, 0.0], [0.45, 0.3, 0.2, 0.03, 0.02, 0.0],
                                           [0.35, 0.25, 0.35, 0.02, 0.03, 0.0]]), seg[d])  # fmt: skip
    d_outbound = rng.random(len(d)) < 0.7
    # support contacts: one per contact of the ticket
    t, k = repeat_index(tickets.contacts)
    t_end = np.where(
        np.isnan(tickets.resolved), np.minimum(tickets.opened + 14, ctx.horizon - 1e-3), tickets.resolved
    )
    t_when = np.where(
        k == 0, tickets.opened[t], tickets.opened[t] + rng.random(len(t)) * (t_end[t] - tickets.opened[t])
    )
    t_channel = np.take([0, 1, 3, 5], tickets.channel[t])
    t_outbound = k > 0
    t_user = ctx.support_users[rng.integers(0, len(ctx.support_users), len(t))]
    # campaign conversions arrive through the web site
    c_account, c_campaign, c_when = conversions
    # social mentions by customers
    s_n = rng.poisson(0.15, acc.n)
    s, _ = repeat_index(s_n)
    s_when = acc.created[s] + rng.random(len(s)) * (ctx.horizon - acc.created[s])

    account = np.concatenate([deals.account[d], tickets.account[t], c_account, s])
    when = np.concatenate([d_when, t_when, c_when, s_when])
    channel = np.concatenate([d_channel, t_channel, np.full(len(c_account), 5), np.full(len(s), 4)])
    outbound = np.concatenate([d_outbound, t_outbound, np.zeros(len(c_account) + len(s), dtype=bool)])
    user = np.concatenate([deals.owner[d], t_user, np.full(len(c_account) + len(s), -1)])
    deal = np.concatenate([d, np.full(len(t) + len(c_account) + len(s), -1)])
    ticket = np.concatenate([np.full(len(d), -1), t, np.full(len(c_account) + len(s), -1)])
    campaign = np.concatenate([np.full(len(d) + len(t), -1), c_campaign, np.full(len(s), -1)])
    order = np.flatnonzero(when < ctx.horizon)  # grouped by kind; ids need no time order
    account, when, channel, outbound, user, deal, ticket, campaign = (
        x[order] for x in (account, when, channel, outbound, user, deal, ticket, campaign)
    )
    contact = pick_child(rng, con.first[account], con.count[account])
    n = len(account)
    id_start = ctx.allocate("interactions", n)
    return pd.DataFrame(
        {
            "interaction_id": as_text(ids("I", id_start, n, 9)),
            "account_id": as_text(take(acc.ids, account)),
            "contact_id": as_text(take(con.ids, np.maximum(contact, 0), missing=contact < 0)),
            "user_id": as_text(take(ctx.user_ids, np.maximum(user, 0), missing=user < 0)),
            "channel": as_text(lookup(channels, channel)),
            "direction": as_text(lookup(["inbound", "outbound"], outbound.astype(np.int64))),
            "occurred_at": timestamps(ctx.origin, when),
            "deal_id": as_text(take(deals.ids, np.maximum(deal, 0), missing=deal < 0)),
            "ticket_id": as_text(take(tickets.ids, np.maximum(ticket, 0), missing=ticket < 0)),
            "campaign_id": as_text(take(ctx.campaign_ids, np.maximum(campaign, 0), missing=campaign < 0)),
        }
    )


def _account_costs(
    ctx: DemoContext,
    rng: np.random.Generator,
    acc: Accounts,
    cust: Customers,
    deals: Deals,
    subs: Subscriptions,
) -> pd.DataFrame:
    """Costs booked against one account: onboarding and sales commission (acquisition),
    account management, loyalty rewards and hosting (retention / other)."""
    categories = ["personnel", "production", "overhead", "marketing", "loyalty"]
    purposes = ["acquisition", "retention", "other"]
    customer = np.flatnonzero(np.isfinite(cust.start))
    seg = acc.segment
    rows: list[
        tuple[np.ndarray, np.ndarray, int, int, np.ndarray]
    ] = []  # account, day, category, purpose, amount
    # onboarding when the account becomes a customer
    onboarding = np.take([350.0, 2200.0, 11000.0], seg[customer]) * np.exp(
        0.3 * rng.standard_normal(len(customer))
    )
    rows.append((customer, cust.start[customer] + 7 * rng.random(len(customer)), 0, 0, onboarding))
    # sales commission on won new business (expansion commissions are paid in the salaries)
    won = np.flatnonzero((deals.status == 1) & ~deals.expansion)
    rows.append(
        (
            deals.account[won],
            deals.closed[won] + 20 + 10 * rng.random(len(won)),
            0,
            0,
            np.round(0.08 * 12 * deals.mrr[won], 2),
        )
    )
    window_end = np.minimum(cust.end, ctx.horizon)
    # account management every half year for Mid-Market and Enterprise customers
    halves = np.where(
        np.isfinite(cust.start) & (seg > 0), np.floor((window_end - cust.start) / 182.6), 0
    ).astype(np.int64)
    a, k = repeat_index(halves)
    rows.append(
        (
            a,
            cust.start[a] + 182.6 * (k + 1) - 5,
            0,
            1,
            np.take([0.0, 1400.0, 6400.0], seg[a]) * np.exp(0.2 * rng.standard_normal(len(a))),
        )
    )
    # a yearly hosting / infrastructure charge per customer (production, other)
    years = np.where(np.isfinite(cust.start), np.floor((window_end - cust.start) / 365.25) + 1, 0).astype(
        np.int64
    )
    a, k = repeat_index(years)
    annual_mrr = np.bincount(subs.account[subs.base], weights=subs.mrr[subs.base], minlength=acc.n)
    rows.append(
        (
            a,
            cust.start[a] + 365.25 * k + 1,
            1,
            2,
            np.round(1.4 * annual_mrr[a] * (1 + 0.1 * rng.standard_normal(len(a))), 2),
        )
    )
    # loyalty rewards, offered more often to accounts that look at risk
    offer = rng.random(len(a)) < np.where(acc.health[a] < -0.5, 0.55, 0.2)
    b = a[offer]
    rows.append((b, cust.start[b] + 365.25 * k[offer] + 120 + 200 * rng.random(len(b)), 4, 1,
                 np.take([120.0, 650.0, 2600.0], seg[b]) * np.exp(0.3 * rng.standard_normal(len(b)))))  # fmt: skip
    account = np.concatenate([r[0] for r in rows])
    day = np.concatenate([r[1] for r in rows])
    category = np.repeat([r[2] for r in rows], [len(r[0]) for r in rows])
    purpose = np.repeat([r[3] for r in rows], [len(r[0]) for r in rows])
    amount = np.round(np.concatenate([r[4] for r in rows]), 2)
    keep = (day < ctx.horizon) & (day < cust.end[account]) & (amount > 0)
    order = np.flatnonzero(keep)[np.lexsort((day[keep], account[keep]))]
    n = len(order)
    id_start = ctx.allocate("costs", n)
    return pd.DataFrame(
        {
            "cost_id": as_text(ids("X", id_start, n, 9)),
            "incurred_on": timestamps(ctx.origin, np.floor(day[order])).astype("datetime64[s]"),
            "category": as_text(lookup(categories, category[order])),
            "purpose": as_text(lookup(purposes, purpose[order])),
            "account_id": as_text(take(acc.ids, account[order])),
            "amount": amount[order],
        }
    )


#: the number of (table, frame) pairs :func:`account_chunk` yields
CHUNK_TABLES = 11


def account_chunk(
    ctx: DemoContext, rng: np.random.Generator, first: int, n: int
) -> Iterator[tuple[sa.Table, pd.DataFrame]]:
    """Rows for accounts ``first .. first+n-1`` and everything attached to them, parents first."""
    acc, frame = _accounts(ctx, rng, first, n)
    yield schema.accounts, frame
    con, frame = _contacts(ctx, rng, acc)
    yield schema.contacts, frame
    deals, cust, deal_frame, history_frame = _deals(ctx, rng, acc)
    yield schema.deals, deal_frame
    yield schema.deal_stage_history, history_frame
    subs, frame = _subscriptions(ctx, rng, acc, deals, cust)
    yield schema.subscriptions, frame
    yield schema.payments, _payments(ctx, rng, acc, subs, cust)
    tickets, frame = _tickets(ctx, rng, acc, cust, deals)
    yield schema.tickets, frame
    yield schema.survey_responses, _surveys(ctx, rng, acc, con, cust, subs, tickets, deals)
    responses, *conversions = _campaign_responses(ctx, rng, acc, con, cust)
    yield schema.campaign_responses, responses
    yield schema.interactions, _interactions(ctx, rng, acc, con, deals, tickets, tuple(conversions))
    yield schema.costs, _account_costs(ctx, rng, acc, cust, deals, subs)
