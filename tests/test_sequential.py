"""The sequential procedure of analysis/sequential.py: hand-computed cases, then simulated adaptive pools of
Bernoulli cells with known rates (looks after every batch) for coverage and the false 'different' rate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import betaln

from analysis import planning, sequential
from analysis.sequential import Schedule, simulate_pools

ALPHA = 0.05
POOLS = 4000
MC_SLACK = 3 * math.sqrt(ALPHA * (1 - ALPHA) / POOLS)
"""Three Monte Carlo standard errors of a rate of ALPHA estimated from POOLS pools (0.010): a procedure whose true
rate is exactly at its bound fails a check with this slack with probability 0.13%. The simulations use fixed
seeds, so a pass or a failure is the same on every run."""
SCHEDULE = Schedule(min_seeds=4, batch=4, max_seeds=48)


def test_confidence_sequence_matches_the_hand_computed_ends():
    # 0/4: M(p) = B(1/2, 9/2) / B(1/2, 1/2) / (1 - p)^4 < 20  <=>  p < 1 - (ratio / 20)^(1/4).
    ratio = math.exp(betaln(0.5, 4.5) - betaln(0.5, 0.5))
    low, high = sequential.confidence_sequence(0, 4, ALPHA)
    assert low == 0.0 and high == pytest.approx(1 - (ratio / 20) ** 0.25, abs=1e-12)
    # Symmetry: 4/4 is the mirror image, and n = 0 knows nothing.
    low, high = sequential.confidence_sequence(4, 4, ALPHA)
    assert high == 1.0 and low == pytest.approx((ratio / 20) ** 0.25, abs=1e-12)
    assert tuple(map(float, sequential.confidence_sequence(0, 0, ALPHA))) == (0.0, 1.0)


def test_the_ends_are_where_the_bayes_factor_reaches_one_over_alpha():
    successes, n = np.array([3, 7, 12]), np.array([8, 20, 24])
    low, high = sequential.confidence_sequence(successes, n, ALPHA)
    for end in (low, high):
        assert np.allclose(sequential.log_bayes_factor(successes, n, end), math.log(1 / ALPHA), atol=1e-9)
    assert np.all(low < successes / n) and np.all(successes / n < high)
    # Wider than a fixed-n interval: the price of being valid at every n.
    wilson = [planning.wilson_interval(int(s), int(k)) for s, k in zip(successes, n, strict=True)]
    assert all(lo < w[0] and w[1] < hi for lo, hi, w in zip(low, high, wilson, strict=True))


def test_bad_counts_and_levels_are_refused():
    with pytest.raises(ValueError, match="successes <= n"):
        sequential.confidence_sequence(5, 4)
    with pytest.raises(ValueError, match="alpha is 1.5"):
        sequential.confidence_sequence(1, 4, alpha=1.5)
    with pytest.raises(ValueError, match="shapes"):
        sequential.log_evalue_path([1, 0], [1])
    with pytest.raises(ValueError, match="min_seeds"):
        Schedule(min_seeds=8, batch=4, max_seeds=4)


def test_evalue_by_hand():
    # Pair 0: all estimates are 1/2, E = 1. Pair 1 after (1, 0): m_a = 3/4, m_b = 1/4, m = 1/2; outcomes (1, 0)
    # give E = (3/4)(3/4) / ((1/2)(1/2)) = 9/4.
    path = sequential.log_evalue_path([1, 1], [0, 0])
    assert path[0] == 0.0 and path[1] == pytest.approx(math.log(9 / 4))
    assert sequential.decided_different([1] * 8, [0] * 8, ALPHA)
    assert not sequential.decided_different([1, 0] * 4, [0, 1] * 4, ALPHA)
    assert not sequential.decided_different([], [], ALPHA)


def test_schedule_looks_after_every_batch_and_at_the_maximum():
    assert Schedule(4, 4, 12).looks().tolist() == [4, 8, 12]
    assert Schedule(4, 5, 12).looks().tolist() == [4, 9, 12]
    assert Schedule(6, 4, 6).looks().tolist() == [6]


@pytest.mark.parametrize(("rate_a", "rate_b"), [(0.05, 0.05), (0.2, 0.7), (0.5, 0.5), (0.1, 0.4)])
def test_reported_intervals_cover_the_true_rate_at_the_adaptive_stop(rate_a, rate_b):
    rng = np.random.default_rng(16)
    for halfwidth in (None, 0.25):  # 0.25 is reached by 48 seeds at every rate (0.22 at 24/48)
        pools = simulate_pools(rate_a, rate_b, SCHEDULE, ALPHA, rng, POOLS, halfwidth=halfwidth)
        # >= 95% - 1 pp, as the issue asks; the sequences are conservative, so this has a wide margin.
        assert pools.covered_a.mean() >= 0.94 and pools.covered_b.mean() >= 0.94
        assert pools.covered_difference.mean() >= 0.94
        if halfwidth is not None:  # the half-width question stops early: it is not the fixed design in disguise
            assert pools.seeds.mean() < SCHEDULE.max_seeds


@pytest.mark.parametrize("rate", [0.05, 0.3, 0.5, 0.9])
def test_equal_rates_are_called_different_at_most_at_the_stated_level(rate):
    pools = simulate_pools(rate, rate, SCHEDULE, ALPHA, np.random.default_rng(17), POOLS)
    assert pools.decided.mean() <= ALPHA + MC_SLACK
    assert pools.covered_a.mean() >= 0.94


def test_looking_after_every_batch_is_what_a_fixed_level_test_would_not_survive():
    """The control: the same looks with Fisher's fixed-n test at 0.05 each time call equal rates different far
    more often than 5%, which is what the sequential procedure prevents."""
    rng = np.random.default_rng(18)
    looks = SCHEDULE.looks()
    from scipy.stats import fisher_exact

    a = rng.random((400, SCHEDULE.max_seeds)) < 0.5
    b = rng.random((400, SCHEDULE.max_seeds)) < 0.5
    ever = [
        any(
            fisher_exact([[a[p, :n].sum(), n - a[p, :n].sum()], [b[p, :n].sum(), n - b[p, :n].sum()]])[1] <= ALPHA
            for n in looks
        )
        for p in range(400)
    ]
    assert np.mean(ever) > ALPHA + 0.02


def test_adaptive_design_reaches_the_power_of_the_fixed_design_and_reports_its_seeds():
    rng = np.random.default_rng(19)
    fixed = planning.seeds_per_arm(0.2, 0.7, power=0.8, alpha=ALPHA)
    max_seeds, pools = sequential.max_seeds_for_power(0.2, 0.7, 4, 4, rng, power=0.8, alpha=ALPHA)
    assert pools.decided.mean() >= 0.8
    # The figures reported in bench/adaptive_design.py: the mean seeds per cell is within a few of the fixed
    # design's (the price of looking is paid back by the pools that stop early), the maximum is larger.
    assert fixed == 18
    assert abs(pools.seeds.mean() - fixed) < 4 and max_seeds > fixed
    # A larger difference stops early: far fewer seeds than the fixed n of the smaller one.
    early = simulate_pools(0.1, 0.9, Schedule(4, 4, max_seeds), ALPHA, rng)
    assert early.decided.mean() > 0.95 and early.seeds.mean() < fixed / 1.5
