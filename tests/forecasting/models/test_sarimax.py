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


def test_fits_keep_no_smoother_output_and_forecast_as_with_it():
    """``SarimaxSpec.model`` stores no smoothed states: the fit ends with a filter run (no
    smoother run) and ``extend`` too, and the forecasts are the same numbers, bit for bit,
    as statsmodels' fit that smooths and its ``apply``."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    from forecasting.models.sarimax import Sarimax, SarimaxSpec

    rng = np.random.default_rng(3)
    y = 100 + np.cumsum(rng.normal(0, 3, 48)) + 10 * np.sin(np.arange(48) * np.pi / 6)
    spec = SarimaxSpec((1, 1, 0), (0, 1, 1, 12))
    fitted = Sarimax().fit(y[:40], specs=[spec])
    assert fitted.results.smoothed_state is None
    smoothed = SARIMAX(y[:40], order=spec.order, seasonal_order=spec.seasonal_order).fit(
        disp=False, cov_type="none"
    )
    assert smoothed.smoothed_state is not None
    ours, theirs = fitted.predict(12), smoothed.get_forecast(12)
    np.testing.assert_array_equal(ours.mean, np.asarray(theirs.predicted_mean))
    np.testing.assert_array_equal(ours.lo95, np.asarray(theirs.conf_int(alpha=0.05))[:, 0])
    longer = fitted.extend(y)
    assert longer.results.smoothed_state is None
    np.testing.assert_array_equal(
        longer.predict(6).mean, np.asarray(smoothed.apply(y, refit=False).get_forecast(6).predicted_mean)
    )
