"""The retention and lifetime-value models reproduce the papers on the papers' data.

Tolerances are stated per test; the measured differences (this implementation, scipy
1.17) are in the comments. The data and their sources: tests/forecasting/data/README.md.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import special

from forecasting import customer_models as cm
from forecasting.customer_models import (
    BgNbdFit,
    GammaGammaFit,
    customer_lifetime_value,
    fit_bg_nbd_summary,
    fit_gamma_gamma_summary,
    fit_sbg,
    fit_sbg_durations,
    gamma_gamma_log_likelihood,
    kaplan_meier,
    sbg_holdout,
)

DATA = Path(__file__).resolve().parent / "data"

# Fader & Hardie (2007), fitted to years 0–7. The text lists the pairs the other
# way round; the survivors decide: α ÷ (α + β) is the mean first-year churn, 0.373 for
# (0.704, 1.182) — the regular cohort lost 36.9 % in year 1 — and 0.149 for (0.668, 3.806),
# the high end's 13.1 %.
PUBLISHED_SBG = {"regular": (0.704, 1.182), "high_end": (0.668, 3.806)}
# Fader, Hardie & Lee (2005), CDNOW, 39-week calibration; log-likelihood −9,582.4.
PUBLISHED_BG_NBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
# Fader & Hardie (2013) note, the 946 CDNOW customers with a repeat purchase.
PUBLISHED_GAMMA_GAMMA = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cohorts() -> pd.DataFrame:
    return pd.read_csv(DATA / "sbg_fader_hardie_2007.csv")


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_spend() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def bg_nbd(cdnow: pd.DataFrame) -> BgNbdFit:
    return fit_bg_nbd_summary(cdnow["frequency"], cdnow["recency"], cdnow["T"])


# ---------------------------------------------------------------- sBG


@pytest.mark.parametrize("cohort", ["regular", "high_end"])
def test_sbg_reproduces_the_published_estimates(cohorts, cohort):
    """Tolerance ±0.001 on α and β (measured: within 0.0005)."""
    fit = fit_sbg(cohorts[cohort][:8])
    alpha, beta = PUBLISHED_SBG[cohort]
    assert fit.alpha == pytest.approx(alpha, abs=1e-3)
    assert fit.beta == pytest.approx(beta, abs=1e-3)
    assert fit.customers == 1000 and fit.periods_observed == 7
    assert fit.converged and not fit.low_sample
    table = fit.intervals.set_index("parameter")
    for name, value in (("alpha", alpha), ("beta", beta)):
        assert table.at[name, "low95"] < value < table.at[name, "high95"]
        assert table.at[name, "low95"] > 0


@pytest.mark.parametrize(("cohort", "tolerance"), [("regular", 0.025), ("high_end", 0.05)])
def test_sbg_projects_years_8_to_12_like_the_paper(cohorts, cohort, tolerance):
    """Fitted on years 0–7, the projection of years 8–12 against the published survivors:
    within 2.5 % (regular; measured −1.3 … −1.7 %) and 5 % (high end; −1.6 … −4.1 %)."""
    table = sbg_holdout(cohorts[cohort], fit_periods=7)
    held = table[table["holdout"]]
    assert list(held["period"]) == [8, 9, 10, 11, 12]
    assert held["relative_error"].abs().max() < tolerance
    assert (held["relative_error"] < 0).all()  # the sBG under-projects both cohorts slightly


@pytest.mark.parametrize(("cohort", "tolerance"), [("regular", 0.05), ("high_end", 0.10)])
def test_sbg_fitted_on_four_years_projects_years_5_to_7(cohorts, cohort, tolerance):
    """Fitted on years 0–4 only: years 5–7 within 5 % (regular; measured −1.6, −3.2, −4.7 %)
    and 10 % (high end; −3.0, −6.0, −9.5 %): the error grows with the distance projected."""
    table = sbg_holdout(cohorts[cohort][:8], fit_periods=4)
    held = table[table["holdout"]]
    assert list(held["period"]) == [5, 6, 7]
    assert held["relative_error"].abs().max() < tolerance
    assert held["relative_error"].abs().is_monotonic_increasing


def test_sbg_survival_retention_and_lifetimes_agree(cohorts):
    fit = fit_sbg(cohorts["regular"][:8])
    t = np.arange(1, 30)
    survival = fit.survival(np.arange(0, 30))
    assert survival[0] == 1.0
    np.testing.assert_allclose(fit.retention_rate(t), survival[1:] / survival[:-1], rtol=1e-12)
    assert np.all(np.diff(fit.retention_rate(t)) > 0)  # retention rises with tenure
    # DERL against a brute-force sum: Σ_{k≥1} S(n+k)/S(n)/(1+d)^(k-1)
    for renewals in (0, 1, 5):
        k = np.arange(1, 5_000)
        brute = np.sum(fit.survival(renewals + k) / fit.survival(renewals) / 1.1 ** (k - 1))
        assert fit.derl(renewals, 0.1) == pytest.approx(brute, rel=1e-9)
    assert fit.derl(5, 0.1) > fit.derl(0, 0.1)  # survivors are the loyal ones
    # α < 1: the undiscounted expected lifetime is infinite; over 12 years it is Σ S(t)
    assert fit.alpha < 1 and math.isinf(fit.expected_lifetime())
    assert fit.expected_lifetime(12) == pytest.approx(survival[:12].sum())


def test_sbg_expected_lifetime_is_finite_for_alpha_above_one():
    survivors = [1000, 800, 650, 540, 450, 380, 320]
    fit = fit_sbg(survivors)
    assert fit.alpha > 1
    expected = (fit.alpha + fit.beta - 1) / (fit.alpha - 1)
    assert fit.expected_lifetime() == pytest.approx(expected)
    assert fit.expected_lifetime() == pytest.approx(fit.survival(np.arange(200_000)).sum(), rel=1e-3)
    assert fit.derl(0, 0.0) == pytest.approx(expected - 1)  # every period after the first


def test_sbg_from_individual_tenures_equals_the_cohort_fit(cohorts):
    survivors = cohorts["high_end"][:8].to_numpy()
    tenure, churned = [], []
    for t in range(1, 8):
        lost = survivors[t - 1] - survivors[t]
        tenure += [t] * lost
        churned += [True] * lost
    tenure += [7] * survivors[7]
    churned += [False] * survivors[7]
    a, b = fit_sbg(survivors), fit_sbg_durations(tenure, churned)
    assert (a.alpha, a.beta) == pytest.approx((b.alpha, b.beta), rel=1e-5)
    km = kaplan_meier(tenure, churned)
    np.testing.assert_allclose(km * 1000, survivors)


def test_sbg_rejects_rising_survivors_and_a_cohort_without_churn():
    with pytest.raises(ValueError, match="must not increase"):
        fit_sbg([100, 90, 95])
    with pytest.raises(ValueError, match="churned"):
        fit_sbg([100, 100, 100])
    with pytest.raises(ValueError, match="at least one later period"):
        fit_sbg([100])
    assert fit_sbg([20, 15, 12, 10]).low_sample  # fewer than 30 customers


# ---------------------------------------------------------------- BG/NBD


def test_bg_nbd_reproduces_the_published_estimates(bg_nbd):
    """Tolerance ±0.001 per parameter (measured: within 0.0005); log-likelihood −9,582.4."""
    assert bg_nbd.customers == 2357
    for name, value in PUBLISHED_BG_NBD.items():
        assert bg_nbd.params[name] == pytest.approx(value, abs=1e-3), name
    assert bg_nbd.log_likelihood == pytest.approx(-9582.4, abs=0.05)
    assert not bg_nbd.at_bound
    table = bg_nbd.intervals.set_index("parameter")
    for name, value in PUBLISHED_BG_NBD.items():
        assert table.at[name, "low95"] < value < table.at[name, "high95"]


def test_bg_nbd_expectations_match_the_papers_spreadsheet(bg_nbd):
    """Hardie's BG/NBD spreadsheet (as quoted by lifetimes' tests): E[Y(39) | x = 2,
    t_x = 30.43, T = 38.86] = 1.226 and E[X(t)] for a new customer; tolerance ±0.001
    (measured ≤ 0.0004)."""
    assert bg_nbd.expected_transactions(39, 2, 30.43, 38.86) == pytest.approx(1.226, abs=1e-3)
    times = np.array([0.1429, 1.0, 3.00, 31.8571, 32.00, 78.00])
    expected = np.array([0.0078, 0.0532, 0.1506, 1.0405, 1.0437, 1.8576])
    np.testing.assert_allclose(bg_nbd.expected_transactions(times), expected, atol=1e-3)


def _closed_form(fit: BgNbdFit, t, x, t_x, T):
    """Eq. 10 of Fader, Hardie & Lee (2005) with scipy's ₂F₁, the reference."""
    r, alpha, a, b = fit.r, fit.alpha, fit.a, fit.b
    z = t / (alpha + T + t)
    hyp = special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    first = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    second = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return first / second


def test_bg_nbd_quadrature_equals_the_closed_form(bg_nbd):
    x = np.array([0, 1, 2, 5, 10, 20, 0, 3])
    t_x = np.array([0, 5.0, 30.43, 20.0, 35.0, 38.0, 0, 1.0])
    T = np.array([38.86, 38.86, 38.86, 30.0, 38.0, 38.5, 10.0, 38.0])
    for t in (1.0, 39.0, 104.0):
        np.testing.assert_allclose(
            bg_nbd.expected_transactions(t, x, t_x, T), _closed_form(bg_nbd, t, x, t_x, T), rtol=1e-7
        )


def test_bg_nbd_alive_probability(bg_nbd):
    alive = bg_nbd.alive_probability([0, 2, 2, 2], [0, 30.43, 30.43, 30.43], [38.86, 38.86, 60, 120])
    assert alive[0] == 1.0  # no repeat transaction: the model has not let him leave
    assert 1 > alive[1] > alive[2] > alive[3] > 0  # the longer the silence, the likelier gone
    # many transactions, far in the past: no overflow
    assert 0 <= bg_nbd.alive_probability(400, 10.0, 300.0)[()] < 1e-6
    assert np.isfinite(bg_nbd.expected_transactions(52, 400, 290.0, 300.0))


def test_bg_nbd_input_checks():
    with pytest.raises(ValueError, match="recency"):
        fit_bg_nbd_summary([1], [5.0], [4.0])
    with pytest.raises(ValueError, match="repeat"):
        fit_bg_nbd_summary([0, 0], [0.0, 0.0], [4.0, 5.0])


# ---------------------------------------------------------------- Gamma-Gamma and CLV


def test_gamma_gamma_reproduces_the_published_estimates(cdnow_spend):
    """Tolerance ±0.01 per parameter (measured: p 0.0012, q 0.0046, v 0.0077)."""
    fit = fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"])
    assert fit.customers == 946
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert fit.params[name] == pytest.approx(value, abs=0.01), name
    assert not fit.low_sample and not fit.at_bound
    table = fit.intervals.set_index("parameter")
    for name, value in PUBLISHED_GAMMA_GAMMA.items():
        assert table.at[name, "low95"] < value < table.at[name, "high95"]


def test_gamma_gamma_expected_spend_matches_the_notes_spreadsheet(cdnow_spend):
    """Hardie's note 025 spreadsheet, first ten customers at the published parameters;
    tolerance ±0.1 $ (the sheet's unrounded parameters; measured ≤ 0.05)."""
    fit = GammaGammaFit(**PUBLISHED_GAMMA_GAMMA, log_likelihood=0.0, intervals=pd.DataFrame(), customers=946)
    head = cdnow_spend.head(10)
    expected = [24.65, 18.91, 35.17, 35.17, 35.17, 71.46, 18.91, 35.17, 27.28, 35.17]
    np.testing.assert_allclose(fit.expected_amount(head["x"], head["zbar"]), expected, atol=0.1)
    assert fit.population_mean == pytest.approx(6.25 * 15.44 / 2.74)


def test_customer_lifetime_value(bg_nbd, cdnow_spend):
    spend = fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"])
    rows = cdnow_spend.head(6)
    args = (rows["x"], rows["t_x"], rows["T"], rows["zbar"])
    clv = customer_lifetime_value(bg_nbd, spend, *args, horizon=52, discount_rate=0.1)
    # by hand: Σ_k ΔE[Y(k)] · E[M] / 1.1^(k·7/365.25)
    k = np.arange(0, 53)
    cumulative = np.stack([bg_nbd.expected_transactions(i, *args[:3]) for i in k])
    manual = spend.expected_amount(rows["x"], rows["zbar"]) * (
        np.diff(cumulative, axis=0) / 1.1 ** (k[1:, None] * 7 / 365.25)
    ).sum(axis=0)
    np.testing.assert_allclose(clv, manual, rtol=1e-12)
    assert np.all(clv > 0)
    undiscounted = customer_lifetime_value(bg_nbd, spend, *args, horizon=52, discount_rate=0.0)
    assert np.all(undiscounted > clv)
    np.testing.assert_allclose(
        undiscounted, spend.expected_amount(rows["x"], rows["zbar"]) * cumulative[-1], rtol=1e-12
    )
    assert np.all(customer_lifetime_value(bg_nbd, spend, *args, horizon=0) == 0)


def test_discounted_transactions_of_a_history_do_not_depend_on_the_others(bg_nbd, cdnow):
    """The CLV's discounted transactions of each distinct (x, T) computed alone equal its
    value computed with all the others, bit for bit (``ChurnRisk`` computes the CLV of the
    rows a page takes alone): Σ_k over the horizons is added k = 1, 2, … in turn whatever
    the number of histories (numpy's ``sum(axis=0)`` of one column adds pairwise)."""
    (x, T), _ = cm._distinct(cdnow["frequency"].to_numpy(float), cdnow["T"].to_numpy(float))
    x, T = x[::7][:60], T[::7][:60]
    together = cm._discounted_transactions(bg_nbd, x, T, 52, 0.1)
    alone = np.concatenate(
        [cm._discounted_transactions(bg_nbd, x[i : i + 1], T[i : i + 1], 52, 0.1) for i in range(len(x))]
    )
    np.testing.assert_array_equal(alone, together)
    # and the sum is Σ_k factor_k · (E[Y(k)] − E[Y(k−1)]), by hand for one history
    k = np.arange(53)
    cumulative = np.array(
        [
            bg_nbd.expected_transactions(i, x[5], 0.0, T[5]) / bg_nbd.alive_probability(x[5], 0.0, T[5])
            for i in k
        ]
    ).ravel()
    manual = float(np.sum(np.diff(cumulative) / 1.1 ** (k[1:] * 7 / 365.25)))
    assert together[5] == pytest.approx(manual, rel=1e-12)
    assert cm._discounted_transactions(bg_nbd, x, T, 0, 0.1).tolist() == [0.0] * len(x)


# ---------------------------------------------------------------- aggregated input, fits kept (issue 15)


def test_sorted_rows_are_what_np_unique_gives():
    rng = np.random.default_rng(7)
    columns = [
        rng.integers(0, 4, 500).astype(float),
        rng.integers(0, 3, 500) / 7,
        rng.integers(0, 5, 500) / 3,
    ]
    (a, b, c), counts, inverse = cm._sorted_rows(*columns)
    unique, inverse_np, counts_np = np.unique(
        np.column_stack(columns), axis=0, return_inverse=True, return_counts=True
    )
    np.testing.assert_array_equal(np.column_stack([a, b, c]), unique)
    np.testing.assert_array_equal(counts, counts_np)
    np.testing.assert_array_equal(inverse, inverse_np.ravel())
    empty, no_counts, no_inverse = cm._sorted_rows(np.zeros(0), np.zeros(0))
    assert len(empty[0]) == len(no_counts) == len(no_inverse) == 0


def test_sorted_rows_by_hand_on_each_sorting_path():
    """The rows sorted by codes and radix sorts (whole numbers, few distinct floats), by
    np.lexsort (NaN, −0.0, a first column with > 65,536 distinct values): the same rows,
    counts and inverse. By hand: (x, m) = (2, 5.5), (0, 3), (2, 1.25), (1, 3), (0, 3) are
    the distinct rows (0, 3) ×2, (1, 3), (2, 1.25), (2, 5.5); the input rows are rows 3, 0,
    2, 1, 0 of them."""
    x, m = np.array([2.0, 0.0, 2.0, 1.0, 0.0]), np.array([5.5, 3.0, 1.25, 3.0, 3.0])
    for change in (lambda v: v, lambda v: v / 7, lambda v: v - 0.5):  # whole, fractional, negative
        (a, b), counts, inverse = cm._sorted_rows(change(x), m)
        np.testing.assert_array_equal(a, change(np.array([0.0, 1.0, 2.0, 2.0])))
        assert b.tolist() == [3.0, 3.0, 1.25, 5.5]
        assert counts.tolist() == [2, 1, 1, 1] and inverse.tolist() == [3, 0, 2, 1, 0]
    # the lexsort's paths: NaN (each its own row, last), −0.0 (equal to 0.0), many values
    (a, b), counts, inverse = cm._sorted_rows(
        np.array([1.0, 0.0, 1.0, -0.0]), np.array([np.nan, 2.0, 1.0, 2.0])
    )
    assert a.tolist() == [0.0, 1.0, 1.0] and b[:2].tolist() == [2.0, 1.0] and np.isnan(b[2])
    assert counts.tolist() == [2, 1, 1] and inverse.tolist() == [2, 0, 1, 0]
    rng = np.random.default_rng(11)
    wide = [rng.integers(0, 100_000, 200_000) / 3, rng.integers(0, 2, 200_000).astype(float)]
    (a, b), counts, inverse = cm._sorted_rows(*wide)
    unique, inverse_np, counts_np = np.unique(
        np.column_stack(wide), axis=0, return_inverse=True, return_counts=True
    )
    np.testing.assert_array_equal(np.column_stack([a, b]), unique)
    np.testing.assert_array_equal(counts, counts_np)
    np.testing.assert_array_equal(inverse, inverse_np.ravel())


def test_descending_order_by_hand_and_as_the_lexsort():
    """Highest first, NaN last, ties by ``ties`` then position; −0.0 and 0.0 tie. By hand:
    0.9 at 2 and 6, 0.5 at 0 and 3, −0.0 and 0.0 at 4 and 5, NaN at 1."""
    values = np.array([0.5, np.nan, 0.9, 0.5, -0.0, 0.0, 0.9])
    assert cm._descending_order(values).tolist() == [2, 6, 0, 3, 4, 5, 1]
    ties = np.array([5, 0, 4, 1, 0, 0, 3])
    assert cm._descending_order(values, ties=ties).tolist() == [6, 2, 3, 0, 4, 5, 1]
    rng = np.random.default_rng(5)
    for distinct in (50, 100_000):  # a radix sort of uint16 codes; a merge sort of int64 codes
        values = rng.integers(0, distinct, 300_000) / distinct
        values[rng.random(300_000) < 0.01] = np.nan
        ties = rng.permutation(300_000)
        lexsort = np.lexsort((np.arange(300_000), -np.nan_to_num(values), np.isnan(values)))
        np.testing.assert_array_equal(cm._descending_order(values), lexsort)
        lexsort = np.lexsort((ties, -np.nan_to_num(values), np.isnan(values)))
        np.testing.assert_array_equal(cm._descending_order(values, ties=ties), lexsort)


def test_gamma_gamma_row_sums_are_kept_per_v(cdnow_spend):
    """The row sums depend on v alone: a v seen before (with other p and q) is not summed
    again (the rows are taken away: a new sum would fail) and gives the same numbers bit for
    bit as a fresh computation; only the last ``KEPT_POINTS`` v are kept."""
    spend = cdnow_spend[cdnow_spend["x"] > 0]
    (x, m), weights = cm._weighted_rows(spend["x"], spend["zbar"])
    terms = cm._GammaGammaTerms(x, m, weights)
    first = (terms.log_likelihood(np.array([6.0, 3.0, 15.0])), terms.gradient(np.array([6.0, 3.0, 15.0])))
    terms.log_likelihood(np.array([1.0, 1.0, 2.0]))
    z, terms.z = terms.z, None
    fresh = cm._GammaGammaTerms(x, m, weights)
    for params in ([6.0, 3.0, 15.0], [0.5, 9.0, 15.0], [2.0, 2.0, 2.0]):
        assert terms.log_likelihood(np.array(params)) == fresh.log_likelihood(np.array(params))
        np.testing.assert_array_equal(terms.gradient(np.array(params)), fresh.gradient(np.array(params)))
    assert first[0] == fresh.log_likelihood(np.array([6.0, 3.0, 15.0]))
    terms.z = z
    for v in range(1, 2 * cm._GammaGammaTerms.KEPT_POINTS):
        terms.log_likelihood(np.array([1.0, 1.0, float(v)]))
    assert len(terms._sums) == cm._GammaGammaTerms.KEPT_POINTS


def test_pairwise_blocks_by_hand_and_as_numpy_sums():
    """numpy's pairwise summation halves more than 128 values at n ÷ 2 rounded down to a
    multiple of 8: 1,000 values in blocks of at most 300 are [0, 248), [248, 496), [496,
    744), [744, 1000) (1,000 → 496 + 504; 496 → 248 + 248; 504 → 248 + 256). The blocks'
    ``np.sum`` added by ``_pairwise_total`` are ``np.sum`` of the whole array bit for bit
    (a plain running total of the blocks is not, below); fewer than 128 per block refused."""
    assert cm._pairwise_blocks(1000, 300) == [(0, 248), (248, 496), (496, 744), (744, 1000)]
    assert cm._pairwise_blocks(100, 300) == [(0, 100)]
    assert cm._pairwise_blocks(0, 128) == [(0, 0)]
    with pytest.raises(ValueError):
        cm._pairwise_blocks(1000, 64)
    rng = np.random.default_rng(7)
    differs = 0
    for n in (1, 127, 128, 129, 1000, 4097, 65_537, 300_001):
        values = rng.standard_normal((2, n)) * 10.0 ** rng.integers(-3, 6, (2, n))
        for most in (128, 200, 1 << 12, 1 << 15):
            blocks = cm._pairwise_blocks(n, most)
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(blocks))
            parts = np.array([[np.sum(row[start:stop]) for row in values] for start, stop in blocks])
            total = cm._pairwise_total(parts, n, most)
            assert total.tolist() == [np.sum(row) for row in values], (n, most)
            running = 0.0
            for part in parts[:, 0]:
                running += part
            differs += running != np.sum(values[0])
    assert differs > 0  # the order of the additions matters: the pairwise one is numpy's


def test_gamma_gamma_row_sums_by_block_are_the_whole_rows_sums(monkeypatch: pytest.MonkeyPatch):
    """``_GammaGammaTerms._row_sums`` block by block (blocks of 128, 1,000 and 2^15 rows)
    gives the four sums over the whole rows as plain numpy arrays give them, bit for bit,
    and the same log-likelihood and gradient."""
    rng = np.random.default_rng(3)
    n = 70_001
    x = np.sort(rng.integers(1, 40, n)).astype(float)
    m = rng.gamma(2.0, 50.0, n)
    weights = np.where(rng.random(n) < 0.05, 2.0, 1.0)
    for v in (1e-3, 3.7, 250.0, 1e5):
        total = v + m * x
        logs, inverse = np.log(total), 1.0 / total
        plain = (
            float(np.sum(weights * x * logs)),
            float(np.sum(weights * logs)),
            float(np.sum(weights * x * inverse)),
            float(np.sum(weights * inverse)),
        )
        for block in (128, 1000, 1 << 15):
            monkeypatch.setattr(cm._GammaGammaTerms, "BLOCK_ROWS", block)
            assert cm._GammaGammaTerms(x, m, weights)._row_sums(v) == plain, (v, block)
    params = np.array([2.0, 3.0, 40.0])
    monkeypatch.setattr(cm._GammaGammaTerms, "BLOCK_ROWS", 128)
    small = cm._GammaGammaTerms(x, m, weights)
    monkeypatch.setattr(cm._GammaGammaTerms, "BLOCK_ROWS", 1 << 20)  # one block: the whole rows
    whole = cm._GammaGammaTerms(x, m, weights)
    assert small.log_likelihood(params) == whole.log_likelihood(params)
    np.testing.assert_array_equal(small.gradient(params), whole.gradient(params))


def test_gamma_gamma_terms_are_the_plain_likelihood(cdnow_spend):
    """The rearranged sums (one log and one reciprocal per row) equal the plain functions'
    to rounding (measured ≤ 1e-14 relative)."""
    spend = cdnow_spend[cdnow_spend["x"] > 0]
    (x, m), weights = cm._weighted_rows(spend["x"], spend["zbar"])
    terms = cm._GammaGammaTerms(x, m, weights)
    for params in [(6.25, 3.74, 15.44), (1.0, 1.0, 1.0), (0.3, 12.0, 400.0)]:
        plain = float(np.sum(weights * gamma_gamma_log_likelihood(*params, x, m)))
        assert terms.log_likelihood(np.array(params)) == pytest.approx(plain, rel=1e-12)
        np.testing.assert_allclose(
            terms.gradient(np.array(params)), cm.gamma_gamma_gradient(*params, x, m, weights), rtol=1e-10
        )


def test_gamma_gamma_fit_does_not_move_with_the_last_bits_of_its_input(cdnow_spend):
    """The polished maximum (``maximise(polish=True)``) is where the gradient vanishes:
    mean spends changed in their last bit (as a parallel sum in the database changes
    them) give the same estimates to 1e-9."""
    cm.FITS.cache_clear()
    fit = fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"])
    nudged = np.nextafter(cdnow_spend["zbar"].to_numpy(dtype=float), np.inf)
    again = fit_gamma_gamma_summary(cdnow_spend["x"], nudged)
    for name, value in fit.params.items():
        assert again.params[name] == pytest.approx(value, rel=1e-9), name
    spend = cdnow_spend[cdnow_spend["x"] > 0]
    (x, m), weights = cm._weighted_rows(spend["x"], spend["zbar"])
    terms = cm._GammaGammaTerms(x, m, weights)
    gradient = terms.gradient(np.array([fit.p, fit.q, fit.v])) * np.array([fit.p, fit.q, fit.v])
    assert np.max(np.abs(gradient)) < 1e-6


def test_fits_on_grouped_rows_equal_the_fits_on_one_row_per_customer(cdnow, cdnow_spend):
    """Rows standing for several customers (``weights``, as grouped in SQL) fit the same
    model as the customers one by one."""
    cm.FITS.cache_clear()
    plain = fit_bg_nbd_summary(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    grouped = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    weighted = fit_bg_nbd_summary(
        grouped["frequency"], grouped["recency"], grouped["T"], weights=grouped["n"]
    )
    assert weighted.customers == plain.customers == len(cdnow)
    for name, value in plain.params.items():
        assert weighted.params[name] == pytest.approx(value, rel=1e-6), name
    assert weighted.log_likelihood == pytest.approx(plain.log_likelihood, rel=1e-12)
    spend = fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"])
    doubled = fit_gamma_gamma_summary(
        cdnow_spend["x"], cdnow_spend["zbar"], weights=np.full(len(cdnow_spend), 2)
    )
    assert doubled.customers == 2 * spend.customers
    for name, value in spend.params.items():
        assert doubled.params[name] == pytest.approx(value, rel=1e-5), name


def test_a_fit_of_the_same_input_is_kept_and_returned_again(cdnow):
    cm.FITS.cache_clear()
    first = fit_bg_nbd_summary(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert (cm.FITS.hits, cm.FITS.misses, len(cm.FITS)) == (0, 1, 1)
    # the same customers in another order: the same aggregated input, no new fit
    shuffled = cdnow.sample(frac=1.0, random_state=3)
    again = fit_bg_nbd_summary(shuffled["frequency"], shuffled["recency"], shuffled["T"])
    assert cm.FITS.hits == 1 and again.params == first.params and again.customers == first.customers
    # another input is another fit
    fit_bg_nbd_summary(cdnow["frequency"].head(1000), cdnow["recency"].head(1000), cdnow["T"].head(1000))
    assert cm.FITS.misses == 2
    small = cm.FitCache(maxsize=1)
    small.get_or_fit(("a",), lambda: "one")  # type: ignore[arg-type, return-value]
    small.get_or_fit(("b",), lambda: "two")  # type: ignore[arg-type, return-value]
    assert len(small) == 1 and small.get_or_fit(("b",), lambda: "three") == "two"  # type: ignore[arg-type, return-value]
    cm.FITS.cache_clear()
    assert len(cm.FITS) == 0


def test_a_gamma_gamma_fit_is_found_again_for_amounts_that_differ_in_the_last_bits(cdnow_spend):
    """A database's sums of the same payments may differ in the last bits from run to run
    (DuckDB adds in thread order): the Gamma-Gamma's amounts count to 7 digits in the key, so
    the same payments find the same fit; amounts that differ in the 5th digit are another."""
    cm.FITS.cache_clear()
    first = fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"])
    last_bits = np.nextafter(cdnow_spend["zbar"].to_numpy(dtype=float), np.inf)
    assert not np.array_equal(last_bits, cdnow_spend["zbar"].to_numpy(dtype=float))
    again = fit_gamma_gamma_summary(cdnow_spend["x"], last_bits)
    assert (cm.FITS.hits, cm.FITS.misses) == (1, 1) and again.params == first.params
    fit_gamma_gamma_summary(cdnow_spend["x"], cdnow_spend["zbar"] * 1.0001)
    assert cm.FITS.misses == 2


def test_lifetime_value_steps_equal_one_expectation_per_step(bg_nbd, cdnow_spend):
    rows = cdnow_spend.head(50)
    x, T = rows["x"].to_numpy(float), rows["T"].to_numpy(float)
    steps = np.arange(5, dtype=float)
    together = cm._future_transactions_steps(bg_nbd.r, bg_nbd.alpha, bg_nbd.a, bg_nbd.b, list(steps), x, T)
    for i, k in enumerate(steps):
        alone = cm._future_transactions(bg_nbd.r, bg_nbd.alpha, bg_nbd.a, bg_nbd.b, np.full(len(x), k), x, T)
        np.testing.assert_array_equal(together[i], alone)


def test_future_transactions_are_the_plain_terms_bit_for_bit(bg_nbd, cdnow_spend):
    """Each step's sum over the nodes of −expm1(−(r + x) · log1p(p · t ÷ (α + T))) ÷ p ·
    weight, computed here one operation at a time as written, equals the reused buffer's
    (the negation folded into the weights) exactly."""
    rows = cdnow_spend.head(40)
    x, T = rows["x"].to_numpy(float), rows["T"].to_numpy(float)
    r, alpha, a, b = bg_nbd.r, bg_nbd.alpha, bg_nbd.a, bg_nbd.b
    steps = [0.0, 1.0, 26.0, 52.0]
    got = cm._future_transactions_steps(r, alpha, a, b, steps, x, T)
    for i, t in enumerate(steps):
        for j in range(len(x)):
            p, weights = cm._beta_nodes(a, b + x[j])
            terms = -np.expm1(-(r + x[j]) * np.log1p(p[None, :] * (t / (alpha + T[j : j + 1]))[:, None]))
            assert got[i, j] == ((terms / p[None, :]) * weights[None, :]).sum(axis=1)[0]


def test_accounts_are_ranked_by_inactive_probability_then_account_id():
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "A5", "A6"],
            "inactive_probability": [0.2, np.nan, 0.9, 0.2, 0.0, 0.9],
        }
    )
    expected = ["A3", "A6", "A1", "A4", "A5", "A2"]
    order, ascending = cm._ranked(accounts)
    assert accounts.iloc[order]["account_id"].tolist() == expected
    # the ids ascend: each ranked row's position is the rank of its account_id
    assert order.tolist() == [2, 5, 0, 3, 4, 1] and ascending
    shuffled = accounts.iloc[[5, 2, 0, 4, 1, 3]]  # not ordered by account_id: both columns sorted
    order, ascending = cm._ranked(shuffled)
    assert shuffled.iloc[order]["account_id"].tolist() == expected and not ascending
    assert len(cm._ranked(accounts.head(0))[0]) == 0


def test_churn_risk_ranking_is_the_pandas_sort():
    """``ChurnRisk.ranking`` (a numeric lexsort with the account ids' ranks) orders like the
    page's ``sort_values([by, "account_id"], ascending=[False, True], na_position="last")``,
    with the recent-payers filter (T − recency ≤ weeks)."""
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "A5", "A6", "A7"],
            "inactive_probability": [0.2, np.nan, 0.9, 0.2, 0.0, 0.9, 0.0],
            "clv_revenue": [5.0, np.nan, 1.0, 7.5, 7.5, np.nan, 0.0],
            "T": [10.0, 20.0, 30.0, 12.0, 9.0, 40.0, 8.5],
            "recency": [5.0, 0.0, 29.0, 0.0, 9.0, 1.0, 0.0],
        }
    )
    order, ascending = cm._ranked(accounts)
    risk = cm.ChurnRisk(accounts, None, None, pd.DataFrame(), {}, (), "week", 52, 0.1, order, ascending)
    without = cm.ChurnRisk(accounts, None, None, pd.DataFrame(), {}, (), "week", 52, 0.1)
    shuffled = accounts.iloc[[6, 2, 0, 4, 1, 5, 3]].reset_index(drop=True)
    unordered = cm.ChurnRisk(
        shuffled, None, None, pd.DataFrame(), {}, (), "week", 52, 0.1, *cm._ranked(shuffled)
    )
    for by in ("inactive_probability", "clv_revenue"):
        for weeks in (None, 8):
            rows = accounts if weeks is None else accounts[accounts["T"] - accounts["recency"] <= weeks]
            expected = rows.sort_values([by, "account_id"], ascending=[False, True], na_position="last")
            for r in (risk, without, unordered):
                got = r.ranking(by, within_units=weeks)
                pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
                assert r.count(weeks) == len(expected)


def test_ascending_ids_by_hand():
    """``_ascending``: ids in order (ties allowed) on pandas' Arrow-backed ``str``, on
    object arrays and on ``string[pyarrow]`` (whose comparisons with a missing value are
    missing, skipped by ``all()``), as ``is_monotonic_increasing``; a missing id or a step
    down is not."""
    cases = {
        ("A1", "A2", "A2", "B"): True,
        ("A1", "A10", "A2"): True,  # as strings: "A10" < "A2"
        ("A2", "A10"): False,
        ("A1", None, "A2"): False,
        (None,): False,
        ("A1",): True,
        (): True,
    }
    for ids, expected in cases.items():
        for dtype in ("str", object, "string[pyarrow]"):
            series = pd.Series(list(ids), dtype=dtype)
            assert cm._ascending(series) is expected, (ids, dtype)
            if None not in ids:
                assert series.is_monotonic_increasing is expected


def test_ranking_by_inactive_probability_is_the_ranked_accounts(monkeypatch: pytest.MonkeyPatch):
    """``accounts`` are ranked by inactive_probability: ``ranking()`` over every account
    returns them as they are (no sort: ``_descending_order`` is not called), a copy whose
    new columns leave ``accounts`` alone; other rankings still sort."""
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4"],
            "inactive_probability": [0.2, np.nan, 0.9, 0.2],
            "clv_revenue": [5.0, 1.0, 1.0, 7.5],
            "T": [10.0, 20.0, 30.0, 12.0],
            "recency": [5.0, 0.0, 29.0, 0.0],
        }
    )
    risk = cm.ChurnRisk(accounts, None, None, pd.DataFrame(), {}, (), "week", 52, 0.1, *cm._ranked(accounts))
    expected = accounts.sort_values(["inactive_probability", "account_id"], ascending=[False, True])
    sorts = []
    real = cm._descending_order
    monkeypatch.setattr(cm, "_descending_order", lambda *a, **k: sorts.append(1) or real(*a, **k))
    got = risk.ranking()
    assert not sorts
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True))
    got["extra"] = 1.0
    assert "extra" not in risk.accounts.columns
    assert risk.ranking("clv_revenue")["account_id"].tolist() == ["A4", "A1", "A2", "A3"] and sorts


# ---------------------------------------------------------------- likelihood terms per distinct value (issue 15)


def test_bg_nbd_terms_by_hand_and_bit_for_bit():
    """Three histories by hand (Fader, Hardie & Lee 2005, eq. 6): x = 0 (only A₃), x = 2
    and x = 1 with the same T; ``_BgNbdTerms`` gives their weighted sum and the plain
    functions' values and gradients to the last bit, on the CDNOW-like rows too."""
    r, alpha, a, b = 0.25, 4.0, 0.8, 2.5
    x = np.array([0.0, 1.0, 2.0])
    t_x = np.array([0.0, 3.0, 5.0])
    T = np.array([6.0, 8.0, 8.0])
    weights = np.array([3.0, 1.0, 2.0])

    def by_hand(x: float, t_x: float, T: float) -> float:
        a1 = math.lgamma(r + x) - math.lgamma(r) + r * math.log(alpha)
        a2 = math.lgamma(a + b) + math.lgamma(b + x) - math.lgamma(b) - math.lgamma(a + b + x)
        a3 = (alpha + T) ** -(r + x)
        a4 = a / (b + x - 1) * (alpha + t_x) ** -(r + x) if x > 0 else 0.0
        return a1 + a2 + math.log(a3 + a4)

    expected = sum(w * by_hand(*row) for w, *row in zip(weights, x, t_x, T, strict=True))
    terms = cm._BgNbdTerms(x, t_x, T, weights)
    params = np.array([r, alpha, a, b])
    assert terms.log_likelihood(params) == pytest.approx(expected, rel=1e-12)
    rng = np.random.default_rng(11)
    xs = rng.integers(0, 8, 400).astype(float)
    ages = rng.integers(1, 60, 400).astype(float)
    recencies = np.where(xs > 0, np.floor(ages * rng.random(400)), 0.0)
    (ux, ut, uT), counts = cm._weighted_rows(xs, recencies, ages)
    terms = cm._BgNbdTerms(ux, ut, uT, counts)
    for point in ([r, alpha, a, b], [1.0, 40.0, 1.0, 1.0], [3e4, 1.6e5, 0.1, 3.6]):
        p = np.array(point)
        plain = float(np.sum(counts * cm.bg_nbd_log_likelihood(*p, ux, ut, uT)))
        assert terms.log_likelihood(p) == plain
        np.testing.assert_array_equal(terms.gradient(p), cm.bg_nbd_gradient(*p, ux, ut, uT, counts))


def test_sbg_terms_by_hand_and_bit_for_bit():
    """A cohort of 10: 3 leave after the first period, 2 after the second, 5 are still
    customers at t = 2. By hand: 3 ln P(T=1) + 2 ln P(T=2) + 5 ln S(2), with P(T=1) = α ÷
    (α + β), P(T=2) = β α ÷ ((α + β)(α + β + 1)), S(2) = β (β + 1) ÷ ((α + β)(α + β + 1)).
    ``_SbgTerms`` equals the plain functions to the last bit."""
    alpha, beta = 0.7, 2.3
    churned, censored = cm.sbg_counts([10, 7, 5])
    s = alpha + beta
    expected = (
        3 * math.log(alpha / s)
        + 2 * math.log(beta * alpha / (s * (s + 1)))
        + 5 * math.log(beta * (beta + 1) / (s * (s + 1)))
    )
    terms = cm._SbgTerms(churned, censored)
    assert terms.log_likelihood(np.array([alpha, beta])) == pytest.approx(expected, rel=1e-12)
    pooled = cm._pool(
        [cm.sbg_counts([100, 60, 41, 30, 25]), cm.sbg_counts([80, 50, 39]), (churned, censored)]
    )
    for counts in ((churned, censored), pooled):
        terms = cm._SbgTerms(*counts)
        for point in ([alpha, beta], [1.0, 1.0], [0.05, 40.0], [300.0, 2e4]):
            p = np.array(point)
            assert terms.log_likelihood(p) == cm._sbg_log_likelihood(*point, *counts)
            np.testing.assert_array_equal(terms.gradient(p), cm._sbg_gradient(*point, *counts))


def test_ranking_takes_only_the_rows_asked_for(monkeypatch: pytest.MonkeyPatch):
    """``ranking(by, within_units, rows=n)`` is ``ranking(by, within_units).head(n)`` (the
    page's table), worked by hand on six accounts, and takes n rows of ``by_account``, not
    all of them; ``count`` is the whole ranking's length; ``accounts`` is ranked."""
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "A5", "A6"],
            "inactive_probability": [0.2, np.nan, 0.9, 0.2, 0.0, 0.9],
            "clv_revenue": [5.0, 1.0, np.nan, 7.5, 7.5, 2.0],
            "T": [10.0, 20.0, 30.0, 12.0, 9.0, 40.0],
            "recency": [5.0, 0.0, 29.0, 0.0, 9.0, 1.0],
        }
    )
    risk = cm.ChurnRisk(accounts, None, None, pd.DataFrame(), {}, (), "week", 52, 0.1, *cm._ranked(accounts))
    assert risk.accounts["account_id"].tolist() == ["A3", "A6", "A1", "A4", "A5", "A2"]
    taken: list[int] = []
    real = pd.DataFrame.take
    monkeypatch.setattr(
        pd.DataFrame, "take", lambda self, i, *a, **k: taken.append(len(i)) or real(self, i, *a, **k)
    )
    by_hand = {
        ("inactive_probability", None, 2): ["A3", "A6"],
        ("clv_revenue", None, 3): ["A4", "A5", "A1"],
        ("inactive_probability", 8, 2): ["A3", "A1"],  # T − recency ≤ 8: A1 (5), A3 (1), A5 (0)
        ("clv_revenue", 8, 5): ["A5", "A1", "A3"],
        ("clv_revenue", None, 0): [],
    }
    for (by, weeks, n), expected in by_hand.items():
        taken.clear()
        got = risk.ranking(by, within_units=weeks, rows=n)
        assert got["account_id"].tolist() == expected
        assert taken == [len(expected)]
        pd.testing.assert_frame_equal(got, risk.ranking(by, within_units=weeks).head(n))
    assert (risk.count(), risk.count(8)) == (6, 3)
