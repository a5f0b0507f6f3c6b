"""Bad input is refused completely, quickly and briefly before anything starts (issue 14).

tests/bad_configs holds malformed sweep files, each with a first line `# <what is wrong>. expect: <text>`; every one
must exit 2 within 2 s with a one-line message under 1000 characters naming the file and containing <text>, with no
Ray cluster started and no MLflow store created. Then: files that are not text at all, the bounds of the trainers'
own configs (seeds, every float field), the local cluster's loopback binding and Ray start-up failures."""

from __future__ import annotations

import dataclasses
import gzip
import ipaddress
import json
import math
import os
import random
import re
import subprocess
import sys
import textwrap
import time
import typing
from pathlib import Path

import pytest

from neuralgpu.config import TrainConfig
from rl_tasks.config import RLConfig
from seedcore.config import SEED_MAX, ConfigError, load_yaml, quote
from sweeps.cli import main

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parent / "bad_configs"
FILES = sorted(CORPUS.glob("*.yaml"))
SECONDS = 2.0
MESSAGE_CHARS = 1000


def expectation(path: Path) -> str:
    """The text the error for `path` must contain, from its first line."""
    first_line = path.read_bytes().split(b"\n", 1)[0].decode("ascii")
    match = re.fullmatch(r"# (.+)\. expect: (.+)", first_line)
    assert match, f"{path.name}: the first line must read `# <what is wrong>. expect: <text>`"
    return match.group(2)


def ray_running() -> bool:
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


@pytest.fixture
def local_run(monkeypatch: pytest.MonkeyPatch, isolated_tracking: Path) -> Path:
    """A run that would start its own local cluster and record to a temporary store (isolated_tracking)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return isolated_tracking / "env-default.db"


def refuse(path: Path, capsys: pytest.CaptureFixture, store: Path) -> str:
    """Run `python -m sweeps run path` in-process; check that it was refused at once, briefly, with nothing
    started or recorded; return the message."""
    ray_before = ray_running()
    start = time.perf_counter()
    status = main(["run", str(path)])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert len(err) < MESSAGE_CHARS, f"{len(err)} characters: {err[:300]}..."
    assert str(path) in err and "Nothing was launched or recorded" in err, err
    assert elapsed < SECONDS, f"refused after {elapsed:.1f} s"
    assert ray_running() == ray_before, "a Ray cluster was started"
    assert not store.exists(), "an MLflow store was created"
    return err


def test_the_corpus_has_at_least_30_bad_configs_each_with_its_expectation():
    assert len(FILES) >= 30
    assert all(expectation(path) for path in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_a_bad_config_is_refused_at_once_and_briefly(path, capsys, local_run):
    err = refuse(path, capsys, local_run)
    assert expectation(path) in err, err


NOT_TEXT = {
    "png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "it looks like a PNG image"),
    "gzip": (gzip.compress(b"name: bad\n"), "it looks like gzip data"),
    "random bytes": (random.Random(14).randbytes(4096), "not a text file"),
    "utf-16": ("name: bad\n".encode("utf-16"), "not a text file"),
    "empty": (b"", "holds no keys"),
    "over a megabyte": (b"# padding\n" * 200_000, "larger than 1,000,000 bytes"),
}


@pytest.mark.parametrize(("content", "expected"), NOT_TEXT.values(), ids=list(NOT_TEXT))
def test_a_file_that_is_not_a_yaml_text_is_refused(content, expected, tmp_path, capsys, local_run):
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    assert expected in refuse(path, capsys, local_run)


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`python -m sweeps ARGS` in a fresh process, local (no RAY_ADDRESS) unless `env` gives one."""
    environment = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | env
    return subprocess.run(
        [sys.executable, "-m", "sweeps", *args], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("name", ["alias_bomb_in_base", "gpu_64", "huge_lr", "png_after_comment", "seed_2_to_64"])
def test_from_the_shell_a_bad_config_exits_2_without_a_traceback(name, tmp_path):
    path = CORPUS / f"{name}.yaml"
    start = time.perf_counter()
    result = run_cli("run", str(path), env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'store.db'}"})
    elapsed = time.perf_counter() - start
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.count("\n") == 1 and len(result.stderr) < MESSAGE_CHARS
    assert expectation(path) in result.stderr and str(path) in result.stderr
    assert elapsed < 10, f"{elapsed:.1f} s: Python starting plus validation, far below a Ray start-up"
    assert not (tmp_path / "store.db").exists()


def test_quoting_a_value_in_a_message_is_bounded_in_length_and_work():
    laughs: list = ["lol"] * 10
    for _ in range(9):  # 10**10 strings, all shared: repr() would print a 60 GB string
        laughs = [laughs] * 10
    start = time.perf_counter()
    assert len(quote(laughs)) <= 80 and len(quote("x" * 10**6)) <= 80 and len(quote(10**5000)) <= 80
    assert time.perf_counter() - start < 0.1
    assert quote(0.5) == "0.5" and quote("badd") == "'badd'"


def test_aliases_that_stay_small_are_still_read(tmp_path):
    path = tmp_path / "aliases.yaml"
    path.write_text("widths: &w [4, 6]\nagain: *w\n")
    assert load_yaml(path) == {"widths": [4, 6], "again": [4, 6]}


# --- the trainers' own configs: what the command lines and every sweep trial go through ----------------------
CONFIGS = {"neuralgpu": TrainConfig, "rl": RLConfig}


def float_fields(config_class: type) -> list[str]:
    hints = typing.get_type_hints(config_class)
    return [f.name for f in dataclasses.fields(config_class) if hints[f.name] in (float, float | None)]


FLOAT_CASES = [(trainer, key) for trainer, cls in CONFIGS.items() for key in float_fields(cls)]


@pytest.mark.parametrize(("trainer", "key"), FLOAT_CASES, ids=[f"{t}-{k}" for t, k in FLOAT_CASES])
def test_every_float_field_refuses_nan_infinities_and_absurd_magnitudes(trainer, key):
    for value in (math.nan, math.inf, -math.inf, 1e300, -1e300):
        with pytest.raises(ConfigError, match=f"`{key}` is"):
            CONFIGS[trainer].from_dict({key: value}, source="x.yaml")


@pytest.mark.parametrize("trainer", CONFIGS)
def test_seeds_are_bounded_by_what_every_generator_accepts(trainer):
    config_class = CONFIGS[trainer]
    assert config_class.from_dict({"seed": SEED_MAX}).seed == SEED_MAX
    for seed in (SEED_MAX + 1, -1):
        with pytest.raises(ConfigError, match=r"`seed` is -?\d+; use an integer in \[0, 2\*\*64 - 1\]"):
            config_class.from_dict({"seed": seed}, source="x.yaml")


def test_the_largest_seed_seeds_every_generator_a_run_uses():
    """SEED_MAX is accepted by what the trainers seed: Python, NumPy (global and per-stream), torch, the RL env."""
    import numpy as np

    from rl_tasks.envs import make_env
    from seedcore.runtime import seed_globals

    seed_globals(SEED_MAX)
    np.random.default_rng([SEED_MAX, 3]).integers(10)
    make_env("Copy").reset(seed=SEED_MAX)
    with pytest.raises((ValueError, RuntimeError, OverflowError)):
        seed_globals(SEED_MAX + 1)  # the bound is torch's: one more overflows


def test_integer_fields_are_bounded_too():
    with pytest.raises(ConfigError, match="`batch_size` is 1000000000000; use at most 2147483647"):
        TrainConfig.from_dict({"batch_size": 10**12}, source="x.yaml")
    with pytest.raises(ConfigError, match="`eval_lengths` is"):
        RLConfig.from_dict({"eval_lengths": [10, 2**40]}, source="x.yaml")


# --- resources of a local run, known without Ray --------------------------------------------------------------
def test_hidden_gpus_are_not_counted(monkeypatch):
    from sweeps.resources import local_gpu_count

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert local_gpu_count() in (0, None)  # None: a ROCm machine, where only Ray can tell


# --- Ray: loopback only, and start-up failures as messages ----------------------------------------------------
LISTENERS = textwrap.dedent(
    """
    import json, os, psutil, ray
    from sweeps.ray_executor import connect_ray

    @ray.remote
    def pid():
        return os.getpid()

    assert connect_ray(), "a local cluster was started"
    ray.get([pid.remote() for _ in range(2)])  # workers listen too
    ray_pids = {os.getpid()} | {p.pid for p in psutil.Process().children(recursive=True)}
    print(json.dumps([
        [psutil.Process(c.pid).name(), c.laddr.ip, c.laddr.port]
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_LISTEN and c.pid in ray_pids
    ]))
    ray.shutdown()
    """
)


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or (ip.version == 6 and ip.ipv4_mapped is not None and ip.ipv4_mapped.is_loopback)


def test_the_local_cluster_listens_on_loopback_only():
    """The local cluster a sweep starts (connect_ray, in its own process so as not to meet the tests' shared
    cluster): no Ray process listens on 0.0.0.0 or ::, or on any non-loopback address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run(
        [sys.executable, "-c", LISTENERS], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    listeners = json.loads(result.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in listeners}
    assert {"gcs_server", "raylet"} <= names, f"the check saw Ray's servers: {listeners}"
    exposed = [entry for entry in listeners if not is_loopback(entry[1])]
    assert not exposed, f"listening beyond loopback: {exposed}"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RAY_ADDRESS": "not a host"}, "cannot join the Ray cluster at RAY_ADDRESS=not a host"),
        ({"RAY_ADDRESS": "127.0.0.1:1"}, "cannot join the Ray cluster at RAY_ADDRESS=127.0.0.1:1 (nothing answers"),
        ({"RAY_TMPDIR": "/dev/null/ray"}, "cannot start a local Ray cluster"),
    ],
    ids=["bad RAY_ADDRESS", "nothing at RAY_ADDRESS", "local start fails"],
)
def test_a_ray_start_up_failure_is_a_message_not_a_traceback(env, expected, tmp_path):
    config = (REPO / "sweeps" / "configs" / "tiny.yaml").read_text()
    path = tmp_path / "tiny.yaml"
    path.write_text(config + f"tracking: {{uri: 'sqlite:///{tmp_path / 'store.db'}', storage: '{tmp_path}'}}\n")
    result = run_cli("run", str(path), env=env)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    message = next(line for line in result.stderr.splitlines() if line.startswith("error: "))
    assert expected in message and "To fix it" in message and len(message) < MESSAGE_CHARS, message
    assert not (tmp_path / "store.db").exists()
