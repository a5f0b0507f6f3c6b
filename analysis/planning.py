"""How many seeds to budget: for at least one success, for an interval of a given width, for a comparison.

No library offers these, so they are written here and tested against brute-force simulation
(tests/test_analysis_stats.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import betaln, gammaln
from scipy.stats import binom
from statsmodels.stats.proportion import proportion_confint

from analysis.rates import CONFIDENCE, wilson_interval

MAX_SEEDS = 10**7
"""Searches give up here and answer math.inf (a rate so small that no pool of seeds is a plan)."""


def prob_at_least_one(rate: float, seeds: int) -> float:
    """P(at least one success among `seeds` independent runs) = 1 - (1 - rate)^seeds."""
    return 1.0 - (1.0 - rate) ** seeds


def seeds_for_rate(rate: float, target: float = 0.95) -> float:
    """Smallest k with 1 - (1 - rate)^k >= target, for a known rate; math.inf when rate == 0.

    Hand example: rate 0.5, target 0.95 -> 5 (1 - 0.5^4 = 0.9375 < 0.95 <= 1 - 0.5^5 = 0.96875).
    """
    if not 0 <= rate <= 1 or not 0 < target < 1:
        raise ValueError(f"need rate in [0, 1] and target in (0, 1), got rate={rate}, target={target}")
    if rate == 0:
        return math.inf
    if rate == 1:
        return 1
    k = max(1, math.ceil(math.log1p(-target) / math.log1p(-rate)))
    if k > MAX_SEEDS:  # also where (1 - rate)^k rounds to 1 in floating point
        return math.inf
    # The logarithms can round across an integer: settle k on the exact inequality.
    while prob_at_least_one(rate, k) < target:
        k += 1
    while k > 1 and prob_at_least_one(rate, k - 1) >= target:
        k -= 1
    return k


def predictive_at_least_one(successes: int, n: int, seeds: int, prior: tuple[float, float] = (0.5, 0.5)) -> float:
    """Posterior predictive P(at least one success in `seeds` new runs) after successes/n, Beta(prior) prior.

    With rate ~ Beta(a, b), a = prior_a + successes, b = prior_b + n - successes:
    P(no success in k) = E[(1 - rate)^k] = B(a, b + k) / B(a, b). The default is Jeffreys' prior.
    """
    a, b = prior[0] + successes, prior[1] + n - successes
    return float(1.0 - math.exp(betaln(a, b + seeds) - betaln(a, b)))


def seeds_predictive(successes: int, n: int, target: float = 0.95, prior: tuple[float, float] = (0.5, 0.5)) -> float:
    """Smallest k with predictive_at_least_one(successes, n, k) >= target; math.inf beyond MAX_SEEDS."""
    if predictive_at_least_one(successes, n, 1, prior) >= target:
        return 1
    high = 2
    while predictive_at_least_one(successes, n, high, prior) < target:
        high *= 2
        if high > MAX_SEEDS:
            return math.inf
    low = high // 2  # fails at low, passes at high; the predictive probability grows with k
    while high - low > 1:
        middle = (low + high) // 2
        if predictive_at_least_one(successes, n, middle, prior) >= target:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class SeedPlan:
    """Seeds to budget for P(at least one success) >= target, from successes/n seen so far.

    point: plug in the observed rate (optimistic: ignores that the rate is an estimate).
    conservative: plug in the lower end of the rate's Wilson interval (enough unless the rate is below it).
    predictive: the Beta posterior predictive (Jeffreys prior), which averages over the rate's uncertainty.
    """

    successes: int
    n: int
    rate: float
    rate_low: float
    target: float
    point: float
    conservative: float
    predictive: float


def seeds_for_one_success(
    successes: int,
    n: int,
    target: float = 0.95,
    confidence: float = CONFIDENCE,
    prior: tuple[float, float] = (0.5, 0.5),
) -> SeedPlan:
    """Seeds such that P(at least one success) >= target, with three views of the rate's uncertainty (SeedPlan).

    At 0/n the point and conservative answers are math.inf (no evidence the rate is above 0), while the
    predictive answer stays finite under the prior: read it as 'if the rate is not zero'.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {successes}/{n}")
    rate = successes / n
    low, _ = wilson_interval(successes, n, confidence)
    return SeedPlan(
        successes=successes,
        n=n,
        rate=rate,
        rate_low=low,
        target=target,
        point=seeds_for_rate(rate, target),
        conservative=seeds_for_rate(low, target),
        predictive=seeds_predictive(successes, n, target, prior),
    )


def interval_half_width(rate: float, n: int | np.ndarray, confidence: float = CONFIDENCE, method: str = "wilson"):
    """Half-width of the `method` interval (wilson or beta) when a fraction `rate` of n seeds succeeds.
    Clopper-Pearson ('beta') needs whole counts: successes = round(rate * n)."""
    n = np.asarray(n)
    count = rate * n if method == "wilson" else np.round(rate * n)
    low, high = proportion_confint(count, n, alpha=1 - confidence, method=method)
    return (np.asarray(high) - np.asarray(low)) / 2


def seeds_for_half_width(
    half_width: float, rate: float = 0.5, confidence: float = CONFIDENCE, method: str = "wilson"
) -> int:
    """Smallest n whose interval half-width at the anticipated `rate` is <= half_width (rate 0.5 is the
    worst case). Hand example: half-width 0.1 at rate 0.5 needs 93 seeds with Wilson (Wald's formula: 97)."""
    if not 0 < half_width < 0.5 or not 0 <= rate <= 1:
        raise ValueError(f"need half_width in (0, 0.5) and rate in [0, 1], got {half_width}, {rate}")
    z = -_normal_quantile((1 - confidence) / 2)
    limit = int(math.ceil(z * z / (4 * half_width * half_width))) * 2 + 20
    n = np.arange(1, limit + 1)
    widths = interval_half_width(rate, n, confidence, method)
    ok = np.flatnonzero(widths <= half_width + 1e-12)
    if not ok.size:
        raise ValueError(f"no n up to {limit} gives half-width {half_width}")
    return int(n[ok[0]])


def _normal_quantile(q: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(q))


def fisher_power(n_a: int, n_b: int, rate_a: float, rate_b: float, alpha: float = 0.05) -> float:
    """Exact power of Fisher's two-sided test at level alpha with n_a and n_b seeds and true rates rate_a, rate_b.

    Enumerates every outcome (x_a, x_b): power = sum P(x_a) P(x_b) [p(x_a, x_b) <= alpha]. Fisher's p-value
    conditions on the total t = x_a + x_b, where x_a is hypergeometric; scipy's two-sided rule (sum the
    probabilities of tables no more likely than the observed one, relative tolerance 1e-7) is reproduced.
    """
    totals = np.arange(n_a + n_b + 1)[:, None]  # (T, 1)
    x_a = np.arange(n_a + 1)[None, :]  # (1, n_a + 1)
    # Hypergeometric P(x_a | t) = C(n_a, x_a) C(n_b, t - x_a) / C(n_a + n_b, t), zero outside the support.
    x_b = totals - x_a  # (T, n_a + 1)
    inside = (x_b >= 0) & (x_b <= n_b)
    log_pmf = _log_choose(n_a, x_a) + _log_choose(n_b, np.clip(x_b, 0, n_b)) - _log_choose(n_a + n_b, totals)
    pmf = np.where(inside, np.exp(log_pmf), 0.0)  # (T, n_a + 1)
    ordered = np.sort(pmf, axis=1)
    cumulative = np.cumsum(ordered, axis=1)
    # One searchsorted for all rows: shift row t by 2t so the flattened rows stay sorted (pmf values are <= 1).
    shift = 2.0 * totals
    position = np.searchsorted((ordered + shift).ravel(), (pmf * (1 + 1e-7) + shift).ravel(), side="right")
    position = position.reshape(pmf.shape) - totals * (n_a + 1)  # tables no more likely than this one, per row
    p_values = np.take_along_axis(cumulative, np.maximum(position - 1, 0), axis=1)
    reject = p_values <= alpha  # (T, n_a + 1), indexed by (total, x_a)
    grid_a = np.arange(n_a + 1)[:, None]
    grid_b = np.arange(n_b + 1)[None, :]
    rejected = reject[grid_a + grid_b, np.broadcast_to(grid_a, (n_a + 1, n_b + 1))]  # (n_a + 1, n_b + 1)
    weights = binom.pmf(grid_a, n_a, rate_a) * binom.pmf(grid_b, n_b, rate_b)
    return float(np.sum(weights * rejected))


def _log_choose(n: int, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def normal_seeds_per_arm(rate_a: float, rate_b: float, power: float = 0.8, alpha: float = 0.05) -> float:
    """The textbook normal-approximation seeds per arm (pooled variance under H0), no continuity correction."""
    from scipy.stats import norm

    mean = (rate_a + rate_b) / 2
    z_alpha, z_beta = norm.ppf(1 - alpha / 2), norm.ppf(power)
    spread = z_alpha * math.sqrt(2 * mean * (1 - mean)) + z_beta * math.sqrt(
        rate_a * (1 - rate_a) + rate_b * (1 - rate_b)
    )
    return (spread / (rate_a - rate_b)) ** 2


def seeds_per_arm(
    rate_a: float, rate_b: float, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 1000
) -> float:
    """Smallest n seeds per arm for which Fisher's exact two-sided test at level alpha has at least `power`
    (exact, fisher_power) to tell rate_a from rate_b; math.inf when the rates are equal or n > max_seeds.

    Exact power saw-tooths in n, so the answer is the first n that reaches the target, scanning up from 0.8x
    the normal approximation (Fisher's conditional test is conservative and needs more seeds than the normal
    approximation; the tests check the scan against a scan from n = 2).
    """
    if rate_a == rate_b:
        return math.inf
    approx = normal_seeds_per_arm(rate_a, rate_b, power, alpha)
    if approx > max_seeds:
        return math.inf
    start = max(2, int(0.8 * approx))
    for n in range(start, max_seeds + 1):
        if fisher_power(n, n, rate_a, rate_b, alpha) >= power:
            return n
    return math.inf


def seed_plan_table(rates: pd.DataFrame, by: list[str], target: float = 0.95, half_width: float = 0.1) -> pd.DataFrame:
    """Per group of a rate_table: seeds for P(at least one success) >= target (point, conservative, predictive;
    SeedPlan) and the seeds for a Wilson half-width of `half_width` at the observed rate."""
    rows = []
    for _, row in rates.iterrows():
        successes, n = int(row["successes"]), int(row["n"])
        plan = seeds_for_one_success(successes, n, target) if n else None
        rows.append(
            {
                **{c: row[c] for c in by},
                "successes": successes,
                "n": n,
                "rate": row["rate"],
                f"seeds_p{round(target * 100)}_point": plan.point if plan else math.nan,
                f"seeds_p{round(target * 100)}_conservative": plan.conservative if plan else math.nan,
                f"seeds_p{round(target * 100)}_predictive": plan.predictive if plan else math.nan,
                f"seeds_for_ci_pm{half_width:g}": seeds_for_half_width(half_width, row["rate"]) if n else math.nan,
                "rule": row["rule"],
            }
        )
    return pd.DataFrame(rows)


def power_table(pairs: pd.DataFrame, power: float = 0.8, alpha: float = 0.05, max_seeds: int = 300) -> pd.DataFrame:
    """For each compared pair (pairwise_table rows): the seeds per arm that Fisher's exact test needs to tell
    the two observed rates apart with `power` (math.inf when the rates are equal or it takes > max_seeds)."""
    out = pairs[["a", "b", "successes_a", "n_a", "successes_b", "n_b"]].copy()
    out["rate_a"], out["rate_b"] = out["successes_a"] / out["n_a"], out["successes_b"] / out["n_b"]
    out[f"seeds_per_arm_power{round(power * 100)}"] = [
        seeds_per_arm(a, b, power, alpha, max_seeds) for a, b in zip(out["rate_a"], out["rate_b"], strict=True)
    ]
    return out
