"""The record's vocabulary: every name that the trainers, the recorder (`sweeps.tracking`) and the loader
(`analysis.load`) share, with its meaning. Metric names are stable; the analysis relies on them.

Where things are written: each trainer reports its metrics every `report_every` steps (episodes for RL) and at
the end; the sweep recorder writes them into one MLflow child run per trial, adds the trial's final metrics
(RECORDER) and tags, and writes a parent run per invocation with the pool's summary (POOL).

A parametrised name holds a placeholder: `{L}` a test length (eval/seq_error@{L} is reported as
eval/seq_error@201), `{cell}` a cell of the pool (its science-axis values, `width-8_task-badd`, with characters
other than letters, digits and `_-.` as `_`; `all` without science axes). MLflow cannot store `@`: `mlflow_key`
and `trainer_key` translate.

Imports only the standard library, so any module (trainer, recorder, loader, notebook) can import it.
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

NEURALGPU = "neuralgpu"
RL = "rl"
TRAINERS = (NEURALGPU, RL)
"""Trainer names, as the sweep config's `trainer` and the runs' `trainer` tag spell them."""
RECORDER = "recorder"
"""The sweep recorder, writing a trial's final metrics into its run."""
POOL = "pool"
"""The sweep recorder, writing the pool's summary into the parent run of an invocation."""

STEP_UNITS = {NEURALGPU: "steps", RL: "episodes"}
"""What each trainer's `step`, `steps` and `steps_to_success` count."""

CONFIDENCE = 0.95
"""Confidence level of every interval in the sweep summary and the analysis (Wilson, exact, Kaplan-Meier,
bootstrap)."""


# --- metrics --------------------------------------------------------------------------------------------------
PLACEHOLDERS = {"L": r"\d+", "cell": r"[\w.-]+"}
"""What each placeholder of a parametrised name stands for, as a regular expression."""


@dataclass(frozen=True)
class Metric:
    name: str
    """As the trainer reports it, with a placeholder where parametrised: `"eval/seq_error@{L}".format(L=201)`."""
    meaning: str
    when: str = ""
    """When it is written, where that is not at every report."""

    def matches(self, name: str) -> bool:
        """Whether the concrete `name` (trainer spelling) is this metric."""
        return _pattern(self.name).fullmatch(name) is not None


@functools.cache
def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", name)  # literal, placeholder, literal, ...
    regex = "".join(re.escape(part) if i % 2 == 0 else f"(?:{PLACEHOLDERS[part]})" for i, part in enumerate(parts))
    return re.compile(regex)


NEURALGPU_METRICS = (
    Metric("step", "training steps done (the step of every point; not recorded as a metric of its own)"),
    Metric("train/loss", "mean cross-entropy over the report window (before the relaxation pull)"),
    Metric("train/seq_error", "mean training sequence error over the window (dropout on, all sampled lengths)"),
    Metric("train/digit_error", "mean training digit error over the window"),
    Metric("train/lr", "learning rate now"),
    Metric("train/pull", "relaxation pull weight now"),
    Metric(
        "train/saturation_weight",
        "weight of F17's saturation cost in the loss now (re-set every advance_every steps, at most "
        "saturation_weight_max); 0 for k15",
    ),
    Metric("train/examples_per_s", "training throughput over the window"),
    Metric("curriculum/length", "the curriculum's current length"),
    Metric("time/wall_s", "wall time of training and evaluation (summed across resumes)"),
    Metric(
        "eval/seq_error@train",
        "sequence error at the current curriculum length (dropout off)",
        "every eval_every steps",
    ),
    Metric(
        "eval/digit_error@train", "digit error at the current curriculum length (dropout off)", "every eval_every steps"
    ),
    Metric("eval/seq_error@{L}", "sequence error at test length L", "success tests and the end of the run"),
    Metric("eval/digit_error@{L}", "digit error at test length L", "success tests and the end of the run"),
    Metric(
        "confirm/seq_error@{L}",
        "the confirmation test (success_confirm fresh examples) of a passing success test at length L, at that step",
        "success_confirm > 0",
    ),
    Metric("confirm/digit_error@{L}", "digit error of that confirmation test", "success_confirm > 0"),
    Metric("success", "1 once the success rule held, else 0"),
    Metric("steps_to_success", "the step at which the success rule first held", "once successful"),
)

RL_METRICS = (
    Metric("step", "episodes done (the step of every point; not recorded as a metric of its own)"),
    Metric("episode/reward", "mean total reward of the episodes in the report window"),
    Metric("episode/reward_mean100", "mean total reward of the last 100 episodes (gym's 'solved' statistic)"),
    Metric("episode/steps", "mean env steps per episode in the window"),
    Metric("episode/target_length", "mean target length in the window"),
    Metric("episode/solved_fraction", "fraction of the window's episodes that wrote the whole target"),
    Metric("curriculum/length", "the env's min_length (curriculum: env) or LSAE's complexity (curriculum: lsae)"),
    Metric("train/loss", "mean total loss of the window's gradient steps"),
    Metric("train/q_loss", "0.5 * squared TD error of the chosen actions", "agent: qlearning"),
    Metric("train/symbol_loss", "cross-entropy of the symbol head at write steps", "output_mode: split"),
    Metric("train/policy_loss", "policy-gradient loss (reward-to-go times log-probability)", "agent: reinforce"),
    Metric("train/value_loss", "squared error of the learned baseline (0 without one)", "agent: reinforce"),
    Metric("train/entropy", "mean entropy of the policy", "agent: reinforce"),
    Metric("train/epsilon", "the behaviour policy's exploration probability now", "agent: qlearning"),
    Metric("train/greedy_accuracy", "whole-target rate of the last 100 episodes played without exploration"),
    Metric("train/episodes_per_s", "training throughput over the window, in episodes"),
    Metric("train/env_steps_per_s", "training throughput over the window, in env steps"),
    Metric("time/wall_s", "wall time spent training (summed across resumes)"),
    Metric(
        "eval/seq_accuracy@{L}",
        "greedy policy, fresh inputs of length L: fraction with the whole target right",
        "every eval_every episodes and at the end",
    ),
    Metric("eval/seq_error@{L}", "1 - eval/seq_accuracy@L", "every eval_every episodes and at the end"),
    Metric(
        "eval/symbol_accuracy@{L}",
        "fraction of target symbols written correctly before the episode ended",
        "every eval_every episodes and at the end",
    ),
    Metric("success", "1 once solved (100-episode mean reward >= the reward threshold), else 0"),
    Metric(
        "steps_to_success",
        "episodes before the first solving 100-episode window (gym's 'episodes before solve'; solved is detected "
        "100 episodes later)",
        "once solved",
    ),
    Metric("episodes_to_solve", "steps_to_success under gym's name; not recorded in MLflow", "once solved"),
)

RECORDER_METRICS = (
    Metric("success", "1.0 when the trial succeeded (the trainer's result), else 0.0", "when the trial finishes"),
    Metric("steps_to_success", "the trainer's result", "when the trial finishes, if successful"),
    Metric("steps", "steps (RL: episodes) the trial trained", "when the trial finishes"),
    Metric("wall_time_s", "the trainer's wall time (its final time/wall_s)", "when the trial finishes"),
    Metric(
        "trial_time_s",
        "wall time of the whole trial in its worker: config, restoring a checkpoint, training",
        "when the trial finishes",
    ),
    Metric(
        "trial_cpu_s",
        "CPU seconds of the trial's worker process (on a shared machine wall time overstates the need)",
        "when the trial finishes",
    ),
)

POOL_METRICS = (
    Metric("pool/trials", "trials in the pool"),
    Metric("pool/finished", "trials that finished (succeeded or stopped by a budget or rule)"),
    Metric("pool/successes", "finished trials that succeeded"),
    Metric("pool/success_rate", "successes / finished", "when a trial finished"),
    Metric("cell/{cell}/finished", "finished trials of the cell"),
    Metric("cell/{cell}/successes", "finished trials of the cell that succeeded"),
    Metric("cell/{cell}/success_rate", "successes / finished in the cell", "when a trial of the cell finished"),
    Metric("cell/{cell}/ci_low", "lower end of its Wilson interval at CONFIDENCE", "when a trial of the cell finished"),
    Metric(
        "cell/{cell}/ci_high", "upper end of its Wilson interval at CONFIDENCE", "when a trial of the cell finished"
    ),
    Metric("cell/{cell}/median_steps_to_success", "median steps_to_success of its successes", "when one succeeded"),
)

METRICS = {NEURALGPU: NEURALGPU_METRICS, RL: RL_METRICS, RECORDER: RECORDER_METRICS, POOL: POOL_METRICS}
"""Every metric, by who writes it (a trainer, the recorder on a trial's run, or on the parent run)."""

VERDICTS = ("success", "steps_to_success")
"""The trainer metrics without a namespace that the record keeps."""


def find(name: str, writer: str) -> Metric | None:
    """The vocabulary entry of a concrete metric name (trainer spelling) that `writer` writes; None if none."""
    if writer not in METRICS:
        raise ValueError(f"no metrics are documented for {writer!r}; use one of {', '.join(METRICS)}")
    return next((metric for metric in METRICS[writer] if metric.matches(name)), None)


def documented(name: str, writer: str) -> bool:
    """Whether `writer` (a trainer, RECORDER or POOL) writing metric `name` is documented here."""
    return find(name, writer) is not None


def is_trainer_metric(name: str) -> bool:
    """Which keys of a trainer's report the record keeps: the namespaced metrics (`train/loss`) and the verdicts.
    `step` is every point's step; `episodes_to_solve` and Tune's own keys (training_iteration, pid, ...) are not
    recorded."""
    return "/" in name or name in VERDICTS


def mlflow_key(name: str) -> str:
    """The metric name as MLflow stores it, which allows only letters, digits and `_ - . / : space`:
    eval/seq_error@201 -> eval/seq_error_at_201."""
    return name.replace("@", "_at_")


def trainer_key(key: str) -> str:
    """The trainer's spelling of a stored metric name: eval/seq_error_at_201 -> eval/seq_error@201 (no name here
    holds `_at_` of its own, so this inverts mlflow_key)."""
    return key.replace("_at_", "@")


# --- stop reasons ---------------------------------------------------------------------------------------------
STOP_REASONS = {
    "success": "the success rule held (with stop_on_success; a run that went on still ends with this reason)",
    "max_steps": "Neural GPU: the step budget ran out",
    "max_episodes": "RL: the episode budget ran out",
    "max_minutes": "the wall-time budget ran out",
    "no_progress": "the curriculum did not advance for patience_steps (RL: patience_episodes)",
    "diverged": "the loss became NaN or infinite; the run stopped there (diverged_step)",
}
"""A trainer's `stop_reason` (its result), recorded as the trial run's stop_reason tag."""
FAILED_STOPS = tuple(reason for reason in STOP_REASONS if reason != "success")
"""The stop reasons of a finished trial that did not succeed."""
ERROR = "error"
"""The stop_reason tag of a trial that crashed more often than max_failures allowed (MLflow status FAILED)."""


# --- tags -----------------------------------------------------------------------------------------------------
ROLE_TAG = "seedpool.role"
"""What a run or experiment is: ROLE_TRIAL, ROLE_PARENT, ROLE_SWEEP."""
ROLE_TRIAL, ROLE_PARENT, ROLE_SWEEP = "trial", "parent", "sweep"
SWEEP_TAG = "sweep"
KEY_TAG = "trial_key"
AXES_TAG = "axes"
TRAINER_TAG = "trainer"
STOP_REASON_TAG = "stop_reason"
STOPPED_STEP_TAG = "stopped_step"
LAST_STEP_TAG = "seedpool.last_logged_step"
PARENT_TAG = "mlflow.parentRunId"
"""MLflow's own (mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID): the UI nests a trial's run under it."""
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
"""MLflow's own (mlflow.utils.mlflow_tags.MLFLOW_RUN_NOTE): the UI shows it, as markdown, as the run's description."""
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
"""MLflow 3's own, on the experiment: which UI it opens on (sweeps.tracking.TRAINING_EXPERIMENT)."""
OVERRIDES_TAG = "overrides"

TAGS = {
    ROLE_TAG: "experiment: `sweep`; parent run: `parent`; trial run: `trial`",
    SWEEP_TAG: "parent and trial runs: the sweep's name (also the experiment's)",
    KEY_TAG: "trial run: the trial's stable key; a resumed or grown sweep finds its run by it",
    TRAINER_TAG: "parent and trial runs: the trainer (neuralgpu, rl)",
    STOP_REASON_TAG: f"finished trial run: a STOP_REASONS entry, or `{ERROR}` for a crashed one",
    STOPPED_STEP_TAG: "finished trial run: the step it stopped at",
    "diverged_step": "finished trial run that diverged: the step whose loss was not finite",
    "error": "crashed trial run: the error (first 4000 characters)",
    LAST_STEP_TAG: "trial run: the last step whose metrics are recorded (a resumed trial skips up to it)",
    PARENT_TAG: "trial run: the parent run of the invocation that created it",
    RUN_NAME_TAG: "parent run: <sweep>-<date>-<time>; trial run: the trial's name (MLflow's own tag)",
    "resumed_by": "trial run: the parent run of the invocation that resumed it",
    "cell": "trial run: its cell (the science-axis values)",
    AXES_TAG: "trial run: its axis fields, science then nuisance, comma-separated (`width,seed`); each is also a "
    "tag of its own, named and spelled as its param (`str`, JSON for lists), set when the run is created, so the "
    "loader places a run whose params were never logged",
    "git_commit": "parent and trial runs: HEAD of the repository, `-dirty` with changed tracked files",
    "host": "parent run: the driver's host; trial run: the host that trains it",
    "worker_pid": "trial run: the process that trains it",
    "node_ip": "trial run: the address of the Ray node that trains it",
    "ray_node_id": "trial run: the Ray node that trains it (several nodes may share a host)",
    "retries": "trial run: retries after crashes so far",
    "driver_host": "parent run: the driver's host",
    "driver_pid": "parent run: the driver's process (a live one blocks a second driver of the sweep)",
    "command": "parent run: the command line of the invocation",
    "config_path": "parent run: the sweep file",
    "tune_experiment": "parent run: the Ray Tune experiment it launched (a later invocation may restore it)",
    NOTE_TAG: "parent run: its description in MLflow's UI: the pool's summary table (markdown) once it ends",
    OVERRIDES_TAG: "parent run: the command-line overrides of the invocation, as given (sweeps.overrides)",
    EXPERIMENT_KIND_TAG: "experiment: `custom_model_development`, so MLflow's UI opens it on its runs",
}
"""Every tag the recorder writes, with the run it is on; the trainer's CONFIG_TAGS come on top."""

CONFIG_TAGS = {
    NEURALGPU: ("seed", "width", "curriculum", "task"),
    RL: ("seed", "env", "agent", "controller", "output_mode", "q_target", "discount", "curriculum"),
}
"""Run-config fields also written as trial-run tags, for filtering in the MLflow UI."""

LOOKS_ARTIFACT = "adaptive/looks.json"
"""Parent run of an adaptive pool: every look so far, as a JSON list of sweeps.adaptive.Look dicts (number, cells,
decisions, added), rewritten at each look; analysis.load.load_looks reads it."""


# --- where the record lives by default ------------------------------------------------------------------------
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS_DIR = REPO_ROOT / "runs"
"""The default MLflow store and Ray Tune storage: absolute, so trials that chdir into their own folders still share
one store."""
STORAGE_ENV = "SEEDPOOL_STORAGE"
"""Ray Tune storage (trial state, checkpoints, the sweep's journal) for sweeps whose file names none. On a cluster:
a folder every node mounts at the same path, or a URI such as s3://bucket/dir."""


def default_storage() -> str:
    """$SEEDPOOL_STORAGE, else RUNS_DIR."""
    return os.environ.get(STORAGE_ENV) or str(RUNS_DIR)


def default_tracking_uri() -> str:
    """$MLFLOW_TRACKING_URI, else the store in RUNS_DIR: sqlite:///<repo>/runs/mlflow.db (absolute)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{RUNS_DIR / 'mlflow.db'}"
