"""Customer feedback: Net Promoter Score, Customer Effort Score, score distribution, comments.

Survey responses are dated by ``responded_at`` and scoped through their account (a
response without an account counts only while no account-level filter is set). The
database returns counts and sums per period; intervals are computed in Python from those
aggregates, so every database gives the same numbers.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import sqlalchemy as sa

from crm_data import schema
from crm_data.dialects import period_start
from kpis import rollups
from kpis.core import (
    LOW_SAMPLE,
    Z95,
    connection,
    naive_timestamps,
    period_rows,
    period_starts,
    read_frame,
    wilson_interval,
)
from kpis.filters import Filters, in_range, scope, template, value_params
from kpis.measures import CES_EASY_MIN, survey_score_sums

NOT_SET = "(not set)"


def _responses(f: Filters, survey: str) -> list:
    table = schema.survey_responses
    return [table.c.survey == survey, in_range(table.c.responded_at, f), *scope(f, table)]


def nps_interval(promoters: int, detractors: int, responses: int) -> tuple[float, float]:
    """95 % interval of NPS from the variance of a difference of two proportions:
    nps ± 1.96·100·sqrt((p_p + p_d − (p_p − p_d)²) / n), clipped to [−100, 100];
    (NaN, NaN) without responses."""
    if not responses:
        return math.nan, math.nan
    p_p, p_d = promoters / responses, detractors / responses
    score = 100 * (p_p - p_d)
    half = Z95 * 100 * math.sqrt(max(p_p + p_d - (p_p - p_d) ** 2, 0.0) / responses)
    return max(score - half, -100.0), min(score + half, 100.0)


@functools.lru_cache(maxsize=256)
def _nps_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """The statement of :func:`nps` (built once per dialect, filters and arguments)."""
    table = schema.survey_responses
    period = period_start(dialect, table.c.responded_at, freq)
    statement = (
        sa.select(
            period.label("period"),
            sa.func.count().label("responses"),
            sa.func.sum(sa.case((table.c.score >= 9, 1), else_=0)).label("promoters"),
            sa.func.sum(sa.case((table.c.score <= 6, 1), else_=0)).label("detractors"),
        )
        .where(*_responses(f, "nps"))
        .group_by(period)
    )
    return statement


def nps(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """Net Promoter Score per period.

    Formula: NPS = 100·(promoters − detractors) ÷ responses, over responses with survey = nps
    by responded_at; promoters score 9–10, detractors 0–6, passives the rest (7–8).

    Interval (method: variance of a difference of two proportions, normal approximation):
    ci = NPS ± 1.96·100·sqrt((p_p + p_d − (p_p − p_d)²) ÷ n), clipped to [−100, 100];
    ``low_sample`` = fewer than 30 responses. A period without responses has NPS NaN.
    Columns: period, responses, promoters, passives, detractors, nps, ci_low, ci_high, low_sample.
    """
    columns = [
        "period",
        "responses",
        "promoters",
        "passives",
        "detractors",
        "nps",
        "ci_low",
        "ci_high",
        "low_sample",
    ]
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    statement = _nps_statement(conn.dialect, f, freq)
    frame = period_rows(conn, statement, periods, counts=("responses", "promoters", "detractors"))
    return _nps_finish(frame)[columns]


def _nps_finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Passives, NPS, its interval and low_sample from responses, promoters, detractors."""
    frame["passives"] = frame["responses"] - frame["promoters"] - frame["detractors"]
    n = frame["responses"].astype(float).where(frame["responses"] > 0)
    frame["nps"] = 100 * (frame["promoters"] - frame["detractors"]) / n
    intervals = [
        nps_interval(p, d, r)
        for p, d, r in zip(frame["promoters"], frame["detractors"], frame["responses"], strict=True)
    ]
    frame["ci_low"] = [low for low, _ in intervals]
    frame["ci_high"] = [high for _, high in intervals]
    frame["low_sample"] = frame["responses"] < LOW_SAMPLE
    return frame


def nps_score_distribution(conn: sa.Connection | sa.Engine, f: Filters) -> pd.DataFrame:
    """How many NPS responses (survey = nps, responded_at in [start, end)) gave each score.

    Formula: responses = count of responses per score; every score 0–10 is a row (0 when
    nobody gave it); scores outside 0–10 in the data are kept as extra rows.
    Columns: score, responses.
    """
    table = schema.survey_responses
    statement = (
        sa.select(table.c.score.label("score"), sa.func.count().label("responses"))
        .where(*_responses(f, "nps"))
        .group_by(table.c.score)
    )
    counts = read_frame(conn, statement)
    grid = pd.DataFrame({"score": [float(s) for s in range(11)]})
    counts["score"] = counts["score"].astype(float)
    frame = grid.merge(counts, on="score", how="outer").sort_values("score")
    frame["responses"] = frame["responses"].fillna(0).astype("int64")
    return frame.reset_index(drop=True)[["score", "responses"]]


def latest_comments(conn: sa.Connection | sa.Engine, f: Filters, limit: int = 20) -> pd.DataFrame:
    """The newest survey responses (any survey) with a non-empty comment, responded_at in
    [start, end), newest first, at most ``limit`` rows.
    Columns: responded_at, survey, touchpoint, score, comment, account_id."""
    table = schema.survey_responses
    statement = (
        sa.select(
            table.c.responded_at,
            table.c.survey,
            table.c.touchpoint,
            table.c.score,
            table.c.comment,
            table.c.account_id,
        )
        .where(
            in_range(table.c.responded_at, f),
            *scope(f, table),
            table.c.comment.is_not(None),
            sa.func.trim(table.c.comment) != "",
        )
        .order_by(table.c.responded_at.desc(), table.c.response_id.desc())
        .limit(int(limit))
    )
    frame = read_frame(conn, statement)
    if not frame.empty:
        frame["responded_at"] = naive_timestamps(frame["responded_at"])
    return frame


@functools.lru_cache(maxsize=4096)
def _t975(degrees_of_freedom: int) -> float:
    """The Student-t 97.5 % quantile (computed once per sample size): ``scipy.special.stdtrit``,
    the function ``scipy.stats.t.ppf`` evaluates (the same value), without its argument
    checks (~50 µs a call) or the ~0.5 s import of ``scipy.stats``."""
    # imported here: scipy.special costs ~0.3 s, which `import kpis` (every CLI command) need not pay
    from scipy.special import stdtrit

    return float(stdtrit(degrees_of_freedom, 0.975))


def mean_interval(n: int, total: float, total_squares: float) -> tuple[float, float, float]:
    """(mean, low, high): Student-t 95 % interval mean ± t(0.975, n−1)·sd/√n from the count,
    the sum and the sum of squares; (mean, NaN, NaN) below 2 observations."""
    if not n:
        return math.nan, math.nan, math.nan
    mean = total / n
    if n < 2:
        return mean, math.nan, math.nan
    variance = max((total_squares - n * mean * mean) / (n - 1), 0.0)
    half = _t975(n - 1) * math.sqrt(variance / n)
    return mean, mean - half, mean + half


@functools.lru_cache(maxsize=256)
def _ces_statement(dialect: sa.Dialect, f: Filters, freq: str, by_touchpoint: bool) -> sa.Select:
    """The statement of :func:`ces` (built once per dialect, filters and arguments)."""
    table = schema.survey_responses
    touchpoint = sa.func.coalesce(table.c.touchpoint, NOT_SET)
    score = sa.cast(table.c.score, sa.Double())
    period = period_start(dialect, table.c.responded_at, freq)
    keys = (
        [period.label("period"), touchpoint.label("touchpoint")]
        if by_touchpoint
        else [period.label("period")]
    )
    statement = (
        sa.select(
            *keys,
            sa.func.count().label("responses"),
            sa.func.sum(sa.case((table.c.score >= CES_EASY_MIN, 1), else_=0)).label("easy"),
            sa.func.sum(score).label("total"),
            sa.func.sum(score * score).label("total_squares"),
        )
        .where(*_responses(f, "ces"))
        .group_by(*(key.element for key in keys))
    )
    return statement


def ces(
    conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month", by_touchpoint: bool = True
) -> pd.DataFrame:
    """Customer Effort Score per period and touchpoint.

    Formula: ces_mean = mean score of responses with survey = ces by responded_at (scale
    1–7, 7 = very easy); share_easy = share of scores 5–7 (the "% easy" variant).

    Intervals: ces_mean ± t(0.975, n − 1)·sd ÷ √n (Student t, sample sd; NaN below 2
    responses); share_easy by the Wilson score interval; ``low_sample`` = fewer than 30
    responses. Rows: every period × every touchpoint that has responses in the range
    (touchpoint NULL = "(not set)"), 0 responses and NaN where none; with
    ``by_touchpoint=False`` one row per period with touchpoint "all".
    Columns: period, touchpoint, responses, ces_mean, ci_low, ci_high, share_easy,
    share_easy_ci_low, share_easy_ci_high, low_sample.
    """
    columns = [
        "period", "touchpoint", "responses", "ces_mean", "ci_low", "ci_high",
        "share_easy", "share_easy_ci_low", "share_easy_ci_high", "low_sample",
    ]  # fmt: skip
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=columns)
    statement = _ces_statement(conn.dialect, f, freq, by_touchpoint)
    if not by_touchpoint:  # one row per period: straight onto the period grid
        frame = period_rows(conn, statement, periods, counts=("responses", "easy"), sums=_CES_SUMS)
        frame.insert(1, "touchpoint", "all")
        return _ces_finish(frame)[columns]
    found = read_frame(conn, statement)
    grid_periods = pd.to_datetime(periods)
    if not found.empty:
        found["period"] = naive_timestamps(found["period"])
        found = found[found["period"].isin(grid_periods)]
    touchpoints = (
        sorted(found["touchpoint"].unique()) if not found.empty else [None if by_touchpoint else "all"]
    )
    grid = pd.DataFrame([(p, t) for p in grid_periods for t in touchpoints], columns=["period", "touchpoint"])
    if not found.empty:
        frame = grid.merge(found, on=["period", "touchpoint"], how="left")
    else:
        frame = grid.assign(responses=0, total=0.0, total_squares=0.0, easy=0)
    frame["responses"] = frame["responses"].fillna(0).astype("int64")
    frame["easy"] = frame["easy"].fillna(0).astype("int64")
    return _ces_finish(frame)[columns].reset_index(drop=True)


_CES_SUMS = ("total", "total_squares")


def _ces_finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Means, shares and their intervals from responses, easy, total and total_squares."""
    means = [
        mean_interval(int(n), float(s) if n else 0.0, float(q) if n else 0.0)
        for n, s, q in zip(frame["responses"], frame["total"], frame["total_squares"], strict=True)
    ]
    frame["ces_mean"] = [m[0] for m in means]
    frame["ci_low"] = [m[1] for m in means]
    frame["ci_high"] = [m[2] for m in means]
    n = frame["responses"].astype(float).where(frame["responses"] > 0)
    frame["share_easy"] = frame["easy"] / n
    shares = [wilson_interval(e, r) for e, r in zip(frame["easy"], frame["responses"], strict=True)]
    frame["share_easy_ci_low"] = [low for low, _ in shares]
    frame["share_easy_ci_high"] = [high for _, high in shares]
    frame["low_sample"] = frame["responses"] < LOW_SAMPLE
    return frame


def _survey_scores_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    """NPS and CES counts and sums per period, in one scan: the roll-up's own measures
    (:func:`kpis.measures.survey_score_sums`). A template per filter shape
    (``kpis.filters.template``), executed with ``value_params(f)``."""
    return template(_build_survey_scores_statement, dialect, f, freq)


def _build_survey_scores_statement(dialect: sa.Dialect, f: Filters, freq: str) -> sa.Select:
    table = schema.survey_responses
    period = period_start(dialect, table.c.responded_at, freq)
    return (
        sa.select(period.label("period"), *survey_score_sums(table))
        .where(
            table.c.survey.in_(("nps", "ces")),
            in_range(table.c.responded_at, f),
            *scope(f, table),
        )
        .group_by(period)
    )


#: :func:`survey_scores` columns.
SURVEY_SCORE_COLUMNS = [
    "period",
    "nps_responses", "promoters", "passives", "detractors", "nps", "nps_ci_low", "nps_ci_high",
    "ces_responses", "ces_mean", "ces_ci_low", "ces_ci_high",
    "share_easy", "share_easy_ci_low", "share_easy_ci_high",
]  # fmt: skip


def survey_scores(conn: sa.Connection | sa.Engine, f: Filters, freq: str = "month") -> pd.DataFrame:
    """NPS and CES per period from one query (for pages that show both, like the Overview).

    The same numbers as :func:`nps` and :func:`ces` with ``by_touchpoint=False``, same
    formulas: NPS = 100·(promoters − detractors) ÷ responses over survey = nps (promoters
    9–10, detractors 0–6); ces_mean = mean score over survey = ces, share_easy = share of
    scores 5–7; the same intervals. ``nps_responses`` / ``ces_responses`` are the sample
    sizes (low sample: fewer than 30). One row per period whose first day lies in
    ``[start, end)``. Read from the survey-score roll-up when it applies (``kpis.rollups``:
    same numbers). Columns: ``SURVEY_SCORE_COLUMNS``.
    """
    periods = period_starts(f.start, f.end, freq)
    if not periods:
        return pd.DataFrame(columns=SURVEY_SCORE_COLUMNS)
    with connection(conn) as c:
        pivot = rollups.found_or_rolled(
            c, rollups.SURVEY_SCORES, f, freq, periods, _survey_scores_statement, value_params
        )
    grid = pd.to_datetime(periods)
    rows = [pivot.get(p) for p in grid]
    responses, promoters, detractors, ces_n, easy = (_counts(rows, j) for j in range(5))
    nps_intervals = [nps_interval(p, d, r) for p, d, r in zip(promoters, detractors, responses, strict=True)]
    totals, squares = _sums(rows, 5), _sums(rows, 6)
    means = [
        mean_interval(int(n), t if n else 0.0, q if n else 0.0)
        for n, t, q in zip(ces_n, totals, squares, strict=True)
    ]
    shares = [wilson_interval(e, n) for e, n in zip(easy, ces_n, strict=True)]
    return pd.DataFrame(
        {
            "period": grid,
            "nps_responses": responses,
            "promoters": promoters,
            "passives": responses - promoters - detractors,
            "detractors": detractors,
            "nps": 100 * (promoters - detractors) / np.where(responses > 0, responses.astype(float), np.nan),
            "nps_ci_low": [low for low, _ in nps_intervals],
            "nps_ci_high": [high for _, high in nps_intervals],
            "ces_responses": ces_n,
            "ces_mean": [m[0] for m in means],
            "ces_ci_low": [m[1] for m in means],
            "ces_ci_high": [m[2] for m in means],
            "share_easy": easy / np.where(ces_n > 0, ces_n.astype(float), np.nan),
            "share_easy_ci_low": [low for low, _ in shares],
            "share_easy_ci_high": [high for _, high in shares],
        }
    )[SURVEY_SCORE_COLUMNS]


def _counts(rows: list[tuple | None], j: int) -> np.ndarray:
    return np.array([0 if r is None or r[j] is None else int(r[j]) for r in rows], dtype="int64")


def _sums(rows: list[tuple | None], j: int) -> list[float]:
    return [0.0 if r is None or r[j] is None else float(r[j]) for r in rows]
