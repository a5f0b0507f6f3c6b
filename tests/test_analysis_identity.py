"""Every run in its cell from whatever its record carries (issue 14, defect 3), in a real sqlite MLflow store.

The pool, as the recorder leaves it after faults: trials whose runs hold params and identifying tags; one whose
worker crashed between creating the run (with its tags) and logging its params; one from before the `axes` tag
(only the trainer's CONFIG_TAGS), interrupted before logging params; and a run that names no cell at all (created
by hand in the sweep's experiment). No training: the loader reads only what is recorded.
"""

from __future__ import annotations

import json
import warnings

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis import figures, load, outcomes, rates, survival
from neuralgpu.config import TrainConfig
from seedcore.record import AXES_TAG, CONFIG_TAGS, NEURALGPU

EXPERIMENT = "identity-pool"
AXES = ("width", "seed", "lr", "eval_lengths")
"""The trials' axis fields: width the science axis; seed, lr and a list-valued field as nuisance axes."""


def spelled(value: object) -> str:
    """A param's (and an axis tag's) spelling, as the recorder writes it (sweeps.tracking._param_value)."""
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


def run_config(width: int, seed: int) -> dict:
    values = {"width": width, "seed": seed, "lr": 0.003, "eval_lengths": [11, 13], "task": "badd"}
    return TrainConfig.from_dict(values, source="identity pool").to_dict()


def create_trial(client, experiment_id, parent_id, index, config, axes_tags=True):
    """A trial's run as the recorder creates it: identifying tags in the create call itself."""
    tags = {
        "seedpool.role": "trial",
        "sweep": EXPERIMENT,
        "trial_key": f"key{index:02d}",
        "trainer": NEURALGPU,
        "mlflow.parentRunId": parent_id,
        "cell": f"width-{config['width']}",
        **{name: str(config[name]) for name in CONFIG_TAGS[NEURALGPU]},
    }
    if axes_tags:
        tags[AXES_TAG] = ",".join(AXES)
        tags.update({name: spelled(config[name]) for name in AXES})
    return client.create_run(experiment_id, run_name=f"trial{index}", tags=tags).info.run_id


def finish(client, run_id, success, steps=100):
    now = 0
    metrics = [Metric("success", float(success), now, steps), Metric("steps", float(steps), now, steps)]
    if success:
        metrics.append(Metric("steps_to_success", float(steps), now, steps))
    reason = "success" if success else "max_steps"
    client.log_batch(run_id, metrics=metrics, tags=[RunTag("stop_reason", reason)])
    client.set_terminated(run_id, "FINISHED")


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    """(uri, run ids by kind): 11 trials with params (width 8: 6, width 16: 5), the crashed tags-only trial
    (width 8), the old-style interrupted one (width 16) and the run without identity."""
    root = tmp_path_factory.mktemp("identity_pool")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment_id = client.create_experiment(EXPERIMENT, artifact_location=(root / "artifacts").as_uri())
    parent_id = client.create_run(experiment_id, tags={"seedpool.role": "parent", "sweep": EXPERIMENT}).info.run_id
    client.log_batch(parent_id, params=[Param("science_axes", "width"), Param("trials", "14")])
    ids = {"params": []}
    plan = [(8, seed) for seed in range(6)] + [(16, seed) for seed in range(5)]
    for index, (width, seed) in enumerate(plan):
        config = run_config(width, seed)
        run_id = create_trial(client, experiment_id, parent_id, index, config)
        client.log_batch(run_id, params=[Param(k, spelled(v)) for k, v in config.items()])
        finish(client, run_id, success=seed % 2 == 0)
        ids["params"].append(run_id)
    # The worker crashed between creating the run and logging its params: the driver marked it FAILED.
    ids["tags"] = create_trial(client, experiment_id, parent_id, 11, run_config(8, 6))
    client.log_batch(ids["tags"], tags=[RunTag("stop_reason", "error"), RunTag("error", "worker lost")])
    client.set_terminated(ids["tags"], "FAILED")
    # Created by the recorder before the `axes` tag, then the driver was killed before the params went out.
    ids["old"] = create_trial(client, experiment_id, parent_id, 12, run_config(16, 5), axes_tags=False)
    client.set_terminated(ids["old"], "KILLED")
    # A run someone made by hand in the sweep's experiment: no params, no tags that name a cell.
    ids["none"] = client.create_run(experiment_id, run_name="scratch").info.run_id
    client.log_batch(ids["none"], metrics=[Metric("success", 1.0, 0, 0)])
    client.set_terminated(ids["none"], "FINISHED")
    client.set_terminated(parent_id, "FINISHED")
    return uri, ids


@pytest.fixture(scope="module")
def trials(pool):
    uri, ids = pool
    with pytest.warns(load.UnidentifiedRunsWarning, match=f"1 run.*carry no identity.*{ids['none']}") as seen:
        frame = load.load_trials(EXPERIMENT, uri)
    assert len(seen) == 1
    return frame


def test_each_run_says_where_its_identity_came_from(pool, trials):
    _, ids = pool
    identity = dict(zip(trials["run_id"], trials["identity"], strict=True))
    expected = dict.fromkeys(ids["params"], "params") | {ids["tags"]: "tags", ids["old"]: "tags", ids["none"]: "none"}
    assert identity == expected


def test_runs_without_params_take_their_tags_typed_like_params(pool, trials):
    _, ids = pool
    rows = trials.set_index("run_id")
    with_params = rows.loc[ids["params"][0]]
    crashed = rows.loc[ids["tags"]]
    assert (crashed["width"], crashed["seed"], crashed["lr"], crashed["task"]) == (8, 6, 0.003, "badd")
    assert crashed["eval_lengths"] == with_params["eval_lengths"] == (11, 13)  # JSON list, as the param
    assert type(crashed["lr"]) is type(with_params["lr"])
    assert crashed["outcome"] == "crashed"
    old = rows.loc[ids["old"]]
    assert (old["width"], old["seed"], old["curriculum"], old["task"]) == (16, 5, "length", "badd")
    assert old["outcome"] == "censored"
    # Not among the old run's CONFIG_TAGS: missing, not guessed.
    assert old[["lr", "eval_lengths", "max_steps"]].isna().all()
    assert rows.loc[ids["none"], ["width", "seed"]].isna().all()


def test_a_by_width_table_places_every_identified_run_and_shows_the_rest_as_unplaced(pool, trials):
    _, ids = pool
    with pytest.warns(outcomes.UnplacedRunsWarning, match=f"1 row.*no value for width.*{ids['none']}"):
        table = rates.rate_table(trials, ["width"])
    assert dict(zip(table["width"], table["n_runs"], strict=True)) == {8: 7, 16: 6, outcomes.UNPLACED: 1}
    assert table["width"].iloc[-1] == outcomes.UNPLACED  # after the cells
    cells = table.set_index("width")
    # The crashed run counts against its cell: 3 of 7, not 3 of 6.
    assert (cells.loc[8, "n_crashed"], cells.loc[8, "successes"], cells.loc[8, "n"]) == (1, 3, 7)
    assert (cells.loc[16, "n_censored"], cells.loc[16, "successes"], cells.loc[16, "n"]) == (1, 3, 6)
    assert (cells.loc[outcomes.UNPLACED, "n_success"], cells.loc[outcomes.UNPLACED, "n_runs"]) == (1, 1)


def test_every_table_counts_the_unplaced_run_in_its_own_row(trials):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", outcomes.UnplacedRunsWarning)
        tables = [
            outcomes.counts_table(trials, ["width"]),
            survival.km_table(trials, ["width"]),
            survival.compute_table(trials, ["width"]),
        ]
        pairs = rates.pairwise_table(trials, ["width"])
        logrank = survival.logrank_table(trials, ["width"])
    for table in tables:
        assert list(table["width"]) == [8, 16, outcomes.UNPLACED]
        assert list(table["n_runs"]) == [7, 6, 1]
    # Only cells are compared.
    assert list(zip(pairs["a"], pairs["b"], strict=True)) == [("width=8.0", "width=16.0")]
    assert (pairs["n_a"].iloc[0], pairs["n_b"].iloc[0]) == (7, 6)
    assert list(zip(logrank["a"], logrank["b"], strict=True)) == [("width=8.0", "width=16.0")]


def test_the_rate_figure_says_how_many_runs_it_could_not_place(trials):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", outcomes.UnplacedRunsWarning)
        table = rates.rate_table(trials, ["width"])
    fig = figures.rate_figure(table, x="width")
    title = fig.axes[0].get_title()
    assert "14 runs, 1 unplaced (no width) not plotted" in title
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["8.0", "16.0"]


def test_a_partly_recorded_run_is_unplaced_only_where_its_record_is_silent(pool, trials):
    """The old-style run has a width but no lr (not among its CONFIG_TAGS): by width it is in its cell, by lr it
    is unplaced, with the run that names no cell."""
    _, ids = pool
    with pytest.warns(outcomes.UnplacedRunsWarning, match="2 row.*no value for width, lr") as seen:
        table = outcomes.counts_table(trials, ["width", "lr"])
    assert ids["old"] in str(seen[0].message) and ids["none"] in str(seen[0].message)
    keys = {(w, lr): n for w, lr, n in zip(table["width"], table["lr"], table["n_runs"], strict=True)}
    unplaced = outcomes.UNPLACED
    assert keys == {(8, 0.003): 7, (16, 0.003): 5, (16, unplaced): 1, (unplaced, unplaced): 1}


def test_a_pool_where_every_run_is_placed_warns_nothing(trials):
    placed = trials[trials["identity"] != "none"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = rates.rate_table(placed, ["width"])
    assert dict(zip(table["width"], table["n_runs"], strict=True)) == {8: 7, 16: 6}
