"""forecasting.models.theta: deseasonalising rule and the interval formula, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.models.base import Z80
from forecasting.models.theta import Theta, one_step_sigma2


def test_one_step_sigma2_by_hand() -> None:
    y = np.array([10.0, 12.0, 11.0])
    # no drift, alpha 0.5: level 10 -> error 12 - 10 = 2, level 11 -> error 11 - 11 = 0 -> (4 + 0) / 2
    assert one_step_sigma2(y, alpha=0.5, b0=0.0) == pytest.approx(2.0)
    # drift b0 = 2: t = 1 adds 2/2 * (1 - 0.5) / 0.5 = 1 -> error 1; t = 2 adds 1 * (1 - 0.25) / 0.5 = 1.5
    # -> error 11 - (11 + 1.5) = -1.5 -> (1 + 2.25) / 2
    assert one_step_sigma2(y, alpha=0.5, b0=2.0) == pytest.approx(1.625)


def test_theta_deseasonalises_from_24_points_and_widens_with_the_horizon() -> None:
    t = np.arange(36)
    y = 200 + 2 * t + 15 * np.sin(2 * np.pi * t / 12) + np.random.default_rng(5).normal(0, 2, 36)
    assert Theta().fit(y).label == "Theta (deseasonalised)"
    short = Theta().fit(y[:23])
    assert short.label == "Theta"
    p = short.predict(4)
    width = p.hi80 - p.lo80
    # sd_h = sigma * sqrt(1 + (h - 1) alpha^2): growing with h, sigma at h = 1
    assert np.all(np.diff(width) > 0)
    b0, alpha = np.asarray(short.results.params)
    assert width[0] / 2 == pytest.approx(Z80 * np.sqrt(one_step_sigma2(y[:23], alpha, b0)))
    assert width[3] / 2 == pytest.approx(
        Z80 * np.sqrt(one_step_sigma2(y[:23], alpha, b0) * (1 + 3 * alpha**2))
    )
    assert not Theta().applicable(np.arange(5.0))
