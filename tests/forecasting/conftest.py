"""Forecasting tests fit many tiny statsmodels models: run them with single-threaded BLAS,
as ``forecast()`` itself does (see ``forecasting.threads``). Each test starts with no kept
forecasts or fits (``forecasting.selection.FORECASTS``, ``customer_models.FITS``), so a test
that swaps a model in is not answered from another test's result."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forecasting.threads import single_threaded_blas


@pytest.fixture(autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    with single_threaded_blas():
        yield


@pytest.fixture(autouse=True)
def _no_kept_results() -> Iterator[None]:
    from forecasting.customer_models import FITS
    from forecasting.selection import FORECASTS

    FORECASTS.cache_clear()
    FITS.cache_clear()
    yield
