"""What a local pool may use of this machine (sweeps/resources.py): the CPUs of the process's affinity mask, and a
warning when the machine is already busy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sweeps.resources import load_warning, usable_cpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_process_pinned_to_one_cpu_plans_one_trial_at_a_time():
    """`taskset -c 0` (a container's cpuset, a SLURM binding): one CPU usable, whatever os.cpu_count() says."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a machine with 2 CPUs or more")
    assert usable_cpus() == len(os.sched_getaffinity(0))
    pinned = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "sweeps", "run", "tiny", "--dry-run"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "1 local CPUs run 1 at once" in pinned
    whole = subprocess.run(
        [sys.executable, "-c", "from sweeps.resources import usable_cpus; print(usable_cpus())"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert int(whole) == len(os.sched_getaffinity(0))


def test_a_busy_machine_is_named_with_its_load_and_an_idle_one_is_not():
    assert load_warning(cpus=2, load=1.0) is None, "half the CPUs busy: still fine"
    message = load_warning(cpus=2, load=1.6)
    assert message is not None and "load average 1.6 on 2 usable CPUs" in message and "idle machine" in message
    assert load_warning(cpus=8, load=3.9) is None and load_warning(cpus=8, load=4.1) is not None
