"""analysis.attribution: hand-computed variance components, and synthetic crossed designs in which only the init
seed, only the data seed, or neither decides success, which the estimates and their intervals must tell apart."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis.attribution import (
    attribute,
    attribution_table,
    outcome_grid,
    pigeonhole_resamples,
    shares,
    variance_components,
)

N = 16
"""Seeds per source in the synthetic designs: 16 x 16 runs."""


def by_init(rng, n=N) -> np.ndarray:
    """Success decided by the init seed alone: each row is all successes or all failures."""
    return np.repeat(rng.random((n, 1)) < 0.5, n, axis=1).astype(int)


def by_neither(rng, n=N) -> np.ndarray:
    """Every pair an independent coin: neither seed alone says anything."""
    return (rng.random((n, n)) < 0.5).astype(int)


def test_variance_components_of_hand_computed_grids():
    # Row means 1 and 0: variance 0.5 with n - 1 = 1 in the denominator; nothing varies within a row.
    assert variance_components(np.array([[1, 1], [0, 0]])).tolist() == [0.5, 0.0, 0.0]
    assert variance_components(np.array([[1, 0], [1, 0]])).tolist() == [0.0, 0.5, 0.0]
    # A checkerboard: every row and column mean is 1/2, so all of it is interaction. Residuals are +-1/2 and
    # MS_interaction = 4 * 1/4 / 1 = 1; MS_init = 0 < MS_interaction, so the init estimate is cut to 0.
    assert variance_components(np.array([[1, 0], [0, 1]])).tolist() == [0.0, 0.0, 1.0]
    stack = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 1]]])
    assert variance_components(stack).tolist() == [[0.5, 0.0, 0.0], [0.0, 0.0, 1.0]]
    with pytest.raises(ValueError, match="cross at least 2 init and 2 data seeds"):
        variance_components(np.ones((1, 4)))


def test_shares_are_nan_where_nothing_varies():
    assert shares(np.array([1.0, 3.0, 0.0])).tolist() == [0.25, 0.75, 0.0]
    assert np.isnan(shares(np.zeros(3))).all()


def test_pigeonhole_resamples_keep_every_pair_of_the_drawn_seeds():
    grid = np.arange(12).reshape(3, 4)  # the value names its pair: 4 * init + data
    resampled = pigeonhole_resamples(grid, np.random.default_rng(0), reps=50)
    assert resampled.shape == (50, 3, 4)
    for sample in resampled:
        inits, datas = sample[:, 0] // 4, sample[0] % 4
        assert (sample == 4 * inits[:, None] + datas[None, :]).all()


def test_only_the_init_seed_matters():
    rng = np.random.default_rng(1)
    result = attribute(by_init(rng), rng, reps=500)
    assert (result["init_share"], result["init_share_low"], result["init_share_high"]) == (1.0, 1.0, 1.0)
    assert result["data_share_high"] == 0.0 and result["interaction_share_high"] == 0.0


def test_only_the_data_seed_matters():
    rng = np.random.default_rng(2)
    result = attribute(by_init(rng).T, rng, reps=500)
    assert (result["data_share"], result["data_share_low"], result["data_share_high"]) == (1.0, 1.0, 1.0)
    assert result["init_share_high"] == 0.0 and result["interaction_share_high"] == 0.0


def test_when_neither_seed_alone_matters_the_pair_takes_the_spread():
    rng = np.random.default_rng(3)
    result = attribute(by_neither(rng), rng, reps=500)
    assert result["init_share_high"] < 0.25 and result["data_share_high"] < 0.25
    assert result["interaction_share_low"] > 0.6


def test_a_noisy_init_effect_is_found_with_an_interval_around_its_true_share():
    # P(success) is 0.1 or 0.9 by init seed: Var(p) = 0.16 of Var(y) = 0.25, a true init share of 0.64; the rest
    # is the coin each pair tosses.
    rng = np.random.default_rng(4)
    p = np.where(rng.random(N) < 0.5, 0.1, 0.9)
    result = attribute((rng.random((N, N)) < p[:, None]).astype(int), rng, reps=1000)
    assert result["init_share_low"] < 0.64 < result["init_share_high"]
    assert result["init_share_low"] > 0.3
    assert result["data_share_high"] < 0.15


def test_a_grid_without_spread_has_no_shares():
    result = attribute(np.zeros((4, 4)), np.random.default_rng(0), reps=100)
    assert math.isnan(result["init_share"]) and math.isnan(result["init_share_low"])
    assert result["degenerate"] == 1.0


def test_attribute_refuses_outcomes_that_are_not_binary():
    with pytest.raises(ValueError, match="other than 0 and 1"):
        attribute(np.full((2, 2), 0.5), np.random.default_rng(0))


def crossed_trials(grids: dict[int, np.ndarray]) -> pd.DataFrame:
    """A trials frame as load_trials gives it: one row per run, width as the cell, params as columns."""
    rows = [
        {"width": width, "seed": 0, "init_seed": i, "data_seed": d, "success": bool(grid[i, d])}
        for width, grid in grids.items()
        for i in range(grid.shape[0])
        for d in range(grid.shape[1])
    ]
    return pd.DataFrame(rows)


def test_attribution_table_has_a_row_per_cell():
    rng = np.random.default_rng(5)
    grids = {12: by_init(rng, 6), 24: by_init(rng, 6).T}
    table = attribution_table(crossed_trials(grids), ["width"], np.random.default_rng(0), reps=200)
    assert table["width"].tolist() == [12, 24]
    assert table[["n_init", "n_data"]].to_numpy().tolist() == [[6, 6], [6, 6]]
    assert table["successes"].tolist() == [int(grids[12].sum()), int(grids[24].sum())]
    assert table["init_share"].tolist() == [1.0, 0.0] and table["data_share"].tolist() == [0.0, 1.0]


def test_outcome_grid_resolves_unset_seeds_from_seed():
    # A plain seed pool: init_seed and data_seed unset (None), both equal to `seed`: only the diagonal is run.
    trials = pd.DataFrame({"seed": [0, 1], "init_seed": [None, None], "data_seed": [None, None], "success": [1, 0]})
    with pytest.raises(ValueError, match="not fully crossed: 2 of the 4"):
        outcome_grid(trials)
    crossed = pd.DataFrame(
        {"seed": [7] * 4, "init_seed": [0, 0, 1, 1], "data_seed": [None, 3, None, 3], "success": [1, 1, 0, 1]}
    )
    grid = outcome_grid(crossed)
    assert grid.index.tolist() == [0, 1] and grid.columns.tolist() == [3, 7]
    assert grid.to_numpy().tolist() == [[1, 1], [1, 0]]


def test_outcome_grid_refuses_a_pair_run_twice():
    trials = crossed_trials({4: np.ones((2, 2), dtype=int)})
    with pytest.raises(ValueError, match=r"ran more than once, e.g. \(0, 1\)"):
        outcome_grid(pd.concat([trials, trials.iloc[[1]]]))
