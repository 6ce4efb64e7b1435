"""forecasting.models.theta: deseasonalising rule and the interval formula."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.models.base import Z80
from forecasting.models.theta import Theta


def test_theta_deseasonalises_from_24_points_and_widens_with_the_horizon() -> None:
    t = np.arange(36)
    y = 200 + 2 * t + 15 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(5).normal(0, 2, 36)
    assert Theta().fit(y).label == "Theta (deseasonalised)"
    assert Theta().fit(y[:23]).label == "Theta"
    fitted = Theta().fit(y)
    p = fitted.predict(4)
    width = p.hi80 - p.lo80
    assert np.all(np.diff(width) > 0)
    # statsmodels' formula: sigma_1 = sqrt(sigma2) for the first step
    assert width[0] / 2 == pytest.approx(Z80 * np.sqrt(fitted.results.sigma2))
    assert not Theta().applicable(np.arange(5.0))
