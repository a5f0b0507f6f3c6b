"""Sweep drivers as a user runs them: `python -m sweeps run` in a subprocess joined to the tests' Ray cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def driver(
    path: Path, address: str, *args: str, log: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`python -m sweeps run path` on the cluster at `address`; output to a pipe, or to `log` (then nothing blocks
    when nobody reads it). Its environment is the tests' own less MLFLOW_TRACKING_URI, plus `env`."""
    environment = {**os.environ, "RAY_ADDRESS": address, "PYTHONUNBUFFERED": "1"}
    environment.pop("MLFLOW_TRACKING_URI", None)
    environment.update(env or {})
    output = log.open("w") if log else subprocess.PIPE
    return subprocess.Popen(
        [sys.executable, "-m", "sweeps", "run", str(path), *args],
        cwd=REPO,
        env=environment,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout_s: float) -> str:
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"the driver ran past {timeout_s:.0f} s:\n{output}") from None
    return output or ""


def wait_for(condition, timeout_s: float, proc: subprocess.Popen):
    """Poll `condition` until it returns something truthy (returned); fail with the driver's output otherwise."""
    deadline = time.monotonic() + timeout_s
    while not (found := condition()):
        if proc.poll() is not None:
            raise AssertionError(f"driver exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out:\n{proc.stdout.read()}")
        time.sleep(0.3)
    return found


def kill_worker_and_finish(proc: subprocess.Popen, worker_pid, timeout_s: float = 300) -> str:
    """Wait until `worker_pid()` names a Ray worker that trains and has checkpointed, SIGKILL it, and let the
    driver finish (Tune retries the trial); returns the driver's output, failing unless it exited 0."""
    wait_for(lambda: worker_pid() is not None, 240, proc)
    os.kill(worker_pid(), signal.SIGKILL)
    output, _ = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, output
    return output
