"""Can the cluster ever run one trial? Checked before launching: Ray would leave an impossible request
PENDING forever and only warn after a minute. A local cluster is this machine, known without starting Ray
(`check_local_machine`); a cluster joined at $RAY_ADDRESS is checked once connected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sweeps.schema import Resources, SweepConfigError


def node_resources(ray_nodes: list[dict]) -> list[dict[str, float]]:
    """CPU/GPU totals of the live nodes, from `ray.nodes()`."""
    return [
        {"CPU": float(node["Resources"].get("CPU", 0)), "GPU": float(node["Resources"].get("GPU", 0))}
        for node in ray_nodes
        if node.get("Alive", True)
    ]


def describe_cluster(nodes: list[dict[str, float]]) -> str:
    sizes = ", ".join(f"{n['CPU']:g} CPU/{n['GPU']:g} GPU" for n in nodes)
    return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''} ({sizes or 'none alive'})"


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask (taskset, a container's cpuset, SLURM's binding),
    capped by a cgroup v2 CPU quota (`docker run --cpus`); os.cpu_count() counts the machine's, which would make
    a local cluster run more trials at once than there are CPUs to run them."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, int(float(quota) // float(period))))


LOAD_WARNING_FRACTION = 0.5
"""Warn when the 1-minute load average already exceeds this fraction of the usable CPUs before a local pool
starts: its trials will share cores with that work."""


def load_warning(cpus: int | None = None, load: float | None = None) -> str | None:
    """A warning when other work already keeps this machine's CPUs busy, else None."""
    cpus = usable_cpus() if cpus is None else cpus
    load = os.getloadavg()[0] if load is None else load
    if load <= LOAD_WARNING_FRACTION * cpus:
        return None
    return (
        f"warning: this machine is already busy (load average {load:.1f} on {cpus} usable CPUs) before the pool "
        "starts. Its trials will share cores with that work: they run slower, and their time and compute figures "
        "include the contention. For timings, run on an idle machine; results are unaffected."
    )


def local_gpu_count() -> int | None:
    """The NVIDIA GPUs a local Ray cluster would see, without importing torch or starting Ray: the driver's
    device list (/proc/driver/nvidia/gpus, else `nvidia-smi -L`), capped by CUDA_VISIBLE_DEVICES as Ray caps it.
    None when the machine may have GPUs of another vendor (ROCm's /dev/kfd), which Ray also counts."""
    if Path("/dev/kfd").exists():
        return None
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        count = sum(1 for _ in gpus.iterdir())
    else:
        try:
            listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            listing = ""  # no NVIDIA driver: Ray's NVML probe finds no GPU either
        count = sum(1 for line in listing.splitlines() if line.startswith("GPU "))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [] if visible in ("", "NoDevFiles") else visible.split(",")
        count = min(count, len(ids))
    return count


def local_cluster_pending() -> bool:
    """True when a sweep in this process would start its own local Ray cluster: no $RAY_ADDRESS, and Ray not
    already running here (a test session's shared cluster, or a caller's own `ray.init`)."""
    ray = sys.modules.get("ray")
    return not os.environ.get("RAY_ADDRESS") and not (ray is not None and ray.is_initialized())


def check_local_machine(resources: Resources, source: str) -> None:
    """For a sweep that will start a local cluster: refuse, before Ray starts, a trial this machine cannot hold.
    The local cluster is one node with the CPUs this process may use (`usable_cpus`) and the GPUs Ray would
    detect."""
    if not local_cluster_pending():
        return
    gpus = local_gpu_count()
    if gpus is None:  # unknown: only Ray can tell, once started
        resources = resources.model_copy(update={"gpu": 0})
    node = {"CPU": float(usable_cpus()), "GPU": float(gpus or 0)}
    check_feasible(
        resources,
        [node],
        source,
        cluster=f"this machine, where a local Ray cluster would run: {node['CPU']:g} CPU/{node['GPU']:g} GPU",
    )


def check_feasible(resources: Resources, nodes: list[dict[str, float]], source: str, cluster: str = "") -> None:
    """Raise SweepConfigError unless some node can hold one trial's request (CPU and GPU on the same node).
    `cluster` describes the nodes in the message (default: the Ray cluster's node sizes)."""
    cluster = cluster or f"the Ray cluster has {describe_cluster(nodes)}"
    max_gpu = max((n["GPU"] for n in nodes), default=0.0)
    max_cpu = max((n["CPU"] for n in nodes), default=0.0)
    if resources.gpu > 0 and max_gpu == 0:
        problem = f"`resources.gpu` asks for {resources.gpu:g} GPU per trial, but there is no GPU ({cluster})"
        fix = "run it on a GPU cluster (set RAY_ADDRESS to its head node), or set `resources.gpu: 0` to train on CPU"
    elif resources.gpu > max_gpu:
        problem = (
            f"`resources.gpu` asks for {resources.gpu:g} GPUs per trial, but no node has more than "
            f"{max_gpu:g} ({cluster})"
        )
        fix = f"set `resources.gpu` to at most {max_gpu:g} (a fraction such as 0.5 packs trials on a GPU)"
    elif resources.cpu > max_cpu:
        problem = (
            f"`resources.cpu` asks for {resources.cpu:g} CPUs per trial, but no node has more than "
            f"{max_cpu:g} ({cluster})"
        )
        fix = f"set `resources.cpu` to at most {max_cpu:g}, or run it on a larger cluster (RAY_ADDRESS)"
    elif not any(n["CPU"] >= resources.cpu and n["GPU"] >= resources.gpu for n in nodes):
        problem = f"no single node has both {resources.cpu:g} CPU and {resources.gpu:g} GPU for one trial ({cluster})"
        fix = "lower `resources.cpu` or `resources.gpu` to what one node has"
    else:
        return
    raise SweepConfigError(
        f"{source}: {problem}. Trials would stay pending forever; {fix}. Nothing was launched or recorded."
    )


def max_parallel(resources: Resources, nodes: list[dict[str, float]]) -> int:
    """How many trials the cluster runs at once (per node: limited by CPUs and, when asked, GPUs)."""
    total = 0
    for node in nodes:
        fits = int(node["CPU"] // resources.cpu) if resources.cpu else 0
        if resources.gpu > 0:
            fits = min(fits, int(node["GPU"] // resources.gpu + 1e-9))
        total += fits
    return total
