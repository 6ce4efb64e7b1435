"""The data-model reference, docs/data-model.md, generated from the code so it cannot drift.

:func:`render` builds the Markdown from :mod:`crm_data.schema`'s metadata (tables in the
order schema.py declares them, every column with its type, required flag, key and
references), the enum values (:data:`crm_data.schema.ENUMS`), the score scales
(:data:`crm_data.schema.SCORE_SCALES`), the soft references the data-quality check follows
(:data:`crm_data.quality.SOFT_REFERENCES`), the KPI filters (:class:`kpis.filters.Filters`)
and the KPI list (:data:`kpis.registry.KPIS`). What the code does not say — a description
of each table and column, and the rules in prose — is kept here: :data:`TABLE_DESCRIPTIONS`,
:data:`COLUMN_DESCRIPTIONS` and :data:`RULES`. Every schema table and column must have a
description and every description must name a schema column (:func:`description_problems`;
:func:`render` refuses to run otherwise).

Regenerate, or check that the committed file is current::

    python -m crm_data.schema_doc > docs/data-model.md
    python -m crm_data.schema_doc --check

Plain Python (no Streamlit).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa

from crm_data import dialects, quality, schema, validation
from kpis import core as kpi_core
from kpis import filters as kpi_filters
from kpis import registry

#: The generated file, relative to the repository root.
DOC_RELATIVE_PATH = "docs/data-model.md"
#: The generated file in this checkout.
DOC_PATH = Path(__file__).resolve().parent.parent / DOC_RELATIVE_PATH
#: The command that regenerates :data:`DOC_PATH`.
REGENERATE = f"python -m crm_data.schema_doc > {DOC_RELATIVE_PATH}"

#: :func:`crm_data.validation.column_kind` -> the type name the document shows.
TYPE_NAMES: dict[str, str] = {
    "text": "text",
    "float": "number",
    "integer": "integer",
    "boolean": "boolean",
    "date": "date",
    "timestamp": "timestamp (UTC)",
}

#: :data:`kpis.registry.UNITS` -> what the unit means.
UNIT_NAMES: dict[str, str] = {
    "ratio": "fraction (1 = 100 %)",
    "nps": "NPS −100..100",
    "score": "score on the survey's scale",
    "days": "days",
    "money": "money",
    "count": "count",
}

#: One sentence per canonical table: what one row is.
TABLE_DESCRIPTIONS: dict[str, str] = {
    "accounts": "Companies (or households) that buy or may buy: one row per account.",
    "contacts": "People, usually at an account.",
    "users": "The CRM's own users: sales reps, support agents, managers.",
    "products": "What is sold.",
    "subscriptions": (
        "Contracts that make their account a customer while they run. Businesses without "
        "subscriptions map each purchase relationship to a subscription row (the importers' "
        "mappings do this)."
    ),
    "pipeline_stages": "The stages of the sales pipeline, in order.",
    "deals": "Sales opportunities.",
    "deal_stage_history": "One row each time a deal entered a stage.",
    "interactions": "Touches between the company and an account or contact: emails, calls, meetings, …",
    "tickets": "Support tickets.",
    "survey_responses": "Survey answers (see *Score scales*).",
    "campaigns": "Marketing campaigns.",
    "campaign_responses": (
        "One row per recipient of a campaign and what they did. No key: an import replaces all "
        "responses of every campaign that appears in its file."
    ),
    "web_traffic": "Website traffic per day and source.",
    "social_media": "Social-media figures per day and platform.",
    "payments": "Money received from accounts, and refunds.",
    "costs": "Money spent, by category and purpose.",
    "exchange_rates": (
        "Dated exchange rates into the reporting currency: a currency's rate holds from its "
        "`valid_from` day until the day of its next row. The importer converts deal and payment "
        "amounts with them (see *Money*)."
    ),
}

#: One short description per (table, column) of the schema.
COLUMN_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("accounts", "account_id"): "The account's id.",
    ("accounts", "name"): "Account (company) name; duplicate accounts are found by normalised name.",
    ("accounts", "segment"): "Customer segment, e.g. SMB, Mid-Market, Enterprise; a dashboard filter.",
    ("accounts", "industry"): "Industry; a dashboard filter.",
    ("accounts", "company_size"): "Company-size band, e.g. `50-249`; a dashboard filter.",
    ("accounts", "region"): "Sales region; a dashboard filter.",
    ("accounts", "country"): "Country; a dashboard filter.",
    ("accounts", "city"): "City.",
    ("accounts", "acquisition_channel"): (
        "How the account was won (referral, paid search, …); a dashboard filter."
    ),
    ("accounts", "owner_id"): (
        "The user who owns the account; the owner filter of records that have no owner of their own."
    ),
    ("accounts", "created_at"): "When the account was created in the CRM.",
    ("contacts", "contact_id"): "The contact's id.",
    ("contacts", "account_id"): "The account the person belongs to; empty for a contact without one.",
    ("contacts", "name"): "Full name.",
    ("contacts", "email"): "Email address; duplicate contacts are found by email (lower case, trimmed).",
    ("contacts", "phone"): "Phone number.",
    ("contacts", "role"): "Job role or title.",
    ("contacts", "created_at"): "When the contact was created in the CRM.",
    ("users", "user_id"): "The user's id.",
    ("users", "name"): "Full name.",
    ("users", "team"): "Team.",
    ("users", "department"): "Department (sales, support, marketing, …).",
    ("users", "manager_id"): "The user's manager, another user.",
    ("users", "region"): "Region the user works in.",
    ("products", "product_id"): "The product's id.",
    ("products", "name"): "Product name.",
    ("products", "family"): "Product family or line.",
    ("products", "list_price"): "List price (money).",
    ("subscriptions", "subscription_id"): "The subscription's id.",
    ("subscriptions", "account_id"): "The customer account.",
    ("subscriptions", "product_id"): "The product subscribed to.",
    ("subscriptions", "mrr"): "Monthly recurring revenue of the subscription while it runs (money).",
    ("subscriptions", "started_at"): "When it starts: active from this instant on (inclusive).",
    ("subscriptions", "ended_at"): (
        "When it ends (exclusive); empty = still running. May lie in the future (a planned end)."
    ),
    ("subscriptions", "end_reason"): "Why it ended (free text, e.g. churned, price).",
    ("pipeline_stages", "stage"): "The stage's name, as `deal_stage_history.stage` uses it.",
    ("pipeline_stages", "position"): "Order in the pipeline (1 = first).",
    ("pipeline_stages", "probability"): (
        "Chance that a deal in this stage is won, a fraction 0..1 (weighted pipeline)."
    ),
    ("pipeline_stages", "is_closed"): "True for the closing stages (won or lost).",
    ("pipeline_stages", "is_won"): "True for the won stage(s).",
    ("deals", "deal_id"): "The deal's id.",
    ("deals", "account_id"): "The account the deal is with; empty for a lead without an account.",
    ("deals", "owner_id"): "The user who owns the deal (the owner filter).",
    ("deals", "product_id"): "The product the deal is about (the product filter).",
    ("deals", "name"): "Deal name.",
    ("deals", "amount"): "Deal value (money).",
    ("deals", "lead_source"): "Where the lead came from (free text).",
    ("deals", "created_at"): (
        "When the deal was created: the sales cycle and lead-conversion cohorts start here."
    ),
    ("deals", "closed_at"): "When the deal was won or lost; empty while open.",
    ("deals", "status"): "The deal's outcome so far.",
    ("deals", "lost_reason"): "Why it was lost (free text).",
    ("deals", "pipeline"): (
        "The CRM pipeline the deal is in (free text, e.g. HubSpot's `Pipeline`); the pipeline "
        "filter selects deals by it. Empty for a CRM with one pipeline."
    ),
    ("deals", "amount_original"): (
        "The deal value as the CRM wrote it, in `currency`; the importer fills it from `amount` "
        "when a `currency` is given."
    ),
    ("deals", "currency"): (
        "ISO 4217 code of `amount_original` (`PEN`, `USD`, …); empty = the reporting currency."
    ),
    ("deal_stage_history", "deal_id"): "The deal.",
    ("deal_stage_history", "stage"): "The stage entered, a `pipeline_stages.stage`.",
    ("deal_stage_history", "entered_at"): (
        "When the deal entered the stage; the visit lasts until the deal's next `entered_at` (or `closed_at`)."
    ),
    ("interactions", "interaction_id"): "The interaction's id.",
    ("interactions", "account_id"): "The account involved.",
    ("interactions", "contact_id"): "The contact involved.",
    ("interactions", "user_id"): "The user who handled it (the owner filter).",
    ("interactions", "channel"): "How it happened.",
    ("interactions", "direction"): "Inbound or outbound (free text).",
    ("interactions", "occurred_at"): "When it happened.",
    ("interactions", "deal_id"): "The deal it belongs to, if any.",
    ("interactions", "ticket_id"): "The ticket it belongs to, if any.",
    ("interactions", "campaign_id"): "The campaign it belongs to, if any.",
    ("tickets", "ticket_id"): "The ticket's id.",
    ("tickets", "account_id"): "The account that raised it.",
    ("tickets", "product_id"): "The product it is about (complaint spikes are counted per product).",
    ("tickets", "channel"): "Where it came in (free text: email, phone, chat, …).",
    ("tickets", "category"): "What it is about; defects and complaints feed complaint spikes.",
    ("tickets", "priority"): "Priority (free text, e.g. low, normal, high, urgent).",
    ("tickets", "opened_at"): "When it was opened.",
    ("tickets", "first_response_at"): "The first response to the customer; empty = none yet.",
    ("tickets", "resolved_at"): "When it was resolved; empty = unresolved.",
    ("tickets", "contacts_until_resolved"): (
        "Customer contacts it took to resolve it: 1 = first-contact resolution; empty = unknown."
    ),
    ("survey_responses", "response_id"): "The response's id.",
    ("survey_responses", "account_id"): "The responding account.",
    ("survey_responses", "contact_id"): "The responding contact.",
    ("survey_responses", "survey"): "Which survey the score belongs to.",
    ("survey_responses", "touchpoint"): "Where in the customer journey it was asked.",
    ("survey_responses", "score"): "The answer, on the survey's scale (see *Score scales*).",
    ("survey_responses", "comment"): "Free-text comment.",
    ("survey_responses", "responded_at"): "When the answer was given.",
    ("survey_responses", "ticket_id"): "The ticket it rates (support surveys).",
    ("campaigns", "campaign_id"): "The campaign's id.",
    ("campaigns", "name"): "Campaign name.",
    ("campaigns", "channel"): "Marketing channel (free text: email, paid search, events, …).",
    ("campaigns", "objective"): "What the campaign is for.",
    ("campaigns", "started_on"): "First day; a campaign belongs to the period of its start.",
    ("campaigns", "ended_on"): "Last day.",
    ("campaigns", "cost"): "Total cost of the campaign (money).",
    ("campaigns", "recipients"): (
        "The vendor report's number of recipients (sent), for the whole campaign; empty = "
        "count `campaign_responses` instead."
    ),
    ("campaigns", "delivered"): "The vendor report's successful deliveries (whole campaign).",
    ("campaigns", "opens"): "The vendor report's unique opens (whole campaign).",
    ("campaigns", "clicks"): "The vendor report's unique clicks (whole campaign).",
    ("campaigns", "unsubscribes"): "The vendor report's unsubscribes (whole campaign).",
    ("campaign_responses", "campaign_id"): "The campaign.",
    ("campaign_responses", "account_id"): "The recipient's account.",
    ("campaign_responses", "contact_id"): "The recipient.",
    ("campaign_responses", "sent_at"): "When it was sent to the recipient; set = sent.",
    ("campaign_responses", "opened_at"): "When the recipient opened it; set = opened.",
    ("campaign_responses", "clicked_at"): "When the recipient clicked; set = clicked.",
    ("campaign_responses", "converted_at"): "When the recipient converted; set = converted.",
    ("web_traffic", "date"): "The day.",
    ("web_traffic", "source"): "Traffic source (organic, paid, referral, …).",
    ("web_traffic", "sessions"): "Visits that day.",
    ("web_traffic", "pageviews"): "Pages viewed that day.",
    ("web_traffic", "impressions"): "Ad or search impressions that day.",
    ("web_traffic", "clicks"): "Clicks on those impressions.",
    ("web_traffic", "signups"): "Sign-ups that day.",
    ("social_media", "date"): "The day.",
    ("social_media", "platform"): "Social platform.",
    ("social_media", "followers"): "Followers that day: a level, not summed over days.",
    ("social_media", "impressions"): "Impressions that day.",
    ("social_media", "engagements"): "Likes, comments, shares, … that day.",
    ("social_media", "mentions"): "Mentions that day.",
    ("payments", "payment_id"): "The payment's id.",
    ("payments", "account_id"): "The paying account.",
    ("payments", "paid_at"): "When it was paid.",
    ("payments", "amount"): "Amount (money); negative = refund.",
    ("payments", "amount_original"): (
        "The amount as the source wrote it, in `currency`; the importer fills it from `amount` "
        "when a `currency` is given."
    ),
    ("payments", "currency"): ("ISO 4217 code of `amount_original`; empty = the reporting currency."),
    ("exchange_rates", "currency"): "ISO 4217 code of the currency converted (`PEN`, `MXN`, …).",
    ("exchange_rates", "valid_from"): (
        "The first day the rate applies (until the currency's next `valid_from`); a day before "
        "a currency's first row uses that first rate."
    ),
    ("exchange_rates", "rate_to_reporting"): (
        "What 1 unit of `currency` is worth in the reporting currency (reporting amount = amount × rate)."
    ),
    ("costs", "cost_id"): "The cost's id.",
    ("costs", "incurred_on"): "The day the cost was incurred.",
    ("costs", "category"): "What kind of cost it is.",
    ("costs", "purpose"): "What it served; retention costs feed the retention cost per customer.",
    ("costs", "account_id"): "The account it was spent on, if any (customer profitability).",
    ("costs", "amount"): "Amount spent (money).",
}

#: The hand-written rules; ``{placeholders}`` are filled from the code by :func:`_rules`.
RULES = """\
## Rules

**Ids are text.** Every id column (and `pipeline_stages.stage`) is text, kept exactly as
given: compared case-sensitively, not trimmed, leading zeros kept (`00123` is not `123`).

**Required.** A required column must be in the file's header and have a value in every
row; an empty or blank cell is a missing value (NULL). Primary-key columns are always
required.

**Timestamps are UTC.** A `timestamp (UTC)` column holds a timestamp without time zone
that means UTC; every database session runs in UTC, so period boundaries are the same
for every viewer and database. The importer reads ISO 8601:

* a date and a time separated by `T` or a blank, the time as `HH:MM`, `HH:MM:SS` or with a
  fraction (`.` or `,`; kept to the microsecond, further digits dropped) —
  `2024-03-01T09:30:00`, `2024-03-01 09:30`, `2024-03-01T09:30:00.250`;
* or a date alone, meaning midnight UTC — `2024-03-01`;
* without a zone designator the value is taken as UTC as it is; with `Z` or a numeric
  offset (`+02:00`, `+0200`, `+02`, `-05:00`) it is converted to UTC and the offset
  dropped: `2024-03-01T09:30:00+02:00` is stored as `2024-03-01 07:30:00`;
* anything else is an error: zone names (`2024-03-01 09:30 CET`, `Europe/Berlin`), an hour
  without minutes (`2024-03-01T09`), basic format (`20240301`), local formats
  (`01/03/2024`).

Values that arrive already typed (through a mapping) follow the same rule: time-zone-aware
values are converted to UTC, naive ones are taken as UTC.

**Dates are calendar days.** A `date` column holds a day with no time and no time zone
(`2024-03-01`). A timestamp is accepted there only when it is exactly midnight once
converted to UTC; any other time of day is an error.

**Numbers.** `number` is a floating-point (double) value: any finite decimal such as
`1250`, `-19.90` or `1e3`. `integer` is a whole number (`3`, also written `3.0`).
`boolean` accepts, in any case,
{true_words} for true and
{false_words} for false.

**Money** is a `number` in the one reporting currency of the database: every KPI sums
`amount` as it is. `payments.amount` is signed: a negative amount is a
refund (revenue nets refunds out). Which amounts may be negative and which may not is
stated in *Value rules*.

**Currencies.** Deals and payments may say in which currency the CRM wrote them
(`currency`, an ISO 4217 code; empty = the reporting currency). The importer then keeps
that amount in `amount_original` and stores in `amount` its value in the reporting
currency: `amount_original × rate_to_reporting`, with the `exchange_rates` row of the
currency in force on the record's day (payments: `paid_at`; deals: `closed_at`, an open
deal the day of the import; a day before the currency's first row: that first rate).
The reporting currency is the setting `reporting_currency` of the `crm_insights_meta`
table (Salesforce: the corporate currency of `CurrencyType`; the command line:
`import --reporting-currency`; else the only currency in the data). A currency without
any rate is stored unconverted (`amount` = `amount_original`) and listed in
`crm_insights_meta` (`unconverted_currencies`): the import warns, and the dashboard says
which money figures mix currencies.

**Enum values** (see *Allowed values*) are matched ignoring case and surrounding blanks,
and stored in lower case. Other text columns are free text.

**Score scales.** The importer rejects scores outside their survey's scale:

{score_scales}

{value_rules}

**Active customer.** A customer is an account with an active subscription: an account is
*active at instant t* when one of its subscriptions has `started_at ≤ t < ended_at`
(no `ended_at` = still running). A period `[s, e)` has customers at start = active at `s`;
retained = active at `s` and at `e`; churned = active at `s` and not at `e`.

**Time of a record.** A record belongs to the period of the time column named in its KPI's
definition (deals by `created_at` or `closed_at`, tickets by `opened_at` or
`resolved_at`, payments by `paid_at`, costs by `incurred_on`, …).
"""

BUNDLE = """\
## The CSV bundle

The import format (`python -m crm_data import PATH...`, and the dashboard's Import page):

* **One CSV per table**, named `<table>.csv` after a canonical table (`accounts.csv`,
  `deals.csv`, …): a folder of them, or the files themselves. Any subset of the {table_count}
  tables may be given; other `.csv` files in a folder are ignored with a warning.
* **UTF-8** (a byte-order mark is fine), `\\n` or `\\r\\n` line endings, comma-separated with
  the usual CSV quoting.
* **Header row = column names** of the table, matched ignoring case and surrounding blanks.
  Any subset of the columns, in any order, as long as the required ones are there; unknown
  columns are ignored with a warning; a column given twice is an error.
* **All or nothing.** Everything is validated first — required columns and values, types,
  enum values, score scales, the value rules (dates, numbers, order, text; see *Rules*),
  duplicate keys within a file, and the foreign keys (the
  parent must be in the same import or already in the database). Every problem is reported
  as `file:row:column: reason` (row = line number in the file, the header is line 1; the
  first {max_errors} are listed, all are counted). On any error nothing is written. Otherwise
  every table is written in ONE transaction, parents first; a database error rolls it all
  back. Missing tables are created, and optional columns added to the schema since a
  table was created are added to it.
* **Upsert by id.** Rows are matched by their table's primary key: new keys are inserted;
  existing keys get the columns present in the file (columns absent from the file keep
  their values). Re-importing the same bundle changes nothing. `campaign_responses` has no
  key: its file replaces all responses of every campaign that appears in it.
* Soft references (below) are not checked by the import; the data-quality report
  (`python -m crm_data check`) lists the records whose soft reference points nowhere.
"""

KPI_CONTRACT = """\
## The KPI contract

Every KPI is a function `(conn, filters, …) -> pandas.DataFrame`, `conn` a SQLAlchemy
`Connection` or `Engine`, whose docstring states its formula.

* **Filters** —
  `kpis.Filters({filter_fields})`:
  `start` and `end` are dates, a half-open range `[start, end)` in UTC. Account-level lists
  ({account_lists})
  select records through their account; a record with no `account_id` counts only while
  no account-level list is set, and tables without an account column (web traffic, social
  media, campaigns) are not narrowed by them. `owners` select records by their own owner column
  (`deals.owner_id`, `interactions.user_id`), else through their account's `owner_id`;
  `products` by their own `product_id`, else through their account's subscriptions;
  `pipelines` select deals by `deals.pipeline` and narrow no other records. An empty list
  means all. `scope` (`kpis.filters.Scope`: regions, countries, segments, industries,
  owners; the signed-in user's) applies beside the lists and is never widened by them; a
  restricted scope shows no records without an account and nothing of the tables without
  an account column.
* **Periods** are calendar {freqs} in UTC
  (`freq` = {freq_values}); a row's `period` is the period's first day; the rows
  are the periods whose first day lies in `[start, end)`, periods without data included,
  in order.
* **Units.** Rates are fractions (0.25 = 25 %), not percentages; NPS is −100..100; durations
  are days as floats (seconds ÷ 86,400); money is in the reporting currency; percentiles interpolate
  linearly (like `percentile_cont`). Rates carry 95 % intervals and a `low_sample` flag below
  {low_sample} observations.
* **`kpis.registry.KPIS`** lists every KPI with its definition — the same text the
  dashboard's cards and every export show:
"""


def descriptions_missing(
    metadata: sa.MetaData,
    descriptions: Mapping[tuple[str, str], str] = COLUMN_DESCRIPTIONS,
    table_descriptions: Mapping[str, str] = TABLE_DESCRIPTIONS,
) -> list[str]:
    """The tables and ``table.column`` names of ``metadata`` that have no (non-blank) description."""
    missing: list[str] = []
    for table in metadata.tables.values():
        if not table_descriptions.get(table.name, "").strip():
            missing.append(table.name)
        missing.extend(
            f"{table.name}.{column.name}"
            for column in table.columns
            if not descriptions.get((table.name, column.name), "").strip()
        )
    return missing


def descriptions_stale(
    metadata: sa.MetaData,
    descriptions: Mapping[tuple[str, str], str] = COLUMN_DESCRIPTIONS,
    table_descriptions: Mapping[str, str] = TABLE_DESCRIPTIONS,
) -> list[str]:
    """The described tables and ``table.column`` names that ``metadata`` does not have."""
    stale = [name for name in table_descriptions if name not in metadata.tables]
    stale.extend(
        f"{table}.{column}"
        for table, column in descriptions
        if table not in metadata.tables or column not in metadata.tables[table].c
    )
    return stale


def description_problems(
    metadata: sa.MetaData,
    descriptions: Mapping[tuple[str, str], str] = COLUMN_DESCRIPTIONS,
    table_descriptions: Mapping[str, str] = TABLE_DESCRIPTIONS,
) -> list[str]:
    """Readable problems: schema tables/columns without a description, descriptions of nothing."""
    problems = [
        f"{name}: no description in crm_data/schema_doc.py"
        for name in descriptions_missing(metadata, descriptions, table_descriptions)
    ]
    problems.extend(
        f"{name}: described in crm_data/schema_doc.py but not in the schema"
        for name in descriptions_stale(metadata, descriptions, table_descriptions)
    )
    return problems


def type_name(column: sa.Column) -> str:
    """The readable type of ``column``: text, number, integer, boolean, date or timestamp (UTC)."""
    return TYPE_NAMES[validation.column_kind(column)]


def is_required(column: sa.Column) -> bool:
    """True when every row must have a value: declared NOT NULL, or part of the primary key."""
    return validation.is_required(column)


def enum_values(table: str, column: str) -> list[str]:
    """The allowed values of an enumerated column (sorted), or ``[]`` for free text."""
    return sorted(schema.ENUMS.get((table, column), ()))


def _allowed(table: str, column: str) -> str:
    """The *allowed values* cell: an enum's values, or a number column's range."""
    bounds = validation.VALUE_RULES.get((table, column))
    return str(bounds) if bounds is not None else _code_list(enum_values(table, column))


def _soft_references(metadata: sa.MetaData) -> dict[tuple[str, str], str]:
    """(table, column) -> ``parent.column`` of the soft references among ``metadata``'s columns."""
    return {
        (table, column): f"{parent}.{parent_column}"
        for table, column, parent, parent_column in quality.SOFT_REFERENCES
        if table in metadata.tables and column in metadata.tables[table].c
    }


def _cell(text: str) -> str:
    """``text`` made safe for one Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _code_list(values: Sequence[str]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def _primary_key(table: sa.Table) -> str:
    keys = [c.name for c in table.primary_key.columns]
    if not keys:
        return "none"
    if len(keys) == 1:
        return f"`{keys[0]}`"
    return "(" + ", ".join(f"`{k}`" for k in keys) + ")"


def _reference(column: sa.Column, soft: Mapping[tuple[str, str], str]) -> str:
    parts = ["primary key"] if column.primary_key else []
    parts.extend(f"→ `{fk.target_fullname}` (foreign key)" for fk in column.foreign_keys)
    target = soft.get((column.table.name, column.name))
    if target:
        parts.append(f"→ `{target}` (soft)")
    return "; ".join(parts)


def _score_scales() -> str:
    lines = []
    for survey in enum_values("survey_responses", "survey"):
        scale = schema.SCORE_SCALES.get(survey)
        if scale is None:
            lines.append(f"* `{survey}`: any number — scales differ between companies, not checked.")
        else:
            low, high, whole = scale
            points = " in whole points" if whole else ""
            lines.append(f"* `{survey}`: {low:g}–{high:g}{points}.")
    return "\n".join(lines)


def _value_rules() -> str:
    """The *Value rules* paragraph, from :mod:`crm_data.validation`'s rules."""
    planned = ", ".join(f"`{t}.{c}`" for t, c in sorted(schema.PLANNED_COLUMNS))
    years = validation.PLANNED_HORIZON_YEARS
    event_years = validation.EVENT_HORIZON_YEARS
    lines = [
        "**Value rules** (`crm_data.validation`). The importer refuses, each reported as "
        "`file:row:column: reason`:",
        "",
        f"* **Dates and timestamps** before `{validation.EARLIEST_DATE.isoformat()}`, or after "
        f"today (UTC) + {event_years} year{'s' if event_years != 1 else ''} — records of what happened, "
        "with room for scheduled ones and clocks that run ahead (the data-quality check reports "
        f"every future one) — or, for the planned columns ({planned}), after today + {years} years. "
        "The last day is included: on 2026-12-06, say, a subscription may end up to 2036-12-06 "
        "23:59:59 and a payment lie up to 2027-12-06 23:59:59. `python -m crm_data import` and the Import page use the day of the "
        "import; `today` is a parameter of `crm_data.importing.import_paths` and its siblings.",
        "* **Numbers** outside their range (`crm_data.validation.VALUE_RULES`; also in the "
        "*allowed values* of each table below):",
        "",
        "  | column | accepted values |",
        "  |---|---|",
    ]
    lines += [f"  | `{t}.{c}` | {bounds} |" for (t, c), bounds in validation.VALUE_RULES.items()]
    lines += [
        "",
        "  Signed on purpose: "
        + "; ".join(
            f"`{t}.{c}` (a negative amount is {why})" for (t, c), why in validation.SIGNED_COLUMNS.items()
        )
        + ". Survey scores follow *Score scales*; every other number may be any finite value.",
        "* **An end before its start** within a row, when both are given: "
        + ", ".join(f"`{t}.{later}` before `{earlier}`" for t, earlier, later in validation.ORDER_RULES)
        + ". A timestamp at exactly midnight on the day of the earlier one is a date without its time "
        "(a CRM's close date) and is not before it.",
        f"* **Text** longer than {validation.MAX_TEXT_LENGTH:,d} characters in one value; ids (text "
        "columns of a primary or foreign key, and every `*_id` column) longer than "
        f"{validation.MAX_ID_LENGTH} characters; a NUL character (`\\x00`) in any text, on every "
        "database (PostgreSQL cannot store one). A message quotes at most "
        f"{validation.SHOWN_CHARACTERS} characters of a value, with its length.",
    ]
    return "\n".join(lines)


def _rules() -> str:
    return RULES.format(
        true_words=" / ".join(f"`{w}`" for w in sorted(validation.TRUE_WORDS)),
        false_words=" / ".join(f"`{w}`" for w in sorted(validation.FALSE_WORDS)),
        score_scales=_score_scales(),
        value_rules=_value_rules(),
    )


def _tables_part(
    metadata: sa.MetaData,
    descriptions: Mapping[tuple[str, str], str],
    table_descriptions: Mapping[str, str],
) -> list[str]:
    soft = _soft_references(metadata)
    out = [
        "## Tables",
        "",
        "In the order of `crm_data/schema.py`. *Required* = every row has a value. Types: `text`, "
        "`number` (double), `integer`, `boolean`, `date` (a calendar day), `timestamp (UTC)`.",
        "",
        "| table | primary key | what a row is |",
        "|---|---|---|",
    ]
    out.extend(
        f"| [`{t.name}`](#{t.name}) | {_primary_key(t)} | {_cell(table_descriptions[t.name])} |"
        for t in metadata.tables.values()
    )
    for table in metadata.tables.values():
        out += [
            "",
            f"### {table.name}",
            "",
            table_descriptions[table.name],
            "",
            f"Primary key: {_primary_key(table)}.",
            "",
            "| column | type | required | key / references | allowed values | description |",
            "|---|---|---|---|---|---|",
        ]
        for column in table.columns:
            cells = [
                f"`{column.name}`",
                type_name(column),
                "yes" if is_required(column) else "no",
                _reference(column, soft),
                _allowed(table.name, column.name),
                descriptions[(table.name, column.name)],
            ]
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def _enums_part(metadata: sa.MetaData) -> list[str]:
    out = [
        "## Allowed values",
        "",
        "The enumerated columns (`crm_data.schema.ENUMS`); the importer rejects any other value.",
        "",
        "| column | allowed values |",
        "|---|---|",
    ]
    for table in metadata.tables.values():
        for column in table.columns:
            values = enum_values(table.name, column.name)
            if values:
                out.append(f"| `{table.name}.{column.name}` | {_code_list(values)} |")
    return out


def _references_part(metadata: sa.MetaData) -> list[str]:
    out = [
        "## References",
        "",
        "**Foreign keys** (declared in `crm_data.schema`): the importer checks every one — the parent "
        "must be in the same import or already in the database. They are also written into the "
        "database's DDL on row stores (PostgreSQL, SQLite, …), not on DuckDB. An empty value "
        "refers to nothing and is fine unless the column is required.",
        "",
        "| column | refers to |",
        "|---|---|",
    ]
    for table in metadata.tables.values():
        for column in table.columns:
            out.extend(
                f"| `{table.name}.{column.name}` | `{fk.target_fullname}` |" for fk in column.foreign_keys
            )
    out += [
        "",
        "**Soft references** (`crm_data.quality.SOFT_REFERENCES`): ids that point at another table "
        "but are not declared as foreign keys, since CRM exports often hold ids of records they do "
        "not include. The import does not check them; the data-quality check "
        "(`python -m crm_data check`) reports the records whose id is not found as orphans.",
        "",
        "| column | refers to |",
        "|---|---|",
    ]
    soft = _soft_references(metadata)
    out.extend(f"| `{table}.{column}` | `{target}` |" for (table, column), target in soft.items())
    return out


def _bundle_part(metadata: sa.MetaData) -> list[str]:
    text = BUNDLE.format(table_count=len(metadata.tables), max_errors=validation.MAX_LISTED_ERRORS)
    return text.rstrip("\n").split("\n")


def _kpi_part() -> list[str]:
    filter_fields = [f.name for f in dataclasses.fields(kpi_filters.Filters)]
    freqs = list(dialects.FREQS)
    text = KPI_CONTRACT.format(
        filter_fields=", ".join(
            filter_fields[:2]
            + [f"{name}=()" for name in filter_fields[2:] if name in kpi_filters.LIST_FIELDS]
            + ["scope=Scope()"]
        ),
        account_lists=", ".join(f"`{name}`" for name in kpi_filters.ACCOUNT_DIMENSIONS),
        freqs=", ".join(f"{f}s" for f in freqs[:-1]) + f" or {freqs[-1]}s",
        freq_values=", ".join(f'`"{f}"`' for f in freqs),
        low_sample=kpi_core.LOW_SAMPLE,
    )
    out = text.rstrip("\n").split("\n")
    out += [
        "",
        "| KPI | key | function | unit | headline column | definition |",
        "|---|---|---|---|---|---|",
    ]
    for kpi in registry.KPIS:
        function = f"`{kpi.function.__module__}.{kpi.function.__name__}`"
        cells = [
            kpi.title,
            f"`{kpi.key}`",
            function,
            UNIT_NAMES[kpi.unit],
            f"`{kpi.value_column}`",
            kpi.definition,
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return out


def render(
    metadata: sa.MetaData | None = None,
    *,
    descriptions: Mapping[tuple[str, str], str] = COLUMN_DESCRIPTIONS,
    table_descriptions: Mapping[str, str] = TABLE_DESCRIPTIONS,
) -> str:
    """The Markdown of docs/data-model.md for ``metadata`` (default: the canonical schema).

    Raises ``ValueError`` listing :func:`description_problems` when a table or column has no
    description or a description names a column that does not exist.
    """
    metadata = schema.metadata if metadata is None else metadata
    problems = description_problems(metadata, descriptions, table_descriptions)
    if problems:
        raise ValueError("the data-model descriptions do not match the schema:\n  " + "\n  ".join(problems))
    out = [
        "<!-- Generated by crm_data/schema_doc.py from the code: do not edit by hand. -->",
        f"<!-- Regenerate with `{REGENERATE}`. -->",
        "",
        "# Data model",
        "",
        f"The {len(metadata.tables)} canonical CRM tables that every importer writes and every KPI "
        "reads, with their columns, types, keys, references and allowed values, the rules their "
        "values follow, the CSV bundle import format and the KPI contract. Generated from "
        "`crm_data/schema.py` (tables and columns), `crm_data/validation.py` (how values are read, "
        "and the value rules), "
        "`crm_data/quality.py` (soft references) and `kpis/registry.py` (KPIs).",
        "",
        "Contents: [Rules](#rules) · [Tables](#tables) · [Allowed values](#allowed-values) · "
        "[References](#references) · [The CSV bundle](#the-csv-bundle) · "
        "[The KPI contract](#the-kpi-contract)",
        "",
    ]
    out += _rules().rstrip("\n").split("\n")
    out.append("")
    out += _tables_part(metadata, descriptions, table_descriptions)
    out.append("")
    out += _enums_part(metadata)
    out.append("")
    out += _references_part(metadata)
    out.append("")
    out += _bundle_part(metadata)
    out.append("")
    out += _kpi_part()
    return "\n".join(out) + "\n"


def _write_stdout(text: str) -> None:
    """Write ``text`` to stdout as UTF-8, whatever the terminal's encoding (and with ``\\n``)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(text)
        return
    sys.stdout.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m crm_data.schema_doc [--check] [--path FILE]``.

    Without ``--check``: print the document (redirect it into docs/data-model.md). With
    ``--check``: exit 1, saying how to regenerate, when the file differs from :func:`render`.
    """
    parser = argparse.ArgumentParser(
        prog="python -m crm_data.schema_doc",
        description=f"Print the data-model reference ({DOC_RELATIVE_PATH}), generated from the code.",
    )
    parser.add_argument(
        "--check", action="store_true", help=f"exit 1 when {DOC_RELATIVE_PATH} is not up to date"
    )
    parser.add_argument(
        "--path",
        type=Path,
        default=DOC_PATH,
        help=f"the file --check compares (default: {DOC_RELATIVE_PATH})",
    )
    args = parser.parse_args(argv)
    text = render()
    if not args.check:
        _write_stdout(text)
        return 0
    try:
        current = args.path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"{args.path}: cannot read it ({error}); regenerate it with: {REGENERATE}", file=sys.stderr)
        return 1
    if current != text:
        print(f"{args.path} is out of date; regenerate it with: {REGENERATE}", file=sys.stderr)
        return 1
    print(f"{args.path} is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
