"""The report's first page (analysis/overview.py, notebooks/overview.ipynb): its tables against hand-computed
numbers, its figure's panels, the adaptive looks read back from the artifact the orchestrator writes, and the page
itself built by run_report on a real sqlite MLflow store in the recorder's layout (no training: the runs' curves are
written as a recorder would write them)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

from analysis import figures, load, overview
from neuralgpu.config import TrainConfig
from seedcore.record import AXES_TAG, NEURALGPU, mlflow_key

POOL = "overview-pool"
ADAPTIVE = "overview-adaptive"
CURVE = "eval/seq_error@11"
SUCCESS_STEP = {(8, 0): 300, (8, 1): 400, (8, 2): 200, (16, 0): 500}
"""(width, seed) -> the step its curve first goes under 0.01; the other seeds of widths 8 and 16 fail."""
SEEDS = range(4)


def run_config(width: int, seed: int) -> dict:
    values = {"width": width, "seed": seed, "task": "badd", "eval_lengths": [11], "success_length": 11}
    return TrainConfig.from_dict(values, source="overview pool").to_dict()


def record_trial(client, experiment_id, parent_id, index, width, seed, outcome):
    """A finished trial as sweeps/tracking.py leaves it: tags, params, curves, final metrics, stop reason."""
    config = run_config(width, seed)
    tags = {
        "seedpool.role": "trial",
        "sweep": POOL,
        "trial_key": f"key{index:02d}",
        "trainer": NEURALGPU,
        "mlflow.parentRunId": parent_id,
        AXES_TAG: "width,seed",
        "width": str(width),
        "seed": str(seed),
    }
    run_id = client.create_run(experiment_id, run_name=f"width{width}-seed{seed}", tags=tags).info.run_id
    params = [Param(k, json.dumps(v) if isinstance(v, list | tuple) else str(v)) for k, v in config.items()]
    for start in range(0, len(params), 100):
        client.log_batch(run_id, params=params[start : start + 100])
    success_step = SUCCESS_STEP.get((width, seed))
    last = success_step or 600
    points = []
    for step in range(50, last + 1, 50):  # training error every 50 steps, the success test every 100
        error = 0.0 if step == success_step else 0.9 / (1 + step / 200) + 0.02 * seed
        points.append(Metric("train/seq_error", error / 2, 0, step))
        if step % 100 == 0:
            points.append(Metric(mlflow_key(CURVE), error, 0, step))
    final = {"success": float(success_step is not None), "steps": float(last)}
    if success_step is not None:
        final["steps_to_success"] = float(success_step)
    points += [Metric(k, v, 0, last) for k, v in final.items()]
    reason = "success" if success_step else outcome
    client.log_batch(run_id, metrics=points, tags=[RunTag("stop_reason", reason), RunTag("stopped_step", str(last))])
    client.set_terminated(run_id, "FINISHED")
    return run_id


def record_pool(client, name: str, artifacts: Path) -> str:
    """Widths 8 and 16 x seeds 0-3 (width 8: 3/4 succeed; width 16: 1/4, one of its failures diverged)."""
    experiment_id = client.create_experiment(name, artifact_location=(artifacts / name).as_uri())
    parent_id = client.create_run(experiment_id, tags={"seedpool.role": "parent", "sweep": name}).info.run_id
    client.log_batch(parent_id, params=[Param("science_axes", "width"), Param("trials", "8")])
    for index, (width, seed) in enumerate((w, s) for w in (8, 16) for s in SEEDS):
        record_trial(
            client,
            experiment_id,
            parent_id,
            index,
            width,
            seed,
            "diverged" if (width, seed) == (16, 3) else "max_steps",
        )
    client.set_terminated(parent_id, "FINISHED")
    return experiment_id


@pytest.fixture(scope="module")
def store(tmp_path_factory, sweep_writer):
    """A sqlite store holding the pool twice: as a fixed pool, and as an adaptive one whose second invocation
    recorded the looks that sweeps.adaptive replays for a comparison of widths 4 and 6 (width 4 always
    succeeds)."""
    from sweeps.adaptive import record_looks, replay
    from sweeps.expand import load_sweep

    root = tmp_path_factory.mktemp("overview_pool")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    record_pool(client, POOL, root / "artifacts")
    experiment_id = record_pool(client, ADAPTIVE, root / "artifacts")
    axes = {"science": {"width": [4, 6]}, "nuisance": {"seed": {"start": 0, "stop": 8}}}
    adaptive = {"min_seeds": 2, "batch": 2, "questions": [{"compare": {"width": [4, 6]}}]}
    sweep = load_sweep(str(sweep_writer(root, axes=axes, adaptive=adaptive)))
    state = replay(sweep, {t.key: t.cell["width"] == 4 for t in sweep.trials})
    later = client.create_run(experiment_id, tags={"seedpool.role": "parent", "sweep": ADAPTIVE}).info.run_id
    # record_looks writes through the recorder's client onto its parent run: this is all of the recorder it uses.
    record_looks(SimpleNamespace(client=client, parent_run_id=later), state.looks)
    client.set_terminated(later, "FINISHED")
    return uri


# --- tables and figure, by hand ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trials(store):
    return load.load_trials(POOL, store)


def test_the_rate_table_counts_each_cell_and_its_median_time_to_success(trials):
    cells = overview.cell_table(trials, ["width"])
    assert cells["width"].tolist() == [8, 16]
    assert cells[["successes", "n", "n_diverged"]].to_numpy().tolist() == [[3, 4, 0], [1, 4, 1]]
    assert cells["median_steps_to_success"].tolist() == [300.0, 500.0]  # median of 200, 300, 400; of 500
    readable = overview.readable_rates(cells, ["width"])
    assert readable.iloc[0].tolist() == ["8", "4", "3", "0.75", "[0.30, 0.95]", "300", "200 – 400", "1 failed"]
    assert readable.iloc[1]["other outcomes"] == "2 failed, 1 diverged"


def test_more_seeds_shrink_the_interval_as_the_wilson_formula_says():
    # Wilson at 4/8, 95%: (z / (1 + z^2/n)) sqrt(p(1-p)/n + z^2/(4n^2)) = 0.2848; at 8/16: 0.2200; 16/32: 0.1637.
    cells = pd.DataFrame({"width": [8], "n": [8], "rate": [0.5]})
    table = overview.more_seeds_table(cells, ["width"])
    assert table[["half_width", "half_width_x2", "half_width_x4"]].iloc[0].tolist() == pytest.approx(
        [0.2848, 0.2200, 0.1637], abs=2e-4
    )
    assert table["seeds_for_pm0.1"].iloc[0] == 93  # planning.seeds_for_half_width's hand example
    readable = overview.readable_more_seeds(table, ["width"])
    assert readable.iloc[0].tolist() == ["8", "8", "0.50", "±0.28", "±0.22 (16 seeds)", "±0.16 (32 seeds)", "93"]


def test_the_curve_figure_has_a_panel_per_cell_a_line_per_seed_and_the_success_line(trials):
    curve, curves = overview.success_curves(trials)
    assert (curve.metric, curve.threshold) == (CURVE, 0.01) and set(curves["metric"]) == {CURVE}
    fig = figures.seed_curves_figure(curves, trials, ["width"], curve.metric, curve.threshold, "steps", "t")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["width=8: 3/4", "width=16: 1/4"]
    for panel, successes in zip(panels, (3, 1), strict=True):
        seeds = [line for line in panel.lines if len(line.get_xdata()) > 1 and line.get_linestyle() == "-"]
        colours = [line.get_color() for line in seeds]
        assert len(seeds) == 4 and colours.count(figures.OUTCOME_COLOURS["success"]) == successes
        assert any(line.get_linestyle() == "--" and list(line.get_ydata()) == [0.01, 0.01] for line in panel.lines)


def test_a_rule_tested_only_near_success_gives_way_to_a_dense_curve(trials):
    # The rule's curve has 2 to 6 points per run (median 5.5), the training error twice as many: asking for 6
    # passes over the rule's curve and the eval/seq_error@train the runs did not log.
    curve, curves = overview.success_curves(trials, min_points=6)
    assert curve.metric == "train/seq_error" and curve.threshold == 0.01
    assert curves.groupby("run_id").size().min() >= 2 and set(curves["metric"]) == {"train/seq_error"}


def test_looks_read_back_as_the_orchestrator_decided_them(store):
    looks = load.load_looks(ADAPTIVE, store)
    # Width 4 always succeeds, width 6 never: open at 2 and 4 pairs, decided at 6 (tests/test_adaptive.py).
    assert looks["look"].tolist() == [1, 2, 3] and looks["decided"].tolist() == [False, False, True]
    assert looks["counts"].tolist() == ["2/2 vs 0/2", "4/4 vs 0/4", "6/6 vs 0/6"]
    assert looks["seeds_added"].tolist() == [4, 4, 0] and set(looks["kind"]) == {"difference"}
    assert (looks["low"] < looks["high"]).all() and looks["reason"].str.startswith("width=4 vs width=6").all()
    assert load.load_looks(POOL, store).empty, "a pool without looks has none"


# --- the page ---------------------------------------------------------------------------------------------------
MACHINE_WORDS = ("Warning", "/tmp", "/work", "site-packages", "/home")


def page_text(page: str) -> str:
    """What a reader sees: the page without its inline images."""
    return re.sub(r"data:image/png;base64,[^\"]+", "", page)


def test_the_first_page_tells_the_story_without_warnings_or_paths(store, tmp_path):
    from analysis.report import run_report

    pages = run_report(POOL, store, tmp_path, ["overview"])
    page = page_text(pages[0].read_text())
    index = page_text((tmp_path / "index.html").read_text())
    for text in (page, index):
        assert "[0.30, 0.95]" in text and "0.75" in text and "2 failed, 1 diverged" in text
        assert "with 2x the seeds" in text and "seeds for ±0.1" in text
        assert 'class="error"' not in text and "Adaptive looks" not in text
        for word in MACHINE_WORDS:
            assert word not in text, f"{word!r} in the report: {text[max(0, text.find(word) - 300) :][:600]}"
    assert pages[0].read_text().count("data:image/png;base64") == 1  # the seed-curve panels
    assert (tmp_path / "figures" / "overview_seed_curves.png").stat().st_size > 10_000
    assert "<th></th>" not in index, "no index column (its header cell is empty)"
    saved = pd.read_csv(tmp_path / "tables" / "overview_rates.csv")
    assert saved["successes"].tolist() == [3, 1] and not math.isnan(saved["wilson_low"].iloc[0])


def test_an_adaptive_pool_shows_its_looks_on_the_first_page(store, tmp_path):
    from analysis.report import run_report

    (page,) = run_report(ADAPTIVE, store, tmp_path, ["overview"])
    text = page_text(page.read_text())
    assert "Adaptive looks" in text and "4/4 vs 0/4" in text and "+4" in text
    assert text.count(">decided<") == 1 and text.count(">open<") == 2
    assert len(pd.read_csv(tmp_path / "tables" / "overview_looks.csv")) == 3


def test_report_markdown_joins_a_paragraphs_lines_and_parameters_lose_their_folders():
    from analysis.report import markdown_html, parameters_text

    assert markdown_html("## Rates\n\n*seeds*: runs in\nthe cell; **all** of `them`") == (
        "<h2>Rates</h2>\n<p><i>seeds</i>: runs in the cell; <b>all</b> of <code>them</code></p>"
    )
    cell = 'tracking_uri = "sqlite:////tmp/x/runs/mlflow.db"\nexperiment = "smoke"\noutput_dir = "/work/r/smoke"\n'
    assert (
        parameters_text(cell)
        == 'tracking_uri = "sqlite:///.../mlflow.db"\nexperiment = "smoke"\noutput_dir = ".../smoke"\n'
    )
