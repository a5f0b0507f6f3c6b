"""Which randomness decides success: the spread of binary success in a crossed init_seed x data_seed design,
split into what the initial weights explain, what the data stream explains, and what only the pair explains.

The decomposition is the two-way crossed random-effects ANOVA without replication on the probability scale:
success y[i, d] of init seed i and data seed d is mu + a_i + b_d + e_id, and

    init        = Var_i(P(success | init seed i))      the main effect of the initial weights
    data        = Var_d(P(success | data seed d))      the main effect of everything drawn after them
    interaction = the rest of Var(y)                   neither seed alone: the pair decides (plus any noise the
                                                       seeds do not fix, e.g. GPU non-determinism)

`init / (init + data + interaction)` is the first-order Sobol index of the init seed: the share of the outcome's
variance that knowing the init seed alone removes. The estimates are the unbiased ANOVA (method-of-moments) ones,
negative values set to 0. Intervals are percentile intervals of the two-way ("pigeonhole") bootstrap, which
resamples init seeds and data seeds independently and keeps every pair of the chosen ones (Owen 2007, "The
pigeonhole bootstrap"; Bouthillier et al. 2021, "Accounting for variance in machine learning benchmarks", who
split benchmark variance by its sources the same way). Owen shows this bootstrap is conservative for a mean, so
the intervals err wide. With 4 x 4 seeds they are wide in any case: they say which source dominates only when it
dominates clearly.

Grids are (n_init, n_data) arrays of 0/1, or (..., n_init, n_data) stacks; every bootstrap takes an explicit
np.random.Generator.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis.outcomes import grouped
from seedcore.record import CONFIDENCE

SOURCES = ("init", "data", "interaction")
"""The parts of the spread, in the order of the last axis of `variance_components`."""


def variance_components(grids: np.ndarray) -> np.ndarray:
    """(..., n_init, n_data) outcomes -> (..., 3) ANOVA estimates of the init, data and interaction variance
    components, negative estimates set to 0. Needs at least 2 init and 2 data seeds.

    Hand example: [[1, 1], [0, 0]] (init seed 0 always succeeds, 1 never) -> [0.5, 0, 0]: the row means 1 and 0
    have variance 0.5 (n - 1 in the denominator), and nothing varies within a row."""
    y = np.asarray(grids, dtype=float)
    n_init, n_data = y.shape[-2:]
    if n_init < 2 or n_data < 2:
        raise ValueError(f"a {n_init} x {n_data} grid has no spread to split; cross at least 2 init and 2 data seeds")
    init_means = y.mean(axis=-1, keepdims=True)  # (..., n_init, 1)
    data_means = y.mean(axis=-2, keepdims=True)  # (..., 1, n_data)
    grand = y.mean(axis=(-2, -1), keepdims=True)
    ms_init = n_data * ((init_means - grand) ** 2).sum(axis=(-2, -1)) / (n_init - 1)
    ms_data = n_init * ((data_means - grand) ** 2).sum(axis=(-2, -1)) / (n_data - 1)
    residual = y - init_means - data_means + grand
    ms_interaction = (residual**2).sum(axis=(-2, -1)) / ((n_init - 1) * (n_data - 1))
    # E[MS_init] = interaction + n_data * init, E[MS_data] = interaction + n_init * data (crossed, no replication).
    init = np.maximum((ms_init - ms_interaction) / n_data, 0.0)
    data = np.maximum((ms_data - ms_interaction) / n_init, 0.0)
    return np.stack([init, data, ms_interaction], axis=-1)


def shares(components: np.ndarray) -> np.ndarray:
    """(..., 3) variance components -> (..., 3) shares of their sum; NaN where nothing varies (every run
    succeeded, or every run failed)."""
    components = np.asarray(components, dtype=float)
    total = components.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, components / np.where(total > 0, total, 1.0), math.nan)


def pigeonhole_resamples(grid: np.ndarray, rng: np.random.Generator, reps: int) -> np.ndarray:
    """(n_init, n_data) -> (reps, n_init, n_data): each resample draws n_init init seeds and, independently,
    n_data data seeds with replacement, and keeps the outcome of every drawn pair."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    grid = np.asarray(grid)
    n_init, n_data = grid.shape
    rows = rng.integers(n_init, size=(reps, n_init))
    columns = rng.integers(n_data, size=(reps, n_data))
    return grid[rows[:, :, None], columns[:, None, :]]


def attribute(
    grid: np.ndarray, rng: np.random.Generator, reps: int = 2000, confidence: float = CONFIDENCE
) -> dict[str, float]:
    """The attribution of one (n_init, n_data) grid of 0/1 outcomes: for each source in SOURCES its `share`, the
    `share_low`/`share_high` of its percentile interval, and its variance component `var` (probability^2); and
    `degenerate`, the fraction of resamples in which nothing varied (left out of the share intervals)."""
    grid = np.asarray(grid, dtype=float)
    if not np.isin(grid, (0.0, 1.0)).all():
        raise ValueError("the grid holds outcomes other than 0 and 1; pass success as 0/1 (or bool)")
    point = variance_components(grid)
    resampled = shares(variance_components(pigeonhole_resamples(grid, rng, reps)))  # (reps, 3)
    varied = ~np.isnan(resampled[:, 0])
    tail = 100 * (1 - confidence) / 2
    if varied.any():
        low, high = np.percentile(resampled[varied], [tail, 100 - tail], axis=0)
    else:
        low = high = np.full(len(SOURCES), math.nan)
    out: dict[str, float] = {}
    for k, (source, share) in enumerate(zip(SOURCES, shares(point), strict=True)):
        out |= {
            f"{source}_share": float(share),
            f"{source}_share_low": float(low[k]),
            f"{source}_share_high": float(high[k]),
            f"{source}_var": float(point[k]),
        }
    out["degenerate"] = float(1 - varied.mean())
    return out


def resolved_seeds(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials with init_seed and data_seed filled in as the trainer resolved them: each is the run's `seed`
    where the trial left it unset (RunConfig.run_seeds)."""
    out = trials.copy()
    for column in ("init_seed", "data_seed"):
        given = out[column] if column in out else pd.Series(None, index=out.index, dtype=object)
        out[column] = given.where(given.notna(), out["seed"]).astype("int64")
    return out


def outcome_grid(trials: pd.DataFrame) -> pd.DataFrame:
    """One cell's success as a table: a row per init seed, a column per data seed, 1/0 per run.

    Raises ValueError naming the problem when the design is not fully crossed with one run per pair."""
    trials = resolved_seeds(trials)
    pairs = trials[["init_seed", "data_seed"]]
    repeated = pairs[pairs.duplicated(keep=False)].drop_duplicates()
    if len(repeated):
        first = repeated.iloc[0]
        raise ValueError(
            f"{len(repeated)} (init_seed, data_seed) pair(s) ran more than once, e.g. ({first.init_seed}, "
            f"{first.data_seed}); keep one run per pair (see the duplicate_trial_key column of load_trials)"
        )
    grid = trials.pivot(index="init_seed", columns="data_seed", values="success").astype(float)
    missing = int(grid.isna().to_numpy().sum())
    if missing:
        raise ValueError(
            f"the design is not fully crossed: {missing} of the {grid.size} (init_seed, data_seed) pairs have no "
            "run; finish the pool (`sweeps run` resumes it) or analyse the seeds that are complete"
        )
    return grid.astype(int)


def attribution_table(
    trials: pd.DataFrame,
    by: list[str],
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """One row per cell (the `by` columns, usually the science axes): n_init, n_data, successes, rate and
    `attribute` of its outcome grid. `trials` is a trials frame (analysis.load.load_trials: columns seed,
    init_seed, data_seed and success) of a crossed design; a run that did not succeed counts as a failure."""
    rows = []
    for cell, group in grouped(trials, by):
        grid = outcome_grid(group).to_numpy()
        n_init, n_data = grid.shape
        rows.append(
            {
                **cell,
                "n_init": n_init,
                "n_data": n_data,
                "successes": int(grid.sum()),
                "rate": float(grid.mean()),
                **attribute(grid, rng, reps, confidence),
            }
        )
    return pd.DataFrame(rows)
