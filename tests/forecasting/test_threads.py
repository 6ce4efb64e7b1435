"""forecasting.threads: BLAS is single-threaded inside the block and restored after it."""

from __future__ import annotations

import pytest

from forecasting import threads


def test_single_threaded_blas_sets_and_restores_openblas_threads() -> None:
    try:
        import threadpoolctl  # noqa: F401

        pytest.skip("threadpoolctl is installed and used instead of the fallback")
    except ImportError:
        pass
    handles = threads._openblas_handles()
    if not handles:
        pytest.skip("no OpenBLAS loaded in this process")
    getter, setter = handles[0]
    setter(2)
    with threads.single_threaded_blas():
        assert all(g() == 1 for g, _ in handles)
    assert getter() == 2
