"""Fits that did not converge or forecast nonsense are rejected; reliability is judged on
the backtest of the specification actually used; revenue series are rounded to cents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting import forecast
from forecasting.models.base import Prediction, degenerate, fit_lowest_aic
from forecasting.models.sarimax import FittedSarimax, SarimaxSpec
from forecasting.selection import FORECASTS


def months(n: int, start: str = "2020-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="MS")


def seasonal_series(n: int = 60) -> np.ndarray:
    """A business at about 1e6 a month: trend, a yearly pattern and a fixed wiggle."""
    t = np.arange(n)
    return 1e6 + 5e3 * t + 1e5 * np.sin(2 * np.pi * t / 12) + 2e4 * np.cos(1.7 * t)


class _Unconverged:
    """A real statsmodels result whose optimiser is made to report no convergence and the
    lowest AIC of all — what DuckDB's last-bit sums made SARIMA(0,1,1)(1,1,0)12 do."""

    def __init__(self, results: object) -> None:
        self._results = results
        self.aic = -1e9
        self.mle_retvals = {"converged": False}

    def __getattr__(self, name: str) -> object:
        return getattr(self._results, name)


class _UnconvergedSpec(SarimaxSpec):
    """The fit wrapper injected by the test: the spec fits for real, then reports failure."""

    def model(self, y: np.ndarray) -> object:
        inner = super().model(y)

        class _Model:
            def fit(self, **kwargs: object) -> _Unconverged:
                return _Unconverged(inner.fit(**kwargs))

        return _Model()


def test_an_unconverged_fit_with_the_lowest_aic_is_rejected_for_the_next_candidate() -> None:
    y = seasonal_series()
    bad = _UnconvergedSpec((0, 1, 1), (1, 1, 0, 12))
    good = SarimaxSpec((1, 1, 0), (1, 1, 0, 12))
    with pytest.warns(UserWarning, match=r"rejected SARIMA\(0,1,1\)\(1,1,0\)12: .*did not converge"):
        fitted = fit_lowest_aic([bad, good], y, FittedSarimax, "SARIMAX order", {"cov_type": "none"})
    assert fitted.label == "SARIMA(1,1,0)(1,1,0)12"
    with pytest.raises(ValueError, match="did not converge"):
        fit_lowest_aic([bad], y, FittedSarimax, "SARIMAX order", {"cov_type": "none"})


def _prediction(mean: list[float], width: float) -> Prediction:
    m = np.asarray(mean, dtype=float)
    return Prediction(m, m - width, m + width, m - 2 * width, m + 2 * width)


def test_degenerate_forecasts() -> None:
    # last 12 months 100..111: range 11, so the mean must stay within [100 - 33, 111 + 33]
    y = np.arange(88.0, 112.0)
    assert degenerate(y, _prediction([112, 113], 5)) is None
    assert degenerate(y, _prediction([144, 144], 5)) is None  # exactly 3 ranges above
    assert "far outside" in degenerate(y, _prediction([112, 144.5], 5))
    assert "far outside" in degenerate(y, _prediction([0, 5], 5))  # the collapse to ≈ 0
    assert "zero width" in degenerate(y, _prediction([112, 113], 0))
    assert "not finite" in degenerate(y, _prediction([112, np.nan], 5))
    # a constant history: zero-width intervals are no sign of a broken fit
    assert degenerate(np.full(24, 7.0), _prediction([7, 7], 0)) is None


class _Fitted:
    """A fitted toy model: ``good`` continues the yearly pattern and trend (drifted seasonal
    naive), ``bad`` forecasts the history's overall mean — within its range, converged,
    but far worse than the seasonal naive baseline."""

    def __init__(self, spec: str, y: np.ndarray) -> None:
        self.spec, self.y = spec, np.asarray(y, dtype=float)

    @property
    def label(self) -> str:
        return f"Toy({self.spec})"

    def predict(self, horizon: int) -> Prediction:
        y = self.y
        if self.spec == "good":
            drift = (y[-12:].mean() - y[-24:-12].mean()) / 12
            mean = np.array([y[len(y) - 12 + h % 12] + drift * 12 * (1 + h // 12) for h in range(horizon)])
        else:
            mean = np.full(horizon, y.mean())
        return _prediction(list(mean), 1e4)

    def extend(self, y: np.ndarray) -> _Fitted:
        return _Fitted(self.spec, y)


class _ToySarimax:
    """In place of SARIMAX: chooses ``good`` on the backtest's shorter windows and ``bad``
    on the whole series of ``full`` months (as an AIC search may choose another order once
    it sees all the data)."""

    name, rank = "sarimax", 3

    def __init__(self, full: int | None) -> None:
        self.full = full

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= 24

    def fit(self, y: np.ndarray, specs: list[str] | None = None) -> _Fitted:
        if specs is not None:
            return _Fitted(specs[0], y)
        return _Fitted("bad" if len(y) == self.full else "good", y)


@pytest.mark.parametrize("full", [None, 60])
def test_reliability_is_judged_on_the_backtest_of_the_specification_used(
    monkeypatch: pytest.MonkeyPatch, full: int | None
) -> None:
    from forecasting.models import REGISTRY

    FORECASTS.cache_clear()
    monkeypatch.setitem(REGISTRY, "sarimax", _ToySarimax(full))
    y = seasonal_series()
    result = forecast(pd.Series(y, months(60)), horizon=12, model="sarimax")
    row = result.backtest.set_index("model").loc["sarimax"]
    assert row["spec"] == "Toy(good)" and row["mase"] < 1  # the selection backtest
    if full is None:
        assert result.spec == "Toy(good)"
        assert result.reliable, result.reliability
    else:
        # the whole series got the bad specification: its own backtest (same plan) decides
        assert result.spec == "Toy(bad)"
        assert not result.reliable
        assert result.reliability.startswith("Not reliable: SARIMAX did worse than the seasonal naive")
        assert any("Toy(bad), the specification used, was backtested on its own" in n for n in result.notes)
    FORECASTS.cache_clear()


def test_revenue_series_is_rounded_to_cents() -> None:
    """Monthly sums are rounded to cents: 0.1 + 0.2 is 0.30000000000000004 in binary, and
    a parallel sum may round either way in the last bit; the series holds 0.3 either way."""
    import datetime as dt

    import sqlalchemy as sa

    from crm_data import schema
    from forecasting.revenue import monthly_revenue
    from kpis.filters import Filters

    engine = sa.create_engine("sqlite://")
    schema.metadata.create_all(engine)
    with engine.begin() as c:
        c.execute(
            schema.accounts.insert(),
            [{"account_id": "a", "name": "A", "created_at": dt.datetime(2023, 1, 1)}],
        )
        rows = [
            (dt.datetime(2024, 1, 3), 0.1),
            (dt.datetime(2024, 1, 9), 0.2),
            (dt.datetime(2024, 2, 2), 5.0),
        ]
        c.execute(
            schema.payments.insert(),
            [
                {"payment_id": f"p{i}", "account_id": "a", "paid_at": at, "amount": amount}
                for i, (at, amount) in enumerate(rows)
            ],
        )
    series, _notes = monthly_revenue(
        engine, Filters(dt.date(2024, 1, 1), dt.date(2024, 3, 1)), dt.date(2024, 6, 1)
    )
    assert 0.1 + 0.2 != 0.3
    assert series.tolist() == [0.3, 5.0]
