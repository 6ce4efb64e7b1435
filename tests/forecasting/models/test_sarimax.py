"""forecasting.models.sarimax: the order grid, AIC choice, fixed-parameter extension."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.models.sarimax import Sarimax, candidate_specs

# fitted directly here (forecast() turns these into notes): starting-value warnings are expected
pytestmark = pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.EstimationWarning")


def test_grid_is_seasonal_only_from_36_points() -> None:
    assert [s.label for s in candidate_specs(np.arange(35.0))] == [
        "ARIMA(0,1,1)",
        "ARIMA(1,1,0)",
        "ARIMA(1,1,1)",
    ]
    labels = [s.label for s in candidate_specs(np.arange(36.0))]
    assert len(labels) == 6
    assert labels[0] == "SARIMA(0,1,1)(0,1,1)12"
    assert all(label.endswith("12") for label in labels)


def test_fit_predict_extend() -> None:
    t = np.arange(48)
    y = 50 + t + 8 * np.cos(2 * np.pi * t / 12) + np.random.default_rng(3).normal(0, 1, 48)
    fitted = Sarimax().fit(y[:40])
    assert fitted.label.startswith("SARIMA(")
    p = fitted.predict(6).tidy(non_negative=False)
    assert np.all(p.lo95 <= p.lo80) and np.all(p.lo80 <= p.mean) and np.all(p.hi80 <= p.hi95)
    extended = fitted.extend(y)
    assert np.asarray(extended.results.params) == pytest.approx(np.asarray(fitted.results.params))
    assert extended.results.nobs == 48
    assert not Sarimax().applicable(np.arange(11.0))
