"""Trainer plumbing shared by every trainer: global seeding, devices, atomic checkpoints, RNG state that loads with
`torch.load(weights_only=True)`, and the check of which config fields may change on resume.

Imports neither Ray, MLflow nor any trainer: the trainers import this module, never the reverse.
"""

from __future__ import annotations

import os
import random
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from seedcore.config import ConfigError, first_difference


# --- seeding and devices ---------------------------------------------------------------------------------
def seed_globals(seed: int) -> None:
    """Seed Python, NumPy's global state and torch (CPU and CUDA); each trainer adds its own generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str, fix: str) -> torch.device:
    """`auto` picks CUDA when present; a CUDA name without CUDA is a ConfigError ending in `fix`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config: `device` is {name!r} but torch sees no CUDA device; {fix}.")
    return torch.device(name)


# --- checkpoints -----------------------------------------------------------------------------------------
def save_atomic(state: dict[str, Any], path: Path) -> Path:
    """torch.save to a temporary file, then rename: a killed writer never leaves a torn checkpoint at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_state(path: Path, device: torch.device | str, expected_format: int) -> dict[str, Any]:
    """A checkpoint written by `save_atomic`, loaded without unpickling code; its format must match."""
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("format") != expected_format:
        raise ConfigError(f"{path}: checkpoint format {state.get('format')} is not {expected_format}.")
    return state


def load_checkpoint_dir(
    directory: str | Path, file_name: str, device: torch.device | str, expected_format: int, missing: str
) -> dict[str, Any]:
    """`load_state` of the checkpoint `file_name` in `directory`; when it is not there, a ConfigError
    "DIRECTORY: no FILE_NAME `missing`" (the trainer's hint of what to pass instead)."""
    path = Path(directory) / file_name
    if not path.is_file():
        raise ConfigError(f"{directory}: no {file_name} {missing}")
    return load_state(path, device, expected_format)


def numpy_state_to_torch(state: dict[str, Any]) -> dict[str, Any]:
    """NumPy's global MT19937 state holds an ndarray, which weights_only loading refuses: store a tensor."""
    return {
        **state,
        "state": {"key": torch.from_numpy(state["state"]["key"].astype(np.int64)), "pos": state["state"]["pos"]},
    }


def numpy_state_from_torch(state: dict[str, Any]) -> dict[str, Any]:
    key = state["state"]["key"].cpu().numpy().astype(np.uint32)
    return {**state, "state": {"key": key, "pos": int(state["state"]["pos"])}}


def global_rng_state(cuda: bool) -> dict[str, Any]:
    """Python's, NumPy's global and torch's RNG states (and every CUDA device's when `cuda`), checkpoint-ready."""
    state = {
        "python": random.getstate(),
        "numpy_global": numpy_state_to_torch(np.random.get_state(legacy=False)),
        "torch": torch.get_rng_state(),
    }
    if cuda:
        state["cuda"] = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return state


def set_global_rng_state(state: dict[str, Any]) -> None:
    """Restore what `global_rng_state` captured (CUDA states only where saved and a CUDA device exists)."""
    random.setstate(state["python"])
    np.random.set_state(numpy_state_from_torch(state["numpy_global"]))
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def check_resumable(saved: dict[str, Any], current: dict[str, Any], resumable: Collection[str], path: Path) -> None:
    """Refuse to resume when a config field outside `resumable` (budgets, bookkeeping) differs from the
    checkpoint's; `saved` and `current` are `to_dict()` of the two configs."""
    key = first_difference(saved, current, resumable)
    if key is not None:
        raise ConfigError(
            f"{path}: the checkpoint was trained with a different `{key}` ({saved[key]!r} vs {current[key]!r}); "
            "resume with the checkpoint's config or start a new run."
        )
