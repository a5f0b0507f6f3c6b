"""`make bench`: every benchmark, one table each (CPU-sized defaults; see each module for GPU settings)."""

from bench import adaptive_design, cluster_overhead, memory_modes, neuralgpu_throughput, pool_overhead, rl_episodes


def main() -> None:
    neuralgpu_throughput.main([])
    neuralgpu_throughput.main(["--model", "f17", "--widths", "96"])
    memory_modes.main([])
    cluster_overhead.main([])
    pool_overhead.main([])
    rl_episodes.main([])
    adaptive_design.main([])


if __name__ == "__main__":
    main()
