"""Can the cluster ever run one trial? Checked before launching: Ray would leave an impossible request
PENDING forever and only warn after a minute."""

from __future__ import annotations

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


def check_feasible(resources: Resources, nodes: list[dict[str, float]], source: str) -> None:
    """Raise SweepConfigError unless some node can hold one trial's request (CPU and GPU on the same node)."""
    cluster = describe_cluster(nodes)
    max_gpu = max((n["GPU"] for n in nodes), default=0.0)
    max_cpu = max((n["CPU"] for n in nodes), default=0.0)
    if resources.gpu > 0 and max_gpu == 0:
        problem = f"`resources.gpu` asks for {resources.gpu:g} GPU per trial, but the Ray cluster has no GPU: {cluster}"
        fix = "run it on a GPU cluster (set RAY_ADDRESS to its head node), or set `resources.gpu: 0` to train on CPU"
    elif resources.gpu > max_gpu:
        problem = (
            f"`resources.gpu` asks for {resources.gpu:g} GPUs per trial, but no node has more than "
            f"{max_gpu:g}: {cluster}"
        )
        fix = f"set `resources.gpu` to at most {max_gpu:g} (a fraction such as 0.5 packs trials on a GPU)"
    elif resources.cpu > max_cpu:
        problem = (
            f"`resources.cpu` asks for {resources.cpu:g} CPUs per trial, but no node has more than "
            f"{max_cpu:g}: {cluster}"
        )
        fix = f"set `resources.cpu` to at most {max_cpu:g}"
    elif not any(n["CPU"] >= resources.cpu and n["GPU"] >= resources.gpu for n in nodes):
        problem = f"no single node has both {resources.cpu:g} CPU and {resources.gpu:g} GPU for one trial: {cluster}"
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
