"""Command line: `python -m sweeps run|status|list` (also the `seedpool` console script).

Exit status: 0 done, 1 some trials failed, 2 bad input (config, resources, store; nothing launched or
recorded), 130 interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import sys

from seedcore.cli import ArgumentError, Parser
from seedcore.config import clip
from sweeps.schema import CONFIG_DIR, SweepConfigError

EXIT_BAD_INPUT = 2
OVERRIDES_HELP = (
    "change the file's values, e.g. budget.steps=2000 axes.science.width=[24,64] axes.nuisance.seed.stop=2 "
    "base.lr=0.01 (values are YAML; validated like the file; recorded on the parent run)"
)
MAX_MESSAGE_CHARS = 1000
"""Errors are a paragraph: the sources quote values in at most 80 characters; this is the last bound."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="python -m sweeps", description="Run pools of seeded training runs on Ray Tune, recorded in MLflow."
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run = commands.add_parser("run", help="launch (or resume, or grow) a sweep")
    run.add_argument("config", help="a sweep YAML path, or the name of one in sweeps/configs (e.g. smoke)")
    run.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=OVERRIDES_HELP)
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the expanded trial table and the resources it needs; launch nothing",
    )
    run.add_argument("--max-concurrent", type=int, metavar="N", help="run at most N trials at once")
    run.add_argument(
        "--restart",
        action="store_true",
        help="ignore earlier results of this pool: retire every trial run of its experiment in MLflow "
        "(earlier versions of the config included) and rerun every trial from step 0",
    )
    status = commands.add_parser("status", help="progress of a sweep from its MLflow record")
    status.add_argument("config", help="a sweep YAML path or a name in sweeps/configs")
    status.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="the overrides the pool was run with")
    commands.add_parser("list", help="the shipped sweep configs and what is recorded of them")
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """argparse, with overrides also after the flags (`run big_models --dry-run budget.steps=300`): argparse fills
    a `nargs="*"` positional only before the first flag, and its intermixed parsing refuses subcommands."""
    args, extra = build_parser().parse_known_args(argv)
    flags = [arg for arg in extra if arg.startswith("-") or not hasattr(args, "overrides")]
    if flags:
        raise ArgumentError(f"unrecognized arguments: {' '.join(flags)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parse(argv)
        if getattr(args, "max_concurrent", None) is not None and args.max_concurrent < 1:
            raise ArgumentError("--max-concurrent must be at least 1")
    except ArgumentError as exc:
        print(f"error: {exc} (see `python -m sweeps --help`)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        if args.command == "list":
            return list_sweeps()
        from sweeps.expand import load_sweep

        sweep = load_sweep(args.config, getattr(args, "overrides", ()))
        if args.command == "run" and not args.dry_run:
            from sweeps.resources import check_local_machine

            # Before importing the runner (MLflow, Ray: seconds): an impossible request is refused at once.
            check_local_machine(sweep.config.resources, str(sweep.path))
        if args.command == "status":
            from sweeps.runner import sweep_status

            return sweep_status(sweep)
        from sweeps.runner import describe_plan, run_sweep

        if args.dry_run:
            print(describe_plan(sweep))
            print("\ndry run: nothing launched, nothing recorded.")
            return 0
        return run_sweep(sweep, max_concurrent=args.max_concurrent, restart=args.restart, argv=argv)
    except SweepConfigError as exc:
        print(clip(f"error: {exc}", MAX_MESSAGE_CHARS), file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume.", file=sys.stderr)
        return 130


def list_sweeps() -> int:
    """Shipped configs with their pool size, and whether the local store has a record of them."""
    from sweeps.expand import load_sweep
    from sweeps.tracking import Store, tracking_uri

    rows = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        try:
            sweep = load_sweep(str(path))
        except SweepConfigError as exc:
            rows.append((path.stem, "-", "-", f"INVALID: {exc}"))
            continue
        store = Store(tracking_uri(sweep), sweep.name, create=False)
        runs = store.trial_runs() if store.experiment_id else {}
        keys = {t.key for t in sweep.trials}
        done = sum(1 for k, r in runs.items() if k in keys and r.info.status == "FINISHED")
        rows.append((path.stem, str(len(sweep.trials)), f"{done}/{len(keys)}", sweep.config.description))
    headers = ("config", "trials", "finished", "description")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:3])]
    for row in [headers, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row[:3], widths, strict=True)) + "  " + row[3])
    return 0
