"""Money per currency, for the pages to show when amounts mix currencies.

Every money KPI sums ``amount``, which the importer converts into the reporting currency
(``crm_data.currency``). When it could not (a currency without exchange rates, or no
reporting currency set), those amounts are stored as written and the import records the
currencies: :func:`currency_status` reads that record, :func:`money_by_currency` gives the
view's money per currency as written, so a page can say which figures mix currencies and
show them apart.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from crm_data import currency, schema
from kpis.core import connection
from kpis.filters import Filters, in_range, scope

Bind = sa.Connection | sa.Engine

#: The currency shown for rows without one (the reporting currency, not named yet).
REPORTING = "(reporting currency)"


def currency_status(conn: Bind) -> tuple[str | None, tuple[str, ...]]:
    """``(reporting currency, currencies stored unconverted)`` as the last import recorded
    them (``crm_insights_meta``); ``(None, ())`` for a database without that record."""
    with connection(conn) as c:
        return (
            currency.read_setting(c, currency.REPORTING_CURRENCY),
            tuple(currency.unconverted_currencies(c)),
        )


def money_by_currency(conn: Bind, f: Filters) -> pd.DataFrame:
    """Money of the view per currency, in the currency it was written in.

    Formula: per currency (deals and payments without one count as the reporting
    currency): payments = Σ amount_original (else amount) of payments with paid_at in
    [start, end); won_amount = the same over won deals with closed_at in [start, end);
    open_pipeline = over open deals (whatever their dates); converted = the amounts of
    this currency are in the reporting currency in every KPI (False: stored as written,
    they mix with the others). Segments, owners and products filter as in every KPI.
    Columns: currency, payments, won_amount, open_pipeline, converted.
    """
    columns = ["currency", "payments", "won_amount", "open_pipeline", "converted"]
    with connection(conn) as c:
        reporting, unconverted = currency_status(c)
        rows: dict[str, dict[str, float]] = {}
        deals, payments = schema.deals, schema.payments

        def written(table: sa.Table) -> sa.ColumnElement:
            return sa.func.sum(sa.func.coalesce(table.c.amount_original, table.c.amount))

        queries = {
            "payments": sa.select(payments.c.currency, written(payments))
            .where(in_range(payments.c.paid_at, f), *scope(f, payments))
            .group_by(payments.c.currency),
            "won_amount": sa.select(deals.c.currency, written(deals))
            .where(deals.c.status == "won", in_range(deals.c.closed_at, f), *scope(f, deals))
            .group_by(deals.c.currency),
            "open_pipeline": sa.select(deals.c.currency, written(deals))
            .where(deals.c.status == "open", *scope(f, deals))
            .group_by(deals.c.currency),
        }
        for name, query in queries.items():
            for code, total in c.execute(query):
                key = str(code) if code is not None else (reporting or REPORTING)
                found = rows.setdefault(key, {})
                found[name] = found.get(name, 0.0) + float(total or 0.0)
    out = pd.DataFrame(
        [
            (
                key,
                values.get("payments", 0.0),
                values.get("won_amount", 0.0),
                values.get("open_pipeline", 0.0),
                reporting is not None and key not in unconverted,
            )
            for key, values in sorted(rows.items())
        ],
        columns=columns,
    )
    return out.astype({"payments": float, "won_amount": float, "open_pipeline": float, "converted": bool})


__all__ = ["REPORTING", "currency_status", "money_by_currency"]
