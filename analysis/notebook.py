"""The opening every analysis notebook shares: resolve the store, load the sweep's trials, save them as a table
and show the pool's summary and outcome counts. A notebook's setup cell is one call to `setup`."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from analysis import figures, load, outcomes


class Setup(NamedTuple):
    """What the notebooks go on with (unpack it: `trials, by, unit, rng = setup(...)`)."""

    trials: pd.DataFrame
    """One row per recorded run (load.load_trials)."""
    by: list[str]
    """The sweep's science axes without the seed: the columns every table groups by."""
    unit: str
    """What a step is for this trainer (steps, episodes), for axis labels."""
    rng: np.random.Generator
    """Every bootstrap in the notebook draws from this generator, seeded 0, so a report is reproducible."""


def setup(experiment: str, tracking_uri: str | None, output_dir: str | Path, name: str, counts: bool = True) -> Setup:
    """Load the experiment's trials from tracking_uri (None: $MLFLOW_TRACKING_URI, else the sweeps' default store),
    write them to <output_dir>/tables/<name>_trials.csv, display the pool summary and (with `counts`) the outcome
    counts per configuration, and return what the notebook goes on with."""
    from IPython.display import Markdown, display

    from analysis.report import default_tracking_uri

    trials = load.load_trials(experiment, tracking_uri or default_tracking_uri())
    by = [a for a in trials.attrs["science_axes"] if a != "seed"]
    unit = trials["step_unit"].iloc[0] if len(trials) else "steps"
    figures.save_table(trials, output_dir, f"{name}_trials")
    display(Markdown(outcomes.pool_summary(trials)))
    if counts:
        display(outcomes.counts_table(trials, by))
    return Setup(trials, by, unit, np.random.default_rng(0))
