"""Money in several currencies: one warning for every page that shows money.

``currency_warning(view)`` (Overview, Sales pipeline, Marketing & retention cost,
Forecast): when the last import stored amounts of some currencies unconverted
(``crm_data.currency``: no exchange rate for them, or no reporting currency), an
``st.warning`` naming them — "Amounts in MXN, PEN are not converted to USD: …" — and a
small table of the view's money per currency as written (``kpis.currencies``), so no
figure that mixes currencies passes silently. Nothing at all otherwise (one cached read
of ``crm_insights_meta``).
"""

from __future__ import annotations

import streamlit as st

from kpis.currencies import currency_status, money_by_currency
from ui import data


def warning_text(reporting: str | None, unconverted: tuple[str, ...]) -> str:
    """The warning's text for the recorded status."""
    listed = ", ".join(unconverted)
    if reporting is None:
        return (
            f"**Amounts in {listed} are not converted**: no reporting currency is set, so money figures "
            "add amounts of different currencies. Import exchange rates and the reporting currency "
            "(Salesforce: CurrencyType.csv and DatedConversionRate.csv; or `import --reporting-currency`)."
        )
    return (
        f"**Amounts in {listed} are not converted to {reporting}**: import exchange rates for them "
        "(Salesforce: DatedConversionRate.csv or CurrencyType.csv; or an exchange_rates.csv). Until then "
        "money figures add them as written; per currency:"
    )


def currency_warning(view) -> None:
    """The warning and the per-currency table when amounts mix currencies (see the module doc)."""
    reporting, unconverted = data.call(currency_status)
    if not unconverted:
        return
    st.warning(warning_text(reporting, unconverted), icon=":material/currency_exchange:")
    table = data.kpi(money_by_currency, view)
    if table.empty:
        return
    shown = table.assign(
        **{
            name: table[name].map(lambda v: f"{v:,.2f}")  # no currency sign: each row has its own
            for name in ("payments", "won_amount", "open_pipeline")
        },
        converted=table["converted"].map({True: "yes", False: "NO"}),
    ).rename(
        columns={
            "payments": "payments (range)",
            "won_amount": "won deals (range)",
            "open_pipeline": "open pipeline",
            "converted": f"in {reporting}" if reporting else "converted",
        }
    )
    st.dataframe(shown, hide_index=True, width="content", key="currency-breakdown")
    st.caption("Amounts as the CRM wrote them, in their own currency.")
