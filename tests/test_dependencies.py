"""Every third-party package the code imports by name is declared in setup.cfg: the runtime packages in
install_requires, the test-only ones there or in the `test` extra. A package that only arrives as another's
dependency can disappear with that package's next release."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_DIRS = ("neuralgpu", "rl_tasks", "sweeps", "analysis", "bench")
TEST_DIRS = ("tests",)


def normalise(distribution: str) -> str:
    """PEP 503 name: PyYAML, pyyaml and py_yaml are one distribution."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def declared() -> tuple[set[str], set[str]]:
    """(install_requires, the `test` extra) of setup.cfg as normalised distribution names."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")

    def names(text: str) -> set[str]:
        lines = (line.split("#")[0].strip() for line in text.splitlines())
        return {normalise(re.match(r"[A-Za-z0-9._-]+", line).group()) for line in lines if line}

    return names(cfg["options"]["install_requires"]), names(cfg["options.extras_require"]["test"])


def sources(directory: str) -> list[tuple[Path, str]]:
    """(path, Python source) of every module and of every notebook's code cells under the directory."""
    out = [(path, path.read_text()) for path in sorted((ROOT / directory).rglob("*.py"))]
    for path in sorted((ROOT / directory).rglob("*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        out.append((path, "\n".join(cell.source for cell in cells if cell.cell_type == "code")))
    return out


def is_local(module: str) -> bool:
    """A package or module of this repository (or a test helper next to the tests)."""
    return any((base / module).is_dir() or (base / f"{module}.py").is_file() for base in (ROOT, ROOT / "tests"))


def third_party_imports(directories: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level name of every absolute import that is neither stdlib nor local -> the files importing it."""
    found: dict[str, set[str]] = {}
    for directory in directories:
        for path, source in sources(directory):
            for node in ast.walk(ast.parse(source, filename=str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and not is_local(top):
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def undeclared(imports: dict[str, set[str]], allowed: set[str]) -> list[str]:
    """One line per imported name whose distribution is not in `allowed`, naming the files and the fix."""
    distributions = packages_distributions()
    problems = []
    for name, files in sorted(imports.items()):
        candidates = {normalise(d) for d in distributions.get(name, [])}
        if not candidates & allowed:
            where = ", ".join(sorted(files)[:3]) + (" ..." if len(files) > 3 else "")
            provided = " or ".join(sorted(candidates)) or "a distribution that is not installed"
            problems.append(f"`import {name}` ({where}) comes from {provided}, which setup.cfg does not declare")
    return problems


def test_the_scan_sees_the_known_imports():
    runtime = third_party_imports(RUNTIME_DIRS)
    assert {"torch", "yaml", "pydantic", "mlflow", "IPython", "nbformat"} <= set(runtime)
    assert "pytest" in third_party_imports(TEST_DIRS) and "pytest" not in runtime
    scanned = set(runtime) | set(third_party_imports(TEST_DIRS))
    assert not {"json", "neuralgpu", "analysis", "conftest"} & scanned, "stdlib and local modules are not packages"


def test_every_imported_package_is_declared_in_setup_cfg():
    install_requires, test_extra = declared()
    problems = undeclared(third_party_imports(RUNTIME_DIRS), install_requires)
    problems += undeclared(third_party_imports(TEST_DIRS), install_requires | test_extra)
    assert not problems, (
        "\n".join(problems) + "\nAdd each to install_requires in setup.cfg (the `test` extra if only tests import "
        "it), with the installed version as the lower bound (`pip show <name>`)."
    )
