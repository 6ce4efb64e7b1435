"""Run small-matrix statsmodels code with single-threaded BLAS.

statsmodels' Kalman filter and ETS fits multiply tiny matrices thousands of times.
OpenBLAS spreads each product over every core and its threads spin while they wait: on a
busy 2-core machine that made ``forecast()`` of a 60-month series take 2–3.5 s instead of
0.75 s (measured here). ``single_threaded_blas()`` sets the OpenBLAS thread count to 1 for
the duration of a block and restores it afterwards.

It uses ``threadpoolctl`` when installed; otherwise it finds the OpenBLAS libraries that
numpy and scipy loaded (Linux ``/proc/self/maps``) and calls their documented
``openblas_set_num_threads`` entry point (the symbol carries the ``scipy_`` prefix and
``64_`` suffix in the scipy-openblas wheels) — the same thing threadpoolctl does. Where
neither works (other platforms, another BLAS) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator
from pathlib import Path

_PREFIXES = ("openblas", "scipy_openblas")
_SUFFIXES = ("", "64_", "_64_")


def _openblas_handles() -> list[tuple[object, object]]:
    """(get_num_threads, set_num_threads) for each OpenBLAS library loaded in this process."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return []
    paths = sorted(
        {
            line.split()[-1]
            for line in maps.read_text().splitlines()
            if "openblas" in line.lower() and line.split()[-1].startswith("/")
        }
    )
    handles = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                if getter is not None and setter is not None:
                    getter.restype = ctypes.c_int
                    setter.argtypes = [ctypes.c_int]
                    handles.append((getter, setter))
                    break
            else:
                continue
            break
    return handles


_HANDLES: list[tuple[object, object]] | None = None


_STATE = threading.local()


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Within the block, BLAS uses one thread (see the module docstring). Nested blocks in
    the same thread cost nothing: only the outermost one sets and restores the thread
    count (threadpoolctl's ~10 ms per entry were ~1 s of 36 sBG fits, each entering it)."""
    state = _STATE
    if getattr(state, "depth", 0):
        yield
        return
    state.depth = 1
    try:
        with _single_threaded_blas():
            yield
    finally:
        state.depth = 0


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    global _HANDLES
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
        return
    if _HANDLES is None:
        try:
            _HANDLES = _openblas_handles()
        except OSError:
            _HANDLES = []
    previous = [getter() for getter, _ in _HANDLES]
    for _, setter in _HANDLES:
        setter(1)
    try:
        yield
    finally:
        for (_, setter), count in zip(_HANDLES, previous, strict=True):
            setter(max(1, count))
