"""The train-loop skeleton every trainer shares: budgets and stop reasons, the report window, reports and
checkpoints, resume, and the result. A trainer subclasses `LoopTrainer` and brings only its model, its step and
its state:

- `advance()`: one unit of training (a step, an episode); returns the step at which the loss stopped being
  finite, else None.
- `metrics()`: what a report holds (see seedcore.record for the names).
- `final_eval(diverged)`: the end-of-run evaluation into `eval_table`.
- `curriculum_at_max()`: whether the curriculum is done (the no_progress rule only stops runs still learning).
- `extra_state()` / `load_extra(state)`: what its checkpoint adds to the common part.
- `result_extras()`: the fields its result class adds.

The loop: advance -> add the time -> stop? -> report every `report_every` steps, checkpointing every
`checkpoint_every`; at the end the final evaluation and one last report with a checkpoint. Imports neither Ray
nor MLflow.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from seedcore.cli import build_parser, format_progress, run_cli
from seedcore.runtime import (
    check_resumable,
    global_rng_state,
    load_checkpoint_dir,
    resolve_device,
    save_atomic,
    seed_globals,
    set_global_rng_state,
)

Report = Callable[[dict[str, float], str | None], None]
"""`report(metrics, checkpoint)`: the metrics of one report, and the directory of the checkpoint written just now
(None when none was)."""
CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = 1
Streams = TypeVar("Streams")
Model = TypeVar("Model")


@dataclass
class RunResult:
    """What a training run ends with; each trainer's result class adds its own fields."""

    success: bool
    steps_to_success: int | None
    stop_reason: str
    """One of seedcore.record.STOP_REASONS: success, the step budget's name (max_steps, max_episodes), max_minutes,
    no_progress or diverged."""
    steps: int
    wall_time_s: float
    final_metrics: dict[str, float]
    eval_table: list[dict[str, float]] = field(default_factory=list)
    """Evaluation per test length at the end of the run."""
    diverged_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Window:
    """Running sums over the steps since the last report (emptied by every report, so a checkpoint holds an empty
    one). Each `add` is one observation of each metric given; `means` divides by those counts."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self, keys: Iterable[str]) -> dict[str, float]:
        return {key: self.sums.get(key, 0.0) / max(self.counts.get(key, 0), 1) for key in keys}

    def per_second(self, total: float) -> float:
        return total / self.seconds if self.seconds > 0 else 0.0


@dataclass
class LoopProgress:
    """The loop's own state; each trainer's progress class adds its fields. All of it goes into a checkpoint."""

    step: int = 0
    wall_s: float = 0.0
    last_advance_step: int = 0
    """The step at which the curriculum last advanced (for the no_progress rule)."""
    steps_to_success: int | None = None
    window: Window = field(default_factory=Window)
    pending_eval: dict[str, float] = field(default_factory=dict)
    """Evaluations made since the last report, reported with it."""


def seed_everything(
    init_seed: int, data_seed: int, streams: type[Streams], build: Callable[[], Model]
) -> tuple[Streams, Model]:
    """The run's seeding, in one place; returns the run's own generators and its model, built by `build()`.

    Two sources of randomness (RunConfig.run_seeds): `init_seed` seeds Python, NumPy's global state and torch (CPU
    and CUDA) while `build()` draws the initial weights, and decides nothing else. `data_seed` decides every later
    draw: the run's own generators (an instance of the dataclass `streams` whose i-th field is
    `default_rng([data_seed, i])`: examples, curriculum, exploration, evaluation inputs), and the global
    generators from the end of the build on (dropout masks, gradient noise), which are left exactly where a run
    with init_seed = data_seed has them. So runs sharing an init_seed start from the same weights, runs sharing a
    data_seed see the same draws after it, and with the two equal (both unset: `seed`) this is one seed, as before
    the split. Separate streams, so that evaluating more or less often never changes training."""
    rngs = streams(**{f.name: np.random.default_rng([data_seed, i]) for i, f in enumerate(dataclasses.fields(streams))})
    seed_globals(init_seed)
    model = build()
    if data_seed != init_seed:
        seed_globals(data_seed)
        build()  # thrown away: it draws what the build of a data_seed run draws, so every later draw matches that run
    return rngs, model


class LoopTrainer:
    """Holds one run's state; `run()` is the plain top-to-bottom loop. Use the trainer module's `train()`."""

    description: ClassVar[str]
    """One line for the command line's help."""
    config_class: ClassVar[type]
    """The trainer's RunConfig subclass."""
    result_class: ClassVar[type] = RunResult
    resumable: ClassVar[frozenset[str]]
    """Config fields that may differ between a checkpoint and the resuming config: budgets and bookkeeping."""
    missing_checkpoint: ClassVar[str] = "to resume from; pass a checkpoint directory."
    save_cuda_rng: ClassVar[bool] = False
    progress_template: ClassVar[str]
    """The command line's progress line (seedcore.cli.format_progress)."""
    progress_evals: ClassVar[tuple[tuple[str, ...], str]]
    """Prefixes of the evaluation metrics shown after it, and their format."""

    cfg: Any
    progress: Any
    """A LoopProgress (subclass) instance."""
    rngs: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    eval_table: list[dict[str, float]]

    def __init__(self, cfg: Any, report: Report | None, checkpoint_dir: str | None):
        self.cfg = cfg
        self.report = report
        self.checkpoint_dir = Path(checkpoint_dir).resolve() if checkpoint_dir else None
        torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device, fix="use device: auto or cpu (`--device cpu` on the command line)")
        self.eval_table = []
        self.diverged_step: int | None = None

    # --- what a trainer brings -------------------------------------------------------------------------------
    def advance(self) -> int | None:
        raise NotImplementedError

    def metrics(self) -> dict[str, float]:
        raise NotImplementedError

    def final_eval(self, diverged: bool) -> None:
        raise NotImplementedError

    def curriculum_at_max(self) -> bool:
        raise NotImplementedError

    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra(self, state: dict[str, Any]) -> None:
        pass

    def restore_progress(self, saved: dict[str, Any]) -> Any:
        """The progress object from its checkpointed dict."""
        saved = dict(saved)
        # Checkpoints hold an empty window (see Window); those written before the shared loop spelled it per trainer.
        saved["window"] = Window(**saved["window"]) if "sums" in saved["window"] else Window()
        return type(self.progress)(**saved)

    def result_extras(self) -> dict[str, Any]:
        return {}

    @classmethod
    def main(cls, argv: list[str] | None = None) -> int:
        """The trainer's command line (seedcore.cli.run_cli); returns the exit status."""
        parser = build_parser(cls.config_class, cls.config_class.cli, cls.description)
        return run_cli(argv, parser, cls.config_class, cls.train, cls.progress_line, cls.load_checkpoint)

    @classmethod
    def progress_line(cls, metrics: dict[str, float]) -> str:
        """One report as the command line's progress line."""
        return format_progress(cls.progress_template, metrics, *cls.progress_evals)

    # --- the loop ------------------------------------------------------------------------------------------
    def stop_reason(self) -> str | None:
        cfg, progress = self.cfg, self.progress
        if cfg.stop_on_success and progress.steps_to_success is not None:
            return "success"
        budget = getattr(cfg, cfg.step_budget)
        if budget and progress.step >= budget:
            return cfg.step_budget
        if cfg.max_minutes and progress.wall_s >= cfg.max_minutes * 60:
            return "max_minutes"
        patience = getattr(cfg, cfg.patience)
        stalled = progress.step - progress.last_advance_step
        if patience and not self.curriculum_at_max() and stalled >= patience:
            return "no_progress"
        return None

    def run(self) -> Any:
        reason = self.stop_reason()
        while reason is None:
            started = time.perf_counter()
            self.diverged_step = self.advance()
            if self.diverged_step is not None:
                reason = "diverged"
                break
            # The minute budget and time/wall_s count evaluation too: they are what a pool pays for.
            self.add_time(time.perf_counter() - started)
            reason = self.after_advance()
        return self.finish(reason)

    def after_advance(self) -> str | None:
        """The loop's bookkeeping after one advance (its time added): the stop reason, else a report (and a
        checkpoint) when one is due. neuralgpu.packed calls it for each member of a pack."""
        cfg, progress = self.cfg, self.progress
        reason = self.stop_reason()
        if progress.step % cfg.report_every == 0 and reason is None:
            self.emit(checkpoint=progress.step % cfg.checkpoint_every == 0)
        return reason

    def finish(self, reason: str) -> Any:
        """The end of a run stopped for `reason`: the final evaluation, one last report with a checkpoint, the
        result."""
        progress = self.progress
        self.final_eval(diverged=reason == "diverged")
        final_metrics = {k: v for k, v in self.metrics().items() if not k.startswith("train/")}
        self.emit(checkpoint=True)
        succeeded = progress.steps_to_success is not None
        return self.result_class(
            success=succeeded,
            steps_to_success=progress.steps_to_success,
            stop_reason="success" if succeeded and reason != "diverged" else reason,
            steps=progress.step,
            wall_time_s=progress.wall_s,
            final_metrics=final_metrics,
            eval_table=self.eval_table,
            diverged_step=self.diverged_step,
            **self.result_extras(),
        )

    def add_time(self, seconds: float) -> None:
        self.progress.wall_s += seconds

    # --- reports and checkpoints ---------------------------------------------------------------------------
    def emit(self, checkpoint: bool) -> None:
        metrics = self.metrics()
        self.progress.window = Window()
        self.progress.pending_eval = {}
        # Saved after the window reset, so a resumed run starts its next window exactly where this one does.
        path = self.save(self.checkpoint_dir) if checkpoint and self.checkpoint_dir else None
        if self.report is not None:
            self.report(metrics, str(path) if path else None)

    def state_dict(self) -> dict[str, Any]:
        streams = {f.name: getattr(self.rngs, f.name).bit_generator.state for f in dataclasses.fields(self.rngs)}
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.cfg.to_dict(),
            # Copies: a packed member's parameters are views of its pack's tensors (neuralgpu.packed), and
            # torch.save writes a view's whole storage.
            "model": {name: value.clone() for name, value in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "progress": dataclasses.asdict(self.progress),
            "eval_table": self.eval_table,
            "rng": {**global_rng_state(cuda=self.save_cuda_rng), **streams},
            **self.extra_state(),
        }

    def save(self, directory: Path) -> Path:
        """Write the full training state atomically (a killed writer never leaves a torn checkpoint)."""
        save_atomic(self.state_dict(), directory / CHECKPOINT_FILE)
        return directory

    @classmethod
    def load_checkpoint(cls, directory: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
        return load_checkpoint_dir(directory, CHECKPOINT_FILE, device, CHECKPOINT_FORMAT, cls.missing_checkpoint)

    def load(self, directory: str | Path) -> None:
        """Continue exactly from the checkpoint in `directory`; only `resumable` config fields may differ."""
        state = self.load_checkpoint(directory, self.device)
        path = Path(directory) / CHECKPOINT_FILE
        saved = type(self.cfg).from_dict(state["config"], source=str(path))
        check_resumable(saved.to_dict(), self.cfg.to_dict(), self.resumable, path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.progress = self.restore_progress(state["progress"])
        self.eval_table = list(state["eval_table"])
        rng = state["rng"]
        set_global_rng_state(rng)
        for f in dataclasses.fields(self.rngs):
            getattr(self.rngs, f.name).bit_generator.state = rng[f.name]
        self.load_extra(state)

    @classmethod
    def train(
        cls, cfg: Any, report: Report | None = None, checkpoint_dir: str | None = None, resume_from: str | None = None
    ) -> Any:
        """Train one run. `report(metrics, checkpoint)` is called every `cfg.report_every` steps and at the end;
        `checkpoint` is the directory of a complete checkpoint written just now (every `cfg.checkpoint_every` steps
        and at the end, when `checkpoint_dir` is given), else None. `resume_from` continues a checkpoint exactly.
        Each trainer module exports this as its `train` function."""
        trainer = cls(cfg, report, checkpoint_dir)
        if resume_from:
            trainer.load(resume_from)
        return trainer.run()
