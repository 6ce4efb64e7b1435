"""Retention and lifetime-value models: who is likely to leave, how long a cohort stays,
what a customer is worth. Maximum likelihood on the published likelihoods (scipy).

* Shifted-beta-geometric (sBG; Fader & Hardie 2007, "How to project customer retention")
  for subscriptions (*contractual*: a customer's leaving is observed). Each customer has a
  churn probability θ per period, θ ~ Beta(α, β) across customers, so retention rises with
  tenure as the churn-prone leave first. ``fit_sbg(survivors)`` fits one cohort;
  ``cohort_sbg(conn, f)`` fits the signup cohorts of ``kpis.cohort_retention`` (pooled and
  per cohort) and projects their survival.
* BG/NBD (Fader, Hardie & Lee 2005, "Counting your customers the easy way") for repeat
  purchases without a contract (*non-contractual*: leaving is never observed). While
  active a customer transacts as a Poisson process with rate λ ~ Gamma(r, α); after each
  transaction he becomes inactive with probability p ~ Beta(a, b). ``fit_bg_nbd_summary``
  takes (frequency, recency, T) arrays; ``fit_bg_nbd(conn, f)`` reads them from payments.
* Gamma-Gamma (Fader & Hardie 2013 note) for the spend per transaction: a customer's
  transactions are Gamma(p, ν), ν ~ Gamma(q, γ) across customers, independent of the
  transaction process. ``fit_gamma_gamma_summary`` / ``fit_gamma_gamma(conn, f)``; with a
  BG/NBD fit, ``customer_lifetime_value`` gives each account's discounted expected revenue
  over a horizon.

Every fit carries 95 % intervals for its parameters: Wald intervals on the log scale from
the inverse of the observed information (the numerical Hessian of the log-likelihood at
the maximum, in log-parameters), so the bounds stay positive.

Time is counted in ``unit``s (day, week or month of 365.25 / 12 days) from each
account's first transaction. Sums over customers are plain numpy sums, not BLAS dot
products: on this shared 2-core machine OpenBLAS's threads made a 50k-element dot product
~25 ms under load (the whole Gamma-Gamma fit 7 s instead of under one). Plain Python (no
Streamlit).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from scipy import optimize, special

from forecasting import fit_store
from forecasting.threads import single_threaded_blas
from kpis.filters import Filters

Bind = sa.Connection | sa.Engine

#: Days per time unit of the transaction models.
UNIT_DAYS: dict[str, float] = {"day": 1.0, "week": 7.0, "month": 365.25 / 12}
#: Standard-normal quantile of a two-sided 95 % interval.
Z95 = 1.959963984540054
#: Fewer customers than this (a cohort, or repeat customers for Gamma-Gamma) and a fit
#: carries ``low_sample = True``: its parameters are too uncertain to rank or project by.
MIN_CUSTOMERS = 30
#: A cohort needs at least this many observed periods after its start to be fitted alone.
MIN_PERIODS = 3


# ---------------------------------------------------------------- maximum likelihood


#: Log-parameters are searched in [−LOG_BOUND, LOG_BOUND] (e^12 ≈ 163,000).
LOG_BOUND = 12.0


@dataclass(frozen=True)
class MaximumLikelihood:
    """The result of :func:`maximise`: estimates, log-likelihood and 95 % intervals."""

    names: tuple[str, ...]
    estimates: np.ndarray
    log_likelihood: float
    #: Covariance of the log-parameters (inverse observed information); NaN when singular.
    log_covariance: np.ndarray
    converged: bool
    #: Parameters that ended at the edge of the search range: the likelihood keeps rising
    #: towards a limiting case of the model (e.g. r, α → ∞: every customer has the same
    #: transaction rate). Their intervals are undefined (NaN).
    at_bound: tuple[str, ...] = ()

    def intervals(self) -> pd.DataFrame:
        """Columns: parameter, estimate, se_log, low95, high95 (Wald on the log scale)."""
        se = np.sqrt(np.clip(np.diag(self.log_covariance), 0.0, None))
        se = np.where([name in self.at_bound for name in self.names], np.nan, se)
        return pd.DataFrame(
            {
                "parameter": list(self.names),
                "estimate": self.estimates,
                "se_log": se,
                "low95": self.estimates * np.exp(-Z95 * se),
                "high95": self.estimates * np.exp(Z95 * se),
            }
        )


def _hessian(function: Callable[[np.ndarray], float], x: np.ndarray) -> np.ndarray:
    """Central-difference Hessian of ``function`` at ``x``."""
    n = len(x)
    steps = 1e-4 * np.maximum(1.0, np.abs(x))
    h = np.zeros((n, n))
    f0 = function(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = steps[i]
        h[i, i] = (function(x + ei) - 2 * f0 + function(x - ei)) / steps[i] ** 2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = steps[j]
            value = (
                function(x + ei + ej) - function(x + ei - ej) - function(x - ei + ej) + function(x - ei - ej)
            ) / (4 * steps[i] * steps[j])
            h[i, j] = h[j, i] = value
    return h


def _hessian_from_gradient(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray) -> np.ndarray:
    """Central differences of an analytic gradient, symmetrised."""
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n):
        step = 1e-5 * max(1.0, abs(x[i]))
        e = np.zeros(n)
        e[i] = step
        h[:, i] = (gradient(x + e) - gradient(x - e)) / (2 * step)
    return (h + h.T) / 2


def _newton_polish(gradient: Callable[[np.ndarray], np.ndarray], x: np.ndarray, steps: int = 6) -> np.ndarray:
    """Newton steps on ``gradient`` (of the function minimised, in log-parameters) from
    ``x``, with the Hessian from its central differences; a step is kept only when it
    shrinks the gradient and stays inside the search range. Returns the last point kept
    (``x`` when no step helped, e.g. on a ridge towards a limiting case)."""
    current = np.asarray(x, dtype=float).copy()
    g = gradient(current)
    for _ in range(steps):
        try:
            step = np.linalg.solve(_hessian_from_gradient(gradient, current), g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)):
            break
        candidate = current - step
        if np.any(np.abs(candidate) > LOG_BOUND):
            break
        g_new = gradient(candidate)
        if not np.linalg.norm(g_new) < np.linalg.norm(g):
            break
        current, g = candidate, g_new
        if np.max(np.abs(step)) < 1e-13:
            break
    return current


@single_threaded_blas()
def maximise(
    log_likelihood: Callable[[np.ndarray], float],
    names: Sequence[str],
    starts: Sequence[Sequence[float]],
    ridge: Sequence[str] = (),
    gradient: Callable[[np.ndarray], np.ndarray] | None = None,
    polish: bool = False,
) -> MaximumLikelihood:
    """Maximise ``log_likelihood(params)`` over positive parameters, searching on the log
    scale from each of ``starts`` with L-BFGS-B; the best maximum wins. With the analytic
    ``gradient`` (d log-likelihood ÷ d params) the search and the Hessian use it; without
    it (the two-parameter sBG) a short Nelder-Mead run from the best point polishes.

    ``ridge`` names parameters that run off together towards a limiting case of the model
    (r and α of the BG/NBD, p and v of the Gamma-Gamma, α and β of the sBG): when one of
    them ends at the edge of the search range, all of them are ``at_bound``, and the
    intervals of the others come from the information of the others alone.

    ``polish`` (with ``gradient``): Newton steps from L-BFGS-B's end to where the gradient
    vanishes (:func:`_newton_polish`). L-BFGS-B stops once the log-likelihood changes by
    less than ftol (relative): on a flat maximum (the Gamma-Gamma's at 1M accounts) where it
    stops then moves by ~1e-5 (relative) with the last bits of the input or of the sums;
    the polished estimate does not (~1e-10)."""

    def negative(log_params: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            value = log_likelihood(np.exp(log_params))
        return -value if np.isfinite(value) else 1e300

    def negative_gradient(log_params: np.ndarray) -> np.ndarray:
        params = np.exp(log_params)
        with np.errstate(all="ignore"):
            value = -np.asarray(gradient(params), dtype=float) * params  # type: ignore[misc]
        return np.where(np.isfinite(value), value, 0.0)

    bounds = [(-LOG_BOUND, LOG_BOUND)] * len(names)
    # ftol 1e-13 (relative) stops the search on a ridge towards a limiting case instead of
    # crawling along it; at the papers' optima the estimates agree with 1e-15 to 1e-6.
    options = {"ftol": 1e-13, "gtol": 1e-8, "maxiter": 1000}
    best = None
    for start in starts:
        x0 = np.log(np.asarray(start, dtype=float))
        jac = negative_gradient if gradient is not None else None
        result = optimize.minimize(negative, x0, jac=jac, method="L-BFGS-B", bounds=bounds, options=options)
        if best is None or result.fun < best.fun:
            best = result
    assert best is not None
    converged = bool(best.success)
    if gradient is None:
        polished = optimize.minimize(
            negative,
            best.x,
            method="Nelder-Mead",
            bounds=bounds,
            options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 1000},
        )
        if polished.fun <= best.fun:
            best, converged = polished, True
    if polish and gradient is not None:
        best.x = _newton_polish(negative_gradient, best.x)
        best.fun = negative(best.x)
    edge = {n for n, v in zip(names, best.x, strict=True) if abs(v) > LOG_BOUND - 0.5}
    if edge & set(ridge):
        edge |= set(ridge)
    at_bound = tuple(n for n in names if n in edge)
    free = [i for i, n in enumerate(names) if n not in edge]
    covariance = np.full((len(best.x), len(best.x)), np.nan)
    if free:
        full = best.x.copy()

        def embed(sub: np.ndarray) -> np.ndarray:
            x = full.copy()
            x[free] = sub
            return x

        try:
            if gradient is not None:
                information = _hessian_from_gradient(
                    lambda sub: negative_gradient(embed(sub))[free], full[free]
                )
            else:
                information = _hessian(lambda sub: negative(embed(sub)), full[free])
            inverse = np.linalg.inv(information)
            if np.all(np.isfinite(inverse)) and np.all(np.diag(inverse) >= 0):
                covariance[np.ix_(free, free)] = inverse
        except np.linalg.LinAlgError:
            pass
    return MaximumLikelihood(
        names=tuple(names),
        estimates=np.exp(best.x),
        log_likelihood=float(-best.fun),
        log_covariance=covariance,
        converged=converged,
        at_bound=at_bound,
    )


class FitCache:
    """The maximum-likelihood fits of this process, keyed by the model and a hash of its
    aggregated input (the distinct rows and their weights, or the sBG's counts; the
    Gamma-Gamma's amounts to 7 digits: :func:`fit_gamma_gamma_summary`): a fit
    depends on nothing else, so the same input — the same cohorts at another grain, the
    same accounts under another filter — is not fitted twice. Least recently used fits
    are dropped beyond ``maxsize``. ``cache_clear()`` forgets them all (the benchmarks do,
    to time a new selection; results are identical either way)."""

    def __init__(self, maxsize: int = 256) -> None:
        self.maxsize = maxsize
        self._fits: OrderedDict[bytes, MaximumLikelihood] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @staticmethod
    def key(parts: tuple[object, ...]) -> bytes:
        digest = hashlib.blake2b(digest_size=20)
        for part in parts:
            if isinstance(part, np.ndarray):
                array = np.ascontiguousarray(part, dtype=float)
                digest.update(f"{array.shape}".encode())
                digest.update(array.tobytes())
            else:
                digest.update(repr(part).encode())
            digest.update(b"|")
        return digest.digest()

    def get_or_fit(
        self, parts: tuple[object, ...], fit: Callable[[], MaximumLikelihood]
    ) -> MaximumLikelihood:
        """The cached fit of ``parts``; else the one stored beside the database
        (:mod:`forecasting.fit_store`, within its ``fits_beside``); else ``fit()``, kept for
        next time (and stored when the block writes)."""
        key = self.key(parts)
        store = fit_store.current()
        with self._lock:
            kept = self._fits.get(key)
            if kept is not None:
                self._fits.move_to_end(key)
                self.hits += 1
        if kept is not None:
            if store is not None:
                store.keep(key, kept, computed=False)
            return kept
        result = None if store is None else store.get(key)
        if result is None:
            result = fit()
            if store is not None:
                store.keep(key, result)
        with self._lock:
            self.misses += 1
            self._fits[key] = result
            while len(self._fits) > self.maxsize:
                self._fits.popitem(last=False)
        return result

    def cache_clear(self) -> None:
        with self._lock:
            self._fits.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._fits)


#: The process's fits (see :class:`FitCache`).
FITS = FitCache()


# ---------------------------------------------------------------- sBG (contractual)


def sbg_survival(alpha: float, beta: float, t: np.ndarray | Sequence[int] | int) -> np.ndarray:
    """S(t) = B(α, β + t) / B(α, β): the share of a cohort still a customer after t periods
    (t = 0, 1, 2, …; S(0) = 1)."""
    t = np.asarray(t, dtype=float)
    return np.exp(special.betaln(alpha, beta + t) - special.betaln(alpha, beta))


def _sbg_log_likelihood(alpha: float, beta: float, churned: np.ndarray, censored: np.ndarray) -> float:
    """Σ churned[t] · ln P(T = t) + Σ censored[t] · ln S(t), with P(T = t) = S(t−1) − S(t)
    (``churned[0]`` is unused; arrays indexed by t)."""
    t = np.arange(len(churned), dtype=float)
    log_s = special.betaln(alpha, beta + t) - special.betaln(alpha, beta)
    # P(T = t) = B(α + 1, β + t − 1) / B(α, β), t ≥ 1
    log_p = special.betaln(alpha + 1, beta + t[1:] - 1) - special.betaln(alpha, beta)
    return float(np.sum(churned[1:] * log_p) + np.sum(censored * log_s))


def _sbg_gradient(alpha: float, beta: float, churned: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """d :func:`_sbg_log_likelihood` ÷ d (α, β)."""
    t = np.arange(len(churned), dtype=float)
    base_a = special.digamma(alpha) - special.digamma(alpha + beta)
    base_b = special.digamma(beta) - special.digamma(alpha + beta)
    # ln S(t) = ln B(α, β + t) − ln B(α, β)
    s_a = special.digamma(alpha) - special.digamma(alpha + beta + t) - base_a
    s_b = special.digamma(beta + t) - special.digamma(alpha + beta + t) - base_b
    # ln P(T = t) = ln B(α + 1, β + t − 1) − ln B(α, β)
    u = t[1:]
    p_a = special.digamma(alpha + 1) - special.digamma(alpha + beta + u) - base_a
    p_b = special.digamma(beta + u - 1) - special.digamma(alpha + beta + u) - base_b
    return np.array(
        [
            np.sum(churned[1:] * p_a) + np.sum(censored * s_a),
            np.sum(churned[1:] * p_b) + np.sum(censored * s_b),
        ]
    )


class _SbgTerms:
    """:func:`_sbg_log_likelihood` and :func:`_sbg_gradient` of one set of counts, with
    what does not depend on (α, β) computed once (the periods t, the slices) and each
    special function evaluated once per call (B(α, β), ψ(α + β + t) shared by the two
    sums that read it): the same operations on the same numbers, so the same values bit
    for bit, for less overhead per evaluation (a cohort fit is ~150 evaluations of arrays
    a few dozen long, dozens of cohorts per page view)."""

    def __init__(self, churned: np.ndarray, censored: np.ndarray) -> None:
        self.t = np.arange(len(churned), dtype=float)
        self.u = self.t[1:]
        self.churned = churned[1:]
        self.censored = censored

    def log_likelihood(self, params: np.ndarray) -> float:
        alpha, beta = params[0], params[1]
        base = special.betaln(alpha, beta)
        log_s = special.betaln(alpha, beta + self.t) - base
        log_p = special.betaln(alpha + 1, beta + self.u - 1) - base
        return float(np.add.reduce(self.churned * log_p) + np.add.reduce(self.censored * log_s))

    def gradient(self, params: np.ndarray) -> np.ndarray:
        alpha, beta = params[0], params[1]
        psi_a, psi_ab = special.digamma(alpha), special.digamma(alpha + beta)
        base_a = psi_a - psi_ab
        base_b = special.digamma(beta) - psi_ab
        psi_abt = special.digamma(alpha + beta + self.t)
        s_a = psi_a - psi_abt - base_a
        s_b = special.digamma(beta + self.t) - psi_abt - base_b
        psi_abu = psi_abt[1:]
        p_a = special.digamma(alpha + 1) - psi_abu - base_a
        p_b = special.digamma(beta + self.u - 1) - psi_abu - base_b
        add = np.add.reduce
        return np.array(
            [
                add(self.churned * p_a) + add(self.censored * s_a),
                add(self.churned * p_b) + add(self.censored * s_b),
            ]
        )


@dataclass(frozen=True)
class SbgFit:
    """A fitted shifted-beta-geometric model (periods as in the data: months, years …).

    * ``survival(t)``: S(t) = share still a customer after t periods;
    * ``retention_rate(t)`` = S(t) ÷ S(t−1), the share of period t−1's customers who renew
      at t (rises with t: heterogeneity, not a change in anyone's behaviour);
    * ``derl(renewals, discount_rate)``: discounted expected residual lifetime (Fader &
      Hardie 2010) of a customer who has renewed ``renewals`` times: the expected number of
      further payments, the next one undiscounted, each later one discounted by
      (1 + d) per period;
    * ``expected_lifetime(horizon=None)``: a new customer's expected number of periods
      (undiscounted) = Σ_{t≥0} S(t) = (α + β − 1) ÷ (α − 1), infinite when α ≤ 1 (a heavy
      tail of near-loyal customers); over a finite ``horizon`` Σ_{t<horizon} S(t).
    """

    alpha: float
    beta: float
    log_likelihood: float
    intervals: pd.DataFrame
    customers: int
    periods_observed: int
    converged: bool = True

    @property
    def params(self) -> dict[str, float]:
        return {"alpha": self.alpha, "beta": self.beta}

    @property
    def low_sample(self) -> bool:
        return self.customers < MIN_CUSTOMERS or self.periods_observed < MIN_PERIODS

    @property
    def churn_rate(self) -> float:
        """Mean first-period churn probability α ÷ (α + β)."""
        return self.alpha / (self.alpha + self.beta)

    def survival(self, t: np.ndarray | Sequence[int] | int) -> np.ndarray:
        return sbg_survival(self.alpha, self.beta, t)

    def retention_rate(self, t: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """r(t) = (β + t − 1) ÷ (α + β + t − 1), t ≥ 1."""
        t = np.asarray(t, dtype=float)
        return (self.beta + t - 1) / (self.alpha + self.beta + t - 1)

    def project(self, periods: int, size: float | None = None) -> np.ndarray:
        """Expected survivors at t = 0 … periods − 1 of a cohort of ``size`` (default: the
        fitted cohort's)."""
        return (self.customers if size is None else size) * self.survival(np.arange(periods))

    def derl(self, renewals: int = 0, discount_rate: float = 0.1) -> float:
        """Σ_{k≥1} S(n + k) ÷ S(n) ÷ (1 + d)^(k−1) with n = ``renewals``
        = (β + n) ÷ (α + β + n) · ₂F₁(1, β + n + 1; α + β + n + 1; 1 ÷ (1 + d)).
        With d = 0 it is finite only for α > 1."""
        n = float(renewals)
        a, b = self.alpha, self.beta
        if discount_rate <= 0:
            return (b + n) / (a - 1) if a > 1 else math.inf
        return float(
            (b + n) / (a + b + n) * special.hyp2f1(1.0, b + n + 1, a + b + n + 1, 1 / (1 + discount_rate))
        )

    def expected_lifetime(self, horizon: int | None = None) -> float:
        if horizon is not None:
            return float(self.survival(np.arange(horizon)).sum())
        a, b = self.alpha, self.beta
        return (a + b - 1) / (a - 1) if a > 1 else math.inf


def _sbg_from_counts(churned: np.ndarray, censored: np.ndarray) -> SbgFit:
    churned = np.asarray(churned, dtype=float)
    censored = np.asarray(censored, dtype=float)
    customers = round(churned[1:].sum() + censored.sum())
    if customers == 0 or churned[1:].sum() == 0:
        raise ValueError("sBG needs at least one customer who churned")
    terms = _SbgTerms(churned, censored)
    fit = FITS.get_or_fit(
        ("sbg", churned, censored),
        lambda: maximise(
            terms.log_likelihood,
            ("alpha", "beta"),
            starts=[(1.0, 1.0), (0.5, 3.0), (2.0, 10.0)],
            ridge=("alpha", "beta"),
            gradient=terms.gradient,
        ),
    )
    observed = int(np.max(np.nonzero(churned + censored)[0])) if customers else 0
    return SbgFit(
        alpha=float(fit.estimates[0]),
        beta=float(fit.estimates[1]),
        log_likelihood=fit.log_likelihood,
        intervals=fit.intervals(),
        customers=customers,
        periods_observed=observed,
        converged=fit.converged,
    )


def sbg_counts(survivors: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(churned[t], censored[t]) of one cohort from its survivors per period: churned[t] =
    survivors[t−1] − survivors[t]; the last period's survivors are censored there."""
    s = np.asarray(survivors, dtype=float)
    if s.ndim != 1 or len(s) < 2:
        raise ValueError("survivors needs the cohort size and at least one later period")
    if np.any(np.diff(s) > 0) or s[-1] < 0:
        raise ValueError("survivors must not increase (a contractual cohort only loses customers)")
    churned = np.zeros(len(s))
    churned[1:] = -np.diff(s)
    censored = np.zeros(len(s))
    censored[-1] = s[-1]
    return churned, censored


def fit_sbg(survivors: Sequence[float]) -> SbgFit:
    """Fit the sBG to one cohort's survivors per period, starting with the cohort size
    (``[1000, 631, 468, …]``): maximum likelihood over (α, β)."""
    return _sbg_from_counts(*sbg_counts(survivors))


def fit_sbg_durations(tenure: Sequence[int], churned: Sequence[bool]) -> SbgFit:
    """Fit the sBG to individual customers: ``tenure`` = whole periods as a customer,
    ``churned`` = whether the customer has left (after ``tenure`` periods) or is still one
    (censored at ``tenure``). Customers with tenure 0 and still a customer add nothing."""
    tenure = np.asarray(tenure, dtype=int)
    left = np.asarray(churned, dtype=bool)
    if np.any(tenure < 0) or np.any(left & (tenure < 1)):
        raise ValueError("a customer who left has a tenure of at least one period")
    size = int(tenure.max()) + 1
    return _sbg_from_counts(
        np.bincount(tenure[left], minlength=size).astype(float),
        np.bincount(tenure[~left], minlength=size).astype(float),
    )


def kaplan_meier(tenure: Sequence[int], churned: Sequence[bool]) -> np.ndarray:
    """The Kaplan-Meier survival S(t), t = 0 … max tenure, of discrete tenures (the
    observed curve a projection is compared with)."""
    tenure = np.asarray(tenure, dtype=int)
    left = np.asarray(churned, dtype=bool)
    size = int(tenure.max()) + 1
    events = np.bincount(tenure[left], minlength=size)
    at_risk = np.array([(tenure >= t).sum() for t in range(size)], dtype=float)
    hazard = np.divide(events, at_risk, out=np.zeros(size), where=at_risk > 0)
    hazard[0] = 0.0
    return np.cumprod(1 - hazard)


def sbg_holdout(survivors: Sequence[float], fit_periods: int) -> pd.DataFrame:
    """Fit on ``survivors[:fit_periods + 1]`` (the cohort size and ``fit_periods`` periods),
    project the rest and compare. Columns: period, actual, predicted, error (predicted −
    actual), relative_error, holdout (False for the fitted periods)."""
    s = np.asarray(survivors, dtype=float)
    fit = fit_sbg(s[: fit_periods + 1])
    predicted = fit.project(len(s))
    return pd.DataFrame(
        {
            "period": np.arange(len(s)),
            "actual": s,
            "predicted": predicted,
            "error": predicted - s,
            "relative_error": (predicted - s) / s,
            "holdout": np.arange(len(s)) > fit_periods,
        }
    )


# ---------------------------------------------------------------- BG/NBD (non-contractual)


def _as_arrays(*values: Sequence[float] | np.ndarray | float) -> list[np.ndarray]:
    return [np.asarray(v, dtype=float) for v in values]


def bg_nbd_log_likelihood(
    r: float, alpha: float, a: float, b: float, x: np.ndarray, t_x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """Per-customer log-likelihood (Fader, Hardie & Lee 2005, eq. 6):
    ln[A₁ · A₂ · (A₃ + 1{x>0} A₄)] with A₁ = Γ(r + x) α^r ÷ Γ(r), A₂ = Γ(a + b) Γ(b + x) ÷
    (Γ(b) Γ(a + b + x)), A₃ = (α + T)^−(r+x), A₄ = a ÷ (b + x − 1) · (α + t_x)^−(r+x)."""
    log_a1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    log_a2 = special.betaln(a, b + x) - special.betaln(a, b)  # = ln A₂
    log_a3 = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a4 = np.where(
            x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    return log_a1 + log_a2 + np.logaddexp(log_a3, log_a4)


def bg_nbd_gradient(
    r: float,
    alpha: float,
    a: float,
    b: float,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """d Σ weights · :func:`bg_nbd_log_likelihood` ÷ d (r, α, a, b)."""
    log_a3 = -(r + x) * np.log(alpha + T)
    repeat = x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        log_a4 = np.where(
            repeat, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + t_x), -np.inf
        )
    total = np.logaddexp(log_a3, log_a4)
    w3, w4 = np.exp(log_a3 - total), np.exp(log_a4 - total)
    b_x1 = np.where(repeat, b + x - 1, 1.0)
    d_r = (
        special.digamma(r + x)
        - special.digamma(r)
        + np.log(alpha)
        - w3 * np.log(alpha + T)
        - w4 * np.log(alpha + t_x)
    )
    d_alpha = r / alpha - w3 * (r + x) / (alpha + T) - w4 * (r + x) / (alpha + t_x)
    d_a = special.digamma(a + b) - special.digamma(a + b + x) + w4 / a
    d_b = (
        special.digamma(b + x)
        - special.digamma(a + b + x)
        - special.digamma(b)
        + special.digamma(a + b)
        - w4 / b_x1
    )
    return np.array([np.sum(weights * d) for d in (d_r, d_alpha, d_a, d_b)])


class _BgNbdTerms:
    """:func:`bg_nbd_log_likelihood` and :func:`bg_nbd_gradient` summed over weighted
    distinct rows (x, t_x, T), with every special function and logarithm evaluated once
    per distinct value of its argument instead of once per row: gammaln, betaln and
    digamma per distinct x (a few dozen), ln(α + T) per distinct T and ln(α + t_x) per
    distinct t_x (hundreds to a thousand), then gathered onto the rows (13k distinct
    histories over three years at 100k accounts). Per row remain a few products, the
    ``logaddexp`` of A₃ and A₄ and, for the gradient, two exponentials.

    Each per-row value is computed by the same operations in the same order as the
    plain functions' (a gathered ln(α + T) is the very number computed for that row), so
    the sums are the same bit for bit. The value and the gradient at one parameter point
    share A₃, A₄ and their ``logaddexp`` (L-BFGS-B asks for both at the same point)."""

    def __init__(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, weights: np.ndarray) -> None:
        self.weights = weights
        self.values, self.x_index = np.unique(x, return_inverse=True)
        self.recencies, self.t_index = np.unique(t_x, return_inverse=True)
        self.ages, self.T_index = np.unique(T, return_inverse=True)
        self.repeat = x > 0
        self.repeat_values = self.values > 0
        self._point: bytes | None = None
        self._rows: dict[str, np.ndarray] = {}

    def _shared(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """The per-row arrays both the value and the gradient read, at ``params``."""
        key = np.asarray(params, dtype=float).tobytes()
        if key == self._point:
            return self._rows
        r, alpha, a, b = params
        xs = self.values
        r_x = (r + xs)[self.x_index]
        log_age = np.log(alpha + self.ages)[self.T_index]
        log_recency = np.log(alpha + self.recencies)[self.t_index]
        log_a3 = -(r + xs)[self.x_index] * log_age
        with np.errstate(divide="ignore", invalid="ignore"):
            per_x = np.log(a) - np.log(np.maximum(b + xs - 1, 1e-300))
            log_a4 = np.where(self.repeat, per_x[self.x_index] - r_x * log_recency, -np.inf)
        self._rows = {
            "r_x": r_x,
            "log_age": log_age,
            "log_recency": log_recency,
            "log_a3": log_a3,
            "log_a4": log_a4,
            "total": np.logaddexp(log_a3, log_a4),
        }
        self._point = key
        return self._rows

    def log_likelihood(self, params: np.ndarray) -> float:
        """Σ weights · :func:`bg_nbd_log_likelihood` at ``params`` = (r, α, a, b)."""
        r, alpha, a, b = params
        xs = self.values
        rows = self._shared(params)
        log_a1 = special.gammaln(r + xs) - special.gammaln(r) + r * np.log(alpha)
        log_a2 = special.betaln(a, b + xs) - special.betaln(a, b)
        per_row = (log_a1 + log_a2)[self.x_index] + rows["total"]
        return float(np.sum(self.weights * per_row))

    def gradient(self, params: np.ndarray) -> np.ndarray:
        """:func:`bg_nbd_gradient` at ``params`` = (r, α, a, b)."""
        r, alpha, a, b = params
        xs = self.values
        rows = self._shared(params)
        log_a3, log_a4, total = rows["log_a3"], rows["log_a4"], rows["total"]
        w3, w4 = np.exp(log_a3 - total), np.exp(log_a4 - total)
        r_x = rows["r_x"]
        index = self.x_index
        b_x1 = np.where(self.repeat_values, b + xs - 1, 1.0)[index]
        d_r = (
            (special.digamma(r + xs) - special.digamma(r) + np.log(alpha))[index]
            - w3 * rows["log_age"]
            - w4 * rows["log_recency"]
        )
        d_alpha = (
            r / alpha
            - w3 * r_x / (alpha + self.ages)[self.T_index]
            - w4 * r_x / (alpha + self.recencies)[self.t_index]
        )
        d_a = (special.digamma(a + b) - special.digamma(a + b + xs))[index] + w4 / a
        d_b = (
            special.digamma(b + xs)
            - special.digamma(a + b + xs)
            - special.digamma(b)
            + special.digamma(a + b)
        )[index] - w4 / b_x1
        return np.array([np.sum(self.weights * d) for d in (d_r, d_alpha, d_a, d_b)])


#: Columns with at most this many distinct values are sorted by their (uint16) codes.
_SMALL_CARDINALITY = 1 << 16


def _small_codes(column: np.ndarray) -> np.ndarray | None:
    """Per value of ``column`` a uint16 code in its order (equal values, equal codes), or
    None when it has more than 65,536 distinct values: the value itself for whole numbers
    0 … 65,535 (frequencies), else its index among the sorted distinct values."""
    if column.min() >= 0 and column.max() < _SMALL_CARDINALITY:
        whole = column.astype(np.uint16)
        if np.array_equal(whole, column):
            return whole
    codes, distinct = pd.factorize(column, sort=True)  # a hash table: ~5× np.unique's speed
    return codes.astype(np.uint16) if len(distinct) <= _SMALL_CARDINALITY else None


def _lexicographic_order(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """An order of the rows that sorts them lexicographically (first column first):
    ``np.lexsort(columns[::-1])`` up to the order among identical rows, which no caller
    reads. Without NaN and −0.0 (where equal would not mean bitwise equal), the last
    column is sorted by value (one unstable sort) and the ones before it, right to left,
    by stable radix sorts of their uint16 codes (the histories' 37 frequencies and 127
    recencies, a frequency before 680k mean spends): ~4× faster than the three (two)
    merge sorts of the float columns at 1M accounts; otherwise ``np.lexsort``."""
    if any(np.isnan(c).any() or (np.signbit(c) & (c == 0)).any() for c in columns):
        return np.lexsort(columns[::-1])
    codes = [_small_codes(c) for c in columns[:-1]]
    if any(c is None for c in codes):
        return np.lexsort(columns[::-1])
    order = np.argsort(columns[-1])
    for code in reversed(codes):
        order = order[np.argsort(code[order], kind="stable")]
    return order


def _sorted_rows(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """The distinct rows of the columns in lexicographic order (first column first), how
    often each occurs, and per input row the index of its distinct row: what
    ``np.unique(np.column_stack(columns), axis=0, return_counts=True, return_inverse=True)``
    returns, from one ``np.lexsort`` of the columns instead of a sort of the rows as
    structured records (~50× faster on 600k rows; the same rows, counts and order)."""
    columns = tuple(np.asarray(c, dtype=float).ravel() for c in columns)
    n = len(columns[0])
    if n == 0:
        return [c[:0] for c in columns], np.zeros(0), np.zeros(0, dtype=np.intp)
    order = _lexicographic_order(columns)
    ordered = [c[order] for c in columns]
    new = np.zeros(n, dtype=bool)
    new[0] = True
    for c in ordered:
        new[1:] |= c[1:] != c[:-1]
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, n)).astype(float)
    inverse = np.empty(n, dtype=np.intp)
    inverse[order] = np.cumsum(new) - 1
    return [c[starts] for c in ordered], counts, inverse


def _distinct(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of the columns and, per input row, the index of its distinct row."""
    unique, _, inverse = _sorted_rows(*columns)
    return unique, inverse


def _weighted_rows(
    *columns: np.ndarray, weights: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Distinct rows of the columns (lexicographic order) and how often each occurs — or,
    with ``weights`` (rows standing for that many customers, e.g. grouped in SQL), the sum
    of their weights. The likelihood is a sum over customers, so identical customers are
    evaluated once: Σ_customers ℓ(row) = Σ_distinct rows count · ℓ(row)."""
    unique, counts, inverse = _sorted_rows(*columns)
    if weights is None:
        return unique, counts
    return unique, np.bincount(inverse, weights=np.asarray(weights, dtype=float), minlength=len(counts))


#: Gauss-Jacobi nodes per expectation over the dropout probability p.
QUADRATURE_NODES = 48


def _beta_nodes(a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of a quadrature for E[g(p)], p ~ Beta(a, b).

    Gauss-Jacobi on [0, 1]; for b > 500 (where its normalising constant overflows) p = u ÷ b
    with generalised Gauss-Laguerre nodes for u^(a−1) e^(−u), the remaining factor
    (1 − u ÷ b)^(b−1) e^u folded into the weights (≈ 1, exact as b grows)."""
    if b <= 500:
        nodes, weights = special.roots_jacobi(QUADRATURE_NODES, b - 1, a - 1)
        return (1 + nodes) / 2, weights / weights.sum()
    u, weights = special.roots_genlaguerre(QUADRATURE_NODES, a - 1)
    p = u / b
    keep = p < 1
    u, p, weights = u[keep], p[keep], weights[keep]
    weights = weights * np.exp((b - 1) * np.log1p(-p) + u)
    return p, weights / weights.sum()


def _future_transactions(
    r: float, alpha: float, a: float, b: float, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """E[transactions in (T, T + t] | active at T] = E_p[(1 − (1 + p·t ÷ (α + T))^−(r+x)) ÷ p]
    with p ~ Beta(a, b + x), the posterior of an active customer (λ ~ Gamma(r + x, α + T)
    integrated out in closed form). Times P(alive) this is eq. 10 of Fader, Hardie & Lee
    (2005); with x = T = 0 it is eq. 9, a new customer's. The expectation over p is taken
    by Gauss-Jacobi quadrature (the Beta density is its weight), which stays finite where
    the paper's ₂F₁ form overflows (many transactions, or r and α at the homogeneous
    limit)."""
    return _future_transactions_steps(r, alpha, a, b, [t], x, T)[0]


def _future_transactions_steps(
    r: float,
    alpha: float,
    a: float,
    b: float,
    steps: Sequence[np.ndarray | float],
    x: np.ndarray,
    T: np.ndarray,
) -> np.ndarray:
    """:func:`_future_transactions` for each t in ``steps`` (each a number or an array like
    x): row i of the result is E[transactions in (T, T + steps[i]] | active at T]. The
    quadrature nodes of each distinct x are computed once for all steps (they do not
    depend on t): the CLV's 53 horizons cost one node computation, not 53. Each step's
    (rows × nodes) terms −expm1(−(r + x) · log1p(p · t ÷ (α + T))) ÷ p · weight are computed
    in one reused buffer (the same operations in the same order, without a new array per
    operation: ~25 % less time), as expm1(…) ÷ p · (−weight): the same numbers bit for bit,
    one pass over the buffer fewer."""
    out = np.empty((len(steps), *x.shape), dtype=float)
    for value in np.unique(x):
        rows = np.flatnonzero(x == value)
        p, weights = _beta_nodes(a, b + value)
        age = alpha + T[rows]
        exponent = -(r + value)
        # −e ÷ p · w = e ÷ p · (−w) bit for bit (negation is exact): one pass fewer
        nodes, negative_weights = p[None, :], -weights[None, :]
        g = np.empty((len(rows), len(p)))
        for i, t in enumerate(steps):
            t_rows = np.asarray(t, dtype=float)
            if t_rows.ndim:
                t_rows = np.broadcast_to(t_rows, x.shape)[rows]
            np.multiply(nodes, (t_rows / age)[:, None], out=g)
            np.log1p(g, out=g)
            np.multiply(exponent, g, out=g)
            np.expm1(g, out=g)
            np.divide(g, nodes, out=g)
            np.multiply(g, negative_weights, out=g)
            out[i, rows] = g.sum(axis=1)
    return out


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted BG/NBD model; time in ``unit``s.

    * ``alive_probability(x, t_x, T)`` = 1 ÷ (1 + 1{x>0} · a ÷ (b + x − 1) · ((α + T) ÷
      (α + t_x))^(r+x)): the probability a customer with that history is still active
      (1 for a customer without a repeat transaction: the model lets customers leave only
      right after a transaction);
    * ``expected_transactions(t, x, t_x, T)``: his expected transactions in the next t
      units (eq. 10); ``expected_transactions(t)`` alone: a new customer's in his first t
      units (eq. 9), repeat transactions only.

    ``at_bound`` names parameters that ran to the edge of the search: r and α together
    mean every customer has the same transaction rate (regular billing rather than
    Poisson purchases), and the model's heterogeneity assumption does not hold.
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    intervals: pd.DataFrame
    customers: int
    unit: str = "week"
    converged: bool = True
    at_bound: tuple[str, ...] = ()
    #: Per-account summary with the model's numbers (fits read from the database).
    accounts: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    def alive_probability(self, x, t_x, T) -> np.ndarray:
        x, t_x, T = _as_arrays(x, t_x, T)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_odds = (
                np.log(self.a)
                - np.log(np.maximum(self.b + x - 1, 1e-300))
                + (self.r + x) * (np.log(self.alpha + T) - np.log(self.alpha + t_x))
            )
        return np.where(x > 0, special.expit(-log_odds), 1.0)

    def expected_transactions(self, t, x=None, t_x=None, T=None) -> np.ndarray:
        x0 = x is None
        t, x, t_x, T = np.broadcast_arrays(*_as_arrays(t, *((0.0, 0.0, 0.0) if x0 else (x, t_x, T))))
        shape = x.shape
        # customers with the same (t, x, T) have the same future: computed once (57k accounts
        # of a year of weekly data have ~2k distinct histories)
        (ut, ux, uT), _, inverse = _sorted_rows(t, x, T)
        unique = _future_transactions(self.r, self.alpha, self.a, self.b, ut, ux, uT)
        future = unique[inverse].reshape(shape)
        return future if x0 else future * self.alive_probability(x, t_x, T)

    def predict(self, horizon: float) -> pd.DataFrame:
        """``accounts`` with alive_probability, inactive_probability and
        expected_transactions over the next ``horizon`` units."""
        if self.accounts is None:
            raise ValueError("this fit has no per-account summary (fit it with fit_bg_nbd)")
        out = self.accounts.copy()
        args = (out["frequency"], out["recency"], out["T"])
        out["alive_probability"] = self.alive_probability(*args)
        out["inactive_probability"] = 1 - out["alive_probability"]
        out["expected_transactions"] = self.expected_transactions(horizon, *args)
        return out


def fit_bg_nbd_summary(
    frequency: Sequence[float],
    recency: Sequence[float],
    T: Sequence[float],
    unit: str = "week",
    weights: Sequence[float] | None = None,
) -> BgNbdFit:
    """Fit the BG/NBD by maximum likelihood to per-customer (x = repeat transactions,
    t_x = time of the last one since the first, T = time since the first), e.g. the
    papers' CDNOW summary. ``weights``: how many customers each row stands for (rows
    grouped in the database, ``kpis.clv_summary.customer_summary_counts``); the fit is the
    same as on one row per customer."""
    x, t_x, age = _as_arrays(frequency, recency, T)
    w = None if weights is None else np.asarray(weights, dtype=float)
    if w is not None:
        keep = w > 0
        x, t_x, age, w = x[keep], t_x[keep], age[keep], w[keep]
    _check_bg_nbd_input(x, t_x, age)
    (ux, ut, uT), counts = _weighted_rows(x, t_x, age, weights=w)
    scale = (float(np.mean(age)) if w is None else float(np.sum(w * age) / np.sum(w))) or 1.0
    customers = len(x) if w is None else round(float(w.sum()))
    return _fit_bg_nbd_rows(ux, ut, uT, counts, scale, customers, unit)


def _check_bg_nbd_input(x: np.ndarray, t_x: np.ndarray, age: np.ndarray) -> None:
    """The ValueErrors of :func:`fit_bg_nbd_summary` for data it cannot fit."""
    if len(x) == 0:
        raise ValueError("BG/NBD needs at least one customer")
    if np.any(x < 0) or np.any(t_x < 0) or np.any(t_x > age + 1e-9):
        raise ValueError("need frequency ≥ 0 and 0 ≤ recency ≤ T")
    if not np.any(x > 0):
        raise ValueError("BG/NBD needs at least one customer with a repeat transaction")


def _fit_bg_nbd_rows(
    ux: np.ndarray,
    ut: np.ndarray,
    uT: np.ndarray,
    counts: np.ndarray,
    scale: float,
    customers: int,
    unit: str,
) -> BgNbdFit:
    """The BG/NBD fitted to the distinct (x, t_x, T) rows (lexicographic order, as
    :func:`_weighted_rows` gives them) and how many customers each stands for; ``scale``
    = the customers' mean T (the searches' starting α)."""
    terms = _BgNbdTerms(ux, ut, uT, counts)
    fit = FITS.get_or_fit(
        ("bg_nbd", scale, ux, ut, uT, counts),
        lambda: maximise(
            terms.log_likelihood,
            ("r", "alpha", "a", "b"),
            starts=[(1.0, scale, 1.0, 1.0), (0.3, scale / 5, 0.8, 2.5)],
            ridge=("r", "alpha"),
            gradient=terms.gradient,
        ),
    )
    r, alpha, a, b = (float(v) for v in fit.estimates)
    return BgNbdFit(
        r, alpha, a, b, fit.log_likelihood, fit.intervals(), customers, unit, fit.converged, fit.at_bound
    )


# ---------------------------------------------------------------- Gamma-Gamma (spend)


def gamma_gamma_log_likelihood(p: float, q: float, v: float, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per-customer log-density of the mean spend m of x transactions (Fader & Hardie 2013):
    Γ(px + q) ÷ (Γ(px) Γ(q)) · v^q m^(px−1) x^(px) ÷ (v + m x)^(px+q)."""
    px = p * x
    return (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(v + m * x)
    )


def gamma_gamma_gradient(
    p: float, q: float, v: float, x: np.ndarray, m: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """d Σ weights · :func:`gamma_gamma_log_likelihood` ÷ d (p, q, v)."""
    px = p * x
    log_total = np.log(v + m * x)
    psi = special.digamma(px + q)
    d_p = x * (psi - special.digamma(px) + np.log(m) + np.log(x) - log_total)
    d_q = psi - special.digamma(q) + np.log(v) - log_total
    d_v = q / v - (px + q) / (v + m * x)
    return np.array([np.sum(weights * d) for d in (d_p, d_q, d_v)])


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma spend model.

    ``expected_amount(x, m)`` = (q − 1) ÷ (px + q − 1) · pv ÷ (q − 1) + px ÷ (px + q − 1) · m:
    a customer's expected spend per transaction, his observed mean m of x repeat
    transactions shrunk towards the population mean pv ÷ (q − 1) (the mean for x = 0).
    """

    p: float
    q: float
    v: float
    log_likelihood: float
    intervals: pd.DataFrame
    customers: int
    converged: bool = True
    at_bound: tuple[str, ...] = ()
    accounts: pd.DataFrame | None = field(default=None, compare=False)

    @property
    def params(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "v": self.v}

    @property
    def low_sample(self) -> bool:
        return self.customers < MIN_CUSTOMERS

    @property
    def population_mean(self) -> float:
        return self.p * self.v / (self.q - 1) if self.q > 1 else math.inf

    def expected_amount(self, x, m) -> np.ndarray:
        """NaN for x = 0 when q ≤ 1 (no finite population mean)."""
        x, m = _as_arrays(x, m)
        m = np.where(x > 0, np.nan_to_num(m), 0.0)
        px = self.p * x
        with np.errstate(divide="ignore", invalid="ignore"):
            value = (self.p * (self.v + x * m)) / (px + self.q - 1)
        return np.where((x > 0) | (self.q > 1), value, np.nan)


#: numpy's pairwise summation adds at most this many values without halving them.
_PAIRWISE_BLOCK = 128


def _pairwise_half(size: int) -> int:
    """Where numpy's pairwise summation splits ``size`` (> 128) contiguous values: at
    size ÷ 2 rounded down to a multiple of 8 (``pairwise_sum`` in numpy's loops)."""
    half = size // 2
    return half - half % 8


def _pairwise_blocks(n: int, most: int) -> list[tuple[int, int]]:
    """(start, stop) of the blocks, in order, that numpy's pairwise summation of n
    contiguous float64 values halves them into until a block holds at most ``most``
    (≥ 128) values. ``np.sum`` of each block is that block's part of ``np.sum`` of all n:
    :func:`_pairwise_total` adds the parts as numpy adds them."""
    if most < _PAIRWISE_BLOCK:
        raise ValueError(f"blocks of at least {_PAIRWISE_BLOCK} values")
    blocks: list[tuple[int, int]] = []

    def split(start: int, size: int) -> None:
        if size <= most:
            blocks.append((start, start + size))
            return
        half = _pairwise_half(size)
        split(start, half)
        split(start + half, size - half)

    split(0, n)
    return blocks


def _pairwise_total(parts: np.ndarray, n: int, most: int) -> np.ndarray:
    """The sums of ``parts`` (one row per block of :func:`_pairwise_blocks`, a column per
    series) added as numpy's pairwise summation adds its halves: per column ``np.sum``
    of the whole n values, bit for bit."""
    rows = iter(parts)

    def total(size: int) -> np.ndarray:
        if size <= most:
            return next(rows)
        half = _pairwise_half(size)
        first = total(half)
        return first + total(size - half)

    return total(n)


class _GammaGammaTerms:
    """:func:`gamma_gamma_log_likelihood` and :func:`gamma_gamma_gradient` summed over
    weighted rows (x, m), rearranged so that one evaluation costs one logarithm and one
    reciprocal per row (hundreds of thousands of distinct mean spends at 1M accounts):

    Σ w·ℓ = Σ_x W_x [ln Γ(px + q) − ln Γ(px)] − W ln Γ(q) + W q ln v + p Σ w x ln m − Σ w ln m
    + p Σ w x ln x − p Σ w x ln(v + mx) − q Σ w ln(v + mx),

    with W_x the weight of the rows with frequency x and W = Σ w: everything but the last
    two sums is computed once (per distinct x, or not depending on the parameters at
    all). The gradient reuses the same ln(v + mx) and 1 ÷ (v + mx), computed once per
    parameter point for both (L-BFGS-B asks for the value and the gradient at the same
    point). The same sums as the plain functions' in another order: equal to ~1e-13
    (relative), not bit for bit."""

    def __init__(self, x: np.ndarray, m: np.ndarray, weights: np.ndarray) -> None:
        self.x, self.m, self.weights = x, m, weights
        self.values, index = np.unique(x, return_inverse=True)
        self.per_x = np.bincount(index, weights=weights, minlength=len(self.values))
        self.total = float(np.sum(weights))
        self.wx = weights * x
        self.z = m * x
        log_m, log_x = np.log(m), np.log(x)
        self.sum_wx_log_m = float(np.sum(self.wx * log_m))
        self.sum_w_log_m = float(np.sum(weights * log_m))
        self.sum_wx_log_x = float(np.sum(self.wx * log_x))
        self._sums: dict[float, tuple[float, float, float, float]] = {}
        self._buffers: tuple[np.ndarray, ...] | None = None
        self._blocks: list[tuple[int, int]] | None = None

    #: How many of the last v's row sums are kept.
    KEPT_POINTS = 32
    #: Rows per block of :meth:`_row_sums` (2^15: a block's six arrays, 1.5 MB, stay in a
    #: core's 2 MB L2 cache; ~4.7 → ~2.9 ms per v for 690k rows, where each array of the
    #: whole rows went through memory once per operation).
    BLOCK_ROWS = 1 << 15

    def _row_sums(self, v: float) -> tuple[float, float, float, float]:
        """(Σ w x ln(v + z), Σ w ln(v + z), Σ w x ÷ (v + z), Σ w ÷ (v + z)) at ``v``, kept
        for the next calls at the same v: they depend on v alone, and a fit asks for the
        same v again and again (the value and the gradient at one point; the Hessian's
        steps in p and q; the two searches and the polish returning to a point: 93 points
        of the Gamma-Gamma at 1M accounts are 78 distinct v).

        Computed block by block (:func:`_pairwise_blocks`): each block's v + z, its
        logarithm (then reciprocal) and products in three reused arrays, its four sums by
        ``np.sum``, and those combined as ``np.sum`` of the whole rows adds its halves
        (:func:`_pairwise_total`) — the same products, the same additions in the same
        order: the whole rows' sums bit for bit."""
        sums = self._sums.get(v)
        if sums is None:
            n = len(self.z)
            if self._buffers is None:
                self._buffers = tuple(np.empty(min(n, self.BLOCK_ROWS)) for _ in range(3))
            if self._blocks is None:  # they depend on n alone: cut once per fit, not per v
                self._blocks = _pairwise_blocks(n, self.BLOCK_ROWS)
            blocks = self._blocks
            partial = np.empty((len(blocks), 4))
            add = np.add.reduce
            for i, (start, stop) in enumerate(blocks):
                total, values, product = (b[: stop - start] for b in self._buffers)
                z, wx, w = self.z[start:stop], self.wx[start:stop], self.weights[start:stop]
                np.add(v, z, out=total)
                np.log(total, out=values)
                # np.add.reduce: np.sum's own reduction, without its Python wrapper (~5 µs a
                # call, 4 per block: ~1.2k calls per fit at 1M accounts)
                partial[i, 0] = add(np.multiply(wx, values, out=product))
                partial[i, 1] = add(np.multiply(w, values, out=product))
                np.divide(1.0, total, out=values)
                partial[i, 2] = add(np.multiply(wx, values, out=product))
                partial[i, 3] = add(np.multiply(w, values, out=product))
            wx_log, w_log, wx_inverse, w_inverse = (
                float(e) for e in _pairwise_total(partial, n, self.BLOCK_ROWS)
            )
            sums = (wx_log, w_log, wx_inverse, w_inverse)
            if len(self._sums) >= self.KEPT_POINTS:
                del self._sums[next(iter(self._sums))]  # the oldest
            self._sums[v] = sums
        return sums

    def log_likelihood(self, params: np.ndarray) -> float:
        p, q, v = (float(e) for e in params)
        wx_log, w_log, _, _ = self._row_sums(v)
        per_x = p * self.values
        gammas = float(np.sum(self.per_x * (special.gammaln(per_x + q) - special.gammaln(per_x))))
        return (
            gammas
            - self.total * float(special.gammaln(q))
            + self.total * q * math.log(v)
            + p * self.sum_wx_log_m
            - self.sum_w_log_m
            + p * self.sum_wx_log_x
            - p * wx_log
            - q * w_log
        )

    def gradient(self, params: np.ndarray) -> np.ndarray:
        p, q, v = (float(e) for e in params)
        wx_log, w_log, wx_inverse, w_inverse = self._row_sums(v)
        per_x = p * self.values
        psi = special.digamma(per_x + q)
        d_p = (
            float(np.sum(self.per_x * self.values * (psi - special.digamma(per_x))))
            + self.sum_wx_log_m
            + self.sum_wx_log_x
            - wx_log
        )
        d_q = (
            float(np.sum(self.per_x * psi))
            - self.total * float(special.digamma(q))
            + self.total * math.log(v)
            - w_log
        )
        d_v = self.total * q / v - p * wx_inverse - q * w_inverse
        return np.array([d_p, d_q, d_v])


def fit_gamma_gamma_summary(
    frequency: Sequence[float], monetary: Sequence[float], weights: Sequence[float] | None = None
) -> GammaGammaFit:
    """Fit the Gamma-Gamma model to customers with at least one repeat transaction
    (frequency x > 0) and their mean spend per repeat transaction (> 0); the others are
    left out, as in the note. ``weights``: how many customers each row stands for (default
    1 each)."""
    x, m = _as_arrays(frequency, monetary)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=float)
    keep = (x > 0) & np.isfinite(m) & (m > 0)
    x, m, w = x[keep], m[keep], w[keep]
    customers = round(float(w.sum()))
    if customers < 2:
        raise ValueError("Gamma-Gamma needs at least two customers with a repeat transaction")
    (ux, um), counts = _weighted_rows(x, m, weights=None if weights is None else w)
    mean = float(np.mean(m)) if weights is None else float(np.sum(w * m) / np.sum(w))
    terms = _GammaGammaTerms(ux, um, counts)
    # The key holds the amounts (and their mean, the search's start) to float32's 7 digits: a
    # database adds an account's payments in an order that may change the sum's last bits
    # from run to run (DuckDB's threads), and the same payments must find the same fit — here
    # and stored beside the database. Inputs equal to 7 digits give fits equal far below
    # the shown digits; the fit kept is the one computed from the first such input.
    fit = FITS.get_or_fit(
        ("gamma_gamma", np.float32(mean), ux, um.astype(np.float32), counts),
        lambda: maximise(
            terms.log_likelihood,
            ("p", "q", "v"),
            starts=[(1.0, 1.0, 1.0), (5.0, 3.0, mean)],
            ridge=("p", "v"),
            gradient=terms.gradient,
            polish=True,
        ),
    )
    p, q, v = (float(e) for e in fit.estimates)
    return GammaGammaFit(p, q, v, fit.log_likelihood, fit.intervals(), customers, fit.converged, fit.at_bound)


@single_threaded_blas()
def customer_lifetime_value(
    transactions: BgNbdFit,
    spend: GammaGammaFit,
    frequency,
    recency,
    T,
    monetary,
    horizon: int,
    discount_rate: float = 0.1,
    margin: float = 1.0,
) -> np.ndarray:
    """Discounted expected revenue (× ``margin``) per customer over the next ``horizon``
    units: Σ_{k=1..horizon} (E[Y(k)] − E[Y(k−1)]) · E[M] · margin ÷ (1 + d)^(k·years per
    unit), with E[Y] from the BG/NBD and E[M] from the Gamma-Gamma model, ``discount_rate``
    d per year (transactions of unit k discounted at its end)."""
    x, t_x, age, m = _as_arrays(frequency, recency, T, monetary)
    (ux, uT), inverse = _distinct(x, age)  # the future depends on (x, T) only
    discounted = _discounted_transactions(transactions, ux, uT, horizon, discount_rate)
    alive = transactions.alive_probability(x, t_x, age)
    return spend.expected_amount(x, m) * margin * (discounted[inverse] * alive)


def _discounted_transactions(
    transactions: BgNbdFit, x: np.ndarray, T: np.ndarray, horizon: int, discount_rate: float
) -> np.ndarray:
    """Σ_{k=1..horizon} (E[Y(k)] − E[Y(k−1)]) ÷ (1 + d)^(k·years per unit) of an active
    customer with each (x, T): :func:`customer_lifetime_value` per distinct (x, T), before
    the spend and P(alive)."""
    years = UNIT_DAYS[transactions.unit] / 365.25
    steps = np.arange(horizon + 1, dtype=float)
    future = _future_transactions_steps(
        transactions.r, transactions.alpha, transactions.a, transactions.b, list(steps), x, T
    )
    factors = (1 + discount_rate) ** (-years * steps[1:])
    # Σ_k factor_k · (E[Y(k)] − E[Y(k−1)]) per (x, T) (the caller spreads it over the
    # customers: the (horizon × customers) array is never built, 250 MB at 600k customers)
    return _sum_rows(factors[:, None] * np.diff(future, axis=0))


#: ``ChurnRisk._fill_clv`` of one result from two threads writes its column once.
_CLV_LOCK = threading.Lock()


def _discounted_values(
    transactions: BgNbdFit, x: np.ndarray, T: np.ndarray, horizon: int, discount_rate: float
) -> np.ndarray:
    """:func:`_discounted_transactions`, kept for the process (:func:`_discounted_cached`):
    Streamlit's cache hands each rerun of a page a new copy of ``churn_risk``'s result,
    whose clv_revenue is filled again on it — from here, not from the quadrature."""
    params = (transactions.r, transactions.alpha, transactions.a, transactions.b, transactions.unit)
    x, T = np.ascontiguousarray(x, dtype=float), np.ascontiguousarray(T, dtype=float)
    return _discounted_cached(params, x.tobytes(), T.tobytes(), horizon, discount_rate).copy()


@functools.lru_cache(maxsize=32)
def _discounted_cached(
    params: tuple[float, float, float, float, str], x: bytes, T: bytes, horizon: int, discount_rate: float
) -> np.ndarray:
    r, alpha, a, b, unit = params
    fit = BgNbdFit(r, alpha, a, b, math.nan, pd.DataFrame(), 0, unit)
    x_values, T_values = np.frombuffer(x, dtype=float), np.frombuffer(T, dtype=float)
    return _discounted_transactions(fit, x_values, T_values, horizon, discount_rate)


def _sum_rows(terms: np.ndarray) -> np.ndarray:
    """Σ_k terms[k] per column, added k = 0, 1, 2, … in turn: ``terms.sum(axis=0)`` of two
    or more columns bit for bit (numpy adds the rows one after the other then). Of a single
    column numpy sums pairwise instead, so a (x, T)'s discounted transactions would depend
    on how many others are computed beside it; here each column's sum is the same whatever
    the others (:meth:`ChurnRisk.ranking` computes the CLV of the rows it takes alone)."""
    if len(terms) == 0:
        return np.zeros(terms.shape[1:])
    total = terms[0].copy()
    for row in terms[1:]:
        total += row
    return total


# ---------------------------------------------------------------- from the database


def _summary(conn: Bind, f: Filters, unit: str, as_of: dt.datetime | dt.date | None) -> pd.DataFrame:
    from kpis.clv_summary import customer_summary

    return customer_summary(conn, f, unit=unit, as_of=as_of)


@fit_store.reads_stored_fits
def fit_bg_nbd(
    conn: Bind, f: Filters, unit: str = "week", as_of: dt.datetime | dt.date | None = None
) -> BgNbdFit:
    """The BG/NBD fitted to the accounts' payments in ``[f.start, f.end)`` (the calibration
    period): a transaction = a day with a positive payment, every account enters at its
    first one, T runs to f.end (or ``as_of`` when earlier). The per-account summary is
    computed in the database (``kpis.clv_summary.customer_summary``); ``accounts`` holds it."""
    summary = _summary(conn, f, unit, as_of)
    fit = fit_bg_nbd_summary(summary["frequency"], summary["recency"], summary["T"], unit)
    return BgNbdFit(**{**fit.__dict__, "accounts": summary})


@fit_store.reads_stored_fits
def fit_gamma_gamma(
    conn: Bind, f: Filters, unit: str = "week", as_of: dt.datetime | dt.date | None = None
) -> GammaGammaFit:
    """The Gamma-Gamma model fitted to the mean spend per repeat transaction day of the
    accounts with a repeat transaction in ``[f.start, f.end)`` (same summary as
    :func:`fit_bg_nbd`); ``accounts`` holds the summary."""
    summary = _summary(conn, f, unit, as_of)
    fit = fit_gamma_gamma_summary(summary["frequency"], summary["mean_repeat_amount"])
    return GammaGammaFit(**{**fit.__dict__, "accounts": summary})


# ---------------------------------------------------------------- cohorts (sBG) from the database


@dataclass(frozen=True)
class CohortSbg:
    """sBG fits of the signup cohorts (``cohort_sbg``).

    * ``pooled``: one fit over every cohort (None when no customer left);
    * ``fits``: one row per cohort group (cohort, customers, periods_observed, alpha, beta,
      their 95 % bounds, churn_rate = α ÷ (α + β), derl, low_sample, fitted = "own" or
      "pooled" — a group too small for its own fit is projected with the pooled one);
    * ``curves``: cohort, months_since_start, observed_rate (Kaplan-Meier over the
      group's monthly cohorts; NaN beyond the data), projected_rate (the fit's S(t)),
      kind ("observed" within the data, "projected" beyond);
    * ``pooled_curve``: the same for all cohorts together (months_since_start,
      observed_rate, projected_rate, kind);
    * ``adjusted``: how many (cohort, month) counts were lowered to keep survivors from
      rising (accounts that left and came back count as lost from their first gap);
    * ``holdout``: ``cohort_sbg_holdout``'s table from the same cohorts when
      ``cohort_sbg(holdout=…)`` asked for it (None otherwise).
    """

    pooled: SbgFit | None
    fits: pd.DataFrame
    curves: pd.DataFrame
    adjusted: int
    freq: str
    pooled_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    holdout: pd.DataFrame | None = None


def _cohort_counts(retention: pd.DataFrame) -> tuple[dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]], int]:
    """Per monthly cohort (churned[t], censored[t]) from ``kpis.cohort_retention`` rows;
    retained counts that rise again are lowered to the running minimum (returning
    accounts count as lost from their first gap)."""
    counts: dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]] = {}
    adjusted = 0
    for cohort, rows in retention.groupby("cohort", sort=True):
        rows = rows.sort_values("months_since_start")
        retained = rows["retained"].to_numpy(dtype=float)
        if len(retained) == 0 or retained[0] <= 0:
            continue
        survivors = np.minimum.accumulate(retained)
        adjusted += int((survivors < retained).sum())
        if len(survivors) == 1:
            churned, censored = np.zeros(1), survivors.copy()
        else:
            churned, censored = sbg_counts(survivors)
        counts[pd.Timestamp(cohort)] = (churned, censored)
    return counts, adjusted


def _pool(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    size = max(len(c) for c, _ in parts)
    churned, censored = np.zeros(size), np.zeros(size)
    for c, z in parts:
        churned[: len(c)] += c
        censored[: len(z)] += z
    return churned, censored


def _observed_survival(churned: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """Kaplan-Meier S(t) from pooled counts (at risk at t = all not churned or censored before t)."""
    at_risk = churned[1:][::-1].cumsum()[::-1] + censored[::-1].cumsum()[::-1][1:]
    hazard = np.divide(churned[1:], at_risk, out=np.zeros(len(at_risk)), where=at_risk > 0)
    return np.concatenate([[1.0], np.cumprod(1 - hazard)])


def _group_start(cohort: pd.Timestamp, freq: str) -> pd.Timestamp:
    if freq == "month":
        return cohort
    if freq == "quarter":
        return pd.Timestamp(cohort.year, 3 * ((cohort.month - 1) // 3) + 1, 1)
    if freq == "year":
        return pd.Timestamp(cohort.year, 1, 1)
    raise ValueError(f"freq must be month, quarter or year, not {freq!r}")


def _try_fit(churned: np.ndarray, censored: np.ndarray) -> SbgFit | None:
    try:
        return _sbg_from_counts(churned, censored)
    except ValueError:
        return None


@fit_store.reads_stored_fits
@single_threaded_blas()
def cohort_sbg(
    conn: Bind,
    f: Filters,
    freq: str = "month",
    as_of: dt.datetime | None = None,
    horizon: int = 24,
    discount_rate: float = 0.1,
    holdout: int | None = None,
    retention: pd.DataFrame | None = None,
) -> CohortSbg:
    """sBG fits of the signup cohorts of ``kpis.cohort_retention`` (cohort = month of an
    account's first subscription start, retained at month k = active at the first instant
    of month cohort + k; same filters and ``as_of``), with months as periods.

    Monthly cohorts are grouped by ``freq`` (month, quarter or year of signup); each group
    is fitted on the likelihood of its monthly cohorts, each censored where its data end.
    A group with fewer than ``MIN_CUSTOMERS`` customers or ``MIN_PERIODS`` observed months
    is ``low_sample`` and projected with the pooled fit. Curves run ``horizon`` months past
    the longest observed cohort; derl is the DERL of a new customer (0 renewals) at
    ``discount_rate`` per year (converted to months).

    ``holdout`` (months) adds ``cohort_sbg_holdout``'s table from the same cohorts
    (``CohortSbg.holdout``). ``retention``: the ``kpis.cohort_retention(conn, f,
    as_of=as_of)`` frame when the caller already has it (the page's heatmap), so that the
    query runs once per view; the same numbers as reading it here.
    """
    from kpis.revenue import cohort_retention

    if retention is None:
        retention = cohort_retention(conn, f, as_of=as_of)
    counts, adjusted = _cohort_counts(retention)
    table = _cohort_holdout(counts, holdout) if holdout is not None else None
    fit_columns = [
        "cohort", "customers", "periods_observed", "alpha", "beta", "alpha_low", "alpha_high",
        "beta_low", "beta_high", "churn_rate", "derl", "low_sample", "fitted",
    ]  # fmt: skip
    curve_columns = ["cohort", "months_since_start", "observed_rate", "projected_rate", "kind"]
    if not counts:
        return CohortSbg(
            None,
            pd.DataFrame(columns=fit_columns),
            pd.DataFrame(columns=curve_columns),
            0,
            freq,
            holdout=table,
        )
    pooled = _try_fit(*_pool(list(counts.values())))
    monthly_discount = (1 + discount_rate) ** (1 / 12) - 1
    groups: dict[pd.Timestamp, list[tuple[np.ndarray, np.ndarray]]] = {}
    for cohort, part in counts.items():
        groups.setdefault(_group_start(cohort, freq), []).append(part)
    fit_rows, curve_rows = [], []
    for group, parts in sorted(groups.items()):
        churned, censored = _pool(parts)
        customers = round(churned[1:].sum() + censored.sum())
        observed = len(churned) - 1
        own = None
        if customers >= MIN_CUSTOMERS and observed >= MIN_PERIODS:
            own = _try_fit(churned, censored)
        fit = own or pooled
        bounds = {}
        if fit is not None:
            for _, row in fit.intervals.iterrows():
                bounds[f"{row['parameter']}_low"] = row["low95"]
                bounds[f"{row['parameter']}_high"] = row["high95"]
        fit_rows.append(
            {
                "cohort": group,
                "customers": customers,
                "periods_observed": observed,
                "alpha": fit.alpha if fit else np.nan,
                "beta": fit.beta if fit else np.nan,
                **{k: bounds.get(k, np.nan) for k in fit_columns[5:9]},
                "churn_rate": fit.churn_rate if fit else np.nan,
                "derl": fit.derl(0, monthly_discount) if fit else np.nan,
                "low_sample": own is None,
                "fitted": "own" if own is not None else ("pooled" if fit is not None else "none"),
            }
        )
        survival = _observed_survival(churned, censored)
        months = np.arange(observed + horizon + 1)
        projected = fit.survival(months) if fit is not None else np.full(len(months), np.nan)
        for k in months:
            within = k <= observed
            curve_rows.append(
                (
                    group,
                    int(k),
                    survival[k] if within else np.nan,
                    projected[k],
                    "observed" if within else "projected",
                )
            )
    fits = pd.DataFrame(fit_rows, columns=fit_columns)
    curves = pd.DataFrame(curve_rows, columns=curve_columns)
    churned, censored = _pool(list(counts.values()))
    observed = len(churned) - 1
    months = np.arange(observed + horizon + 1)
    survival = _observed_survival(churned, censored)
    pooled_curve = pd.DataFrame(
        {
            "months_since_start": months,
            "observed_rate": [survival[k] if k <= observed else np.nan for k in months],
            "projected_rate": pooled.survival(months) if pooled is not None else np.nan,
            "kind": np.where(months <= observed, "observed", "projected"),
        }
    )
    return CohortSbg(pooled, fits, curves, adjusted, freq, pooled_curve, table)


@fit_store.reads_stored_fits
@single_threaded_blas()
def cohort_sbg_holdout(
    conn: Bind, f: Filters, holdout: int = 6, as_of: dt.datetime | None = None
) -> pd.DataFrame:
    """Backtest of the pooled cohort sBG: every monthly cohort's last ``holdout`` observed
    months are held out (the data cut ``holdout`` months earlier), the pooled sBG is fitted
    on the rest, and each cohort's survivors in the held-out months are projected from
    its count at the cut: survivors(cut) · S(k) ÷ S(cut). Summed over the cohorts per month
    after the cut. Columns: months_ahead, cohorts, actual, predicted, error (predicted −
    actual), relative_error. Empty when no cohort has data before the cut."""
    from kpis.revenue import cohort_retention

    counts, _ = _cohort_counts(cohort_retention(conn, f, as_of=as_of))
    return _cohort_holdout(counts, holdout)


def _cohort_holdout(counts: dict[pd.Timestamp, tuple[np.ndarray, np.ndarray]], holdout: int) -> pd.DataFrame:
    """``cohort_sbg_holdout``'s table from the cohorts' (churned, censored) counts."""
    columns = ["months_ahead", "cohorts", "actual", "predicted", "error", "relative_error"]
    cut_parts, tails = [], []
    for churned, censored in counts.values():
        observed = len(churned) - 1
        cut = observed - holdout
        if cut < 1:
            continue
        survivors = churned[1:][::-1].cumsum()[::-1] + censored[-1]
        survivors = np.concatenate([survivors, [censored[-1]]])  # survivors[t], t = 0 … observed
        c = churned[: cut + 1].copy()
        z = np.zeros(cut + 1)
        z[cut] = survivors[cut]
        cut_parts.append((c, z))
        tails.append((cut, survivors))
    if not cut_parts:
        return pd.DataFrame(columns=columns)
    fit = _try_fit(*_pool(cut_parts))
    if fit is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for h in range(1, holdout + 1):
        actual = predicted = 0.0
        for cut, survivors in tails:
            ratio = fit.survival(cut + h) / fit.survival(cut)
            actual += survivors[cut + h]
            predicted += float(survivors[cut] * ratio)
        rows.append(
            (
                h,
                len(tails),
                actual,
                predicted,
                predicted - actual,
                (predicted - actual) / actual if actual else np.nan,
            )
        )
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------- churn risk (BG/NBD + Gamma-Gamma)


@dataclass(frozen=True)
class ChurnRisk:
    """What the Churn risk section shows (``churn_risk``).

    * ``by_account``: one row per account with a payment in the period, in the summary's
      order (account_id ascending from every database): the summary of
      ``kpis.clv_summary.customer_summary`` (without name and segment from
      ``churn_risk(names=False)``) plus alive_probability, inactive_probability,
      expected_transactions (next ``horizon`` units), expected_amount (Gamma-Gamma spend
      per transaction) and clv_revenue (discounted expected revenue over the horizon);
      ``accounts`` is it ranked by inactive_probability, ``ranking`` ranks it by any
      column and takes only the rows asked for (the page shows the first 1,000 of up to
      ~0.7M at 1M accounts). clv_revenue is filled when asked for (``clv_missing``): for
      the rows ``ranking`` takes, for every account when it ranks by it or takes them all;
    * ``transactions`` / ``spend``: the BG/NBD and Gamma-Gamma fits (None when the data
      cannot identify them; ``problems`` says why);
    * ``holdout``: calibration / holdout check (``bg_nbd_holdout``), ``holdout_summary``
      its totals.
    """

    by_account: pd.DataFrame
    transactions: BgNbdFit | None
    spend: GammaGammaFit | None
    holdout: pd.DataFrame
    holdout_summary: dict[str, float]
    problems: tuple[str, ...]
    unit: str
    horizon: int
    discount_rate: float
    #: The positions of ``by_account``'s rows ranked by inactive_probability (highest
    #: first, NaN last, then account_id: :func:`_ranked`); None: ranked when asked.
    order: np.ndarray | None = field(default=None, compare=False, repr=False)
    #: ``by_account``'s account_ids ascend, so a row's position is its id's rank (ties in
    #: a ranking are broken by it without sorting the ids again).
    ids_ascending: bool = field(default=False, compare=False, repr=False)
    #: Per row of ``by_account``: its clv_revenue is not computed yet (NaN until
    #: :meth:`_fill_clv`); None: every row's is there. The CLV's quadrature per distinct
    #: (x, T) — 53 horizons × 48 nodes each, ~19k pairs over three years at 1M accounts —
    #: was a quarter of ``churn_risk``'s time there, for a column the page shows for its
    #: 1,000 rows unless it ranks by it.
    clv_missing: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def accounts(self) -> pd.DataFrame:
        """Every account ranked by inactive_probability (highest first, NaN last), then
        account_id: ``ranking()``."""
        return self.ranking()

    def _order(self) -> np.ndarray:
        return self.order if self.order is not None else _ranked(self.by_account)[0]

    def count(self, within_units: float | None = None) -> int:
        """How many accounts ``ranking(by, within_units)`` has (every ``by`` alike)."""
        if within_units is None:
            return len(self.by_account)
        accounts = self.by_account
        return int(np.count_nonzero((accounts["T"] - accounts["recency"] <= within_units).to_numpy()))

    def ranking(
        self, by: str = "inactive_probability", within_units: float | None = None, rows: int | None = None
    ) -> pd.DataFrame:
        """The accounts ranked by ``by`` (highest first, NaN last), then account_id — what
        ``sort_values([by, "account_id"], ascending=[False, True], na_position="last")``
        gives, from one numeric lexsort (sorting ~600k account_id strings cost ~1 s at 1M
        accounts). ``within_units``: only the accounts whose last transaction is at most
        that many units before the end (T − recency ≤ within_units). ``rows``: the first
        ``rows`` of the ranking only (``.head(rows)`` of the whole one): only those rows
        are taken from ``by_account`` (every column of ~0.6M accounts was ~0.1 s at 1M).
        By inactive_probability over every account the order is ``order`` (no sort).
        clv_revenue is filled first for every account when ``by`` is it or ``rows`` is
        None, else for the rows taken (:meth:`_fill_clv`)."""
        if by == "clv_revenue" or rows is None:
            self._fill_clv(None)
        accounts = self.by_account
        if by == "inactive_probability" and within_units is None:
            positions = self._order()
        else:
            if within_units is not None:
                keep = np.flatnonzero((accounts["T"] - accounts["recency"] <= within_units).to_numpy())
            else:
                keep = np.arange(len(accounts))
            ids = (
                np.arange(len(accounts))
                if self.ids_ascending
                else accounts["account_id"].rank(method="first").to_numpy()
            )
            positions = keep[_descending_order(accounts[by].to_numpy(dtype=float)[keep], ties=ids[keep])]
        if rows is not None:
            positions = positions[: max(rows, 0)]
            self._fill_clv(positions)
        return self.by_account.iloc[positions].reset_index(drop=True)

    def _fill_clv(self, positions: np.ndarray | None) -> None:
        """clv_revenue of the rows at ``positions`` (None: every row) not computed yet:
        expected_amount · Σ_k (E[Y(k)] − E[Y(k−1)]) ÷ (1 + d)^(k·years per unit) ·
        alive_probability, the sum per distinct (x, T) of those rows
        (:func:`_discounted_values`) — each row's the number ``customer_lifetime_value``
        gives it, whichever other rows are computed with it."""
        missing = self.clv_missing
        if missing is None or self.transactions is None:
            return
        with _CLV_LOCK:
            wanted = np.flatnonzero(missing) if positions is None else positions[missing[positions]]
            if len(wanted) == 0:
                return
            accounts = self.by_account
            x, age, alive, amount = (
                accounts[c].to_numpy(dtype=float)[wanted]
                for c in ("frequency", "T", "alive_probability", "expected_amount")
            )
            (ux, uT), pair = _distinct(x, age)
            discounted = _discounted_values(self.transactions, ux, uT, self.horizon, self.discount_rate)
            column = accounts["clv_revenue"].to_numpy(dtype=float, copy=True)
            column[wanted] = amount * (discounted[pair] * alive)
            accounts["clv_revenue"] = column
            missing[wanted] = False

    @property
    def low_sample(self) -> bool:
        accounts = self.by_account
        repeaters = int((accounts["frequency"] > 0).sum()) if len(accounts) else 0
        return len(accounts) < MIN_CUSTOMERS or repeaters < MIN_CUSTOMERS


def _fit_or_problem(function: Callable[[], object], name: str, problems: list[str]):
    try:
        return function()
    except ValueError as error:
        problems.append(f"{name}: {error}")
        return None


@fit_store.reads_stored_fits
@single_threaded_blas()
def bg_nbd_holdout(
    conn: Bind,
    f: Filters,
    unit: str = "week",
    holdout_fraction: float = 1 / 3,
    as_of: dt.datetime | dt.date | None = None,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Calibration / holdout check of the BG/NBD as Fader, Hardie & Lee (2005) do it: the
    period [f.start, end) (end = f.end or ``as_of`` when earlier) is split at the day
    ``holdout_fraction`` of its length before the end; the model is fitted on the accounts'
    transactions before the split and predicts each one's transactions after it, compared
    with what they did (accounts whose first transaction is after the split are not in it).

    Returns (by frequency, totals): by calibration frequency 0 … 6 and 7+ the accounts,
    actual and predicted mean holdout transactions; totals: accounts, holdout_units,
    actual, predicted, error (predicted − actual) ÷ actual, mae (mean absolute error per
    account), correlation (per account). Empty / {} when the calibration data cannot fit.

    Only aggregated rows reach Python: the accounts grouped in the database by (frequency,
    recency, T, holdout transactions) with their number (``customer_summary_counts``);
    every figure is the per-account one as a weighted sum over those rows (means = Σ w·v ÷
    Σ w, correlation = the weighted Pearson coefficient), the fit the same as on one row
    per account.
    """
    from kpis.clv_summary import calibration_end, customer_summary_counts

    end = calibration_end(f, as_of)
    split_day = holdout_split(f, end, holdout_fraction)
    if split_day is None:
        return pd.DataFrame(), {}
    calibration = f.replace(end=split_day.date())
    # one row per distinct (frequency, recency, T, holdout transactions) and how many
    # accounts share it: every figure below is a weighted sum over accounts
    rows = customer_summary_counts(conn, calibration, unit=unit, holdout_end=end)
    return _holdout_check(rows, split_day, end, unit)


def holdout_split(f: Filters, end: dt.datetime, holdout_fraction: float = 1 / 3) -> dt.datetime | None:
    """The day the holdout check splits ``[f.start, end)`` at: ``holdout_fraction`` of its
    whole days before the end (None when that leaves either side empty)."""
    start = f.start_ts
    days = (end - start).days
    split_day = start + dt.timedelta(days=round(days * (1 - holdout_fraction)))
    if split_day <= start or split_day >= end:
        return None
    return split_day


def _holdout_check(
    rows: pd.DataFrame, split_day: dt.datetime, end: dt.datetime, unit: str
) -> tuple[pd.DataFrame, dict[str, float]]:
    """``bg_nbd_holdout``'s tables from the grouped calibration rows (frequency, recency,
    T, holdout_transactions, accounts)."""
    from kpis.clv_summary import _instant

    if rows.empty:
        return pd.DataFrame(), {}
    x, t_x, age = (rows[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
    weights = rows["accounts"].to_numpy(dtype=float)
    try:
        fit = fit_bg_nbd_summary(x, t_x, age, unit, weights=weights)
    except ValueError:
        return pd.DataFrame(), {}
    units = (_instant(end) - split_day).total_seconds() / 86400 / UNIT_DAYS[unit]
    predicted = fit.expected_transactions(units, x, t_x, age)
    actual = rows["holdout_transactions"].to_numpy(dtype=float)
    table = pd.DataFrame(
        {
            "bin": np.minimum(rows["frequency"].to_numpy(), 7),
            "accounts": rows["accounts"].to_numpy(),
            "actual": weights * actual,
            "predicted": weights * predicted,
        }
    )
    by_frequency = table.groupby("bin").sum().reset_index()
    by_frequency["actual"] /= by_frequency["accounts"]
    by_frequency["predicted"] /= by_frequency["accounts"]
    by_frequency["calibration_frequency"] = by_frequency["bin"].map(lambda b: "7+" if b >= 7 else str(int(b)))
    by_frequency = by_frequency[["calibration_frequency", "accounts", "actual", "predicted"]]
    accounts = float(weights.sum())
    total_actual, total_predicted = float(np.sum(weights * actual)), float(np.sum(weights * predicted))
    # per-account Pearson correlation = the weighted one over the distinct rows
    mean_actual, mean_predicted = total_actual / accounts, total_predicted / accounts
    var_actual = float(np.sum(weights * (actual - mean_actual) ** 2))
    var_predicted = float(np.sum(weights * (predicted - mean_predicted) ** 2))
    covariance = float(np.sum(weights * (actual - mean_actual) * (predicted - mean_predicted)))
    totals = {
        "accounts": accounts,
        "holdout_units": units,
        "split": split_day,
        "actual": total_actual,
        "predicted": total_predicted,
        "error": (total_predicted - total_actual) / total_actual if total_actual else math.nan,
        "mae": float(np.sum(weights * np.abs(predicted - actual)) / accounts),
        "correlation": (
            covariance / math.sqrt(var_actual * var_predicted)
            if var_actual > 0 and var_predicted > 0
            else math.nan
        ),
    }
    return by_frequency, totals


def _ranked(accounts: pd.DataFrame) -> tuple[np.ndarray, bool]:
    """The positions of ``accounts``' rows by inactive_probability (highest first, NaN
    last), then account_id, and whether the account_ids ascend (then a row's position is
    its id's rank). The summary comes ordered by account_id: then a stable sort on the
    probability alone keeps that order among ties (a numeric lexsort; sorting 600k
    account_id strings cost ~1 s at 1M accounts); otherwise both columns are sorted."""
    if not _ascending(accounts["account_id"]):
        ranked = accounts.reset_index(drop=True).sort_values(
            ["inactive_probability", "account_id"], ascending=[False, True]
        )
        return ranked.index.to_numpy(), False
    return _descending_order(accounts["inactive_probability"].to_numpy(dtype=float)), True


def _ascending(values: pd.Series) -> bool:
    """``values.is_monotonic_increasing`` (False with a missing value), as one vectorised
    comparison of each value with the one before it: for the Arrow-backed strings of
    pandas' ``str`` dtype a pyarrow kernel (~7 ms for 733k account ids, where
    ``is_monotonic_increasing`` took ~200 ms)."""
    if values.isna().any():  # a comparison with a missing value is missing, which all() skips
        return False
    array = values.array
    return len(array) < 2 or bool((array[1:] >= array[:-1]).all())


def _descending_order(values: np.ndarray, ties: np.ndarray | None = None) -> np.ndarray:
    """The positions of ``values`` highest first, NaN last, ties by ``ties`` (ascending),
    then in position order: ``np.lexsort((ties, -np.nan_to_num(values), np.isnan(values)))``
    (``ties`` default: the positions), as one stable sort of small integer codes (a radix sort when there are fewer than 65,536 distinct
    values: the probabilities of ~19k histories at 1M accounts, ~15× faster than the
    lexsort). The code of a value is its rank among the distinct −nan_to_num(values) (−0.0
    and 0.0 one value, as the comparisons see them), NaN after all of them."""
    descending = -np.nan_to_num(values) + 0.0  # + 0.0: −0.0 becomes 0.0
    codes, distinct = pd.factorize(descending, sort=True)
    missing = np.isnan(values)
    codes[missing] = len(distinct)
    if len(distinct) < _SMALL_CARDINALITY:
        codes = codes.astype(np.uint16)
    if ties is None:
        return np.argsort(codes, kind="stable")
    by_ties = np.argsort(ties, kind="stable")
    return by_ties[np.argsort(codes[by_ties], kind="stable")]


@fit_store.reads_stored_fits
@single_threaded_blas()
def churn_risk(
    conn: Bind,
    f: Filters,
    unit: str = "week",
    horizon: int = 52,
    discount_rate: float = 0.1,
    as_of: dt.datetime | dt.date | None = None,
    names: bool = True,
) -> ChurnRisk:
    """Who is likely to have left, what each account is expected to bring: the BG/NBD and
    Gamma-Gamma models fitted to the accounts' payments in [f.start, f.end) (T to
    ``as_of`` when earlier, e.g. the day after the last data), each account's probability of
    being inactive, expected transactions and discounted expected revenue over the next
    ``horizon`` units at ``discount_rate`` per year; and the holdout check
    (``bg_nbd_holdout``). ``names=False``: ``accounts`` without the name and segment
    columns (``kpis.clv_summary.account_names`` reads them for the rows a page shows)."""
    from kpis.clv_summary import NAME_COLUMNS, calibration_end, customer_summary, customer_summary_split

    # one scan of the payments for the summary and the holdout check's calibration rows
    end = calibration_end(f, as_of)
    split_day = holdout_split(f, end)
    counts = None
    if split_day is None:
        summary = customer_summary(conn, f, unit=unit, as_of=as_of)
        if not names:
            summary = summary.drop(columns=list(NAME_COLUMNS))
    else:
        summary, counts = customer_summary_split(conn, f, split_day, unit=unit, as_of=as_of, names=names)
    problems: list[str] = []
    transactions = spend = None
    accounts = summary.copy(deep=False)  # new columns only: the summary's are not copied
    histories: list[np.ndarray] = []
    if summary.empty:
        problems.append("No account paid in this selection.")
    else:
        x, t_x, age = _as_arrays(summary["frequency"], summary["recency"], summary["T"])
        # the accounts' distinct (x, t_x, T) — a few thousand at 1M accounts — sorted once:
        # the fit reads them with their counts, the scores are computed per history and
        # spread over the accounts (functions of those three numbers alone: the same numbers)
        histories, counts_per_history, inverse = _sorted_rows(x, t_x, age)

        def fit_transactions() -> BgNbdFit:
            _check_bg_nbd_input(x, t_x, age)
            return _fit_bg_nbd_rows(*histories, counts_per_history, float(np.mean(age)) or 1.0, len(x), unit)

        transactions = _fit_or_problem(fit_transactions, "BG/NBD", problems)
        spend = _fit_or_problem(
            lambda: fit_gamma_gamma_summary(summary["frequency"], summary["mean_repeat_amount"]),
            "Gamma-Gamma",
            problems,
        )
    for column in (
        "alive_probability",
        "inactive_probability",
        "expected_transactions",
        "expected_amount",
        "clv_revenue",
    ):
        accounts[column] = np.nan
    if transactions is not None:
        alive = transactions.alive_probability(*histories)[inverse]
        accounts["alive_probability"] = alive
        accounts["inactive_probability"] = 1 - alive
        accounts["expected_transactions"] = transactions.expected_transactions(horizon, *histories)[inverse]
        if transactions.at_bound:
            problems.append(
                "BG/NBD: the accounts' transaction rates hardly differ (r and alpha at the edge of the "
                "search): payments follow a schedule, not the model's random purchases, so the "
                "probability of being inactive mostly reflects the time since the last payment."
            )
    if spend is not None:
        amount = spend.expected_amount(summary["frequency"], summary["mean_repeat_amount"])
        accounts["expected_amount"] = amount
        if spend.q <= 1:
            problems.append(
                "Gamma-Gamma: spend per transaction varies so much between accounts (q ≤ 1) that "
                "there is no finite average: accounts without a repeat payment get no value."
            )
    # customer_lifetime_value's numbers (expected_amount · discounted transactions ·
    # P(alive)), computed when a ranking asks for them (ChurnRisk._fill_clv)
    clv_missing = (
        np.ones(len(accounts), dtype=bool) if transactions is not None and spend is not None else None
    )
    # ranked as positions only: the page takes the rows it shows (``ranking(rows=…)``)
    order, ids_ascending = _ranked(accounts)
    holdout, holdout_summary = (pd.DataFrame(), {})
    if not summary.empty and counts is not None:
        holdout, holdout_summary = _holdout_check(counts, split_day, end, unit)
    return ChurnRisk(
        accounts,
        transactions,
        spend,
        holdout,
        holdout_summary,
        tuple(problems),
        unit,
        horizon,
        discount_rate,
        order,
        ids_ascending,
        clv_missing,
    )


__all__ = [
    "MIN_CUSTOMERS",
    "UNIT_DAYS",
    "BgNbdFit",
    "ChurnRisk",
    "CohortSbg",
    "GammaGammaFit",
    "SbgFit",
    "bg_nbd_holdout",
    "bg_nbd_log_likelihood",
    "churn_risk",
    "cohort_sbg",
    "cohort_sbg_holdout",
    "customer_lifetime_value",
    "fit_bg_nbd",
    "fit_bg_nbd_summary",
    "fit_gamma_gamma",
    "fit_gamma_gamma_summary",
    "fit_sbg",
    "fit_sbg_durations",
    "gamma_gamma_log_likelihood",
    "holdout_split",
    "kaplan_meier",
    "sbg_counts",
    "sbg_holdout",
    "sbg_survival",
]
