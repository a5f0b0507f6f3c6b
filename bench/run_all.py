"""`make bench`: every benchmark, one table each."""

from bench import neuralgpu_throughput


def main() -> None:
    neuralgpu_throughput.main([])


if __name__ == "__main__":
    main()
