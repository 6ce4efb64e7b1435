"""Forecasting tests fit many tiny statsmodels models: run them with single-threaded BLAS,
as ``forecast()`` itself does (see ``forecasting.threads``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from forecasting.threads import single_threaded_blas


@pytest.fixture(autouse=True)
def _single_threaded_blas() -> Iterator[None]:
    with single_threaded_blas():
        yield
