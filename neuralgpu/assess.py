"""Test a saved Neural GPU far beyond its training length, and probe where it fails.

    python -m neuralgpu.assess runs/bmul_f17/.../checkpoint_000012 --lengths 401 2001 --examples 32 --probes

Works on any checkpoint the trainer wrote (a `state.pt`, or the directory holding it, as Ray Tune and MLflow
store them): the model is rebuilt from the config saved beside its weights, so nothing else is needed.
Prints one JSON object: per length the sequence error, digit error and exact-answer rate (1 - sequence error)
with its count, and with --probes the failure-probe table of neuralgpu.probes.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neuralgpu.config import ConfigError, TrainConfig
from neuralgpu.evaluate import evaluate_length
from neuralgpu.probes import run_probes
from neuralgpu.train import CHECKPOINT_FILE, CHECKPOINT_FORMAT, model_config
from neuralgpu.variants import variant
from seedcore.runtime import load_state, resolve_device


@dataclass
class SavedModel:
    cfg: TrainConfig
    model: torch.nn.Module
    step: int
    path: Path


def load_saved(path: str | Path, device: str = "cpu") -> SavedModel:
    """The model of a trainer checkpoint (file or directory), in eval mode, loaded with weights_only=True."""
    path = Path(path)
    file = path / CHECKPOINT_FILE if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path}: no {CHECKPOINT_FILE} here; pass a checkpoint directory or its {CHECKPOINT_FILE}.")
    target = resolve_device(device, fix="pass --device cpu")
    state = load_state(file, target, CHECKPOINT_FORMAT)
    cfg = TrainConfig.from_dict(state["config"], source=str(file))
    model = variant(cfg.model).build(model_config(cfg)).to(target)
    model.load_state_dict(state["model"])
    model.eval()
    return SavedModel(cfg=cfg, model=model, step=int(state["progress"]["step"]), path=file)


def assess(
    saved: SavedModel,
    lengths: list[int],
    examples: int,
    seed: int,
    probes: bool = False,
    chunk: int = 8,
    device: str = "cpu",
) -> dict:
    """Error at each length on fresh examples from a generator seeded by `seed` (never the training stream)."""
    rng = np.random.default_rng(seed)
    rows = []
    for length in lengths:
        row = evaluate_length(saved.model, saved.cfg.task, length, examples, rng, chunk, device)
        exact = round((1 - row["seq_error"]) * examples)
        rows.append({**row, "exact_answers": exact, "exact_rate": exact / examples})
    out = {
        "checkpoint": str(saved.path),
        "task": saved.cfg.task,
        "model": saved.cfg.model,
        "width": saved.cfg.width,
        "seed": saved.cfg.seed,
        "step": saved.step,
        "eval": rows,
    }
    if probes:
        cfg = saved.cfg
        out["probes"] = run_probes(
            saved.model, cfg.task, cfg.probe_carries, cfg.probe_examples, cfg.success_length, rng, chunk, device
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neuralgpu.assess", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint directories or state.pt files")
    parser.add_argument("--lengths", type=int, nargs="+", default=[201, 2001], help="test lengths (default 201 2001)")
    parser.add_argument("--examples", type=int, default=32, help="fresh examples per length (default 32)")
    parser.add_argument("--seed", type=int, default=12345, help="seed of the test examples (default 12345)")
    parser.add_argument("--probes", action="store_true", help="also run the failure probes")
    parser.add_argument("--chunk", type=int, default=8, help="examples per forward pass (memory bound)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    if args.examples < 1 or any(length < 3 for length in args.lengths):
        parser.error("--examples must be >= 1 and every length >= 3")
    torch.set_num_threads(args.threads)
    try:
        for path in args.checkpoints:
            saved = load_saved(path, args.device)
            result = assess(saved, args.lengths, args.examples, args.seed, args.probes, args.chunk, args.device)
            print(json.dumps(result), flush=True)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
