"""One look for every chart: the "crm" Plotly template, a colour-blind-safe palette and
number formatters (thousands separators, %, currency, days).

Plain plotly (no Streamlit): notebooks can call ``use_theme()`` too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from numbers import Real

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

#: Okabe–Ito: distinguishable with the common colour-vision deficiencies.
PALETTE: list[str] = [
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#F0E442",  # yellow
    "#000000",  # black
]
#: Good / bad colours for deltas and flags (blue vs vermillion, safe for red-green deficiency).
GOOD = "#0072B2"
BAD = "#D55E00"
NEUTRAL = "#6B7280"
#: Sequential scale for heatmaps (light to dark blue).
SEQUENTIAL = ["#F7FBFF", "#C6DBEF", "#6BAED6", "#2171B5", "#08306B"]

CURRENCY = "$"
FONT = "Inter, 'Source Sans Pro', 'DejaVu Sans', Arial, sans-serif"
TEMPLATE_NAME = "crm"


def _template() -> go.layout.Template:
    template = go.layout.Template()
    template.layout = go.Layout(
        colorway=PALETTE,
        font={"family": FONT, "size": 13, "color": "#1F2937"},
        # title at the very top, the legend between it and the plot: they never overlap
        title={
            "font": {"size": 16},
            "x": 0.0,
            "xanchor": "left",
            "xref": "paper",
            "y": 0.985,
            "yanchor": "top",
        },
        paper_bgcolor="white",
        plot_bgcolor="white",
        margin={"l": 64, "r": 24, "t": 88, "b": 48},
        hovermode="x unified",
        separators=".,",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "xanchor": "left", "x": 0},
        xaxis={
            "showgrid": False,
            "linecolor": "#9CA3AF",
            "ticks": "outside",
            "tickcolor": "#9CA3AF",
            "automargin": True,
        },
        yaxis={
            "gridcolor": "#E5E7EB",
            "zerolinecolor": "#9CA3AF",
            "separatethousands": True,
            "automargin": True,
        },
        colorscale={"sequential": [[i / (len(SEQUENTIAL) - 1), c] for i, c in enumerate(SEQUENTIAL)]},
    )
    return template


def use_theme() -> None:
    """Register the "crm" template and make it Plotly's default."""
    pio.templates[TEMPLATE_NAME] = _template()
    pio.templates.default = TEMPLATE_NAME


def _missing(value: object) -> bool:
    if value is None:
        return True
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True


DASH = "–"


def fmt_count(value: object) -> str:
    """``12345`` -> ``"12,345"``."""
    if _missing(value):
        return DASH
    return f"{float(value):,.0f}"  # type: ignore[arg-type]


def fmt_money(value: object, decimals: int | None = None) -> str:
    """``1234567.8`` -> ``"$1.23M"``; below 10,000 the full amount (``"$9,876"``)."""
    if _missing(value):
        return DASH
    amount = float(value)  # type: ignore[arg-type]
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if decimals is not None:
        return f"{sign}{CURRENCY}{amount:,.{decimals}f}"
    for threshold, divisor, suffix in ((1e9, 1e9, "B"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if amount >= threshold:
            return f"{sign}{CURRENCY}{amount / divisor:,.{1 if suffix == 'k' else 2}f}{suffix}"
    return f"{sign}{CURRENCY}{amount:,.0f}" if amount >= 100 else f"{sign}{CURRENCY}{amount:,.2f}"


def fmt_ratio(value: object, decimals: int = 1) -> str:
    """A fraction as a percentage: ``0.1234`` -> ``"12.3%"``."""
    if _missing(value):
        return DASH
    return f"{100 * float(value):,.{decimals}f}%"  # type: ignore[arg-type]


def fmt_days(value: object) -> str:
    """``12.34`` -> ``"12.3 days"`` (``"1 day"`` for exactly one)."""
    if _missing(value):
        return DASH
    days = float(value)  # type: ignore[arg-type]
    if days == 1:
        return "1 day"
    return f"{days:,.1f} days" if days < 100 else f"{days:,.0f} days"


def fmt_nps(value: object) -> str:
    """NPS on −100..100 with a sign: ``23.4`` -> ``"+23"``."""
    if _missing(value):
        return DASH
    return f"{float(value):+.0f}"  # type: ignore[arg-type]


def fmt_score(value: object) -> str:
    """A mean score such as CES on 1–7: ``5.234`` -> ``"5.23"``."""
    if _missing(value):
        return DASH
    return f"{float(value):,.2f}"  # type: ignore[arg-type]


FORMATTERS = {
    "count": fmt_count,
    "money": fmt_money,
    "ratio": fmt_ratio,
    "days": fmt_days,
    "nps": fmt_nps,
    "score": fmt_score,
}


def fmt_value(value: object, unit: str) -> str:
    """Format ``value`` for its registry ``unit`` (ratio, nps, score, days, money, count)."""
    formatter = FORMATTERS.get(unit)
    if formatter is None:
        if _missing(value):
            return DASH
        return f"{float(value):,.2f}" if isinstance(value, Real) else str(value)
    return formatter(value)


def delta_is_zero(change: object, unit: str) -> bool:
    """True when a change reads as zero once formatted for ``unit`` (``0.0004`` of a rate
    is "0.0 pp"): no arrow, no colour, no sign for it."""
    if _missing(change):
        return False
    return not any(ch in "123456789" for ch in _fmt_delta(abs(float(change)), unit))  # type: ignore[arg-type]


def fmt_delta(change: object, unit: str) -> str:
    """A period-over-period change: ratios in percentage points, others in their unit, signed;
    a change that reads as zero is shown without a sign ("0.0 pp")."""
    if _missing(change):
        return ""
    text = _fmt_delta(float(change), unit)  # type: ignore[arg-type]
    return text[1:] if delta_is_zero(change, unit) else text


def _fmt_delta(c: float, unit: str) -> str:
    sign = "+" if c >= 0 else "-"  # ASCII minus: st.metric reads the sign from the text
    if unit == "ratio":
        return f"{sign}{abs(100 * c):,.1f} pp"
    if unit == "money":
        return sign + fmt_money(abs(c))
    if unit == "days":
        return sign + fmt_days(abs(c))
    if unit == "nps":
        return f"{sign}{abs(c):,.0f}"
    if unit == "score":
        return f"{sign}{abs(c):,.2f}"
    return f"{sign}{abs(c):,.0f}"


#: d3-format strings for plotly axes / hover per unit.
TICKFORMAT = {
    "ratio": ".1~%",
    "money": "$.3~s",  # compact ticks: $950, $12.5k, $3.2M (hover keeps the full amount)
    "count": ",.0f",
    "days": ",.0f",
    "nps": "+.0f",
    "score": ".2f",
}
HOVERFORMAT = {
    "ratio": ".1%",
    "money": "$,.0f",
    "count": ",.0f",
    "days": ",.1f",
    "nps": "+.1f",
    "score": ".2f",
}


#: Money ticks: compact up to steps of 100 million ($250M); beyond, d3 would write "G" for
#: billions, so full amounts with separators instead ($2,500,000,000).
MONEY_TICKFORMATSTOPS: list[dict[str, object]] = [
    {"dtickrange": [None, 1e8], "value": "$.3~s"},
    {"dtickrange": [1e8, None], "value": "$,.0f"},
]


#: Written in the title of a rate axis that does not start at zero (a zoomed-in axis).
NOT_FROM_ZERO = "axis not from 0"


def axis_format(unit: str) -> dict[str, object]:
    """``fig.update_yaxes(**axis_format("ratio"))``: tick and hover formats for a unit (a
    rate axis is made to start at zero by ``charts.figures.rate_axes_from_zero``, which
    every page chart passes through)."""
    out = {"tickformat": TICKFORMAT.get(unit, ",")}
    if unit in HOVERFORMAT:
        out["hoverformat"] = HOVERFORMAT[unit]
    if unit == "days":
        out["ticksuffix"] = " d"
    if unit == "money":
        out["tickformatstops"] = MONEY_TICKFORMATSTOPS
    return out


def mark_not_from_zero(fig: go.Figure, axis: str = "yaxis") -> go.Figure:
    """Say on ``fig``'s ``axis`` that it does not start at zero (for a rate axis zoomed in on
    purpose, e.g. coverage near its target): its title gets "(axis not from 0)" and its
    ``rangemode`` is left to the data. Returns ``fig``."""
    layout_axis = fig.layout[axis]
    title = layout_axis.title.text or ""
    if NOT_FROM_ZERO not in title:
        layout_axis.title.text = f"{title} ({NOT_FROM_ZERO})".strip()
    layout_axis.rangemode = "normal"
    return fig


# --------------------------------------------------------------------------------------------
# Table columns: which unit a KPI frame's column is in, from the kpis naming conventions
# --------------------------------------------------------------------------------------------

#: Last words of a share / rate column (``churn_rate``, ``net_revenue_retention``, ``coverage80``).
RATIO_LAST_WORDS = frozenset({"rate", "ratio", "retention", "ctr", "probability"})
#: First words of a share column (``share_easy``, ``conversion_rate``).
RATIO_FIRST_WORDS = frozenset({"share", "conversion"})
#: Words of a money column (``amount``, ``expected_revenue``, ``cost_per_conversion``,
#: ``lost_mrr``, ``arpa``) and the cost buckets of ``crm_data.schema.COST_CATEGORIES``.
MONEY_WORDS = frozenset(
    {"amount", "revenue", "cost", "costs", "payments", "profit", "mrr", "arpa", "refunds"}
    | {"expansion", "contraction"}
    | {"personnel", "production", "overhead", "marketing", "loyalty"}
)
#: Integer columns that are labels, not counts (no thousands separator).
PLAIN_LAST_WORDS = frozenset({"id", "year", "position"})
_INTERVAL_WORDS = frozenset({"ci", "lo80", "hi80", "lo95", "hi95"})


def readable(value: object) -> str:
    """A stored code as a reader sees it in a legend or title (:func:`label`:
    ``return_exchange`` -> "Return / exchange", ``website_visit`` -> "Website visit");
    other text unchanged except for its first letter."""
    if isinstance(value, str) and (value in LABELS or WORD_CODE.match(value)):
        return label(value)
    text = str(value).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------------
# Codes -> labels: the one place every table cell, column header, legend entry and axis
# category goes through (``label``, ``column_label``, ``readable_values``)
# --------------------------------------------------------------------------------------------

#: A stored code: lower-case words joined by underscores (``website_visit``, ``poor_support``),
#: or capitals (``PAID_SOCIAL``).
CODE = re.compile(r"^(?:[a-z][a-z0-9]*(?:_[a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)$")
#: The same in capitals, as some CRMs export their internal values (``COMPUTER_SOFTWARE``).
UPPER_CODE = re.compile(r"^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$")
#: A one-word lower-case code (``support``, ``email``) — a label only beside other codes.
WORD_CODE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
#: Words written in capitals inside a label (``lost_mrr`` -> "Lost MRR", ``ctr`` -> "CTR").
ACRONYMS = frozenset(
    {"id", "mrr", "arr", "arpa", "ctr", "nps", "ces", "csat", "fcr", "clv", "nrr", "grr", "mape", "mase",
     "mae", "rmse", "ci", "utc", "url", "csv", "xlsx", "pdf", "iso", "ets", "arima", "kpi", "sms", "b2b", "crm"}
)  # fmt: skip
#: Codes whose label is not just their words (everything else: :func:`readable` with acronyms).
LABELS: dict[str, str] = {
    # survey touchpoints, ticket categories and channels, campaign and web channels
    "website_visit": "Website visit",
    "return_exchange": "Return / exchange",
    "in_app": "In-app",
    "paid_search": "Paid search",
    "organic_search": "Organic search",
    "web": "Web",
    # churn reasons
    "product_fit": "Product fit",
    "business_closed": "Business closed",
    "poor_support": "Poor support",
    # tables of the data model (the dashboard's "What's in the database")
    "crm_insights_meta": "Settings (CRM Insights)",
    # column names of KPI frames and drill-downs
    "account_id": "Account ID",
    "deal_id": "Deal ID",
    "contact_id": "Contact ID",
    "owner_id": "Owner ID",
    "ticket_id": "Ticket ID",
    "ctr": "Click-through rate",
    "fcr_rate": "First-contact resolution",
    "nps": "NPS",
    "ces_mean": "CES (mean)",
    "arpa": "ARPA",
    "mape": "MAPE",
    "mase": "MASE",
    "coverage80": "Coverage of the 80 % interval",
    "coverage95": "Coverage of the 95 % interval",
    "lo80": "80 % low",
    "hi80": "80 % high",
    "lo95": "95 % low",
    "hi95": "95 % high",
    "low95": "95 % low",
    "high95": "95 % high",
    "ci_low": "95 % low",
    "ci_high": "95 % high",
    "p90_days": "90th percentile (days)",
    "clv_revenue": "CLV (revenue)",
    "normalised_email": "Email (normalised)",
    "normalised_name": "Name (normalised)",
}


def register_labels(labels: dict[str, str]) -> None:
    """Add labels for codes a deployment uses (e.g. from an import mapping)."""
    LABELS.update(labels)


def label(code: object) -> str:
    """What a reader sees for a stored value: the label of a known code (``paid_search`` ->
    "Paid search", ``return_exchange`` -> "Return / exchange"), else — for any other code,
    e.g. one only imported data has — its words with a capital and acronyms in capitals
    (``lost_mrr`` -> "Lost MRR", ``website_visit`` -> "Website visit"). Text that is no
    code ("Mid-Market", "Acme Corp", "1-10") comes back as it is."""
    text = str(code)
    if UPPER_CODE.match(text):  # COMPUTER_SOFTWARE -> computer_software -> "Computer software"
        text = text.lower()
    if text in LABELS:
        return LABELS[text]
    if not WORD_CODE.match(text):
        return text
    words = [w.upper() if w in ACRONYMS else w for w in text.split("_")]
    out = " ".join(words)
    return out[:1].upper() + out[1:]


def column_label(name: object) -> str:
    """A table column's header: ``days_in_stage`` -> "Days in stage", ``lost_mrr`` ->
    "Lost MRR", ``win_rate`` -> "Win rate"; a header already written for people stays."""
    return label(name)


def _enum_words() -> frozenset[str]:
    try:
        from crm_data.schema import ENUMS
    except ImportError:  # charts without the data layer
        return frozenset()
    return frozenset(v for values in ENUMS.values() for v in values)


def is_code_column(values: Iterable[object]) -> bool:
    """True when every non-empty text value is a lower-case code and at least one has
    several words (``website_visit``) or all are allowed values of a stored enumeration
    (``crm_data.schema.ENUMS``: ``support``, ``email``): the column holds stored codes and
    is shown through :func:`label`. A column of user names (``alice``) is not one."""
    texts = {v for v in values if isinstance(v, str) and v != ""}
    if not texts or not all(WORD_CODE.match(t) for t in texts):
        return False
    return any(CODE.match(t) for t in texts) or texts <= (_enum_words() | LABELS.keys())


def readable_values(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its code columns (:func:`is_code_column`) shown as labels and any
    other cell that is a multi-word code labelled too; numbers, dates and free text stay."""
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if not (pd.api.types.is_object_dtype(series) or pd.api.types.is_string_dtype(series)):
            categories = list(series.cat.categories) if isinstance(series.dtype, pd.CategoricalDtype) else []
            if categories and is_code_column(categories):
                renamed = [label(c) if isinstance(c, str) else c for c in categories]
                if len(set(renamed)) == len(renamed):  # two codes with one label: left as they are
                    out[column] = series.cat.rename_categories(renamed)
            continue
        distinct = series.dropna().unique()
        if is_code_column(distinct):
            mapping = {v: label(v) for v in distinct if isinstance(v, str)}
        else:
            mapping = {v: label(v) for v in distinct if isinstance(v, str) and CODE.match(v)}
        if mapping:
            out[column] = series.map(lambda v, m=mapping: m.get(v, v) if isinstance(v, str) else v)
    return out


def _words(name: object) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", str(name).lower()) if w]


def _measure_unit(words: list[str]) -> str | None:
    if words == ["nps"]:
        return "nps"
    if words[-1] == "mape":  # mean absolute percentage error: a fraction, shown as %
        return "ratio"
    if (
        words[-1] in RATIO_LAST_WORDS
        or re.fullmatch(r"coverage\d*", words[-1])
        or words[0] in RATIO_FIRST_WORDS
    ):
        return "ratio"
    if MONEY_WORDS.intersection(words):
        return "money"
    if "conversion" in words:  # lead_conversion, step_conversion_in_order (cost_per_conversion: money)
        return "ratio"
    if "days" in words and words[0] != "over":  # over_90_days counts deals
        return "days"
    return None


def column_unit(name: object, *, integer: bool = False, columns: Iterable[object] = ()) -> str | None:
    """The unit (``ratio``, ``money``, ``days``, ``nps``, ``count``) a numeric column of a KPI
    frame is shown in, from the kpis naming conventions; None for no particular format.

    * ``*_rate``, ``*_ratio``, ``*_retention``, ``ctr``, ``*probability``, ``coverage80``,
      ``share*``, ``conversion*``, ``*conversion*`` and ``mape`` -> ratio (shown as %);
    * a word ``amount``, ``revenue``, ``cost(s)``, ``payments``, ``profit``, ``mrr``, ``arpa``,
      ``refunds``, ``expansion``, ``contraction`` or a cost bucket -> money
      (``cost_per_conversion`` is money, ``revenue_churn_rate`` a ratio);
    * a word ``days`` (``median_days``, ``days_in_stage``; not ``over_90_days``) -> days;
    * ``nps`` -> nps; interval bounds (``ci_low``, ``lo80`` …) follow the frame's measure
      (``columns``): nps, else a ratio, else money;
    * any other ``integer`` column -> count, except ids, years and positions.

    Words are split on anything but letters and digits, case-insensitively ("Win rate" works).
    """
    words = _words(name)
    if not words:
        return None
    if words[0] in _INTERVAL_WORDS:
        others = [w for w in map(_words, columns) if w and w[0] not in _INTERVAL_WORDS]
        measures = {_measure_unit(w) for w in others}
        return next((u for u in ("nps", "ratio", "money") if u in measures), None)
    unit = _measure_unit(words)
    if unit is not None:
        return unit
    if integer and words[-1] not in PLAIN_LAST_WORDS:
        return "count"
    return None
