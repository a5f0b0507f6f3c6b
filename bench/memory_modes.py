"""Peak memory and step time of one training step in the plain, checkpointed and host-offloaded memory modes.

Each (width, mode) runs in a fresh process so that its peak is its own: on CUDA the peak of allocated device
memory, on a CPU the growth of the process's peak resident set during the first step (which also creates the
optimizer state). The step time is the median of `--timed-steps` further steps, so one-off costs of the first
(CUDA kernels chosen and loaded, allocator growth) are not in it. The same run prints the plain mode first, so
the other modes read as ratios against it.

    python -m bench.memory_modes [--widths 256 512] [--length 17] [--batch 2] [--model k15] [--timed-steps 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODES = ("plain", "checkpoint", "offload")


def one_mode(model: str, width: int, mode: str, length: int, batch: int, timed_steps: int) -> dict[str, float]:
    from bench.common import fixed_length_config
    from neuralgpu.train import Trainer

    cfg = fixed_length_config(model, width, length, batch, torch.get_num_threads(), memory=mode)
    trainer = Trainer(cfg, report=None, checkpoint_dir=None)
    cuda = trainer.device.type == "cuda"

    def timed_step() -> float:
        started = time.perf_counter()
        trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    first_s = timed_step()
    if cuda:
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    warm = [timed_step() for _ in range(timed_steps)]
    return {
        "step_s": statistics.median(warm) if warm else first_s,
        "first_step_s": first_s,
        "peak_mib": peak / 2**20,
        "device": trainer.device.type,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="k15", choices=["k15", "f17"])
    parser.add_argument("--widths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--length", type=int, default=17, help="short on a CPU; use 41 on a GPU")
    parser.add_argument("--batch", type=int, default=2, help="small on a CPU; use 32 on a GPU")
    parser.add_argument(
        "--timed-steps", type=int, default=2, help="steps after the first whose median is the step time (0: the first)"
    )
    parser.add_argument("--one", nargs=2, metavar=("WIDTH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timed_steps < 0:
        parser.error(f"--timed-steps is {args.timed_steps}; use 0 or more")
    if args.one:
        row = one_mode(args.model, int(args.one[0]), args.one[1], args.length, args.batch, args.timed_steps)
        print(json.dumps(row))
        return
    timed = f"median of {args.timed_steps} steps after the first" if args.timed_steps else "the first step"
    print(f"Memory modes ({args.model}, length {args.length}, batch {args.batch}): first step's peak, time {timed}")
    print(
        f"{'width':>6} {'mode':>11} {'device':>6} {'first s':>8} {'step s':>8} {'peak MiB':>9} "
        f"{'peak vs plain':>14} {'time vs plain':>14}"
    )
    for width in args.widths:
        plain = None
        for mode in MODES:
            command = [
                sys.executable,
                "-m",
                "bench.memory_modes",
                "--model",
                args.model,
                "--length",
                str(args.length),
                "--batch",
                str(args.batch),
                "--timed-steps",
                str(args.timed_steps),
                "--one",
                str(width),
                mode,
            ]
            row = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            plain = plain or row
            print(
                f"{width:>6} {mode:>11} {row['device']:>6} {row['first_step_s']:>8.2f} {row['step_s']:>8.2f} "
                f"{row['peak_mib']:>9.1f} "
                f"{row['peak_mib'] / max(plain['peak_mib'], 1e-9):>14.2f} {row['step_s'] / plain['step_s']:>14.2f}"
            )


if __name__ == "__main__":
    main()
