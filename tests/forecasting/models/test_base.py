"""forecasting.models.base: interval tidying (order, clipping) and normal intervals."""

from __future__ import annotations

import numpy as np
import pytest

from forecasting.models.base import Z80, Z95, Prediction, normal_prediction


def test_normal_prediction_uses_z_quantiles() -> None:
    p = normal_prediction(np.array([10.0]), np.array([2.0]))
    assert p.lo80[0] == pytest.approx(10 - 2 * 1.2815515655446004)
    assert p.hi95[0] == pytest.approx(10 + 2 * 1.959963984540054)
    assert Z80 < Z95


def test_tidy_orders_bounds_and_clips_at_zero_only_when_asked() -> None:
    # a deliberately broken interval: lo80 above the mean, hi95 inside hi80, a NaN bound
    raw = Prediction(
        mean=np.array([5.0, -1.0]),
        lo80=np.array([6.0, -3.0]),
        hi80=np.array([9.0, 1.0]),
        lo95=np.array([4.0, np.nan]),
        hi95=np.array([8.0, 2.0]),
    )
    kept = raw.tidy(non_negative=False)
    assert kept.lo80.tolist() == [5.0, -3.0]  # lo80 lowered to the mean
    assert kept.lo95.tolist() == [4.0, -3.0]  # NaN -> mean (-1) -> lowered to lo80
    assert kept.hi95.tolist() == [9.0, 2.0]  # hi95 raised to hi80
    clipped = raw.tidy(non_negative=True)
    assert clipped.mean.tolist() == [5.0, 0.0]
    assert clipped.lo95.tolist() == [4.0, 0.0]
    for p in (kept, clipped):
        assert np.all(p.lo95 <= p.lo80) and np.all(p.lo80 <= p.mean)
        assert np.all(p.mean <= p.hi80) and np.all(p.hi80 <= p.hi95)
