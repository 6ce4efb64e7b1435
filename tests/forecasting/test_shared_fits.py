"""forecasting.models.base.sharing_fits / fit_once: inside one forecast, a specification is
fitted to one training window once — the same result as fitting it again, warnings and
notes included — and outside the block every fit runs."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
from statsmodels.tsa.forecasting.theta import ThetaModel

from forecasting.models.base import fit_once, sharing_fits
from forecasting.selection import _forecast, forecast


def _series(n: int = 72) -> pd.Series:
    rng = np.random.default_rng(7)
    t = np.arange(n)
    values = 1000 + 8 * t + 120 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 25, n)
    return pd.Series(values, index=pd.date_range("2020-01-01", periods=n, freq="MS"), name="revenue")


def _count_theta_fits(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Training-window lengths of every statsmodels Theta fit from now on."""
    lengths: list[int] = []
    original = ThetaModel.fit

    def counted(self: ThetaModel, *args: object, **kwargs: object) -> object:
        lengths.append(len(self._y))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ThetaModel, "fit", counted)
    return lengths


def _assert_same(left: object, right: object) -> None:
    for field in dataclasses.fields(left):
        a, b = getattr(left, field.name), getattr(right, field.name)
        if isinstance(a, pd.DataFrame):
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        elif isinstance(a, pd.Series):
            pd.testing.assert_series_equal(a, b, check_exact=True)
        else:
            assert repr(a) == repr(b), field.name


def test_a_forced_theta_fits_each_training_window_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Theta refits at every origin: its calibration backtest (origins 36..60 of 72 months)
    repeats the selection backtest's origins (49..60); shared, each window is fitted once and
    the forecast is the one fitted without sharing."""
    series = _series()
    lengths = _count_theta_fits(monkeypatch)
    alone = _forecast(series, 12, "theta", 12, False)  # no sharing: every fit runs
    unshared = list(lengths)
    lengths.clear()
    shared = forecast(series, horizon=12, model="theta")
    assert shared.model == "theta"
    assert len(unshared) == 12 + 25 + 1  # selection folds, calibration folds, final fit
    assert sorted(lengths) == sorted(set(unshared))  # each window once: 25 + 1
    assert len(lengths) == 26
    _assert_same(alone, shared)


def test_fit_once_fits_once_per_data_and_raises_its_warnings_again() -> None:
    calls: list[int] = []

    def fit(y: np.ndarray) -> float:
        calls.append(len(y))
        warnings.warn("slow convergence", UserWarning, stacklevel=1)
        return float(y.sum())

    y = np.array([1.0, 2.0, 3.0])
    with sharing_fits():
        for _ in range(2):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert fit_once("spec", y, lambda: fit(y)) == 6.0
            assert [str(w.message) for w in caught] == ["slow convergence"]
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            assert fit_once("spec", y[:2], lambda: fit(y[:2])) == 3.0  # other data: fitted
            assert fit_once("other spec", y, lambda: fit(y)) == 6.0  # other specification: fitted
            assert fit_once("spec", y + 1, lambda: fit(y + 1)) == 9.0  # other values, same length: fitted
    assert calls == [3, 2, 3, 3]
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        fit_once("spec", y, lambda: fit(y))  # outside the block: nothing is kept
    assert calls == [3, 2, 3, 3, 3]


def test_a_fit_that_raises_is_not_kept() -> None:
    calls: list[int] = []

    def fail() -> float:
        calls.append(1)
        raise ValueError("singular")

    with sharing_fits():
        for _ in range(2):
            with pytest.raises(ValueError, match="singular"):
                fit_once("spec", np.ones(3), fail)
    assert len(calls) == 2


def test_a_warning_the_garbage_collector_raises_during_a_fit_is_not_the_fits() -> None:
    """A ResourceWarning raised during a fit — a finaliser closing an unclosed connection of
    another part of the process, which the garbage collector runs wherever it happens to be
    (seen in the suite: "psycopg.Connection ... was deleted while still open" as a note of a
    Theta calibration backtest) — is not the fit's: it is not kept for the fit's reuse, not
    made a note, and is raised again outside; the fit's own warning stays a note."""
    from forecasting.selection import captured_warnings

    def fit() -> float:
        warnings.warn("<psycopg.Connection> was deleted while still open", ResourceWarning, stacklevel=1)
        warnings.warn("slow convergence", UserWarning, stacklevel=1)
        return 1.0

    y = np.array([1.0, 2.0, 3.0])
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as outside:
        warnings.simplefilter("always")
        with sharing_fits():
            for _ in range(2):  # fitted, then reused: its own warning raised again, not the other
                with captured_warnings(notes, "Theta backtest"):
                    assert fit_once("spec", y, fit) == 1.0
    assert notes == ["Theta backtest: statsmodels warning — UserWarning: slow convergence"] * 2
    assert [(w.category, str(w.message)) for w in outside] == [
        (ResourceWarning, "<psycopg.Connection> was deleted while still open")
    ]
