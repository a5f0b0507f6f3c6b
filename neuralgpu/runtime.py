"""Trainer plumbing shared by `neuralgpu.train` and `rl_tasks.train`: the command line built from a config
dataclass, global seeding, atomic checkpoints, RNG state that loads with `torch.load(weights_only=True)`, and the
check of which config fields may change on resume.

Imports neither Ray, MLflow nor rl_tasks: the RL trainer imports this module, never the reverse.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralgpu.config import ConfigError, describe_fields, load_yaml


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
    changed = [key for key, value in saved.items() if key not in resumable and value != current[key]]
    if changed:
        key = changed[0]
        raise ConfigError(
            f"{path}: the checkpoint was trained with a different `{key}` ({saved[key]!r} vs {current[key]!r}); "
            "resume with the checkpoint's config or start a new run."
        )


# --- command line ----------------------------------------------------------------------------------------
class ArgumentError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one clear line, exit status 2
        raise ArgumentError(message)


def build_parser(config_cls: type, prog: str, description: str) -> Parser:
    """The trainer flags plus one flag per config field (`--max-steps` and `--max_steps`), typed by the field:
    bools get `--x/--no-x`, tuples take one or more values, `X | None` fields take an X."""
    parser = Parser(prog=prog, description=description)
    parser.add_argument("--config", help="YAML file of config fields; flags given here override it")
    parser.add_argument("--checkpoint-dir", help="write full training state here (state.pt)")
    parser.add_argument("--resume", help="continue exactly from this checkpoint directory")
    parser.add_argument("--quiet", action="store_true", help="no progress lines, only the final JSON")
    docs = describe_fields(config_cls)
    hints = typing.get_type_hints(config_cls)
    for f in dataclasses.fields(config_cls):
        flags = [f"--{f.name.replace('_', '-')}"] + ([f"--{f.name}"] if "_" in f.name else [])
        default = "the model's" if f.default is None else f.default
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": None,
            "help": f"{docs[f.name]} (default: {default})".replace("%", "%%"),
        }
        hint = hints[f.name]
        if type(None) in typing.get_args(hint):  # X | None -> X
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(hint) is tuple:
            kwargs.update(nargs="+", type=typing.get_args(hint)[0])
        else:
            kwargs["type"] = hint
        parser.add_argument(*flags, **kwargs)
    return parser


def config_from_args(config_cls: type, args: argparse.Namespace, saved: dict[str, Any] | None = None) -> Any:
    """The YAML file of `--config`, else the config `saved` in the `--resume` checkpoint (if any), overridden by
    the flags given, validated by `config_cls.from_dict`."""
    values = load_yaml(args.config) if args.config else dict(saved or {})
    source = args.config or (f"{args.resume} (its saved config)" if saved else "command line")
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls)}
    values.update({k: v for k, v in flags.items() if v is not None})
    return config_cls.from_dict(values, source=source)


def run_cli(
    argv: list[str] | None,
    parser: argparse.ArgumentParser,
    config_cls: type,
    train: Callable[..., Any],
    progress_line: Callable[[dict[str, float]], str],
    load_checkpoint: Callable[[str], dict[str, Any]],
) -> int:
    """A trainer's `main`: parse, train with progress lines on stderr, print the JSON summary on stdout.
    `--resume DIR` without `--config` continues with the config saved in DIR (`load_checkpoint(DIR)["config"]`),
    overridden by the flags given. Bad input (flags, config, checkpoint) is one `error: ...` line on stderr and
    exit status 2."""
    try:
        args = parser.parse_args(argv)
        saved = load_checkpoint(args.resume)["config"] if args.resume and not args.config else None
        cfg = config_from_args(config_cls, args, saved)
    except (ArgumentError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def report(metrics: dict[str, float], checkpoint: str | None) -> None:
        if not args.quiet:
            print(progress_line(metrics), file=sys.stderr, flush=True)

    try:
        result = train(cfg, report=report, checkpoint_dir=args.checkpoint_dir, resume_from=args.resume)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"config": cfg.to_dict(), **result.to_dict()}, indent=2))
    return 0
