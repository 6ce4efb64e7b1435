"""forecasting.fit_store: the customer models' fits stored beside the database.

* A fit read back is the fit computed: names, every float bit for bit (a NaN covariance and
  an infinite one included), converged, at_bound.
* A body that is not a fit is refused: another format, a non-positive or NaN estimate, a
  covariance of the wrong size, an at_bound naming no parameter.
* ``compute_ahead`` (``crm-insights forecasts``) stores the fits the Customers & churn page
  opens on, for each selection; a new process (no fit kept) with the store read-only then
  fits nothing for ``churn_risk`` and ``cohort_sbg`` called as the page calls them (the page
  benchmark's default and one-owner states), and their results are identical to those
  computed without a store. Computed ahead again, nothing new is stored.
* The page only reads: a fit computed for a selection nobody computed ahead is not written.
* A fit stored by another version of the code is not read.

Data: the demo at 30 accounts (seed 4), so that every model has repeat payers and cohorts
that lost customers.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from crm_data import hooks
from crm_data.demo import generate
from crm_data.engines import make_engine
from forecasting import customer_models, fit_store
from forecasting import store as store_module
from forecasting.customer_models import FITS, MaximumLikelihood
from forecasting.store import STORE_VARIABLE, ForecastStore, Selection, compute_ahead, default_history_filters
from kpis.filters import data_date_range


@pytest.fixture(autouse=True)
def _no_store_kept() -> Iterator[None]:
    yield
    store_module.forget_opened()


def _fit(covariance: np.ndarray, at_bound: tuple[str, ...] = ()) -> MaximumLikelihood:
    return MaximumLikelihood(
        names=("r", "alpha"),
        estimates=np.array([0.1 + 0.2, 1 / 3]),
        log_likelihood=-1234.5678901234567,
        log_covariance=covariance,
        converged=False,
        at_bound=at_bound,
    )


@pytest.mark.parametrize(
    "covariance, at_bound",
    [
        (np.array([[1e-300, -2.5e-17], [-2.5e-17, 7.0]]), ()),
        (np.full((2, 2), np.nan), ("alpha",)),
        (np.array([[np.inf, 0.0], [-0.0, -np.inf]]), ("r", "alpha")),
    ],
)
def test_a_fit_read_back_is_the_fit_computed(covariance: np.ndarray, at_bound: tuple[str, ...]) -> None:
    fit = _fit(covariance, at_bound)
    back = fit_store.decode(fit_store.encode(fit))
    assert back.names == fit.names and back.converged is False and back.at_bound == at_bound
    assert back.log_likelihood == fit.log_likelihood
    assert back.estimates.tobytes() == fit.estimates.tobytes()
    assert back.log_covariance.tobytes() == covariance.tobytes()  # NaN, ±inf and −0.0 too
    pd.testing.assert_frame_equal(back.intervals(), fit.intervals(), check_exact=True)


@pytest.mark.parametrize(
    "change",
    [
        {"format": 0},
        {"estimates": [(-1.0).hex(), (2.0).hex()]},
        {"estimates": [float("nan").hex(), (2.0).hex()]},
        {"shape": [1, 1]},
        {"at_bound": ["beta"]},
        {"converged": 1},
    ],
)
def test_a_body_that_is_not_a_fit_is_refused(change: dict[str, Any]) -> None:
    import json

    body = json.loads(fit_store.encode(_fit(np.eye(2))))
    body.update(change)
    with pytest.raises(ValueError):
        fit_store.decode(json.dumps(body))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    path = tmp_path_factory.mktemp("fits") / "demo.duckdb"
    engine = make_engine(f"duckdb:///{path}")
    try:
        with hooks.unwired():  # nothing computed ahead by the demo itself
            generate(engine, accounts=30, seed=4, progress=False)
    finally:
        engine.dispose()
    return f"duckdb:///{path}"


def _page_results(
    engine: sa.Engine, state: str
) -> tuple[customer_models.ChurnRisk, customer_models.CohortSbg]:
    """``churn_risk`` and ``cohort_sbg`` as the Customers & churn page calls them in the
    page benchmark's ``state``."""
    from benchmarks.pages import state_view

    filters, _freq, _cut, bounds = state_view(engine, state)
    assert bounds is not None
    as_of = min(filters.end, bounds[1] + dt.timedelta(days=1))
    risk = customer_models.churn_risk(engine, filters, unit="week", horizon=52, as_of=as_of, names=False)
    cohorts = customer_models.cohort_sbg(engine, filters, horizon=24, holdout=6)
    return risk, cohorts


def _assert_identical(left: object, right: object, where: str = "") -> None:
    if dataclasses.is_dataclass(left) and not isinstance(left, type):
        assert type(left) is type(right), where
        for f in dataclasses.fields(left):
            _assert_identical(getattr(left, f.name), getattr(right, f.name), f"{where}.{f.name}")
    elif isinstance(left, pd.DataFrame):
        pd.testing.assert_frame_equal(left, right, check_exact=True, obj=where)
    elif isinstance(left, np.ndarray):
        assert left.tobytes() == np.asarray(right).tobytes(), where
    else:
        assert repr(left) == repr(right), where


def _counted_fits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    calls: list[tuple[str, ...]] = []
    original = customer_models.maximise

    def counted(log_likelihood: Any, names: Any, *args: Any, **kwargs: Any) -> MaximumLikelihood:
        calls.append(tuple(names))
        return original(log_likelihood, names, *args, **kwargs)

    monkeypatch.setattr(customer_models, "maximise", counted)
    return calls


def _stored_fits(engine: sa.Engine) -> int:
    store = ForecastStore.beside(engine)
    assert store is not None
    return len(store.results.keys(fit_store.KIND))


def test_fits_computed_ahead_are_read_back_by_the_page_identical(
    demo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks.pages import _slices

    engine = make_engine(demo, read_only=True)
    try:
        owner = _slices(engine)["owner"]
        computed = {state: _page_results(engine, state) for state in ("default", "one owner")}
    finally:
        engine.dispose()

    monkeypatch.setenv(STORE_VARIABLE, "on")
    engine = make_engine(demo)
    try:
        base = default_history_filters(engine)
        assert base is not None
        selections = [
            Selection("revenue forecast, whole company", base),
            Selection(f"revenue forecast, owner {owner}", base.replace(owners=(owner,))),
        ]
        store = ForecastStore.beside(engine)
        assert store is not None
        FITS.cache_clear()
        done = compute_ahead(engine, store, selections=selections)
        assert [ahead.fits > 0 for ahead in done] == [True, True]
        assert all("customer models: " in ahead.line() for ahead in done)
        stored = _stored_fits(engine)
        assert stored == sum(ahead.fits for ahead in done)
        # computed ahead again (the fits kept by this process, and stored): nothing new
        again = compute_ahead(engine, store, selections=selections)
        assert [ahead.fits for ahead in again] == [0, 0] and _stored_fits(engine) == stored
    finally:
        engine.dispose()
        store_module.forget_opened()

    monkeypatch.setenv(STORE_VARIABLE, "read")  # the dashboard's process, started anew
    FITS.cache_clear()
    fits = _counted_fits(monkeypatch)
    engine = make_engine(demo, read_only=True)
    try:
        for state, (risk, cohorts) in computed.items():
            read_risk, read_cohorts = _page_results(engine, state)
            _assert_identical(risk, read_risk, f"{state}: churn_risk")
            _assert_identical(cohorts, read_cohorts, f"{state}: cohort_sbg")
        assert fits == []
        # a range nobody computed ahead is fitted, and not written (the page only reads)
        monkeypatch.setenv(STORE_VARIABLE, "on")
        _page_results(engine, "3 years, quarters")
        assert fits != []
        assert _stored_fits(engine) == stored
    finally:
        engine.dispose()


def test_a_fit_stored_by_another_version_is_not_read(demo: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_VARIABLE, "on")
    engine = make_engine(demo)
    try:
        store = ForecastStore.beside(engine)
        assert store is not None
        bounds = data_date_range(engine)
        assert bounds is not None
        base = default_history_filters(engine)
        assert base is not None
        FITS.cache_clear()
        fit_store.fit_ahead(engine, store.results, base)
        FITS.cache_clear()
        monkeypatch.setattr(store_module, "_version", "another version")
        fits = _counted_fits(monkeypatch)
        _page_results(engine, "default")
        assert fits != []  # fitted again: the stored rows are another version's
    finally:
        engine.dispose()


def test_without_a_store_nothing_is_read_or_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STORE_VARIABLE, "off")
    engine = make_engine(f"duckdb:///{tmp_path / 'crm.duckdb'}")
    try:
        with fit_store.fits_beside(engine, write=True) as store:
            assert store is None and fit_store.current() is None
    finally:
        engine.dispose()
    monkeypatch.setenv(STORE_VARIABLE, "on")
    engine = make_engine("duckdb:///:memory:")
    try:
        with fit_store.fits_beside(engine) as store:
            assert store is None  # an in-memory database keeps nothing
    finally:
        engine.dispose()
