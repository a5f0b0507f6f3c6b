"""Train one Neural GPU for one seed: `train(cfg, report=...) -> TrainResult`, plus the command line.

The same function runs in a test, from the command line and inside a Ray Tune trial; it imports neither Ray
nor MLflow. Metric names and their meaning: `seedcore.record.NEURALGPU_METRICS` (stable; the analysis relies on
them); stop reasons: `seedcore.record.STOP_REASONS`.

Usage: python -m neuralgpu.train --task badd --width 24 --seed 0 [--config run.yaml] [--checkpoint-dir D]
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuralgpu.config import RESUMABLE, ConfigError, TrainConfig
from neuralgpu.curriculum import LengthCurriculum, TaskCurriculum, make_curriculum
from neuralgpu.evaluate import error_rates, evaluate_length
from neuralgpu.model import ModelConfig
from neuralgpu.optim import AdamaxF17
from neuralgpu.probes import run_probes
from neuralgpu.tasks import VOCAB_SIZE, get_task, random_batch, tough_batch
from neuralgpu.variants import variant
from seedcore.loop import (
    CHECKPOINT_FILE,
    CHECKPOINT_FORMAT,
    LoopProgress,
    LoopTrainer,
    Report,
    RunResult,
    seed_everything,
)

__all__ = ["CHECKPOINT_FILE", "CHECKPOINT_FORMAT", "Report", "TrainResult", "Trainer", "main", "train"]


@dataclass
class TrainResult(RunResult):
    probe_table: list[dict] = field(default_factory=list)
    """Failure probes at the end of the run (neuralgpu.probes): carry chains, equal stretches, structured inputs."""


@dataclass
class Generators:
    """The run's own random streams, from its data seed (seedcore.loop.seed_everything; dropout and gradient noise
    come from torch's global generator, seeded there too). Training data and evaluation data are separate streams
    so that evaluating more or less often never changes the training batches."""

    data: np.random.Generator
    eval: np.random.Generator


def model_config(cfg: TrainConfig) -> ModelConfig:
    return ModelConfig(
        vocab_size=VOCAB_SIZE,
        width=cfg.width,
        height=cfg.height,
        kernel=cfg.kernel,
        cgrus_per_step=cfg.cgrus_per_step,
        relax_copies=cfg.relax_copies,
        init_scale=cfg.init_scale,
        sigmoid_cutoff=cfg.sigmoid_cutoff,
        saturation_limit=cfg.saturation_limit,
        memory=cfg.memory,
    )


def build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamax_f17":
        return AdamaxF17(model.parameters(), lr=cfg.lr, betas=(0.9, adamax_beta2(0)), eps=1e-8)
    if cfg.optimizer == "adamax":
        return torch.optim.Adamax(model.parameters(), lr=cfg.lr, betas=(0.9, adamax_beta2(0)), eps=1e-8)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, eps=cfg.adam_eps)


def adamax_beta2(step: int) -> float:
    """F17's AdaMax schedule: beta2 = 1 - max(0.0005, 0.01 * 0.5^(step / 2000))."""
    return 1.0 - max(0.0005, 0.01 * 0.5 ** (step / 2000))


F17_LR_FLOOR = 60
"""F17 never decays the learning rate below its initial value / 60 (DNGPU_model.py: min_learning_rate)."""


def lr_after_check(cfg: TrainConfig, lr: float, previous: list[float], window_loss: float) -> float:
    """The learning rate after a check whose window loss is `window_loss`; `previous` holds the earlier windows'
    losses, oldest first.

    k15 (P16 trainer.py): decay when the window is worse than every one of the previous three.
    f17 (DNGPU_trainer.py): with L the windows including this one, decay when min(L[-2:]) > min(L[-3:]), i.e. when
    the window two checks back is strictly lower than both later ones (no progress in two checks); never below
    cfg.lr / 60.
    """
    if cfg.lr_decay_rule == "f17":
        if len(previous) >= 2 and previous[-2] < min(previous[-1], window_loss):
            return max(lr * cfg.lr_decay, cfg.lr / F17_LR_FLOOR)
        return lr
    if len(previous) >= 3 and window_loss > max(previous[-3:]):
        return lr * cfg.lr_decay
    return lr


def gradient_noise_std(cfg: TrainConfig, step: int, seq_error: float) -> float:
    """K15: std = scale * sqrt(step^-0.55 * max(0, seq_error - 0.02)); 0 once the error is tiny."""
    return cfg.grad_noise_scale * math.sqrt(step**-0.55 * max(0.0, seq_error - 0.02))


WINDOW_MEANS = ("train/loss", "train/seq_error", "train/digit_error")
"""Reported as their means over the steps since the last report."""


@dataclass
class Progress(LoopProgress):
    """Trainer state besides model, optimiser, curriculum and RNGs; all of it goes into a checkpoint."""

    lr: float = 0.0
    pull: float = 0.0
    check_losses: list[float] = field(default_factory=list)
    """Mean training loss of each curriculum-check window, for the LR decay rule."""
    check_loss_sum: float = 0.0
    check_loss_steps: int = 0
    check_saturation_sum: float = 0.0
    """f17: sum of the raw saturation cost over the check window."""
    saturation_weight: float = 0.0
    """f17: current weight of the saturation cost (F17 starts at 1e-3)."""
    recent_seq_error: float = 1.0
    """Training sequence error of the last step, for the gradient-noise schedule."""
    success_streak: int = 0


class Trainer(LoopTrainer):
    """One Neural GPU run: its model, step, curriculum, evaluation and success rule; the loop is seedcore's."""

    description = "Train one Neural GPU for one seed."
    config_class = TrainConfig
    result_class = TrainResult
    resumable = RESUMABLE
    save_cuda_rng = True
    progress_template = (
        "step {step:>6.0f}  len {curriculum/length:>3.0f}  loss {train/loss:.4f}  seq_err {train/seq_error:.3f}  "
        "digit_err {train/digit_error:.3f}  {train/examples_per_s:.0f} ex/s"
    )
    progress_evals = ("eval/seq", "confirm/seq"), ".3f"

    def __init__(self, cfg: TrainConfig, report: Report | None, checkpoint_dir: str | None):
        super().__init__(cfg, report, checkpoint_dir)
        self.variant = variant(cfg.model)
        self.rngs, model = seed_everything(*cfg.run_seeds(), Generators, self.build_model)
        self.model = model.to(self.device)
        self.optimizer = build_optimizer(cfg, self.model)
        self.schedule = TaskCurriculum(
            list(cfg.task_curriculum or [cfg.task]),
            lambda: make_curriculum(
                cfg.curriculum, cfg.min_length, cfg.start_length, cfg.max_length, cfg.advance_threshold, cfg.bins
            ),
            cfg.task_first_share,
        )
        self.progress = Progress(
            lr=cfg.lr,
            pull=cfg.pull_start if cfg.relax_copies > 1 else 0.0,
            saturation_weight=self.variant.initial_aux_weight(cfg),
        )
        self.probe_table: list[dict] = []
        if cfg.precision == "bf16" and self.device.type != "cuda":
            raise ConfigError("config: `precision` bf16 needs a CUDA device; use precision: fp32 on a CPU.")

    def build_model(self) -> torch.nn.Module:
        """The model with its initial weights (called once the init seed is set)."""
        model = self.variant.build(model_config(self.cfg))
        self.variant.initialise(model, self.cfg)
        return model

    @property
    def curriculum(self) -> LengthCurriculum:
        """The length curriculum of the target task (the one evaluated and judged)."""
        return self.schedule.lengths[self.cfg.task]

    # --- one step ----------------------------------------------------------------------------------------
    def batch(self, task: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch; a `hard_examples` share of it from P16's tough generator."""
        cfg, rng = self.cfg, self.rngs.data
        hard = round(cfg.batch_size * cfg.hard_examples) if get_task(task).arity == 2 and cfg.hard_examples else 0
        inputs, targets = random_batch(task, length, cfg.batch_size - hard, rng)
        if hard:
            tough_inputs, tough_targets = tough_batch(task, length, hard, rng)
            inputs, targets = np.concatenate([inputs, tough_inputs]), np.concatenate([targets, tough_targets])
        return torch.from_numpy(inputs).to(self.device), torch.from_numpy(targets).to(self.device)

    def sample_step(self) -> tuple[LengthCurriculum, list[tuple[int, torch.Tensor, torch.Tensor]]]:
        """The next step's task's length curriculum and its batches, as (length, inputs, targets)."""
        task = self.schedule.sample_task(self.rngs.data)
        curriculum = self.schedule.lengths[task]
        return curriculum, [(length, *self.batch(task, length)) for length in curriculum.sample_lengths(self.rngs.data)]

    def train_step(self) -> float:
        """One optimiser step over one batch per sampled length; returns the mean loss (NaN/inf when the run
        diverged, without updating)."""
        cfg = self.cfg
        started = time.perf_counter()
        curriculum, batches = self.sample_step()
        losses, saturations, errors = [], [], []
        for length, inputs, targets in batches:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                logits, loss = self.model(inputs, targets, dropout=self.variant.dropout_rate(cfg, length))
            losses.append(loss)
            saturations.append(self.variant.auxiliary_loss(self.model, loss))
            errors.append((length, *error_rates(logits.detach().argmax(dim=-1), targets)))
        loss = torch.stack(losses).mean()
        if not torch.isfinite(loss):
            return float(loss.detach())
        saturation_cost = torch.stack(saturations).mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.objective(loss, saturation_cost).backward()
        self.update(curriculum, float(loss.detach()), float(saturation_cost.detach()), errors)
        self.progress.window.seconds += time.perf_counter() - started
        return float(loss.detach())

    def objective(self, loss: torch.Tensor, saturation_cost: torch.Tensor) -> torch.Tensor:
        """What the step minimises: the loss, the variant's weighted auxiliary loss and K15's relaxation pull."""
        progress = self.progress
        objective = loss + progress.saturation_weight * saturation_cost
        if progress.pull > 0:
            objective = objective + progress.pull * self.model.relaxation_penalty()
        return objective

    def update(
        self, curriculum: LengthCurriculum, loss: float, saturation_cost: float, errors: list[tuple[int, float, float]]
    ) -> None:
        """The rest of a step once the objective's gradients are in the parameters: clipping, gradient noise, the
        optimiser step, the curriculum's statistics and the report window. `errors` holds (length, sequence
        error, digit error) of each batch."""
        cfg, progress = self.cfg, self.progress
        if cfg.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_norm)
        progress.step += 1
        if cfg.grad_noise:
            std = gradient_noise_std(cfg, progress.step, progress.recent_seq_error)
            if std > 0:
                for p in self.model.parameters():
                    if p.grad is not None:
                        p.grad.add_(torch.randn_like(p.grad) * std)
        if cfg.optimizer in ("adamax", "adamax_f17"):
            for group in self.optimizer.param_groups:
                group["betas"] = (0.9, adamax_beta2(progress.step))
        self.optimizer.step()

        for length, seq_error, _ in errors:
            curriculum.record(length, seq_error)
        seq_error = sum(e[1] for e in errors) / len(errors)
        digit_error = sum(e[2] for e in errors) / len(errors)
        progress.recent_seq_error = seq_error
        progress.check_loss_sum += loss
        progress.check_loss_steps += 1
        progress.check_saturation_sum += saturation_cost
        window = progress.window
        window.add({"train/loss": loss, "train/seq_error": seq_error, "train/digit_error": digit_error})
        window.add({"examples": cfg.batch_size * len(errors)})

    # --- every advance_every steps ------------------------------------------------------------------------
    def curriculum_check(self) -> None:
        cfg, progress = self.cfg, self.progress
        if self.schedule.check():
            progress.last_advance_step = progress.step
            if cfg.relax_copies > 1:
                # K15: raise the pull while it is small; past the limit, collapse the copies to their mean.
                if progress.pull < cfg.pull_limit:
                    progress.pull *= cfg.pull_growth
                else:
                    self.model.average_copies()
        window_loss = progress.check_loss_sum / max(progress.check_loss_steps, 1)
        lr = lr_after_check(cfg, progress.lr, progress.check_losses, window_loss)
        if lr != progress.lr:
            progress.lr = lr
            for group in self.optimizer.param_groups:
                group["lr"] = progress.lr
        progress.check_losses = [*progress.check_losses[-2:], window_loss]
        if progress.check_saturation_sum > 0:
            window_aux = progress.check_saturation_sum / progress.check_loss_steps
            progress.saturation_weight = self.variant.adapt_aux_weight(
                cfg, progress.saturation_weight, window_loss, window_aux, progress.lr
            )
        progress.check_loss_sum, progress.check_loss_steps, progress.check_saturation_sum = 0.0, 0, 0.0

    # --- every eval_every steps ---------------------------------------------------------------------------
    def evaluate(self, length: int, examples: int) -> dict[str, float]:
        return evaluate_length(
            self.model, self.cfg.task, length, examples, self.rngs.eval, self.cfg.eval_chunk, self.device
        )

    def success_test(self) -> None:
        """Run the success rule's test once and judge it."""
        cfg, progress = self.cfg, self.progress
        row = self.evaluate(cfg.success_length, cfg.eval_batch)
        progress.pending_eval[f"eval/seq_error@{row['length']}"] = row["seq_error"]
        progress.pending_eval[f"eval/digit_error@{row['length']}"] = row["digit_error"]
        self.judge(row)

    def judge(self, row: dict[str, float]) -> None:
        """Apply the success rule to one test at success_length: success once `success_hold` consecutive tests
        pass (P16: one, 'ever below') and, with `success_confirm`, a test on that many fresh examples passes
        too; a failed confirmation restarts the streak. Logged as confirm/<metric>@<length>."""
        cfg, progress = self.cfg, self.progress
        if progress.steps_to_success is not None:
            return
        passed = row[cfg.success_metric] < cfg.success_threshold
        progress.success_streak = progress.success_streak + 1 if passed else 0
        if progress.success_streak < cfg.success_hold:
            return
        if cfg.success_confirm:
            check = self.evaluate(cfg.success_length, cfg.success_confirm)
            progress.pending_eval[f"confirm/seq_error@{cfg.success_length}"] = check["seq_error"]
            progress.pending_eval[f"confirm/digit_error@{cfg.success_length}"] = check["digit_error"]
            if check[cfg.success_metric] >= cfg.success_threshold:
                progress.success_streak = 0
                return
        progress.steps_to_success = progress.step

    def periodic_eval(self) -> None:
        cfg = self.cfg
        row = self.evaluate(self.curriculum.length, cfg.eval_batch)
        self.progress.pending_eval["eval/seq_error@train"] = row["seq_error"]
        self.progress.pending_eval["eval/digit_error@train"] = row["digit_error"]
        # P16 runs the large test only once the model is good at the longest training length.
        if self.curriculum.at_max and row["seq_error"] < cfg.success_gate:
            self.success_test()

    # --- reporting and checkpoints ------------------------------------------------------------------------
    def metrics(self) -> dict[str, float]:
        progress = self.progress
        out = {
            "step": progress.step,
            **progress.window.means(WINDOW_MEANS),
            "train/examples_per_s": progress.window.per_second(progress.window.sums.get("examples", 0)),
            "train/lr": progress.lr,
            "train/pull": progress.pull,
            "train/saturation_weight": progress.saturation_weight,
            "curriculum/length": self.curriculum.length,
            "time/wall_s": progress.wall_s,
            **progress.pending_eval,
            "success": float(progress.steps_to_success is not None),
        }
        if progress.steps_to_success is not None:
            out["steps_to_success"] = progress.steps_to_success
        return out

    def extra_state(self) -> dict[str, Any]:
        return {"curriculum": self.schedule.state_dict(), "probe_table": self.probe_table}

    def load_extra(self, state: dict[str, Any]) -> None:
        self.schedule.load_state_dict(state["curriculum"])
        self.probe_table = list(state["probe_table"])

    # --- the loop -----------------------------------------------------------------------------------------
    def advance(self) -> int | None:
        progress = self.progress
        loss = self.train_step()
        if not math.isfinite(loss):
            return progress.step + 1
        self.after_step()
        return None

    def after_step(self) -> None:
        """The checks due after a step: the curriculum's and LR's every advance_every, evaluation every
        eval_every."""
        cfg, progress = self.cfg, self.progress
        if progress.step % cfg.advance_every == 0:
            self.curriculum_check()
        if progress.step % cfg.eval_every == 0:
            self.periodic_eval()

    def curriculum_at_max(self) -> bool:
        return self.curriculum.at_max

    def result_extras(self) -> dict[str, Any]:
        return {"probe_table": self.probe_table}

    def final_eval(self, diverged: bool) -> None:
        """Error at every test length (skipped after divergence: the weights are not a model); its time counts in
        time/wall_s, as the periodic evaluations' does."""
        started = time.perf_counter()
        if not diverged:
            self.test_lengths()
        self.progress.wall_s += time.perf_counter() - started

    def test_lengths(self) -> None:
        cfg = self.cfg
        pending = self.progress.pending_eval
        # A success test that ran at this very step has been judged; the final evaluation neither repeats it
        # nor judges it twice (that would count one test twice towards success_hold or retry a confirmation).
        tested = f"eval/seq_error@{cfg.success_length}" in pending
        if cfg.success_length not in cfg.eval_lengths and not tested:
            self.success_test()
        for length in cfg.eval_lengths:
            if f"eval/seq_error@{length}" in pending:
                # Keep that test's result, so the logged curve shows the test that decided the run
                # (re-judging from the record must agree with the recorded success).
                row = {
                    "length": length,
                    "seq_error": pending[f"eval/seq_error@{length}"],
                    "digit_error": pending[f"eval/digit_error@{length}"],
                    "examples": cfg.eval_batch,
                }
            else:
                row = self.evaluate(length, cfg.eval_batch)
                if length == cfg.success_length:
                    # The final test at the success length is a success test like any other (P16: "ever").
                    self.judge(row)
            row["step"] = self.progress.step
            self.eval_table.append(row)
            pending[f"eval/seq_error@{length}"] = row["seq_error"]
            pending[f"eval/digit_error@{length}"] = row["digit_error"]
        if cfg.probes:
            self.probe_table = run_probes(
                self.model,
                cfg.task,
                cfg.probe_carries,
                cfg.probe_examples,
                cfg.success_length,
                self.rngs.eval,
                cfg.eval_chunk,
                self.device,
            )


# The module's interface: `train(cfg, report=...) -> result` (LoopTrainer.train), the CLI and the checkpoint loader.
train, main, load_checkpoint = Trainer.train, Trainer.main, Trainer.load_checkpoint

if __name__ == "__main__":
    sys.exit(main())
