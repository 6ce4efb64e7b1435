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


def test_nested_blocks_set_the_thread_count_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the outermost block sets and restores the count; blocks inside it (a fit inside
    ``cohort_sbg``, say) cost nothing, and the next outermost block sets it again."""
    import contextlib

    entered: list[int] = []

    @contextlib.contextmanager
    def counting():
        entered.append(1)
        yield

    import threading

    monkeypatch.setattr(threads, "_single_threaded_blas", counting)
    monkeypatch.setattr(threads, "_STATE", threading.local())  # outside the tests' own block
    with threads.single_threaded_blas():
        with threads.single_threaded_blas(), threads.single_threaded_blas():
            pass
        with threads.single_threaded_blas():
            pass
    assert entered == [1]
    with pytest.raises(ValueError), threads.single_threaded_blas():
        raise ValueError("inside")
    with threads.single_threaded_blas():
        pass
    assert entered == [1, 1, 1]
