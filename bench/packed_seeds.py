"""Seed-steps per second of packed seeds (neuralgpu.packed) against the same seeds trained one per process.

Issue #17's target: 8 seeds of K15 at width 24 (length 41, batch 32) on this machine's cores, packed against 8
separate trials sharing the same cores (>= 1.4x). Each arm trains the same 8 seeds for the same steps (after one
untimed warm-up step each), with as many worker processes as cores, in the same run:

- solo: each process trains its share of the seeds one after the other, one thread each (a pool's trials);
- packs per core: each process trains its share as one pack, one thread each, its members' lengths grouped (one
  forward pass per distinct length) or padded (one pass);
- one pack: one process trains all 8 as one pack with a thread per core.

Two length settings: every member at length 41 (what F17's bins give: no padding), and K15's length curriculum at
its last stage (each member draws its own length each step), with the mean padding overhead of padded passes (the
pack's convolution work over the members' own).

    python -m bench.packed_seeds [--seeds 8] [--steps 4] [--width 24] [--length 41] [--workers 2]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

from bench.common import fixed_length_config
from neuralgpu.config import TrainConfig


def configs(seeds: list[int], width: int, length: int, curriculum: str, threads: int) -> list[TrainConfig]:
    if curriculum == "fixed":
        return [fixed_length_config("k15", width, length, 32, threads, seed=seed) for seed in seeds]
    # K15's curriculum at its last stage: lengths drawn in [min_length, length], skewed to the top.
    return [
        fixed_length_config("k15", width, length, 32, threads, seed=seed).replace(curriculum="length", min_length=3)
        for seed in seeds
    ]


def solo_seconds(cfgs: list[TrainConfig], steps: int) -> tuple[float, float]:
    """(seconds, padding) of `steps` timed steps of each config, one after the other, each its own trainer."""
    from neuralgpu.train import Trainer

    total = 0.0
    for cfg in cfgs:
        trainer = Trainer(cfg, None, None)
        trainer.train_step()
        started = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        total += time.perf_counter() - started
    return total, 1.0


def pack_seconds(cfgs: list[TrainConfig], steps: int, lengths: str) -> tuple[float, float]:
    """(seconds, mean padding overhead) of `steps` timed steps of the configs as one pack."""
    from neuralgpu.packed import Pack

    pack = Pack(cfgs, lengths=lengths)
    members = list(range(len(cfgs)))
    pack.step(members)
    started = time.perf_counter()
    for _ in range(steps):
        pack.step(members)
    return time.perf_counter() - started, statistics.fmean(pack.padding[1:])


def worker(job: tuple[str, list[TrainConfig], int]) -> tuple[float, float]:
    arm, cfgs, steps = job
    if arm == "solo":
        return solo_seconds(cfgs, steps)
    return pack_seconds(cfgs, steps, lengths=arm)


def measure(arm: str, cfgs_per_worker: list[list[TrainConfig]], steps: int) -> tuple[float, float]:
    """(seed-steps per second, mean padding) of one arm: its workers run in parallel processes."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(len(cfgs_per_worker)) as pool:
        results = pool.map(worker, [(arm, cfgs, steps) for cfgs in cfgs_per_worker])
    seeds = sum(len(cfgs) for cfgs in cfgs_per_worker)
    # The slowest worker decides when the seeds are done; start-up (process, import, model build) is not counted.
    seconds = max(result[0] for result in results)
    return seeds * steps / seconds, statistics.fmean(result[1] for result in results)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per seed (after one warm-up step)")
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--length", type=int, default=41)
    parser.add_argument("--workers", type=int, default=2, help="processes = cores used")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    shares = [seeds[w :: args.workers] for w in range(args.workers)]
    print(
        f"packed seeds: K15 width {args.width}, batch 32, {args.seeds} seeds x {args.steps} steps, "
        f"{args.workers} cores (seed-steps/s; ratio against solo in the same run)"
    )
    print(f"{'lengths':<22} {'arm':<26} {'seed-steps/s':>12} {'ratio':>6} {'padding':>8}")
    for curriculum in ("fixed", "length"):
        label = f"all at {args.length}" if curriculum == "fixed" else f"K15 curriculum at {args.length}"
        arms = {
            "solo (one per process)": ("solo", [configs(s, args.width, args.length, curriculum, 1) for s in shares])
        }
        for lengths in ("group", "pad") if curriculum == "length" else ("pad",):
            arms[f"{args.workers} packs, {lengths}"] = (
                lengths,
                [configs(s, args.width, args.length, curriculum, 1) for s in shares],
            )
        if args.workers > 1:
            arms[f"1 pack, {args.workers} threads"] = (
                "group",
                [configs(seeds, args.width, args.length, curriculum, args.workers)],
            )
        baseline = None
        for name, (arm, jobs) in arms.items():
            rate, padding = measure(arm, jobs, args.steps)
            baseline = baseline or rate
            print(f"{label:<22} {name:<26} {rate:>12.2f} {rate / baseline:>6.2f} {padding:>8.2f}")


if __name__ == "__main__":
    main()
