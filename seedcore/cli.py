"""The trainers' command line, built from their config dataclass, and the one argument parser of the project
(`sweeps.cli` uses it too): a bad argument is one line and exit status 2, never argparse's usage dump.

Imports no torch: the orchestrator's command line starts fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

from seedcore.config import SEED_FIELDS, ConfigError, describe_fields, load_yaml


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
        default = f.default if f.default is not None else "seed" if f.name in SEED_FIELDS else "the model's"
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


def format_progress(template: str, metrics: dict[str, float], evals: tuple[str, ...], eval_spec: str) -> str:
    """One report as a progress line. `template` holds `{metric:spec}` fields and `[optional segments]`, shown only
    when every metric in them was reported; the metrics whose names start with one of `evals` follow as
    `name=value` (without their `eval/` prefix), formatted by `eval_spec`."""

    def field(match: re.Match) -> str:
        return format(metrics[match[1]], match[2] or "")

    def segment(match: re.Match) -> str:
        names = re.findall(r"\{([^}:]+)", match[1])
        return re.sub(r"\{([^}:]+):?([^}]*)\}", field, match[1]) if all(n in metrics for n in names) else ""

    line = re.sub(r"\[([^\]]*)\]", segment, template)
    line = re.sub(r"\{([^}:]+):?([^}]*)\}", field, line)
    tested = " ".join(
        f"{k.removeprefix('eval/')}={format(v, eval_spec)}" for k, v in metrics.items() if k.startswith(evals)
    )
    return f"{line}  {tested}".rstrip()
