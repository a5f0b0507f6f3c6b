"""A real multi-node Ray cluster on this machine: a head and worker nodes started with `ray start` as separate
process groups, each with its own CPUs, joined with Ray's token authentication as a user's cluster would be.

Every node is its own `ray start --block` in a session of its own, so `kill(node)` ends that node alone (its
raylet, its workers and their trials) the way a machine that dies would, and `stop()` ends the cluster without
`ray stop`, which would also end every other Ray instance on the machine (the tests' shared local one).

Ray in cluster mode replaces a loopback node address by the machine's own, and its servers listen on every
interface: a node must be reachable by the others. The random token guards them while the cluster runs.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import HOST, free_port

RAY = str(Path(sys.executable).with_name("ray"))
JOIN_TIMEOUT_S = 120.0
"""A node starts in ~5-10 s on an idle 2-core machine; the margin is for a machine busy with trials."""


@dataclass
class Node:
    name: str
    """Also a custom resource of 1 on the node, so that its Ray node id can be looked up."""
    process: subprocess.Popen
    log: Path
    node_id: str = ""
    killed: bool = False


@dataclass
class LoopbackCluster:
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp")))
    """Short: Ray's unix sockets live under the temp dir, and a socket path may not exceed 107 bytes."""
    token: str = field(default_factory=lambda: secrets.token_hex(32))
    port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def dashboard(self) -> str:
        """The head's job API, for `ray job submit --address`."""
        return f"http://{HOST}:{self.dashboard_port}"

    @property
    def env(self) -> dict[str, str]:
        """What a driver, `ray job submit` or a node needs to reach this cluster."""
        return {"RAY_ADDRESS": self.address, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    def start(self, head_cpus: int = 1, workers: int = 1, worker_cpus: int = 1) -> LoopbackCluster:
        self._node(
            "seedpool_head",
            "--head", f"--port={self.port}", f"--num-cpus={head_cpus}", f"--temp-dir={self.root / 'ray'}",
            f"--dashboard-host={HOST}", f"--dashboard-port={self.dashboard_port}",
        )  # fmt: skip
        self.wait_for_nodes()  # the head first: workers that race it retry for a while
        for _ in range(workers):
            self.add_worker(worker_cpus, wait=False)
        self.wait_for_nodes()
        return self

    def add_worker(self, cpus: int = 1, wait: bool = True, hide: Path | None = None) -> Node:
        """A worker node; with `hide`, a node that does not see that folder (an empty one is mounted over it in a
        mount namespace of the node's own, as on a machine without the shared disk). `hide` needs root."""
        node = self._node(
            f"seedpool_worker{len(self.nodes)}", f"--address={self.address}", f"--num-cpus={cpus}", hide=hide
        )
        if wait:
            self.wait_for_nodes()
        return node

    def _node(self, name: str, *args: str, hide: Path | None = None) -> Node:
        log = self.root / f"{name}.log"
        # Each node's agents on ports of their own: by default every node takes the same fixed ports, and on one
        # machine the second node's agents fail to bind, or take the head's (then the job API has no agent).
        ports = [
            f"--{option}={free_port()}"
            for option in ("dashboard-agent-listen-port", "dashboard-agent-grpc-port", "runtime-env-agent-port",
                           "metrics-export-port")
        ]  # fmt: skip
        command = [RAY, "start", "--block", "--disable-usage-stats", f"--resources={json.dumps({name: 1})}", *ports]
        command += args
        if hide is not None:
            mount = f"mount -t tmpfs seedpool-hidden {shlex.quote(str(hide))} && exec {shlex.join(command)}"
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount]
        env = {**os.environ, **self.env, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS")
        with log.open("w") as out:
            process = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        node = Node(name, process, log)
        self.nodes.append(node)
        return node

    def live_nodes(self) -> dict[str, str]:
        """Node name -> Ray node id of the nodes the cluster reports alive, asked by a separate driver (this
        process may be attached to another Ray instance)."""
        script = (
            "import json, ray; ray.init(log_to_driver=False); "
            "print(json.dumps({r: n['NodeID'] for n in ray.nodes() if n['Alive'] for r in n['Resources'] "
            "if r.startswith('seedpool_')}))"
        )
        out = subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, **self.env}, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            return {}
        return json.loads(out.stdout.strip().splitlines()[-1])

    def wait_for_nodes(self) -> None:
        """Until every node started and not killed is alive in the cluster; raises if one exits instead."""
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while True:
            expected = [node for node in self.nodes if not node.killed]
            for node in expected:
                if node.process.poll() is not None:
                    raise RuntimeError(f"Ray node {node.name} exited:\n{node.log.read_text()[-3000:]}")
            alive = self.live_nodes()
            if all(node.name in alive for node in expected):
                for node in expected:
                    node.node_id = alive[node.name]
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray nodes did not join within {JOIN_TIMEOUT_S:.0f} s; alive: {sorted(alive)}")
            time.sleep(1)

    def kill(self, node: Node) -> None:
        """The node dies at once, with every process it started (SIGKILL to its process group)."""
        node.killed = True
        try:
            os.killpg(node.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        node.process.wait(timeout=30)

    def stop(self) -> None:
        """Every node killed (workers first), the temp folder removed: a test cluster keeps nothing worth a
        graceful `ray stop`, which takes ~20 s a node."""
        for node in reversed(self.nodes):
            if node.process.poll() is None:
                self.kill(node)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> LoopbackCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
