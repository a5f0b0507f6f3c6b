"""Adaptive pools against fixed-size designs of the same power, by simulation (analysis/sequential.py).

For each pair of true rates: the fixed design's seeds per cell (Fisher's exact test, 80% power, alpha 0.05;
analysis.planning.seeds_per_arm), the smallest adaptive max_seeds (looks after 4 seeds, then every 4) with the
same simulated power, and the seeds the adaptive pools used (mean, median); then equal rates run with that
max_seeds, where the adaptive pool must not call them different more often than alpha. Coverage is the share of
pools whose reported cell intervals both hold the true rates when the pool stopped.

    python -m bench.adaptive_design [--pools 2000]
"""

from __future__ import annotations

import argparse

import numpy as np

from analysis.planning import seeds_per_arm
from analysis.sequential import Schedule, max_seeds_for_power, simulate_pools

ALPHA, POWER, MIN_SEEDS, BATCH = 0.05, 0.8, 4, 4
DIFFERENT = [(0.2, 0.7), (0.1, 0.6), (0.3, 0.9), (0.1, 0.9), (0.0, 0.5)]
EQUAL = [0.05, 0.3, 0.5]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", type=int, default=2000, help="simulated pools per row")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(16)
    rows = []
    for rate_a, rate_b in DIFFERENT:
        fixed = seeds_per_arm(rate_a, rate_b, POWER, ALPHA)
        max_seeds, pools = max_seeds_for_power(rate_a, rate_b, MIN_SEEDS, BATCH, rng, POWER, ALPHA, args.pools)
        rows.append(_row(f"{rate_a} vs {rate_b}", fixed, max_seeds, pools))
    # The design planned for the first pair, met by other truths: the fixed pool runs its n whatever the truth,
    # the adaptive one stops when the answer is in (and on equal rates must not call them different).
    planned_n, design = rows[0]["fixed_n"], Schedule(MIN_SEEDS, BATCH, rows[0]["max_seeds"])
    planned = f"planned for {DIFFERENT[0][0]} vs {DIFFERENT[0][1]}: "
    for rate_a, rate_b in [*DIFFERENT[3:], *((rate, rate) for rate in EQUAL)]:
        pools = simulate_pools(rate_a, rate_b, design, ALPHA, rng, args.pools)
        rows.append(_row(f"{planned}{rate_a} vs {rate_b}", planned_n, design.max_seeds, pools))
    print(
        f"Adaptive pools (anytime-valid: two-sample e-process, beta-binomial confidence sequences; alpha {ALPHA}; "
        f"looks after {MIN_SEEDS} seeds, then every {BATCH}) against fixed designs of {POWER:.0%} power "
        f"(Fisher's exact test), {args.pools} simulated pools per row. Seeds are per cell."
    )
    header = (
        f"{'true rates':<38}{'fixed n':>8}{'max':>6}{'different':>11}{'mean seeds':>12}{'median':>8}{'coverage':>10}"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row['rates']:<38}{row['fixed_n']:>8}{row['max_seeds']:>6}{row['different']:>11.3f}"
            f"{row['mean_seeds']:>12.1f}{row['median_seeds']:>8.0f}{row['coverage']:>10.3f}"
        )
    print("`different`: share of pools that decided 'different' (power; on equal rates, the false-different rate).")
    return rows


def _row(rates: str, fixed: float, max_seeds: int, pools) -> dict:
    return {
        "rates": rates,
        "fixed_n": int(fixed),
        "max_seeds": max_seeds,
        "different": float(pools.decided.mean()),
        "mean_seeds": float(pools.seeds.mean()),
        "median_seeds": float(np.median(pools.seeds)),
        "coverage": float((pools.covered_a & pools.covered_b).mean()),
    }


if __name__ == "__main__":
    main()
