"""Vectorised helpers for the demo generator: text ids, vocabulary lookups, string
concatenation (Arrow kernels, no Python loop per row), weighted choices and time axes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

SECONDS_PER_DAY = 86_400
DAYS_PER_MONTH = 30.436875


def as_text(array: pa.Array | pa.ChunkedArray) -> pd.Series:
    """An Arrow string array as a pandas string Series (no copy)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.string():
        array = array.cast(pa.string())
    return pd.Series(pd.arrays.ArrowStringArray(array))


def ids(prefix: str, start: int, count: int, width: int) -> pa.Array:
    """``prefix`` + zero-padded numbers ``start+1 .. start+count`` (e.g. ``A0000001``)."""
    numbers = pc.cast(pa.array(np.arange(start + 1, start + count + 1, dtype=np.int64)), pa.string())
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(numbers, width, "0"), "")


def lookup(vocabulary: Sequence[str], index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """``vocabulary[index]`` as an Arrow string array; rows where ``missing`` is true are null."""
    values = pa.array(list(vocabulary), type=pa.string())
    positions = pa.array(np.asarray(index, dtype=np.int64), mask=missing)
    return values.take(positions)


def take(array: pa.Array, index: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """``array[index]`` (nulls where ``missing``)."""
    return array.take(pa.array(np.asarray(index, dtype=np.int64), mask=missing))


def concat(*parts: pa.Array | str) -> pa.Array:
    """Element-wise string concatenation of arrays and scalars."""
    return pc.binary_join_element_wise(*parts, "")


def choose(rng: np.random.Generator, shares: Sequence[float] | np.ndarray, size: int) -> np.ndarray:
    """Indices 0..len(shares)-1 drawn with probability proportional to ``shares``."""
    cumulative = np.cumsum(np.asarray(shares, dtype=float))
    return np.minimum(
        np.searchsorted(cumulative / cumulative[-1], rng.random(size), side="right"), len(cumulative) - 1
    )


def choose_rows(rng: np.random.Generator, table: np.ndarray, row: np.ndarray) -> np.ndarray:
    """For each ``row[i]``, an index drawn with the probabilities in ``table[row[i]]``."""
    cumulative = np.cumsum(table, axis=1)
    cumulative = cumulative / cumulative[:, -1:]
    draws = rng.random(len(row))
    return np.minimum((draws[:, None] >= cumulative[row]).sum(axis=1), table.shape[1] - 1)


def lognormal_days(
    rng: np.random.Generator, median: np.ndarray | float, sigma: float, size: int
) -> np.ndarray:
    """Lognormal durations with the given median(s)."""
    return np.asarray(median, dtype=float) * np.exp(sigma * rng.standard_normal(size))


def timestamps(origin: np.datetime64, days: np.ndarray) -> np.ndarray:
    """``origin`` + ``days`` (floats) as naive ``datetime64[us]``, rounded to the second."""
    seconds = np.round(np.asarray(days, dtype=float) * SECONDS_PER_DAY).astype(np.int64)
    return (origin.astype("datetime64[s]") + seconds.astype("timedelta64[s]")).astype("datetime64[us]")


def maybe_timestamps(origin: np.datetime64, days: np.ndarray) -> pd.Series:
    """Like :func:`timestamps`, with NaN days becoming NaT."""
    days = np.asarray(days, dtype=float)
    missing = np.isnan(days)
    values = timestamps(origin, np.where(missing, 0.0, days))
    values[missing] = np.datetime64("NaT")
    return pd.Series(values)


def repeat_index(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-parent ``counts``: (parent index of each child, child's rank within its parent)."""
    counts = np.asarray(counts, dtype=np.int64)
    parent = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    rank = np.arange(len(parent)) - np.repeat(starts, counts)
    return parent, rank


def pick_child(rng: np.random.Generator, first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """For each parent with children ``first[i] .. first[i]+count[i]-1``, one of them at random
    (-1 where the parent has none)."""
    count = np.asarray(count)
    picked = first + np.floor(rng.random(len(count)) * np.maximum(count, 1)).astype(np.int64)
    return np.where(count > 0, picked, -1)
