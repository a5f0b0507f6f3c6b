"""One typed, validated config per Neural GPU training run.

`TrainConfig` is the single source of truth for a run: the CLI builds its flags from these fields, sweeps
expand their axes into these fields, and the trainer reads nothing else. Every field has a one-line docstring
(the string under it); `seedcore.config.describe_fields` turns them into the CLI help. What every trainer's
config shares (dict round-trip, coercion, YAML, the budget and runtime rules) is `seedcore.config.RunConfig`; what
each model variant brings (its recipe for the fields left None, its own rules) is in `neuralgpu.variants`.

Defaults follow the K15/P16 public code (see shared/reference/neural_gpu.md); where the two disagree, the
field exposes the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from neuralgpu.variants import VARIANTS, variant
from seedcore.config import SEED_FIELDS, ConfigError, RunConfig, check_ranges, first_difference, need_for, quote

__all__ = ["ConfigError", "TrainConfig"]

SUCCESS_METRICS = ("seq_error", "digit_error")
OPTIMIZERS = ("adam", "adamax", "adamax_f17")
LR_DECAY_RULES = ("k15", "f17")
INITS = ("torch", "f17")
MEMORY_MODES = ("plain", "checkpoint", "offload")
PRECISIONS = ("fp32", "bf16")
FLOAT_RANGES = {
    "init_scale": "(0, 1e30]",
    "sigmoid_cutoff": "(0, 100]",
    "saturation_limit": "(0, 100]",
    "saturation_weight_max": "(0, 1]",
    "lr": "(0, 1e30]",
    "adam_eps": "(0, 1]",
    "clip_norm": "[0, 1e30]",
    "lr_decay": "(0, 1]",
    "grad_noise_scale": "[0, 100]",
    "pull_start": "[0, 1000]",
    "pull_growth": "(0, 100]",
    "pull_limit": "[0, 1000]",
}
"""Float fields without a rule of their own below, and their ranges (seedcore.config.check_ranges);
fractions, thresholds and max_minutes are checked with their rules."""


@dataclass
class TrainConfig(RunConfig):
    cli: ClassVar[str] = "python -m neuralgpu.train"

    # --- what to learn -------------------------------------------------------------------------------------
    task: str = "badd"
    """Task name from neuralgpu.tasks.TASKS (badd, qadd, add, bmul, mul, copy, rev, ...)."""
    seed: int = 0
    """The run's seed: init_seed and data_seed when they are unset; the nuisance axis of every pool. 0..2**64-1."""
    init_seed: int | None = None
    """Seeds the initial weights only; unset: `seed`. With data_seed, splits the seed into its two sources."""
    data_seed: int | None = None
    """Seeds every draw after the weights (examples, curriculum, dropout, grad noise, eval inputs); unset: `seed`."""

    # --- model -----------------------------------------------------------------------------------------------
    model: str = "k15"
    """k15: Kaiser & Sutskever 2015 as extended by P16; f17: Freivalds & Liepins 2017 (1-D, diagonal gates)."""
    width: int | None = None
    """m, the number of maps of the mental image. None: k15 24 (P16's default; P16 explored 3..512); f17 per task
    as F17's trainer: 48 for badd and sort, 96 for bmul, 192 for qmul and mul, 48 for tasks F17 did not train."""
    height: int = 4
    """h, the height of the mental image."""
    kernel: int = 3
    """Convolution kernel size (kernel x kernel)."""
    cgrus_per_step: int = 2
    """CGRUs applied per step; a length-n input runs n steps."""
    relax_copies: int | None = None
    """Parameter-sharing relaxation copies, step t uses copy t mod r; None = the model's (k15: 6, f17: 1 = off)."""
    dropout: float | None = None
    """k15: rate on the state after each step, times 8/length (P16); f17: rate on the input and the candidate.
    None: k15 0.15; f17 per task as F17's trainer: 0.5 for badd, 0.1 otherwise."""
    init_scale: float = 1.8
    """Factor of the uniform unit-scaling initialiser (K15)."""
    init: str | None = None
    """torch: weights as the modules build them (k15: unit scaling and an N(0, 1) embedding; f17: PyTorch's defaults,
    our F17 recipe until issue 19); f17: F17's glorot-uniform weights, zero biases (model f17 only). None: torch/f17."""
    sigmoid_cutoff: float = 1.2
    """Cutoff c of the hard sigmoid clamp(c*sigmoid(x) - (c-1)/2, 0, 1) used by the CGRU gates."""
    saturation_limit: float = 0.9
    """f17: pre-activations beyond +-limit pay the saturation cost sum relu(|x| - limit)."""
    saturation_weight_max: float = 1e-3
    """f17: cap of the saturation cost weight, re-set every advance_every steps to lr * loss / cost (F17)."""
    memory: str = "plain"
    """plain; checkpoint: recompute each step in backward; offload: keep saved activations in host memory."""
    precision: str = "fp32"
    """fp32, or bf16 (autocast, CUDA only)."""

    # --- curriculum ------------------------------------------------------------------------------------------
    curriculum: str | None = None
    """length: K15 with mixing; none: one length U[min, max] per batch; bins: every bin each step (F17).
    None = the model's (k15: length, f17: bins)."""
    min_length: int = 3
    """Shortest training length."""
    start_length: int = 6
    """First curriculum length (K15)."""
    max_length: int = 41
    """Longest training length (41 = 20-digit operands)."""
    advance_threshold: float = 0.15
    """Advance the curriculum when the training sequence error at the current length is below this."""
    advance_every: int = 200
    """Steps between curriculum checks (also the LR-decay and relaxation checkpoints)."""
    bins: tuple[int, ...] = (8, 12, 16, 20, 25, 28, 31, 36, 41)
    """Lengths trained together at every step by the bins curriculum (F17); those above max_length are dropped."""
    task_curriculum: tuple[str, ...] = ()
    """Ordered tasks ending with `task`, e.g. [bmul, qmul, mul] (P16); each task has its own length curriculum."""
    task_first_share: float = 0.8
    """Task curriculum: share of batches on the first unsolved task; the rest go to a random unsolved one (P16)."""
    hard_examples: float = 0.0
    """Share of each batch drawn from P16's tough generator (near powers of the base, sums to base^j or -1)."""

    # --- optimiser -------------------------------------------------------------------------------------------
    batch_size: int = 32
    """Examples per training step."""
    optimizer: str | None = None
    """adam; adamax: torch's (bias-corrected); adamax_f17: F17's (no bias correction, per-element clip to 1.2 x its
    running max + 1e-4); both AdaMax with F17's beta2 schedule. None = the model's (k15: adam, f17: adamax_f17)."""
    lr: float | None = None
    """Learning rate in (0, 1e30]; None = the model's (k15: 1e-3; f17: 0.01 * 48 / width)."""
    adam_eps: float = 1e-4
    """Adam epsilon (P16; K15 first release 1e-5). AdaMax uses F17's 1e-8."""
    clip_norm: float | None = None
    """Global gradient-norm clip (0 = off); None = the model's (k15: 1.0; f17: off, as F17)."""
    lr_decay: float | None = None
    """LR factor when `lr_decay_rule` fires at a check (1 = off); None: 0.98 / 0.7."""
    lr_decay_rule: str | None = None
    """k15: decay when a check window's loss exceeds the max of the previous three (P16); f17: when the window two
    checks back beats both later ones, never below lr / 60 (F17). None = the model's (k15 / f17)."""
    grad_noise: bool = False
    """Add gradient noise std = scale*sqrt(step^-0.55 * max(0, seq_err - 0.02)); the released TF code never did."""
    grad_noise_scale: float = 1.0
    """Scale of the gradient noise."""
    pull_start: float = 0.0005
    """Initial weight of the relaxation pull sum_i ||w_i - mean(w)||^2."""
    pull_growth: float = 1.2
    """Pull multiplier at each curriculum advance while pull < pull_limit."""
    pull_limit: float = 0.1
    """Once the pull reaches this, every advance sets all copies to their mean."""

    # --- budget ----------------------------------------------------------------------------------------------
    max_steps: int = 20000
    """Training steps budget (0 = no step limit; then max_minutes must be set)."""
    max_minutes: float = 0.0
    """Wall-time budget in minutes (0 = none). A time budget makes the stopping step machine-dependent."""
    patience_steps: int = 0
    """Stop as `no_progress` when the curriculum length has not advanced for this many steps (0 = never)."""
    stop_on_success: bool = True
    """End the run at the first success (success is 'ever below the threshold', so later steps cannot undo it)."""

    # --- evaluation and success ------------------------------------------------------------------------------
    eval_every: int = 200
    """Steps between evaluations at the current training length (and, when gated open, the success test)."""
    eval_lengths: tuple[int, ...] = (201, 401)
    """Test lengths evaluated at the end of the run (and logged as eval/seq_error@L)."""
    eval_batch: int = 128
    """Examples per test length (P16's large test: 128)."""
    eval_chunk: int = 16
    """Examples per forward pass during evaluation: bounds memory at long lengths (2001 on CPU)."""
    probes: bool = True
    """Run the failure probes (carry chains, long equal stretches, structured vs random) in the final evaluation."""
    probe_carries: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 95)
    """Carry-chain lengths c probed with operands summing to base^c or base^c - 1 (addition tasks)."""
    probe_examples: int = 16
    """Examples per probe point."""
    success_metric: str = "seq_error"
    """Metric of the success rule: seq_error or digit_error."""
    success_threshold: float = 0.01
    """Success when the metric at success_length is below this (P16: 1% sequence error)."""
    success_length: int = 201
    """Test length of the success rule (P16: 201, i.e. 100-digit operands)."""
    success_gate: float = 0.05
    """Run the success test only once the training error at max_length is below this (P16)."""
    success_hold: int = 1
    """Consecutive passing success tests needed (1 = P16's 'ever below')."""
    success_confirm: int = 0
    """Fresh examples of a confirmation test run when the rule first holds; success only if it passes too
    (0 = none). A 64-example test passes a model with 5% real error 4% of the time; 256 fresh examples almost
    never do, and the confirmation costs only at the rare passes."""

    # --- runtime ---------------------------------------------------------------------------------------------
    report_every: int = 50
    """Steps between metric reports (progress line, sweep record)."""
    checkpoint_every: int = 1000
    """Steps between full training-state checkpoints (when a checkpoint directory is given)."""
    device: str = "auto"
    """auto (CUDA when present), cpu, cuda or cuda:N."""
    threads: int = 1
    """torch CPU threads. Bit-identical metrics need the same value; sweeps give one thread per CPU."""

    def apply_recipe(self) -> None:
        """Fields left None take the model's own recipe, so `--model f17` alone switches to F17's training setup."""
        if self.model in VARIANTS:  # an unknown model is reported by validate()
            for key, default in variant(self.model).recipe.items():
                if getattr(self, key) is None:
                    setattr(self, key, default(self) if callable(default) else default)

    # Derived values live next to the parse: computed, never stored in files.
    @property
    def uses_relaxation(self) -> bool:
        return self.relax_copies > 1

    def validate(self, source: str = "config") -> None:
        from neuralgpu.curriculum import CURRICULA
        from neuralgpu.tasks import TASKS

        need = need_for(source)
        need(
            self.task in TASKS,
            "task",
            f"is {quote(self.task)}, not a known task",
            f"use one of {', '.join(sorted(TASKS))}",
        )
        need(self.model in VARIANTS, "model", f"is {quote(self.model)}", f"use one of {', '.join(VARIANTS)}")
        need(
            self.optimizer in OPTIMIZERS,
            "optimizer",
            f"is {quote(self.optimizer)}",
            f"use one of {', '.join(OPTIMIZERS)}",
        )
        need(
            self.lr_decay_rule in LR_DECAY_RULES,
            "lr_decay_rule",
            f"is {quote(self.lr_decay_rule)}",
            f"use one of {', '.join(LR_DECAY_RULES)}",
        )
        need(self.init in INITS, "init", f"is {quote(self.init)}", f"use one of {', '.join(INITS)}")
        need(self.memory in MEMORY_MODES, "memory", f"is {quote(self.memory)}", f"use one of {', '.join(MEMORY_MODES)}")
        need(
            self.precision in PRECISIONS,
            "precision",
            f"is {quote(self.precision)}",
            f"use one of {', '.join(PRECISIONS)}",
        )
        variant(self.model).check(self, need)
        need(
            not self.task_curriculum or self.task_curriculum[-1] == self.task,
            "task_curriculum",
            f"is {quote(list(self.task_curriculum))} but task is {quote(self.task)}",
            "end the task list with `task`",
        )
        for name in self.task_curriculum:
            need(
                name in TASKS,
                "task_curriculum",
                f"names {quote(name)}, not a known task",
                f"use tasks from {', '.join(sorted(TASKS))}",
            )
        need(
            0.0 <= self.task_first_share <= 1.0,
            "task_first_share",
            f"is {self.task_first_share}",
            "use a fraction in [0, 1]",
        )
        need(0.0 <= self.hard_examples <= 1.0, "hard_examples", f"is {self.hard_examples}", "use a fraction in [0, 1]")
        arithmetic_two = TASKS[self.task].is_arithmetic and TASKS[self.task].arity == 2 if self.task in TASKS else False
        need(
            self.hard_examples == 0 or arithmetic_two,
            "hard_examples",
            f"is {self.hard_examples} for {self.task}",
            "hard examples exist for two-operand arithmetic tasks only; set it to 0",
        )
        need(
            self.curriculum != "bins" or any(self.min_length <= b <= self.max_length for b in self.bins),
            "bins",
            f"has no length within [min_length, max_length] = [{self.min_length}, {self.max_length}]",
            "give bins inside that range",
        )
        need(
            all(c >= 1 for c in self.probe_carries),
            "probe_carries",
            f"is {quote(list(self.probe_carries))}",
            "use carry lengths >= 1",
        )
        need(self.probe_examples >= 1, "probe_examples", f"is {self.probe_examples}", "use at least 1")
        need(
            self.curriculum in CURRICULA,
            "curriculum",
            f"is {quote(self.curriculum)}, not a known curriculum",
            f"use one of {', '.join(CURRICULA)}",
        )
        need(
            self.success_metric in SUCCESS_METRICS,
            "success_metric",
            f"is {quote(self.success_metric)}",
            f"use one of {', '.join(SUCCESS_METRICS)}",
        )
        need(
            3 <= self.width <= 4096,
            "width",
            f"is {self.width}",
            "use a width between 3 and 4096 (K15/P16: 24..512)",
        )
        need(self.height >= 1, "height", f"is {self.height}", "use a positive height (K15: 4)")
        need(self.kernel >= 1 and self.kernel % 2 == 1, "kernel", f"is {self.kernel}", "use an odd kernel size")
        need(self.cgrus_per_step >= 1, "cgrus_per_step", f"is {self.cgrus_per_step}", "use at least 1")
        need(
            self.relax_copies >= 1,
            "relax_copies",
            f"is {self.relax_copies}",
            "use at least 1 (1 = no relaxation)",
        )
        need(0.0 <= self.dropout < 1.0, "dropout", f"is {self.dropout}", "use a rate in [0, 1)")
        need(
            3 <= self.min_length <= self.start_length <= self.max_length,
            "start_length",
            f"breaks min_length <= start_length <= max_length ({self.min_length}, {self.start_length}, "
            f"{self.max_length})",
            "order them, with min_length >= 3",
        )
        need(self.batch_size >= 1, "batch_size", f"is {self.batch_size}", "use at least 1")
        check_ranges(need, self, FLOAT_RANGES)
        for key in ("max_steps", "patience_steps", "max_minutes", "success_confirm"):
            need(getattr(self, key) >= 0, key, f"is {getattr(self, key)}", "use 0 or a positive number")
        for key in (
            "advance_every",
            "eval_every",
            "eval_batch",
            "eval_chunk",
            "success_hold",
        ):
            need(getattr(self, key) >= 1, key, f"is {getattr(self, key)}", "use a positive integer")
        need(
            0.0 <= self.advance_threshold <= 1.0,
            "advance_threshold",
            f"is {self.advance_threshold}",
            "use a fraction in [0, 1]",
        )
        need(
            0.0 < self.success_threshold <= 1.0,
            "success_threshold",
            f"is {self.success_threshold}",
            "use a fraction in (0, 1]",
        )
        need(
            0.0 < self.success_gate <= 1.0,
            "success_gate",
            f"is {self.success_gate}",
            "use a fraction in (0, 1]",
        )
        need(self.success_length >= 3, "success_length", f"is {self.success_length}", "use a length >= 3")
        need(
            len(self.eval_lengths) > 0 and all(n >= 3 for n in self.eval_lengths),
            "eval_lengths",
            f"is {quote(list(self.eval_lengths))}",
            "give one or more lengths >= 3",
        )
        self.validate_run(need)


RESUMABLE = frozenset(
    {
        "max_steps",
        "max_minutes",
        "patience_steps",
        "stop_on_success",
        "report_every",
        "checkpoint_every",
        "device",
        "eval_chunk",
    }
)
"""Fields a resumed run may change (budgets and bookkeeping; with stop_on_success off, a run that stopped at its
success goes on training: does generalisation keep improving?)."""


def check_pack(cfgs: list[TrainConfig], where: str = "pack") -> None:
    """Configs trained as one pack (neuralgpu.packed) must be one cell: equal up to their seeds, budgets and
    bookkeeping; and memory plain, fp32, on a CPU. Raises ConfigError naming the field."""
    if not cfgs:
        raise ConfigError(f"{where}: no members; give at least one config.")
    first = cfgs[0].to_dict()
    for cfg in cfgs[1:]:
        values = cfg.to_dict()
        key = first_difference(first, values, RESUMABLE | set(SEED_FIELDS))
        if key is not None:
            raise ConfigError(
                f"{where}: members differ in `{key}` ({first[key]!r} vs {values[key]!r}); a pack holds the seeds of "
                "one cell, so pack only configs that differ in their seeds, budgets or bookkeeping."
            )
    cfg = cfgs[0]
    if cfg.memory != "plain" or cfg.precision != "fp32" or cfg.device.startswith("cuda"):
        raise ConfigError(
            f"{where}: memory {quote(cfg.memory)}, precision {quote(cfg.precision)}, device {quote(cfg.device)}; "
            "packed seeds run with memory plain and precision fp32, on a CPU, for now (on CUDA each member's "
            "dropout stream is not yet its own). Train other configs one seed per run."
        )
