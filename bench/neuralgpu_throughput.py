"""Neural GPU training throughput on this machine, next to the same run's fp32 matmul speed.

Prints one row per width: examples/s of a full training step (forward, backward, Adam) at one length and
batch, and the achieved GFLOP/s of the CGRU convolutions (forward + backward counted as 3x the forward FLOPs),
then the fp32 matrix-multiply GFLOP/s measured in the same process as the machine's yardstick.

    python -m bench.neuralgpu_throughput [--model k15|f17] [--widths 24 128] [--length 41] [--batch 32]
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.common import fixed_length_config
from neuralgpu.train import Trainer


def matmul_gflops(size: int = 1024, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * size**3 * runs / (time.perf_counter() - started) / 1e9


def training_throughput(
    width: int, length: int, batch: int, steps: int, threads: int, model: str = "k15"
) -> dict[str, float]:
    cfg = fixed_length_config(
        model, width, length, batch, threads, eval_every=10**9, advance_every=10**9, report_every=10**9
    )
    trainer = Trainer(cfg, report=None, checkpoint_dir=None)
    trainer.train_step()  # warm-up: allocator and kernels
    started = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    seconds = (time.perf_counter() - started) / steps
    conv_flops = 3 * trainer.model.conv_flops(length) * batch  # backward ~ 2x forward
    return {
        "width": width,
        "length": length,
        "batch": batch,
        "step_s": seconds,
        "examples_per_s": batch / seconds,
        "conv_gflops": conv_flops / seconds / 1e9,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="k15", choices=["k15", "f17"])
    parser.add_argument("--widths", type=int, nargs="+", default=[24, 128])
    parser.add_argument("--length", type=int, default=41)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    reference = matmul_gflops()
    device = "CUDA" if torch.cuda.is_available() else "CPU"
    print(f"Neural GPU ({args.model}) training throughput ({device}, {args.threads} threads, fp32)")
    print(
        f"{'width':>6} {'length':>6} {'batch':>5} {'step s':>8} {'examples/s':>11} "
        f"{'conv GFLOP/s':>13} {'% of matmul':>11}"
    )
    for width in args.widths:
        row = training_throughput(width, args.length, args.batch, args.steps, args.threads, args.model)
        print(
            f"{row['width']:>6} {row['length']:>6} {row['batch']:>5} {row['step_s']:>8.3f} "
            f"{row['examples_per_s']:>11.1f} {row['conv_gflops']:>13.1f} {100 * row['conv_gflops'] / reference:>10.0f}%"
        )
    print(f"fp32 matmul 1024x1024, same process: {reference:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
