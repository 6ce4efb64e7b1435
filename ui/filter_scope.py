"""Which of the active filters a chart honours, said on the chart and in its exports.

Web traffic and social media have no account, so Segment, Company size … cannot narrow
them; tickets have no pipeline. A chart whose KPI ignores an active filter gets a caption
"Not filtered by: Segment, Company size (web traffic has no account)", and its export
metadata says the same (``ui.report.PageReport.chart``).

The rule is declared once, in ``kpis.registry.READS`` (the tables each KPI function reads)
and ``kpis.filters.honoured_dimensions`` (which filter lists narrow a table, the rules of
``kpis.filters.scope``). No Streamlit drawing here: plain functions the report calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pandas as pd

from kpis import registry
from kpis.filters import DIMENSION_FIELDS, Filters

PREFIX = "Not filtered by: "


def labels() -> dict[str, str]:
    """Filters field -> the filter bar's label ("segments" -> "Segment")."""
    from ui.filters import DIMENSIONS

    return {name: label for name, _param, label in DIMENSIONS}


def active(filters: Filters) -> list[str]:
    """The filter-bar lists that are set, in the filter bar's order (the user's scope is
    not a filter-bar choice and is not listed)."""
    return [name for name in DIMENSION_FIELDS if getattr(filters, name, ())]


def source_function(data: pd.DataFrame | None) -> Callable[..., Any] | None:
    """The KPI function that made ``data`` (a ``ui.data.kpi`` result), else None."""
    from ui import data as ui_data

    token = getattr(data, "attrs", {}).get(ui_data.SOURCE) if data is not None else None
    source = ui_data._SOURCES.get(token) if token else None
    if source is None:
        return None
    try:
        return ui_data._resolve(source[0])
    except (ImportError, AttributeError):
        return None


def chart_function(kpi_key: str | None, data: pd.DataFrame | None) -> Callable[..., Any] | None:
    """The KPI function behind a chart: the one that made its data, else its KPI's."""
    function = source_function(data)
    if function is None and kpi_key:
        try:
            function = registry.get(kpi_key).function
        except KeyError:
            return None
    return function


def not_filtered_note(filters: Filters, function: Callable[..., Any] | None) -> str | None:
    """ "Not filtered by: Segment, Company size (web traffic has no account)" when
    ``function`` cannot honour some of the active filters; None when it honours them all
    or is unknown."""
    if function is None:
        return None
    ignored = registry.ignored(function, active(filters))
    if not ignored:
        return None
    names = labels()
    reasons = list(dict.fromkeys(reason for _name, reason in ignored))
    return PREFIX + ", ".join(names.get(n, n) for n, _ in ignored) + f" ({'; '.join(reasons)})"


def chart_note(view: Any, kpi_key: str | None = None, data: pd.DataFrame | None = None) -> str | None:
    """:func:`not_filtered_note` for a chart of ``view`` (its KPI from ``data``, else ``kpi_key``)."""
    filters = getattr(view, "filters", None)
    if not isinstance(filters, Filters):
        return None
    return not_filtered_note(filters, chart_function(kpi_key, data))


def honoured_filters(filters: Filters, function: Callable[..., Any]) -> Filters:
    """``filters`` without the lists ``function`` cannot honour (the date range and the
    user's scope stay): what a page passes to a KPI, so nothing it is given is ignored."""
    honoured = registry.honours(function)
    if honoured is None:
        return filters
    return filters.replace(**{n: () for n in DIMENSION_FIELDS if n not in honoured and getattr(filters, n)})


def honoured_view(view: Any, function: Callable[..., Any]) -> Any:
    """``view`` (a ``ui.filters.View``) with :func:`honoured_filters`."""
    return dataclasses.replace(view, filters=honoured_filters(view.filters, function))
