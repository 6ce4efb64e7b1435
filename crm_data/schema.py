"""The canonical CRM tables of DESIGN.md as SQLAlchemy 2 metadata.

Every importer writes these tables and every KPI reads them. Conventions:

* ids are text, and every primary-key column is required (NOT NULL); timestamps are naive ``TIMESTAMP`` values that mean UTC; calendar days
  are ``DATE``; money is a double in one reporting currency. Deals and payments also keep
  the amount as the CRM wrote it (``amount_original``) in its ``currency`` (ISO 4217); the
  importer converts it into ``amount`` with :data:`exchange_rates` (``crm_data.currency``).
  A NULL ``currency`` means the reporting currency.
* Foreign keys are declared where they always hold (a child row points at a parent
  of the same CRM). The bundle importer checks exactly these references.
* Secondary indexes (time columns, ``account_id``, ``deal_id``, and the owner and product
  columns the filter bar selects by) are created on row stores (PostgreSQL, SQLite, ...),
  plus a few PostgreSQL-only partial / covering ones (:func:`postgresql_index`). DuckDB
  skips them: it prunes by zone maps and an ART index only slows its bulk loads.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _text(name: str, *args: object, required: bool = False, **kw: object) -> sa.Column:
    # a primary-key column is required (NOT NULL) whether or not ``required`` says so
    return sa.Column(name, sa.String, *args, nullable=not (required or kw.get("primary_key")), **kw)


def _time(name: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(), nullable=not required)


def _day(name: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.Date(), nullable=not required)


def _money(name: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.Double(), nullable=not required)


def _count(name: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.BigInteger(), nullable=not required)


def _currency() -> list[sa.Column]:
    """The original amount and its ISO 4217 currency (``crm_data.currency`` converts it)."""
    return [_money("amount_original"), _text("currency")]


def _fk(name: str, target: str, required: bool = False) -> sa.Column:
    return sa.Column(name, sa.String, sa.ForeignKey(target), nullable=not required)


accounts = sa.Table(
    "accounts",
    metadata,
    _text("account_id", primary_key=True),
    _text("name", required=True),
    _text("segment"),
    _text("industry"),
    _text("company_size"),
    _text("region"),
    _text("country"),
    _text("city"),
    _text("acquisition_channel"),
    _text("owner_id"),
    _time("created_at", required=True),
)

contacts = sa.Table(
    "contacts",
    metadata,
    _text("contact_id", primary_key=True),
    _fk("account_id", "accounts.account_id"),
    _text("name"),
    _text("email"),
    _text("phone"),
    _text("role"),
    _time("created_at"),
)

users = sa.Table(
    "users",
    metadata,
    _text("user_id", primary_key=True),
    _text("name", required=True),
    _text("team"),
    _text("department"),
    _text("manager_id"),
    _text("region"),
)

products = sa.Table(
    "products",
    metadata,
    _text("product_id", primary_key=True),
    _text("name", required=True),
    _text("family"),
    _money("list_price"),
)

subscriptions = sa.Table(
    "subscriptions",
    metadata,
    _text("subscription_id", primary_key=True),
    _fk("account_id", "accounts.account_id", required=True),
    _text("product_id"),
    _money("mrr"),
    _time("started_at", required=True),
    _time("ended_at"),
    _text("end_reason"),
)

pipeline_stages = sa.Table(
    "pipeline_stages",
    metadata,
    _text("stage", primary_key=True),
    sa.Column("position", sa.Integer(), nullable=False),
    sa.Column("probability", sa.Double()),
    sa.Column("is_closed", sa.Boolean()),
    sa.Column("is_won", sa.Boolean()),
)

deals = sa.Table(
    "deals",
    metadata,
    _text("deal_id", primary_key=True),
    _fk("account_id", "accounts.account_id"),
    _text("owner_id"),
    _text("product_id"),
    _text("name"),
    _money("amount"),
    _text("lead_source"),
    _time("created_at", required=True),
    _time("closed_at"),
    _text("status", required=True),
    _text("lost_reason"),
    _text("pipeline"),
    *_currency(),
)

deal_stage_history = sa.Table(
    "deal_stage_history",
    metadata,
    _fk("deal_id", "deals.deal_id", required=True),
    _text("stage", required=True),
    _time("entered_at", required=True),
    sa.PrimaryKeyConstraint("deal_id", "stage", "entered_at"),
)

interactions = sa.Table(
    "interactions",
    metadata,
    _text("interaction_id", primary_key=True),
    _fk("account_id", "accounts.account_id"),
    _text("contact_id"),
    _text("user_id"),
    _text("channel", required=True),
    _text("direction"),
    _time("occurred_at", required=True),
    _text("deal_id"),
    _text("ticket_id"),
    _text("campaign_id"),
)

tickets = sa.Table(
    "tickets",
    metadata,
    _text("ticket_id", primary_key=True),
    _fk("account_id", "accounts.account_id"),
    _text("product_id"),
    _text("channel"),
    _text("category"),
    _text("priority"),
    _time("opened_at", required=True),
    _time("first_response_at"),
    _time("resolved_at"),
    _count("contacts_until_resolved"),
)

survey_responses = sa.Table(
    "survey_responses",
    metadata,
    _text("response_id", primary_key=True),
    _fk("account_id", "accounts.account_id"),
    _text("contact_id"),
    _text("survey", required=True),
    _text("touchpoint"),
    sa.Column("score", sa.Double(), nullable=False),
    _text("comment"),
    _time("responded_at", required=True),
    _text("ticket_id"),
)

campaigns = sa.Table(
    "campaigns",
    metadata,
    _text("campaign_id", primary_key=True),
    _text("name", required=True),
    _text("channel"),
    _text("objective"),
    _day("started_on"),
    _day("ended_on"),
    _money("cost"),
    # a vendor's report figures for the whole campaign (e.g. Mailchimp's campaign report),
    # for when there are no per-recipient responses
    _count("recipients"),
    _count("delivered"),
    _count("opens"),
    _count("clicks"),
    _count("unsubscribes"),
)

campaign_responses = sa.Table(
    "campaign_responses",
    metadata,
    # no id in DESIGN.md: rows are identified by what they are about
    _fk("campaign_id", "campaigns.campaign_id", required=True),
    _fk("account_id", "accounts.account_id"),
    _text("contact_id"),
    _time("sent_at"),
    _time("opened_at"),
    _time("clicked_at"),
    _time("converted_at"),
)

web_traffic = sa.Table(
    "web_traffic",
    metadata,
    _day("date", required=True),
    _text("source", required=True),
    _count("sessions"),
    _count("pageviews"),
    _count("impressions"),
    _count("clicks"),
    _count("signups"),
    sa.PrimaryKeyConstraint("date", "source"),
)

social_media = sa.Table(
    "social_media",
    metadata,
    _day("date", required=True),
    _text("platform", required=True),
    _count("followers"),
    _count("impressions"),
    _count("engagements"),
    _count("mentions"),
    sa.PrimaryKeyConstraint("date", "platform"),
)

payments = sa.Table(
    "payments",
    metadata,
    _text("payment_id", primary_key=True),
    _fk("account_id", "accounts.account_id", required=True),
    _time("paid_at", required=True),
    _money("amount", required=True),
    *_currency(),
)

exchange_rates = sa.Table(
    "exchange_rates",
    metadata,
    # 1 unit of ``currency`` is worth ``rate_to_reporting`` units of the reporting currency
    # from ``valid_from`` until the currency's next row (crm_data.currency)
    _text("currency", primary_key=True),
    sa.Column("valid_from", sa.Date(), primary_key=True),
    sa.Column("rate_to_reporting", sa.Double(), nullable=False),
)

costs = sa.Table(
    "costs",
    metadata,
    _text("cost_id", primary_key=True),
    _day("incurred_on", required=True),
    _text("category", required=True),
    _text("purpose"),
    _fk("account_id", "accounts.account_id"),
    _money("amount", required=True),
)

#: Tables in an order where every parent comes before its children.
TABLES: list[sa.Table] = list(metadata.sorted_tables)
TABLE_NAMES: list[str] = [t.name for t in TABLES]

#: Allowed values of the enumerated columns (DESIGN.md).
ENUMS: dict[tuple[str, str], frozenset[str]] = {
    ("deals", "status"): frozenset({"open", "won", "lost"}),
    ("interactions", "channel"): frozenset({"email", "phone", "meeting", "chat", "social", "web"}),
    ("tickets", "category"): frozenset(
        {"question", "billing", "defect", "return_exchange", "complaint", "other"}
    ),
    ("survey_responses", "survey"): frozenset({"nps", "ces", "csat"}),
    ("survey_responses", "touchpoint"): frozenset(
        {"support", "signup", "website_visit", "return_exchange", "purchase", "other"}
    ),
    ("campaigns", "objective"): frozenset({"acquisition", "retention"}),
    ("costs", "category"): frozenset({"personnel", "production", "overhead", "marketing", "loyalty"}),
    ("costs", "purpose"): frozenset({"acquisition", "retention", "other"}),
}

#: The score scale of each survey whose KPI assumes one (NPS 0–10 in whole points; CES 1–7,
#: DESIGN.md): the importer rejects scores outside it. CSAT scales differ between companies
#: and are not checked.
SCORE_SCALES: dict[str, tuple[float, float, bool]] = {"nps": (0, 10, True), "ces": (1, 7, False)}

#: (table, column) pairs whose values are plans that may lie years ahead — a subscription's
#: planned end, a campaign's days, a rate set ahead of its day — rather than records of
#: what happened.
PLANNED_COLUMNS: frozenset[tuple[str, str]] = frozenset(
    {
        ("subscriptions", "ended_at"),
        ("campaigns", "started_on"),
        ("campaigns", "ended_on"),
        ("exchange_rates", "valid_from"),
    }
)

COST_CATEGORIES: tuple[str, ...] = ("personnel", "production", "overhead", "marketing", "loyalty")


def _not_duckdb(
    ddl: object, target: object, bind: sa.Connection | None, dialect: sa.Dialect | None = None, **kw: object
) -> bool:
    """``ddl_if`` rule: emit the construct unless the database is DuckDB."""
    dialect = dialect or (bind.dialect if bind is not None else None)
    return dialect is None or dialect.name != "duckdb"


def row_store_index(table: sa.Table, *columns: str) -> sa.Index:
    """A secondary index on ``columns`` that is created on row stores (PostgreSQL,
    SQLite, ...) but not on DuckDB, whose scans prune by zone maps and whose ART indexes
    slow down loading."""
    index = sa.Index(f"ix_{table.name}_{'_'.join(columns)}", *(table.c[c] for c in columns))
    index.ddl_if(callable_=_not_duckdb)
    return index


# Foreign keys: declared in the metadata for every database (the bundle importer checks
# exactly these references, on every database), but written into the DDL only on row
# stores. DuckDB enforces them with a hidden index per key (measured: a third of its demo
# load time) and refuses to update a referenced row's foreign-key column inside a
# transaction, which an upsert of a moved deal needs.
for _table in metadata.tables.values():
    for _constraint in _table.foreign_key_constraints:
        _constraint.ddl_if(callable_=_not_duckdb)

for _table, _columns in [
    (accounts, ("created_at",)),
    (accounts, ("owner_id",)),
    (contacts, ("account_id",)),
    (subscriptions, ("account_id",)),
    (subscriptions, ("product_id",)),
    (subscriptions, ("started_at",)),
    (subscriptions, ("ended_at",)),
    (deals, ("account_id",)),
    (deals, ("owner_id",)),
    (deals, ("product_id",)),
    (deals, ("created_at",)),
    (deals, ("closed_at",)),
    (deal_stage_history, ("entered_at",)),
    (interactions, ("account_id",)),
    (interactions, ("occurred_at",)),
    (tickets, ("account_id",)),
    (tickets, ("product_id",)),
    (tickets, ("opened_at",)),
    (tickets, ("resolved_at",)),
    (survey_responses, ("account_id",)),
    (survey_responses, ("responded_at",)),
    (campaign_responses, ("campaign_id",)),
    (campaign_responses, ("account_id",)),
    (payments, ("account_id",)),
    (payments, ("paid_at",)),
    (costs, ("incurred_on",)),
    (costs, ("account_id",)),
]:
    row_store_index(_table, *_columns)


def postgresql_index(
    name: str,
    table: sa.Table,
    *columns: str | sa.ColumnElement,
    include: tuple[str, ...] = (),
    where: str | None = None,
) -> sa.Index:
    """An index created on PostgreSQL only: a partial (``where``) and/or covering
    (``include``: columns stored in the index, so an index-only scan needs no heap page)
    one, which PostgreSQL reads without touching the table once VACUUM has marked its
    pages all-visible. DuckDB would not profit (see :func:`row_store_index`); SQLite has
    no INCLUDE. ``columns``: column names, or expressions of ``table``'s columns."""
    index = sa.Index(
        name,
        *(table.c[c] if isinstance(c, str) else c for c in columns),
        postgresql_include=list(include),
        postgresql_where=sa.text(where) if where else None,
    )
    index.ddl_if(dialect="postgresql")
    return index


#: The sales cycle's median and 90th percentile read every won deal's created_at and
#: closed_at in the range (they are not sums, so no roll-up holds them): an index-only scan
#: of this index instead of the deals' pages (0.53 s -> 0.21 s at 100k accounts).
postgresql_index(
    "ix_deals_won_closed_at", deals, "closed_at", include=("created_at",), where="status = 'won'"
)

#: The lifetime-value models' per-account summary (``kpis.clv_summary``) reads each
#: account's payments of the period in paid_at order, by one window (``lag``) and one
#: aggregate: an index-only scan of this index hands them over in that order, where the
#: payments in ``account_id`` order were sorted by day, grouped per day and windowed again
#: (at 1M accounts, the default range's 4.9M payments: 4.3–4.8 → 3.1–3.2 s backend CPU;
#: 578 MB of index, built in ≈ 10 s).
postgresql_index("ix_payments_account_id_paid_at", payments, "account_id", "paid_at", include=("amount",))

#: The deals open now, within an owner's or a product's selection (the weighted pipeline,
#: the pipeline forecast's open deals: ``kpis.pipeline.current_stage`` joins them to the
#: stored deal rows): an index-only scan of the few open deals' entries (a few percent of
#: the deals), where the deals' owner or product index led to a bitmap heap scan of every
#: deal of that product, open or not (at 100k accounts, one product: the weighted
#: pipeline's statement 0.10 → 0.01 s; docs/performance.md, session 15, branch ``pgm``).
postgresql_index(
    "ix_deals_open",
    deals,
    "owner_id",
    include=("product_id", "deal_id", "amount", "created_at", "account_id", "pipeline"),
    where="status = 'open'",
)


def create_missing_indexes(conn: sa.Connection) -> list[str]:
    """``CREATE INDEX`` for every index of the schema (row-store and PostgreSQL-only ones)
    that an existing canonical table lacks: a database created before an index was added to
    the schema gets it at its next import. Nothing on DuckDB (it has no secondary indexes
    here). Returns the names of the indexes created."""
    if conn.dialect.name == "duckdb":
        return []
    inspector = sa.inspect(conn)
    present = set(inspector.get_table_names())
    created: list[str] = []
    for table in TABLES:
        if table.name not in present or not table.indexes:
            continue
        have = {index["name"] for index in inspector.get_indexes(table.name)}
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            if index.name in have:
                continue
            index.create(conn)  # skipped by the index's ddl_if rule on the wrong database
            if index.name in {i["name"] for i in sa.inspect(conn).get_indexes(table.name)}:
                created.append(str(index.name))
    return created


def create_schema(bind: sa.Engine | sa.Connection) -> None:
    """Create every missing canonical table (and its indexes); existing ones are kept and
    gain the optional columns and the indexes added to the schema since they were created
    (:func:`add_missing_columns`, :func:`create_missing_indexes`)."""
    metadata.create_all(bind, checkfirst=True)
    if isinstance(bind, sa.Engine):
        with bind.begin() as conn:
            add_missing_columns(conn)
            create_missing_indexes(conn)
    else:
        add_missing_columns(bind)
        create_missing_indexes(bind)


def table_columns(conn: sa.Connection, name: str) -> set[str]:
    """The column names of the existing table ``name`` (read from an empty SELECT: the
    inspector's column reflection does not work on every dialect, DuckDB's included)."""
    query = sa.select(sa.text("*")).select_from(sa.table(name)).where(sa.false())
    return set(conn.execute(query).keys())


def add_missing_columns(conn: sa.Connection) -> list[str]:
    """``ALTER TABLE ... ADD COLUMN`` for every optional (nullable) column of the schema that
    an existing canonical table lacks: a database created before the column was added to
    the schema (``deals.pipeline``, the campaign report figures) keeps working. Returns
    ``table.column`` of the columns added; a missing REQUIRED column is left for the database
    to report (it cannot be added without values)."""
    present = set(sa.inspect(conn).get_table_names())
    added: list[str] = []
    for table in TABLES:
        if table.name not in present:
            continue
        have = table_columns(conn, table.name)
        for column in table.columns:
            if column.name in have or not column.nullable:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            preparer = conn.dialect.identifier_preparer
            conn.exec_driver_sql(
                f"ALTER TABLE {preparer.format_table(table)} ADD COLUMN {preparer.quote(column.name)} {kind}"
            )
            added.append(f"{table.name}.{column.name}")
    return added
