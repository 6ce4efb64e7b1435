"""forecasting.models.ets: configurations tried, AIC choice, fixed-parameter extension."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.models.ets import Ets, candidate_specs


def seasonal_series(n: int, level: float = 100.0) -> np.ndarray:
    t = np.arange(n)
    rng = np.random.default_rng(7)
    return level + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 1, n)


def test_candidates_depend_on_length_and_sign() -> None:
    labels = [s.label for s in candidate_specs(seasonal_series(24))]
    assert labels == [
        "ETS(A,N,N)", "ETS(A,N,A)", "ETS(A,Ad,N)", "ETS(A,Ad,A)",
        "ETS(M,N,N)", "ETS(M,N,M)", "ETS(M,Ad,N)", "ETS(M,Ad,M)",
    ]  # fmt: skip
    # < 24 points: no seasonal configuration; a zero value: no multiplicative error
    short = seasonal_series(23)
    assert [s.label for s in candidate_specs(short)] == [
        "ETS(A,N,N)",
        "ETS(A,Ad,N)",
        "ETS(M,N,N)",
        "ETS(M,Ad,N)",
    ]
    with_zero = np.r_[0.0, seasonal_series(30)]
    assert all(s.error == "add" for s in candidate_specs(with_zero))


def test_seasonal_data_gets_a_seasonal_model_with_ordered_intervals() -> None:
    y = seasonal_series(60)
    fitted = Ets().fit(y)
    assert fitted.spec.seasonal is not None
    p = fitted.predict(12).tidy(non_negative=True)
    assert np.all(p.lo95 <= p.lo80) and np.all(p.lo80 <= p.mean) and np.all(p.hi80 <= p.hi95)
    # the forecast follows the sine: its peak month (t = 63 -> 3 months in) beats its trough (t = 69)
    assert p.mean[3] > p.mean[9]


def test_extend_keeps_parameters_and_moves_the_origin() -> None:
    y = seasonal_series(60)
    fitted = Ets().fit(y[:48])
    extended = fitted.extend(y)
    assert extended.label == fitted.label
    assert np.asarray(extended.results.params) == pytest.approx(np.asarray(fitted.results.params))
    assert extended.n == 60
    assert len(extended.predict(3).mean) == 3


def test_applicability() -> None:
    assert not Ets().applicable(np.arange(9.0))
    assert Ets().applicable(np.arange(10.0))
    assert not Ets().applicable(np.zeros(30))
