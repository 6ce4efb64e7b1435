"""``forecasting``'s names load on first use: a page that shows no statistical forecast
(the Sales pipeline's pipeline forecast, Customers & churn's customer models) does not pay
statsmodels' import (≈ 1.1 s of a new server's first view)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import forecasting

ROOT = Path(__file__).resolve().parents[2]


def _imported_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running ``code``."""
    probe = f"{code}\nimport sys\nprint(' '.join(sorted({{m.partition('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "code",
    [
        "import forecasting; forecasting.pipeline_forecast; forecasting.expected_pipeline",
        "from forecasting import customer_models; customer_models.churn_risk",
        "import ui.pipeline_summary",
        # the Forecast page's model list, and a revenue forecast read back from the store
        "import forecasting; forecasting.MODELS; forecasting.ForecastResult; forecasting.revenue_forecast",
        "import forecasting.store",
    ],
)
def test_pipeline_and_customer_models_do_not_import_statsmodels(code: str) -> None:
    assert "statsmodels" not in _imported_after(code)


def test_the_statistical_forecast_does() -> None:
    assert "statsmodels" in _imported_after("import forecasting; forecasting.forecast")


def test_every_exported_name_resolves_to_its_module_object() -> None:
    from forecasting import pipeline, selection

    for name in forecasting.__all__:
        assert getattr(forecasting, name) is not None
        assert name in dir(forecasting)
    assert forecasting.pipeline_forecast is pipeline.pipeline_forecast
    assert forecasting.ForecastResult is selection.ForecastResult
    from forecasting import models

    assert forecasting.MODELS == models.MODELS  # the names, without the models


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_model"):
        forecasting.no_such_model  # noqa: B018
