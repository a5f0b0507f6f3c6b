"""Looking at a pool after every batch of seeds without inflating its error rates: anytime-valid confidence
sequences for a success rate, and the decisions an adaptive pool takes from them.

The procedure (Robbins 1970's mixture martingale for a Bernoulli rate; the beta-binomial confidence sequence of
Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric, nonasymptotic confidence sequences",
Ann. Statist. 49(2), section 3 and Proposition 6):

- After n seeds with s successes, for every candidate rate p the Bayes factor of a Beta(a, b) mixture over the
  rate against p is
      M_n(p) = B(a + s, b + n - s) / B(a, b) / (p^s (1 - p)^(n - s)).
  Under the true rate p, M_n(p) is a nonnegative martingale with M_0 = 1 (each seed multiplies it by the
  mixture's predictive probability of the outcome over p's), so by Ville's inequality
      P(there is an n with M_n(p) >= 1/alpha) <= alpha.
- The confidence sequence at level alpha is {p : M_n(p) < 1/alpha}. It holds at every n at once with
  probability >= 1 - alpha, so it holds at any stopping time, however the stop was chosen: looking after every
  batch and stopping when a question is answered never inflates the error. log M_n(p) is convex in p with its
  minimum at s/n, where M_n <= 1 (the mixture never beats the maximum likelihood), so the set is an interval
  around s/n; its ends are found by bisection on the log scale.
- The prior is Jeffreys' Beta(1/2, 1/2) (DEFAULT_PRIOR): the set's width at n seeds is close to the smallest for
  rates near 0 and 1, where training success rates often lie.

Comparing two cells ("do they differ?") uses a test built for it, because the difference of two sequences at
alpha/2 each is valid but wasteful (at rates 0.2 vs 0.7 it needs about twice the seeds of Fisher's test):
- the two-sample e-process of Turner, Ly & Grunwald 2024 ("Generic E-variables for exact sequential k-sample tests
  that allow for optional stopping", Stat. Probab. Lett. 107, 110003; arXiv 2106.02693), on seeds paired by
  index (seed i of cell a with seed i of cell b). For pair i, with the Krichevsky-Trofimov estimates
  m_a = (s_a + 1/2) / (i + 1), m_b likewise from the pairs before it, and their mean m,
      E_i = q_a(y_a) q_b(y_b) / (q_m(y_a) q_m(y_b)),   q_r(y) = r if y = 1 else 1 - r.
  For every common rate p of the null, E_p[E_i | past] <= 1: the expectation is x (2 - x) with
  x = E_p[q_a / q_m] (because q_a / q_m + q_b / q_m = 2), and x (2 - x) <= 1. So the running product is a
  nonnegative supermartingale under every null rate, and Ville's inequality gives
      P(the product ever reaches 1/alpha | rates equal) <= alpha.
- The comparison is decided "different" when the product reaches 1/alpha; otherwise it is "not decided" (the
  pool never concludes "equal"). The interval reported with it is the difference of the two cells' sequences at
  alpha/2 (union bound: valid at every n with probability >= 1 - alpha), an estimate of the size; it can still
  include 0 when the test has decided (it is the more conservative of the two).

Decisions, each at its own level alpha (per question, not familywise):
- a cell question "interval half-width <= h" is decided when the cell's sequence at alpha is that narrow;
- a comparison is decided "different" as above.
Because every one of these holds at any stopping time, a question may stop on the data of another (a cell grown
for a comparison also narrows its own interval) without losing its level.

The price of looking at will: a sequence is wider than a fixed-n interval at the same n (by about sqrt(log n)),
so a design whose n is right in advance needs fewer seeds; the adaptive pool wins when the answer comes early
(large differences, rates near 0 or 1). bench/adaptive_design.py prints the comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import betaln, xlogy

DEFAULT_PRIOR = (0.5, 0.5)
"""Jeffreys' Beta(1/2, 1/2) mixing distribution over the rate."""
BISECTION_STEPS = 60
"""Halvings of [0, 1]: 2^-60 is below float resolution, so the ends are exact to rounding."""


def log_bayes_factor(successes, n, rate, prior: tuple[float, float] = DEFAULT_PRIOR) -> np.ndarray:
    """log M_n(rate): the Beta(prior) mixture's log Bayes factor against `rate` after `successes` of `n` seeds.
    Broadcasts over arrays; 0 log 0 = 0, so rates 0 and 1 are allowed (M is infinite where they are excluded)."""
    s, n, p = np.asarray(successes, float), np.asarray(n, float), np.asarray(rate, float)
    a, b = prior
    log_mixture = betaln(a + s, b + n - s) - betaln(a, b)
    with np.errstate(divide="ignore"):
        return log_mixture - xlogy(s, p) - xlogy(n - s, 1 - p)


def confidence_sequence(
    successes, n, alpha: float = 0.05, prior: tuple[float, float] = DEFAULT_PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high): the ends of {p : M_n(p) < 1/alpha}, elementwise over arrays of counts (any equal shapes).

    Valid at every n at once: P(the true rate is outside at some n) <= alpha. At n = 0 it is [0, 1].
    Hand example (tests): 0 of 4 seeds at alpha 0.05 with Jeffreys' prior gives [0, 1 - (B(1/2, 9/2)/B(1/2, 1/2)
    / 20)^(1/4)] = [0, 0.658]."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha is {alpha}; give a level in (0, 1), e.g. 0.05")
    s, n = np.broadcast_arrays(np.asarray(successes, float), np.asarray(n, float))
    if np.any((s < 0) | (s > n)):
        raise ValueError("need 0 <= successes <= n for every count")
    level = np.log(1 / alpha)
    centre = np.divide(s, n, out=np.full(n.shape, 0.5), where=n > 0)

    def inside(p: np.ndarray) -> np.ndarray:
        return log_bayes_factor(s, n, p, prior) < level

    # Lower end: log M decreases on [0, centre]; keep `outside` outside and `kept` inside the set.
    outside, kept = np.zeros_like(centre), centre.copy()
    for _ in range(BISECTION_STEPS):
        middle = (outside + kept) / 2
        ok = inside(middle)
        kept, outside = np.where(ok, middle, kept), np.where(ok, outside, middle)
    low = np.where(inside(np.zeros_like(centre)), 0.0, kept)
    kept, outside = centre.copy(), np.ones_like(centre)
    for _ in range(BISECTION_STEPS):
        middle = (outside + kept) / 2
        ok = inside(middle)
        kept, outside = np.where(ok, middle, kept), np.where(ok, outside, middle)
    high = np.where(inside(np.ones_like(centre)), 1.0, kept)
    return low, high


def difference_interval(
    successes_a, n_a, successes_b, n_b, alpha: float = 0.05, prior: tuple[float, float] = DEFAULT_PRIOR
) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) for rate_a - rate_b, valid at every n at once with probability >= 1 - alpha: each cell's
    sequence at alpha/2 (union bound), low = low_a - high_b, high = high_a - low_b."""
    low_a, high_a = confidence_sequence(successes_a, n_a, alpha / 2, prior)
    low_b, high_b = confidence_sequence(successes_b, n_b, alpha / 2, prior)
    return low_a - high_b, high_a - low_b


def log_evalue_path(outcomes_a, outcomes_b) -> np.ndarray:
    """log of the two-sample e-process (Turner, Ly & Grunwald 2024; module docstring) after each pair of seeds.

    outcomes_a, outcomes_b: (..., n) arrays of 0/1 outcomes in seed order, paired by index (the caller passes
    the first min(n_a, n_b) seeds of each cell). Returns (..., n): entry i is log E after pairs 0..i.
    Hand example (tests): one pair, a succeeds and b fails: m_a = m_b = m = 1/2, so E = 1."""
    y_a, y_b = np.asarray(outcomes_a, bool), np.asarray(outcomes_b, bool)
    if y_a.shape != y_b.shape:
        raise ValueError(f"pair the outcomes: shapes {y_a.shape} and {y_b.shape} differ")
    before = np.arange(y_a.shape[-1])  # pairs seen before pair i
    successes_a = np.cumsum(y_a, axis=-1) - y_a  # (..., n): successes before pair i
    successes_b = np.cumsum(y_b, axis=-1) - y_b
    rate_a = (successes_a + 0.5) / (before + 1)  # Krichevsky-Trofimov: never 0 or 1
    rate_b = (successes_b + 0.5) / (before + 1)
    rate_null = (rate_a + rate_b) / 2

    def log_q(rate: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.log(np.where(y, rate, 1 - rate))

    steps = log_q(rate_a, y_a) + log_q(rate_b, y_b) - log_q(rate_null, y_a) - log_q(rate_null, y_b)
    return np.cumsum(steps, axis=-1)


def decided_different(outcomes_a, outcomes_b, alpha: float = 0.05) -> bool:
    """The comparison's decision: the e-process over the paired seeds has reached 1/alpha at the last pair. (It
    is checked at every look, so a pool stops at the first look where this holds.)"""
    path = log_evalue_path(outcomes_a, outcomes_b)
    return bool(path.size) and bool(path[..., -1] >= np.log(1 / alpha))


def interval_table(max_seeds: int, alpha: float, prior: tuple[float, float] = DEFAULT_PRIOR) -> np.ndarray:
    """Every sequence up to max_seeds at once, for simulations: (max_seeds + 1, max_seeds + 1, 2) array whose
    [n, s] entry is (low, high) after s successes of n seeds (NaN where s > n)."""
    n, s = np.meshgrid(np.arange(max_seeds + 1), np.arange(max_seeds + 1), indexing="ij")  # (N+1, N+1)
    valid = s <= n
    low, high = confidence_sequence(np.where(valid, s, 0), n, alpha, prior)
    table = np.stack([low, high], axis=-1)
    table[~valid] = np.nan
    return table


# --- simulated adaptive pools -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Schedule:
    """When an adaptive pool looks: after min_seeds, then every `batch` seeds, up to max_seeds per cell."""

    min_seeds: int
    batch: int
    max_seeds: int

    def __post_init__(self) -> None:
        if not 1 <= self.min_seeds <= self.max_seeds or self.batch < 1:
            raise ValueError(f"need 1 <= min_seeds <= max_seeds and batch >= 1, got {self}")

    def looks(self) -> np.ndarray:
        """Seeds per cell at each look: min_seeds, min_seeds + batch, ..., capped at max_seeds (the last look)."""
        sizes = np.arange(self.min_seeds, self.max_seeds, self.batch)
        return np.append(sizes, self.max_seeds)


@dataclass(frozen=True)
class Simulated:
    """The outcome of `pools` simulated adaptive pools (arrays of shape (pools,), cells a and b)."""

    seeds: np.ndarray
    """Seeds each cell ran when the pool stopped (equal in both cells: they grow together)."""
    decided: np.ndarray
    """The question was answered (half-width reached in both cells, or 'different')."""
    covered_a: np.ndarray
    """Cell a's reported interval (its sequence at alpha) holds its true rate."""
    covered_b: np.ndarray
    covered_difference: np.ndarray
    """The reported difference interval holds rate_a - rate_b (comparison pools only; True otherwise)."""


def simulate_pools(
    rate_a: float,
    rate_b: float,
    schedule: Schedule,
    alpha: float,
    rng: np.random.Generator,
    pools: int = 2000,
    halfwidth: float | None = None,
) -> Simulated:
    """Simulate `pools` adaptive pools of two Bernoulli cells with known rates: looks after schedule.looks()
    seeds, stopping at the first look where the question is answered (halfwidth given: both cells' sequences at
    alpha are at most that wide; else the comparison decides 'different'), or at max_seeds."""
    looks = schedule.looks()  # (L,)
    outcomes_a = rng.random((pools, schedule.max_seeds)) < rate_a  # (P, N)
    outcomes_b = rng.random((pools, schedule.max_seeds)) < rate_b
    counts_a = np.cumsum(outcomes_a, axis=1)[:, looks - 1]  # (P, L): successes at each look
    counts_b = np.cumsum(outcomes_b, axis=1)[:, looks - 1]
    cell = interval_table(schedule.max_seeds, alpha)
    half = interval_table(schedule.max_seeds, alpha / 2)
    low_a, high_a = cell[looks, counts_a, 0], cell[looks, counts_a, 1]  # (P, L)
    low_b, high_b = cell[looks, counts_b, 0], cell[looks, counts_b, 1]
    diff_low = half[looks, counts_a, 0] - half[looks, counts_b, 1]
    diff_high = half[looks, counts_a, 1] - half[looks, counts_b, 0]
    if halfwidth is not None:
        answered = ((high_a - low_a) / 2 <= halfwidth) & ((high_b - low_b) / 2 <= halfwidth)
    else:
        log_evalue = log_evalue_path(outcomes_a, outcomes_b)[:, looks - 1]  # (P, L)
        answered = log_evalue >= np.log(1 / alpha)
    stop = np.where(answered.any(axis=1), answered.argmax(axis=1), len(looks) - 1)  # (P,) first answered look
    rows = np.arange(pools)
    true_difference = rate_a - rate_b
    return Simulated(
        seeds=looks[stop],
        decided=answered[rows, stop],
        covered_a=(low_a[rows, stop] <= rate_a) & (rate_a <= high_a[rows, stop]),
        covered_b=(low_b[rows, stop] <= rate_b) & (rate_b <= high_b[rows, stop]),
        covered_difference=(diff_low[rows, stop] <= true_difference) & (true_difference <= diff_high[rows, stop])
        if halfwidth is None
        else np.ones(pools, bool),
    )


def max_seeds_for_power(
    rate_a: float,
    rate_b: float,
    min_seeds: int,
    batch: int,
    rng: np.random.Generator,
    power: float = 0.8,
    alpha: float = 0.05,
    pools: int = 2000,
    limit: int = 400,
) -> tuple[int, Simulated]:
    """The smallest max_seeds (min_seeds + k * batch) at which simulated adaptive comparisons of rate_a and rate_b
    decide 'different' in at least `power` of `pools` pools, and those pools; ValueError past `limit` seeds."""
    for max_seeds in range(min_seeds, limit + 1, batch):
        simulated = simulate_pools(rate_a, rate_b, Schedule(min_seeds, batch, max_seeds), alpha, rng, pools)
        if simulated.decided.mean() >= power:
            return max_seeds, simulated
    raise ValueError(f"no max_seeds up to {limit} reaches power {power} for rates {rate_a} vs {rate_b}")
