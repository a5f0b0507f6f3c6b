"""Real servers on loopback ports for the tests: an MLflow tracking server and the PostgreSQL behind it.

`MlflowServer.stop()` ends the whole server (every worker process) and `start()` brings it back on the same port
with the same backend store and artifact folder: to a client, the store was unreachable for a while, nothing else.

`PostgresServer` is Debian's (or any installed) PostgreSQL, initialised in a temporary folder and listening on
127.0.0.1 only, with password authentication; `backend_store()` gives an MLflow server a database on it, or a
sqlite file with a warning where PostgreSQL is not installed.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

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


def log_tail(log: Any, chars: int) -> str:
    """The last `chars` characters of a server's output file (None: no output yet)."""
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-chars:]


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
            *orphan_proof(signal.SIGTERM), sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", self.backend_uri,
            "--serve-artifacts", "--artifacts-destination", str(self.artifacts_dir),
            "--host", HOST, "--port", str(self.port),
            "--workers", "1",
        ]  # fmt: skip
        # No job executor: MLflow 3 starts seven worker processes for GenAI jobs that a sweep never submits, which
        # on a 2-core machine compete with the trials under test.
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        # A session of its own, so stop() can end the uvicorn workers along with the launcher.
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
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
        return log_tail(self._log, chars)

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


# --- PostgreSQL -------------------------------------------------------------------------------------------------
POSTGRES_INSTALLS = Path("/usr/lib/postgresql")
"""Where Debian puts each major version's server programs (<version>/bin), which are not on PATH by default."""
POSTGRES_ACCOUNT = "postgres"
"""The system account that runs the server when the tests run as root: PostgreSQL refuses to run as root."""
POSTGRES_USER = "seedpool"
POSTGRES_DATABASE = "mlflow"
POSTGRES_START_TIMEOUT_S = 60.0
POSTGRES_FOLDER_PREFIX = "seedpool-postgres-"
NO_POSTGRES = (
    f"PostgreSQL is not installed here (no initdb and postgres on PATH or under {POSTGRES_INSTALLS}/*/bin): "
    "the MLflow server records to sqlite instead, so PostgreSQL as the backend store is NOT tested. Install it "
    "(`apt-get install -y postgresql` as root on Debian) to test it."
)


def postgres_programs() -> Path | None:
    """The folder holding PostgreSQL's initdb and postgres: the one of `initdb` on PATH, else the newest Debian
    install; None if there is neither."""
    on_path = shutil.which("initdb")
    folders = [Path(on_path).resolve().parent] if on_path else []
    debian = [folder for folder in POSTGRES_INSTALLS.glob("*/bin") if folder.parent.name.isdigit()]
    folders += sorted(debian, key=lambda folder: int(folder.parent.name), reverse=True)
    return next((f for f in folders if (f / "initdb").is_file() and (f / "postgres").is_file()), None)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, but alive
        pass
    return True


def remove_abandoned_folders() -> None:
    """Delete the folders of PostgresServers whose test process died without stopping them (~45 MB each): the
    process that named the folder is gone, and so is the server (postgres deletes postmaster.pid as it stops)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{POSTGRES_FOLDER_PREFIX}*-*"):
        owner = folder.name.removeprefix(POSTGRES_FOLDER_PREFIX).split("-")[0]
        if owner.isdigit() and not alive(int(owner)) and not (folder / "data" / "postmaster.pid").exists():
            shutil.rmtree(folder, ignore_errors=True)


def orphan_proof(signum: signal.Signals) -> list[str]:
    """A command prefix that sends the program `signum` when the process that started it dies: a test process
    killed outright (Ray ends a driver whose cluster died with abort()) runs no teardown, and a server it started
    would go on holding its port and folder. Empty where util-linux's setpriv is missing."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", signum.name.removeprefix("SIG"), "--"] if setpriv else []


class PostgresServer:
    """A PostgreSQL server of its own: `initdb` into a fresh temporary folder, `postgres` on 127.0.0.1 at a free
    port (its unix socket in that folder, not in /var/run), one database, password authentication only.

    Use as a context manager, or call `start()` and `stop()`; `stop()` also deletes the folder. `uri` is the
    SQLAlchemy URI of the database, as `mlflow server --backend-store-uri` takes it.
    """

    def __init__(self, programs: Path, database: str = POSTGRES_DATABASE, port: int | None = None) -> None:
        self.programs = programs
        self.database = database
        self.port = port or free_port()
        self.password = secrets.token_urlsafe(16)  # URI-safe characters only
        self.directory: Path | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def uri(self) -> str:
        return f"postgresql://{POSTGRES_USER}:{self.password}@{HOST}:{self.port}/{self.database}"

    def start(self, timeout_s: float = POSTGRES_START_TIMEOUT_S) -> PostgresServer:
        """Initialise the cluster, start the server and create the database; return once it takes connections."""
        if self.process is not None:
            raise RuntimeError(f"the PostgreSQL server on port {self.port} is already running; stop() it first")
        # Not under pytest's tmp_path: that is private to the user running the tests, and when that is root the
        # server runs as another account, which must own its data folder. Named after this process, so a later
        # start can tell a folder left by a test process that was killed outright.
        remove_abandoned_folders()
        self.directory = Path(tempfile.mkdtemp(prefix=f"{POSTGRES_FOLDER_PREFIX}{os.getpid()}-"))
        try:
            self._initdb()
            self._log = (self.directory / "server.log").open("w+b")
            self.process = subprocess.Popen(
                [*orphan_proof(signal.SIGINT), str(self.programs / "postgres"), "-D", str(self.directory / "data")],
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.directory,
                start_new_session=True,  # a Ctrl-C meant for pytest reaches the server only through stop()
                **self._account(),
            )
            self._wait_ready(timeout_s)
            # autocommit: CREATE DATABASE cannot run inside a transaction
            with self._connect("postgres", autocommit=True) as connection:
                connection.execute(f'CREATE DATABASE "{self.database}"')
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut the server down (fast: open connections are ended) and delete its folder."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # PostgreSQL's "fast shutdown"
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def output_tail(self, chars: int = 4000) -> str:
        """The last `chars` characters the server wrote (stdout and stderr together)."""
        return log_tail(self._log, chars)

    def _account(self) -> dict[str, object]:
        """Popen arguments that run a program as POSTGRES_ACCOUNT when we are root, else as ourselves."""
        if os.geteuid() != 0:
            return {}
        return {"user": POSTGRES_ACCOUNT, "group": pwd.getpwnam(POSTGRES_ACCOUNT).pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        account = self._account()
        if account:
            shutil.chown(self.directory, POSTGRES_ACCOUNT, account["group"])
        password_file = self.directory / "password"
        password_file.write_text(self.password)
        if account:
            shutil.chown(password_file, POSTGRES_ACCOUNT, account["group"])
        command = [
            str(self.programs / "initdb"), "-D", str(self.directory / "data"),
            "--username", POSTGRES_USER, "--pwfile", str(password_file), "--auth", "scram-sha-256",
            "--encoding", "UTF8", "--locale", "C",
            "--no-sync",  # a throwaway cluster: no need to wait for the disk
        ]  # fmt: skip
        done = subprocess.run(command, cwd=self.directory, capture_output=True, text=True, **account)
        password_file.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        settings = {
            "listen_addresses": f"'{HOST}'",  # loopback only, never every interface
            "port": str(self.port),
            "unix_socket_directories": f"'{self.directory}'",
        }
        with (self.directory / "data" / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _connect(self, database: str, **options: object):
        import psycopg  # imported here: only the PostgreSQL tests need the driver

        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=POSTGRES_USER,
            password=self.password,
            dbname=database,
            connect_timeout=5,
            **options,
        )

    def _wait_ready(self, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._connect("postgres").close()
                return
            except psycopg.OperationalError as refused:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    why = (
                        f"exited with status {self.process.returncode}"
                        if self.process.poll() is not None
                        else f"took no connection within {timeout_s:.0f} s ({refused})"
                    )
                    raise RuntimeError(
                        f"the PostgreSQL server on {HOST}:{self.port} {why}; its output ended with:\n"
                        f"{self.output_tail()}"
                    ) from None
            time.sleep(0.2)

    def __enter__(self) -> PostgresServer:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def backend_store(directory: Path) -> Iterator[str]:
    """The backend-store URI for an MLflow server: a database on a PostgreSQL server started here and stopped on
    exit, or, where PostgreSQL is not installed, a sqlite file in `directory`, with a warning saying so."""
    programs = postgres_programs()
    if programs is None:
        print(f"\nWARNING: {NO_POSTGRES}")  # also where -s shows output, not only in pytest's warnings summary
        warnings.warn(NO_POSTGRES, stacklevel=3)  # at the caller's `with`, past contextlib
        yield f"sqlite:///{directory / 'backend.db'}"
        return
    with PostgresServer(programs) as server:
        yield server.uri


def store_query(uri: str, sql: str) -> list[tuple]:
    """The rows of one SQL statement run on an MLflow backend store, as its own database sees it (not through
    MLflow): a postgresql:// database or a sqlite:/// file."""
    if uri.startswith("sqlite:///"):
        with closing(sqlite3.connect(uri.removeprefix("sqlite:///"))) as connection:
            return connection.execute(sql).fetchall()
    import psycopg

    with psycopg.connect(uri) as connection:
        return connection.execute(sql).fetchall()


def store_version(uri: str) -> str:
    """The database server behind an MLflow backend store, as it describes itself."""
    if uri.startswith("sqlite:///"):
        return f"SQLite {sqlite3.sqlite_version} (a file, not a server)"
    return store_query(uri, "SELECT version()")[0][0]
