"""`make bench`: every benchmark, one table each (CPU-sized defaults; see each module for GPU settings)."""

from bench import (
    adaptive_design,
    cluster_overhead,
    memory_modes,
    neuralgpu_throughput,
    packed_seeds,
    pool_overhead,
    rl_episodes,
    step_speed,
    stopping_cost,
)


def main() -> None:
    neuralgpu_throughput.main([])
    neuralgpu_throughput.main(["--model", "f17", "--widths", "96"])
    step_speed.main([])
    packed_seeds.main([])
    memory_modes.main([])
    cluster_overhead.main([])
    pool_overhead.main([])
    stopping_cost.main([])
    rl_episodes.main([])
    adaptive_design.main([])


if __name__ == "__main__":
    main()
