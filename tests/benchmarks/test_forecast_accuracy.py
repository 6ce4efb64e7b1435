"""benchmarks.forecast_accuracy runs end to end on a short series and two folds (its table's
shape and the ratios' definition only: no accuracy or time is asserted)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("statsforecast")

from benchmarks import forecast_accuracy


def test_one_series_two_folds(shared_data: Callable[[str], Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(forecast_accuracy, "SUPERSTORE", shared_data("superstore-sales"))
    output = tmp_path / "out.json"
    assert (
        forecast_accuracy.main(["--series", "Superstore Furniture", "--folds", "2", "--output", str(output)])
        == 0
    )
    saved = json.loads(output.read_text())
    rows = saved["rows"]
    assert [r["method"] for r in rows] == list(forecast_accuracy.METHODS)
    product = rows[0]
    assert product["mase_ratio"] == 1.0 and product["time_ratio"] == 1.0
    for row in rows:
        assert row["folds"] == 2 and row["horizon"] == 12
        assert row["mase_ratio"] == pytest.approx(row["mase"] / product["mase"])
        assert 0 <= row["coverage80"] <= 1 and 0 <= row["coverage95"] <= 1
