"""The customer models' maximum-likelihood fits stored beside the database, read back by
any process: the BG/NBD and Gamma-Gamma of ``churn_risk`` and the cohort sBGs of
``cohort_sbg`` (:mod:`forecasting.customer_models`).

A fit is a function of its aggregated input alone — :class:`~forecasting.customer_models.
FitCache`'s key: the model and a hash of its distinct rows and their weights, or of the
sBG's counts — and of the code that computes it. The stored key is a hash of both
(:func:`forecasting.store.stored_key`), so a stored fit is never stale: other data, other
filters that select other accounts, or other code give another key. Reading a fit back
gives the same numbers to the last bit (floats are stored as their hexadecimal text).

Who writes: :func:`forecasting.store.compute_ahead` (``crm-insights forecasts``, the
scheduler, an import's hook) fits the Customers & churn page's default view of each
selection it forecasts, inside :func:`fits_beside` with ``write=True``. The page only
reads (a filter change pays one lookup per fit, never a write); a fit not stored is
computed as before. ``$CRM_FORECAST_STORE`` (:func:`forecasting.store.mode`) governs both:
``off`` neither reads nor writes.

Rows: kind :data:`KIND` in ``app_stored_results`` (:mod:`crm_data.stored_results`), at
most :data:`ROWS` (≈ 20 per selection: two BG/NBD, one Gamma-Gamma, the cohort groups' sBGs).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import math
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

import numpy as np
import sqlalchemy as sa

from crm_data.stored_results import ResultStore
from forecasting.store import ForecastStore, method_version, stored_key
from kpis.filters import Filters, data_date_range, default_range

if TYPE_CHECKING:
    from forecasting.customer_models import MaximumLikelihood

P = ParamSpec("P")
R = TypeVar("R")

KIND = "model_fit"
#: The Customers & churn page's arguments that its fits depend on (``churn_risk``'s unit,
#: ``cohort_sbg``'s holdout months): :func:`fit_ahead` fits with the same.
PAGE_UNIT = "week"
PAGE_COHORT_HOLDOUT = 6
#: Fits kept (the oldest go): 126 selections × ≈ 20 fits, with room to spare.
ROWS = 5000
FORMAT = 1


def _hex(values: np.ndarray) -> list[str]:
    return [float(v).hex() for v in np.asarray(values, dtype=float).ravel()]


def encode(fit: MaximumLikelihood) -> str:
    """``fit`` as JSON text: names, estimates and the covariance's floats as hexadecimal
    text (exact, NaN and ±inf included), the log-likelihood, converged, at_bound."""
    covariance = np.asarray(fit.log_covariance, dtype=float)
    return json.dumps(
        {
            "format": FORMAT,
            "names": list(fit.names),
            "estimates": _hex(fit.estimates),
            "log_likelihood": float(fit.log_likelihood).hex(),
            "log_covariance": _hex(covariance),
            "shape": list(covariance.shape),
            "converged": bool(fit.converged),
            "at_bound": list(fit.at_bound),
        }
    )


def decode(text: str) -> MaximumLikelihood:
    """:func:`encode`'s text back as the fit; ``ValueError`` for a body that is not one
    (another format, wrong types or sizes, estimates that are not positive and finite)."""
    from forecasting.customer_models import MaximumLikelihood

    body: Any = json.loads(text)
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise ValueError("not a stored fit of this format")
    names = body["names"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("names")
    k = len(names)
    estimates = np.array([float.fromhex(v) for v in body["estimates"]], dtype=float)
    if estimates.shape != (k,) or not np.all(np.isfinite(estimates)) or not np.all(estimates > 0):
        raise ValueError("estimates")
    if body["shape"] != [k, k]:
        raise ValueError("covariance shape")
    covariance = np.array([float.fromhex(v) for v in body["log_covariance"]], dtype=float).reshape(k, k)
    log_likelihood = float.fromhex(body["log_likelihood"])
    at_bound = body["at_bound"]
    if not math.isfinite(log_likelihood) or not isinstance(body["converged"], bool):
        raise ValueError("log-likelihood or converged")
    if not isinstance(at_bound, list) or not set(at_bound) <= set(names):
        raise ValueError("at_bound")
    return MaximumLikelihood(
        names=tuple(names),
        estimates=estimates,
        log_likelihood=log_likelihood,
        log_covariance=covariance,
        converged=body["converged"],
        at_bound=tuple(at_bound),
    )


@dataclass
class FitStore:
    """Fits in a :class:`~crm_data.stored_results.ResultStore`; ``writable``: the fits
    computed within :func:`fits_beside` are written when it ends (one transaction)."""

    results: ResultStore
    writable: bool = False
    pending: dict[str, str] = field(default_factory=dict)

    def get(self, key: bytes) -> MaximumLikelihood | None:
        """The stored fit of the in-process key ``key``; None when there is none, or the row
        is of another version or does not decode (it is then fitted again)."""
        address = stored_key(key)
        row = self.results.get(address)
        if row is None or row.kind != KIND or row.version != method_version():
            return None
        try:
            fit = decode(row.body)
        except (ValueError, KeyError, TypeError, OverflowError):
            return None
        return fit

    def keep(self, key: bytes, fit: MaximumLikelihood, computed: bool = True) -> None:
        """Remember ``fit`` for writing (a read-only store forgets it); ``computed`` False:
        a fit this process had kept, remembered only when the store does not hold it."""
        if self.writable and (computed or self.get(key) is None):
            self.pending[stored_key(key)] = encode(fit)

    def flush(self) -> int:
        """Write the remembered fits; how many were written (0 when the store could not
        be written: the page then fits them, as without a store)."""
        if not self.pending:
            return 0
        rows, self.pending = self.pending, {}
        return len(rows) if self.results.put_many(rows, KIND, method_version(), keep=ROWS) else 0


_CURRENT: ContextVar[FitStore | None] = ContextVar("forecasting_fit_store", default=None)


def current() -> FitStore | None:
    """The store of the innermost :func:`fits_beside` of this thread, or None."""
    return _CURRENT.get()


def _beside(conn: sa.Connection | sa.Engine, write: bool) -> FitStore | None:
    """The store beside the database of ``conn``, where the forecasts are
    (:meth:`forecasting.store.ForecastStore.beside`); None when ``$CRM_FORECAST_STORE`` is
    off or the database is in memory."""
    forecasts = ForecastStore.beside(conn)
    if forecasts is None:
        return None
    return FitStore(forecasts.results, writable=write and forecasts.writable)


@contextlib.contextmanager
def _serving(store: FitStore | None) -> Iterator[FitStore | None]:
    """Within the block ``store`` is :func:`current`."""
    token = _CURRENT.set(store)
    try:
        yield store
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def fits_beside(conn: sa.Connection | sa.Engine, write: bool = False) -> Iterator[FitStore | None]:
    """Within the block, :class:`~forecasting.customer_models.FitCache` looks a fit up in
    the store beside the database of ``conn`` before fitting it; ``write``: the fits
    computed in the block are stored when it ends. Inside another such block, that block's
    store serves (a reader within a writer writes too)."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    with _serving(_beside(conn, write)) as store:
        yield store
        if store is not None:
            store.flush()


def reads_stored_fits(function: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """Decorate a customer model's entry point ``function(conn, …)``: its fits are looked
    up beside the database of ``conn`` (:func:`fits_beside`, reading only) before they
    are computed."""

    @functools.wraps(function)
    def reading(conn: Any, *args: P.args, **kwargs: P.kwargs) -> R:
        with fits_beside(conn):
            return function(conn, *args, **kwargs)

    return reading


def fit_ahead(
    conn: sa.Connection | sa.Engine, results: ResultStore, filters: Filters, today: dt.date | None = None
) -> int:
    """Fit and store the customer models the Customers & churn page opens on for the
    selection of ``filters`` (its lists and scope; the page's default date range
    :func:`kpis.filters.default_range` with ``today``): ``churn_risk`` (weekly, T to the day
    after the last data, as the page calls it) and ``cohort_sbg`` with its 6-month holdout.
    How many fits were new to the store (0: all were stored already)."""
    from forecasting import customer_models

    bounds = data_date_range(conn)
    if bounds is None:
        return 0
    start, end = default_range(bounds, today)
    view = filters.replace(start=start, end=end)
    as_of = min(end, bounds[1] + dt.timedelta(days=1))
    store = FitStore(results, writable=True)
    with _serving(store):
        customer_models.churn_risk(conn, view, unit=PAGE_UNIT, as_of=as_of, names=False)
        customer_models.cohort_sbg(conn, view, holdout=PAGE_COHORT_HOLDOUT)
    return store.flush()
