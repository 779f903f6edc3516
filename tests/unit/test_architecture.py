"""The layering holds: no import circle, no import from a lower layer to a higher one.

Layers, from the ground up (docs/architecture.md draws them):

0. the foundation of ``sandbox/`` every layer may use (:data:`FOUNDATION`);
1. ``sandbox/drivers/``: one driver per outside system;
2. the rest of ``sandbox/``: the Prefect-free core;
3. ``tasks/``; 4. ``flows/``, with ``deployments/`` beside them; 5. ``cli/``;
6. ``bench/``, which measures the flows as the command line runs them.

Every import counts, wherever it is written (in a function, under ``TYPE_CHECKING``):
an import made late to dodge a circle is still a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sandbox", "tasks", "flows", "cli", "bench", "deployments")

#: The modules of ``sandbox/`` below the drivers: errors, redaction, subprocesses, hardening,
#: progress, configuration, and the vocabulary drivers and core share (names, paths inside a
#: checkout, version ranges, Kubernetes API deprecations). They import nothing of the project
#: but each other.
FOUNDATION = frozenset(
    {
        "sandbox",
        "sandbox.config",
        "sandbox.deprecations",
        "sandbox.deprecation_report",
        "sandbox.manifest_objects",
        "sandbox.errors",
        "sandbox.hardening",
        "sandbox.naming",
        "sandbox.paths",
        "sandbox.proc",
        "sandbox.progress",
        "sandbox.redaction",
        "sandbox.versions",
        "sandbox.gosort",
        "sandbox.bounded",
        "sandbox.giturls",
    }
)


def layer(module: str) -> float:
    """A module's layer: a module may import its own layer and those below, never one above."""
    top = module.split(".")[0]
    if module in FOUNDATION:
        return 0
    if module == "sandbox.drivers" or module.startswith("sandbox.drivers."):
        return 1
    return {"sandbox": 2, "tasks": 3, "flows": 4, "deployments": 4.5, "cli": 5, "bench": 6}[top]


def module_name(path: Path) -> str:
    """``sandbox/stages/clone.py`` -> ``sandbox.stages.clone``; a package is its ``__init__``."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every Python module of the project's packages (tests, migrations' scripts excluded)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            modules[module_name(path)] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """The project modules ``module`` imports, with the line of each import."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield from _known(alias.name, known, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from a import b``: module ``a.b`` when there is one, else a name of ``a``.
                target = f"{base}.{alias.name}"
                yield from _known(target if target in known else base, known, node.lineno)


def _known(name: str, known: set[str], line: int) -> Iterator[tuple[str, int]]:
    # ``import a.b.c`` of a module that is not one: the nearest enclosing module.
    while name and name not in known:
        name = name.rpartition(".")[0]
    if name:
        yield name, line


def import_graph() -> dict[str, dict[str, int]]:
    """Module -> the project modules it imports -> the line of the first such import."""
    modules = project_modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges: dict[str, int] = {}
        for target, line in imports_of(module, path, known):
            if target != module:
                edges.setdefault(target, line)
        graph[module] = edges
    return graph


def circles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            members = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                members.append(member)
                if member == node:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle() -> None:
    graph = import_graph()
    found = circles(graph)
    described = [
        " <-> ".join(circle)
        + ": "
        + "; ".join(f"{a} -> {b} (line {graph[a][b]})" for a in circle for b in circle if b in graph[a])
        for circle in found
    ]
    assert not described, "import circles:\n" + "\n".join(described)


def test_no_import_from_a_lower_layer_to_a_higher_one() -> None:
    graph = import_graph()
    upward = [
        f"{module} (layer {layer(module):g}) imports {target} (layer {layer(target):g}) at line {line}"
        for module, edges in sorted(graph.items())
        for target, line in sorted(edges.items())
        if layer(target) > layer(module)
    ]
    assert not upward, "imports that climb a layer:\n" + "\n".join(upward)


def test_the_foundation_imports_only_the_foundation() -> None:
    graph = import_graph()
    outside = [f"{m} imports {t}" for m in sorted(FOUNDATION) for t in graph[m] if t not in FOUNDATION]
    assert not outside


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("sandbox.errors", 0),
        ("sandbox.drivers.git", 1),
        ("sandbox.drivers.simulation.apiserver", 1),
        ("sandbox.stages.clone", 2),
        ("tasks.common", 3),
        ("flows.lifecycle", 4),
        ("cli.main", 5),
        ("bench.lifecycle", 6),
    ],
)
def test_layers_are_assigned_by_package(module: str, expected: float) -> None:
    assert layer(module) == expected


def test_the_walker_sees_a_circle_and_a_climb() -> None:
    # The checks above pass on an empty graph too: show that they would catch one.
    graph = {"sandbox.a": {"sandbox.b": 3}, "sandbox.b": {"sandbox.a": 7}, "sandbox.drivers.x": {"sandbox.a": 1}}
    assert circles(graph) == [["sandbox.a", "sandbox.b"]]
    assert layer("sandbox.a") > layer("sandbox.drivers.x")


def test_imports_are_resolved_to_modules() -> None:
    graph = import_graph()
    assert "sandbox.stages.clone" in graph["sandbox.stages"]
    assert "sandbox.context" in graph["sandbox.stages.clone"]
    # A late import inside a function counts.
    assert "sandbox.stages.bootstrap" in graph["sandbox.environments"]


#: Driver implementations: built in ``sandbox/wiring.py`` only (tests build their own).
IMPLEMENTATIONS = (
    "GitCli",
    "PythonTerraformDriver",
    "GitHubHosting",
    "LocalGitHosting",
    "SimulatedCluster",
    "KubernetesClusterDriver",
    "FluxCliRegistry",
    "OrasRegistry",
    "HttpLoadGenerator",
    "LocustLoadGenerator",
    "KubernetesJobLoadGenerator",
)


def constructions(path: Path) -> Iterator[tuple[str, int]]:
    """Calls of an implementation's class (or of its ``from_...`` constructors) in a module."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr.startswith("from_"):
            func = func.value
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in IMPLEMENTATIONS:
            yield name, node.lineno


def test_implementations_are_picked_in_wiring_only() -> None:
    wiring = ROOT / "sandbox" / "wiring.py"
    elsewhere = [
        f"{path.relative_to(ROOT)}:{line} builds {name}"
        for path in project_modules().values()
        if path != wiring
        for name, line in constructions(path)
    ]
    assert not elsewhere, "drivers built outside sandbox/wiring.py:\n" + "\n".join(elsewhere)
    assert {name for name, _ in constructions(wiring)} == set(IMPLEMENTATIONS)


#: The longest a module of ``sandbox/`` may grow: past it, split along its sections.
MAX_LINES = 900


def test_no_module_of_the_core_is_over_the_limit() -> None:
    long = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "sandbox").rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"
