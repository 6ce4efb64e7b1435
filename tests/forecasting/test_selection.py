"""forecasting.selection: model choice by backtest on real series, awkward data, overrides."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting import MODELS, forecast
from forecasting.backtest import BacktestPlan, BacktestResult
from forecasting.datasets import load_elec_equip, load_superstore_monthly
from forecasting.selection import FORECAST_COLUMNS, FORECASTS, ForecastResult, choose_model, prepare_series


def months(n: int, start: str = "2021-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="MS")


def assert_well_formed(result: ForecastResult, horizon: int) -> None:
    ahead = result.forecast
    assert list(ahead.columns) == FORECAST_COLUMNS
    assert len(ahead) == horizon
    assert (ahead["lo95"] <= ahead["lo80"]).all()
    assert (ahead["lo80"] <= ahead["mean"]).all()
    assert (ahead["mean"] <= ahead["hi80"]).all()
    assert (ahead["hi80"] <= ahead["hi95"]).all()
    # forecast months follow the history's last month
    expected = pd.date_range(result.history.index[-1], periods=horizon + 1, freq="MS")[1:]
    assert list(ahead["period"]) == list(expected)
    for column in ("coverage80", "coverage95"):
        assert result.backtest[column].between(0, 1).all()
    assert result.reason


@pytest.fixture(scope="module")
def superstore_result() -> Callable[[Path], ForecastResult]:
    cache: dict[Path, ForecastResult] = {}

    def run(folder: Path) -> ForecastResult:
        if folder not in cache:
            cache[folder] = forecast(load_superstore_monthly(folder), horizon=12)
        return cache[folder]

    return run


def test_superstore_choice_beats_seasonal_naive(
    shared_data: Callable[[str], Path], superstore_result: Callable[[Path], ForecastResult]
) -> None:
    result = superstore_result(shared_data("superstore-sales"))
    assert_well_formed(result, 12)
    table = result.backtest.set_index("model")
    assert set(table.index) == set(MODELS)  # 48 months: every model was backtested
    assert result.model != "seasonal_naive"
    assert table.at[result.model, "mase"] < table.at["seasonal_naive", "mase"]
    assert (table["folds"] == 12).all() and (table["horizon"] == 12).all()
    assert "lowest backtest MASE" in result.reason
    print("\nSuperstore monthly sales backtest:\n" + result.backtest.round(3).to_string())


def test_elec_equip_choice_beats_seasonal_naive() -> None:
    result = forecast(load_elec_equip(), horizon=12)
    assert_well_formed(result, 12)
    table = result.backtest.set_index("model")
    assert set(table.index) == set(MODELS)
    assert result.model != "seasonal_naive"
    assert table.at[result.model, "mase"] < table.at["seasonal_naive", "mase"]
    assert not any("clipped" in n for n in result.notes)  # nothing near 0 to clip
    print("\nelec_equip backtest:\n" + result.backtest.round(3).to_string())


@pytest.mark.parametrize(
    ("name", "series", "note"),
    [
        ("all zeros", pd.Series(np.zeros(36), months(36)), "constant"),
        ("five points", pd.Series([3.0, 5.0, 4.0, 6.0, 5.0], months(5)), "Only 5 month(s)"),
        (
            "a gap",
            pd.Series(np.arange(30.0) + 10, months(30)).drop(months(30)[[5, 6, 17]]),
            "3 missing month(s) (2021-06, 2021-07, 2022-06) were filled by linear interpolation",
        ),
        (
            "a single non-zero",
            pd.Series(np.r_[np.zeros(20), 500.0, np.zeros(15)], months(36)),
            "clipped at 0",
        ),
        ("one point", pd.Series([7.0], months(1)), "too few for a backtest"),
        ("NaN values", pd.Series([np.nan, 1.0, np.nan, 3.0, 4.0, 5.0, 6.0, np.nan], months(8)), "dropped"),
    ],
)
def test_awkward_series_give_a_result_with_a_note(name: str, series: pd.Series, note: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = forecast(series, horizon=6)
    assert caught == [], f"{name}: warnings escaped: {[str(w.message) for w in caught]}"
    assert_well_formed(result, 6)
    assert any(note in n for n in result.notes), result.notes
    assert np.isfinite(result.forecast[["mean", "lo80", "hi80", "lo95", "hi95"]].to_numpy()).all()


def test_all_zeros_forecast_zeros() -> None:
    result = forecast(pd.Series(np.zeros(36), months(36)), horizon=3)
    assert result.model == "seasonal_naive"
    assert result.forecast["hi95"].tolist() == [0.0, 0.0, 0.0]
    # no MASE (every training window is constant) -> MAE decided, and the notes say so
    assert math.isnan(result.backtest.at[0, "mase"])
    assert any("MAE decided" in n for n in result.notes)


def test_gap_is_interpolated_linearly() -> None:
    series = pd.Series([10.0, 30.0], index=pd.DatetimeIndex(["2024-01-01", "2024-03-01"]))
    history, notes = prepare_series(series)
    assert history.tolist() == [10.0, 20.0, 30.0]  # February = (10 + 30) / 2
    assert "1 missing month(s) (2024-02)" in notes[0]


def test_index_normalised_to_month_starts_and_duplicates_summed() -> None:
    series = pd.Series([1.0, 2.0, 4.0], index=pd.DatetimeIndex(["2024-01-31", "2024-01-15", "2024-02-29"]))
    history, notes = prepare_series(series)
    assert list(history.index) == list(pd.DatetimeIndex(["2024-01-01", "2024-02-01"]))
    assert history.tolist() == [3.0, 4.0]
    assert len(notes) == 2


def test_empty_series() -> None:
    result = forecast(pd.Series([], dtype=float, index=pd.DatetimeIndex([])))
    assert result.model == "none"
    assert result.forecast.empty and result.backtest.empty
    assert result.notes == ["No data to forecast."]


def test_short_series_has_no_seasonal_terms_and_names_why() -> None:
    rng = np.random.default_rng(11)
    result = forecast(pd.Series(100 + rng.normal(0, 5, 18), months(18)), horizon=3)
    assert any("no seasonal terms" in n for n in result.notes)
    assert "12" not in result.spec  # no lag-12 model on 18 months
    assert_well_formed(result, 3)


def test_negative_history_is_not_clipped() -> None:
    rng = np.random.default_rng(2)
    result = forecast(pd.Series(rng.normal(0, 10, 40), months(40)), horizon=6)
    assert not any("clipped" in n for n in result.notes)
    assert (result.forecast["lo95"] < 0).any()


@pytest.mark.parametrize("model", MODELS)
def test_model_override(model: str) -> None:
    t = np.arange(48)
    noise = np.random.default_rng(4).normal(0, 2, 48)
    series = pd.Series(100 + t + 10 * np.sin(2 * np.pi * t / 12) + noise, months(48))
    result = forecast(series, horizon=6, model=model)
    assert result.model == model
    assert "override" in result.reason
    assert len(result.backtest) == len(MODELS)  # every model is still compared
    assert_well_formed(result, 6)


def test_override_that_does_not_apply_falls_back_with_a_note() -> None:
    result = forecast(pd.Series([1.0, 2.0, 3.0], months(3)), model="sarimax")
    assert result.model == "seasonal_naive"
    assert any("SARIMAX does not apply" in n for n in result.notes)
    with pytest.raises(ValueError, match="model must be one of"):
        forecast(pd.Series([1.0, 2.0, 3.0], months(3)), model="prophet")


def _result(name: str, mase: float, mae: float = 1.0) -> BacktestResult:
    metrics = {"mae": mae, "rmse": mae, "mape": 0.1, "mase": mase, "coverage80": 0.8, "coverage95": 0.95}
    return BacktestResult(name, name, BacktestPlan(12, (24,)), metrics, pd.DataFrame())


def test_ties_within_one_percent_go_to_the_simpler_model() -> None:
    notes: list[str] = []
    # theta is 0.5 % better than seasonal naive: within 1 % -> the simpler seasonal naive
    assert (
        choose_model(
            {"seasonal_naive": _result("seasonal_naive", 1.0), "theta": _result("theta", 0.995)}, notes
        )[0]
        == "seasonal_naive"
    )
    # ets 2 % better than theta -> ets
    chosen = choose_model(
        {"theta": _result("theta", 1.0), "ets": _result("ets", 0.98), "sarimax": _result("sarimax", 0.985)},
        notes,
    )
    assert chosen == ("ets", "mase")
    # exact tie between ets and sarimax -> ets
    assert choose_model({"ets": _result("ets", 0.7), "sarimax": _result("sarimax", 0.7)}, notes)[0] == "ets"
    # no finite MASE: MAE decides
    nan = float("nan")
    assert choose_model(
        {"seasonal_naive": _result("seasonal_naive", nan, 2.0), "theta": _result("theta", nan, 1.0)}, notes
    ) == ("theta", "mae")


def test_statsmodels_warnings_become_notes_not_output() -> None:
    # a straight line: SARIMAX/Theta optimisers warn about convergence on it
    series = pd.Series(np.arange(30.0) + 10, months(30))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = forecast(series, horizon=6)
    assert caught == []
    assert any("statsmodels warning" in n for n in result.notes), result.notes


def test_forecast_is_deterministic() -> None:
    t = np.arange(40)
    noise = np.random.default_rng(6).normal(0, 1, 40)
    series = pd.Series(50 + t + 5 * np.cos(2 * np.pi * t / 12) + noise, months(40))
    first = forecast(series, horizon=4)
    FORECASTS.cache_clear()
    second = forecast(series, horizon=4)
    assert first.model == second.model
    pd.testing.assert_frame_equal(first.forecast, second.forecast)
    pd.testing.assert_frame_equal(first.backtest, second.backtest)


def test_a_forecast_of_the_same_series_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same series and arguments are answered from ``FORECASTS`` (no model is fitted);
    each answer is a copy, another series or argument is forecast anew."""
    import forecasting.selection as selection

    t = np.arange(30)
    series = pd.Series(100 + 2 * t + np.random.default_rng(9).normal(0, 3, 30), months(30), name="revenue")
    first = forecast(series, horizon=3)
    first.notes.append("changed by the caller")
    first.forecast.loc[0, "mean"] = -1.0

    def no_fit(*args: object, **kwargs: object) -> ForecastResult:
        raise AssertionError("fitted again")

    monkeypatch.setattr(selection, "_forecast", no_fit)
    again = forecast(series.copy(), horizon=3)
    assert "changed by the caller" not in again.notes and again.forecast.loc[0, "mean"] != -1.0
    assert again.model == first.model and len(FORECASTS) == 1
    for other in (
        lambda: forecast(series, horizon=4),
        lambda: forecast(series + 1e-9, horizon=3),
        lambda: forecast(series.set_axis(months(30, "2019-01-01")), horizon=3),
    ):
        with pytest.raises(AssertionError, match="fitted again"):
            other()
    FORECASTS.cache_clear()
    assert len(FORECASTS) == 0


class _ThetaFailingOnLongSeries:
    """Theta that cannot be fitted to more than 40 months (the backtest's windows are shorter)."""

    name, rank = "theta", 1

    def applicable(self, y: np.ndarray) -> bool:
        return len(y) >= 6

    def fit(self, y: np.ndarray) -> object:
        if len(y) > 40:
            raise np.linalg.LinAlgError("singular matrix")
        from forecasting.models.theta import Theta

        return Theta().fit(y)


def test_a_model_failing_on_the_whole_series_falls_back_to_seasonal_naive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from forecasting.models import REGISTRY

    monkeypatch.setitem(REGISTRY, "theta", _ThetaFailingOnLongSeries())
    noise = np.random.default_rng(8).normal(0, 1, 48)
    series = pd.Series(20 + np.arange(48) * 0.5 + noise, months(48))
    result = forecast(series, horizon=3, model="theta")
    assert result.model == "seasonal_naive"
    assert "theta" in set(result.backtest["model"])  # it was backtested on the shorter windows
    assert (
        result.reason
        == "Seasonal naive (lag 12) is used because Theta could not be fitted to the whole series."
    )
    assert "Theta could not be fitted to the whole series: singular matrix" in result.notes
    assert_well_formed(result, 3)


# --- reliability ---------------------------------------------------------------------------------


def test_reliability_rules() -> None:
    from forecasting.selection import reliability

    good = {"seasonal_naive": _result("seasonal_naive", 0.9), "ets": _result("ets", 0.6)}
    assert reliability("ets", good) == (
        True,
        "Backtest MASE 0.60: ETS beat the seasonal naive baseline's in-sample error.",
    )
    # the tiny segment of the issue: the best model's errors 13.38 times the baseline's in-sample error
    tiny = {"seasonal_naive": _result("seasonal_naive", 14.0), "theta": _result("theta", 13.38)}
    reliable, why = reliability("theta", tiny)
    assert not reliable and "MASE 13.38, above 1" in why
    # a forced model that did worse than seasonal naive in the same backtest
    reliable, why = reliability("sarimax", {"seasonal_naive": _result("seasonal_naive", 0.8),
                                            "sarimax": _result("sarimax", 0.9)})  # fmt: skip
    assert not reliable and "did worse than the seasonal naive baseline" in why and "0.90 against 0.80" in why
    # no backtest, or no finite MASE: accuracy unknown
    assert reliability("seasonal_naive", {})[0] is False
    assert "unknown" in reliability("theta", {"theta": _result("theta", float("nan"))})[1]


def test_a_series_that_breaks_its_pattern_is_not_reliable() -> None:
    # a small, steady segment for three years, then ten times the revenue: every backtest fold misses
    rng = np.random.default_rng(3)
    values = np.r_[100 + rng.normal(0, 2, 36), 1000 + rng.normal(0, 20, 12)]
    result = forecast(pd.Series(values, months(48)), horizon=6)
    assert result.reliable is False
    assert result.reliability.startswith("Not reliable")
    assert_well_formed(result, 6)


def test_elec_equip_forecast_is_reliable_and_calibrated() -> None:
    result = forecast(load_elec_equip(), horizon=18)
    assert result.reliable and result.calibrated
    assert result.reliability.startswith("Backtest MASE")
    assert_well_formed(result, 18)
    # steps past the backtest's 12 months keep widening with the model's own sd
    width = (result.forecast["hi80"] - result.forecast["lo80"]).to_numpy()
    assert width[17] > width[11] > 0


def test_too_short_for_a_backtest_is_not_reliable() -> None:
    result = forecast(pd.Series([5.0, 6.0, 7.0], months(3)), horizon=2)
    assert not result.reliable and "could not be backtested" in result.reliability
    assert not result.calibrated and "no backtest" in result.intervals
