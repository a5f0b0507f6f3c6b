"""Packed pools (`resources.pack`): several seeds of a cell per trial process, each seed still its own trial, with
its own MLflow run and the curve its solo run gives; read back with MLflow's own client."""

from __future__ import annotations

import signal

import pytest
import yaml
from conftest import CONFIGS
from drivers import driver, kill_worker_and_finish
from mlflow import MlflowClient
from test_sweeps_e2e import child_runs, interrupt_and_resume

from neuralgpu.config import TrainConfig
from neuralgpu.train import Trainer, train
from sweeps.cli import main
from sweeps.expand import form_packs, load_sweep
from sweeps.schema import SweepConfigError

LOOSE_RULE = {"metric": "digit_error", "threshold": 0.5, "length": 11, "gate": 1.0}
"""With the curriculum at its last length from the start, tested every 20 steps: tiny's four seeds pass it at
steps 60, 120, 180 and 200, so within 120 steps width 4 seed 0 leaves its pack at step 60 while seed 1 goes on."""
TINY_BASE = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())["base"]


def solo_curve(run_config: dict) -> tuple[list[dict], object]:
    rows: list[dict] = []
    result = train(TrainConfig.from_dict(run_config), report=lambda metrics, checkpoint: rows.append(metrics))
    return rows, result


def test_packs_are_seeds_of_one_cell_in_expansion_order(make_sweep):
    sweep = load_sweep(
        str(make_sweep(axes={"science": {"width": [4, 6]}, "nuisance": {"seed": {"start": 0, "stop": 3}}}))
    )
    packs = form_packs(sweep.trials, 2)
    assert [[(t.cell["width"], t.seed) for t in pack] for pack in packs] == [
        [(4, 0), (4, 1)],
        [(6, 0), (6, 1)],
        [(4, 2)],
        [(6, 2)],
    ]
    assert [len(p) for p in form_packs(sweep.trials, 1)] == [1] * 6


def test_a_pack_the_trainer_cannot_train_is_refused_before_anything_runs(make_sweep):
    offload = make_sweep(base={**TINY_BASE, "memory": "offload"}, resources={"cpu": 1, "pack": 2})
    with pytest.raises(SweepConfigError, match=r"in `resources.pack`.*memory 'offload'.*Nothing was launched"):
        load_sweep(str(offload))
    gpu = make_sweep(resources={"cpu": 1, "gpu": 1, "pack": 2})
    with pytest.raises(SweepConfigError, match=r"in `resources.pack`.*device 'cuda'.*on a CPU, for now"):
        load_sweep(str(gpu))
    rl = make_sweep(template="rl_qlearning", resources={"cpu": 1, "pack": 2})
    with pytest.raises(SweepConfigError, match=r"`resources.pack` is 2, but trainer `rl` trains one seed per process"):
        load_sweep(str(rl))


def test_a_packed_pool_records_each_seed_as_its_solo_run(make_sweep, mlflow_db, ray_cluster, capsys):
    base = {**TINY_BASE, "start_length": TINY_BASE["max_length"]}
    path = make_sweep(resources={"cpu": 1, "pack": 2}, budget={"steps": 120}, success=LOOSE_RULE, base=base)
    assert main(["run", str(path)]) == 0
    capsys.readouterr()
    sweep = load_sweep(str(path))
    runs = {r.data.tags["trial_key"]: r for r in child_runs(mlflow_db)}
    assert set(runs) == {t.key for t in sweep.trials} and len(child_runs(mlflow_db)) == 4
    client = MlflowClient(f"sqlite:///{mlflow_db}")
    stopped_early = 0
    for trial in sweep.trials:
        run = runs[trial.key]
        rows, result = solo_curve(trial.run_config)
        assert run.info.status == "FINISHED" and run.data.tags["mlflow.runName"] == trial.name
        assert run.data.metrics["success"] == float(result.success)
        assert run.data.metrics["steps"] == result.steps and run.data.tags["stop_reason"] == result.stop_reason
        history = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
        assert [m.step for m in history] == [row["step"] for row in rows], "the whole curve, each step once"
        assert [m.value for m in history] == pytest.approx([row["train/loss"] for row in rows], rel=1e-5)
        stopped_early += result.steps < 120
        # The checkpoint logged with the run is this member's own, at its last step (not a pack-mate's).
        state = Trainer.load_checkpoint(client.download_artifacts(run.info.run_id, "checkpoint"))
        assert state["progress"]["step"] == result.steps and state["config"]["seed"] == trial.seed
    assert stopped_early == 1, "width 4 seed 0 stops at step 60 while its pack goes on"


def test_an_interrupted_packed_pool_resumes_to_exactly_one_run_per_seed(make_sweep, mlflow_db, ray_cluster):
    def make_packed(**changes):
        return make_sweep(resources={"cpu": 1, "pack": 2}, **changes)

    # The first pack (width 4, seeds 0 and 1) finishes, the signal lands in the second; the rerun restores it.
    resumed, runs = interrupt_and_resume(make_packed, mlflow_db, ray_cluster, signal.SIGINT)
    assert "resuming" in resumed, resumed
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs), resumed
    client = MlflowClient(tracking_uri=f"sqlite:///{mlflow_db}")
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
        assert sorted(steps) == list(range(10, 201, 10)), f"each step once, none missing: {sorted(steps)}\n{resumed}"


@pytest.mark.slow
def test_a_crashed_pack_is_retried_with_each_member_from_its_own_checkpoint(make_sweep, mlflow_db, ray_cluster):
    """Kill the Ray worker of a running pack: Tune retries it from the pack's last checkpoint, each member resumes
    from its own state in it, and each keeps its one MLflow run with its curve whole."""
    path = make_sweep(
        budget={"steps": 1000},
        max_failures=1,
        resources={"cpu": 1, "pack": 2},
        axes={"science": {"width": [4]}, "nuisance": {"seed": {"start": 0, "stop": 2}}},
    )
    proc = driver(path, ray_cluster, "--max-concurrent", "1")

    def checkpointed_worker() -> int | None:
        runs = child_runs(mlflow_db)
        if len(runs) == 2 and all(r.data.metrics.get("train/loss") and "worker_pid" in r.data.tags for r in runs):
            return int(runs[0].data.tags["worker_pid"])
        return None

    output = kill_worker_and_finish(proc, checkpointed_worker)  # once metrics are flushed: checkpoints exist too
    runs = child_runs(mlflow_db)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), output
    assert all(r.data.tags.get("retries") == "1" for r in runs), "both members were retried, each in its own run"
    client = MlflowClient(f"sqlite:///{mlflow_db}")
    for run in runs:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, "train/loss"))
        assert steps == list(range(10, 1001, 10)), "the retry continued each member without gaps or repeats"
        assert run.data.metrics["steps"] == 1000 and run.data.tags["stop_reason"] == "max_steps"


def test_the_dry_run_counts_packs_as_the_processes_that_ask_for_resources(make_sweep, capsys):
    assert main(["run", str(make_sweep(resources={"cpu": 1, "pack": 2})), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "pool needs:    2 CPU-trials" in out
    assert "packed:        up to 2 seeds of a cell per trial process, as one grouped model: 2 processes" in out
