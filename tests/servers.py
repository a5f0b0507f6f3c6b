"""A real MLflow tracking server on a loopback port, for tests where the store goes away and comes back.

`MlflowServer.stop()` ends the whole server (every worker process) and `start()` brings it back on the same port
with the same backend store and artifact folder: to a client, the store was unreachable for a while, nothing else.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

HOST = "127.0.0.1"
START_TIMEOUT_S = 120.0
"""Starting takes ~5-10 s on an idle 2-core machine (importing MLflow, migrating an empty sqlite store); the
margin is for a machine busy with Ray trials."""
STOP_TIMEOUT_S = 15.0


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class MlflowServer:
    """`mlflow server` with one worker on 127.0.0.1, serving artifacts from `artifacts_dir`.

    Use as a context manager, or call `start()` and `stop()`; `uri` is what a client's tracking URI should be.
    """

    def __init__(self, backend_uri: str, artifacts_dir: Path | str, port: int | None = None) -> None:
        self.backend_uri = backend_uri
        self.artifacts_dir = Path(artifacts_dir)
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> MlflowServer:
        """Start the server (again, on the same port and store) and return once `GET /health` answers."""
        if self.running:
            raise RuntimeError(f"the MLflow server at {self.uri} is already running; stop() it first")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        # The server's output goes to a file, not a pipe: nobody reads a pipe while a test runs, and a full
        # pipe would block the server mid-request.
        self._log = tempfile.TemporaryFile(mode="w+b")
        command = [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
            "--host", HOST, "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        # A session of its own, so stop() can end the uvicorn workers along with the launcher.
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_healthy(timeout_s)
        return self

    def stop(self) -> None:
        """End the server and every process it started; returns once they are gone."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self._kill_leftovers()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def output_tail(self, chars: int = 4000) -> str:
        """The last `chars` characters the server wrote (stdout and stderr together)."""
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-chars:]

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                why = (
                    f"exited with status {self.process.returncode}"
                    if self.process.poll() is not None
                    else f"did not answer GET /health within {timeout_s:.0f} s"
                )
                tail = self.output_tail()
                self.stop()
                raise RuntimeError(f"the MLflow server at {self.uri} {why}; its output ended with:\n{tail}")
            time.sleep(0.2)

    def _kill_leftovers(self) -> None:
        """SIGKILL anything still in the server's process group (a worker that ignored SIGTERM), so the port is
        free for the next start()."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def __enter__(self) -> MlflowServer:
        return self if self.running else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
