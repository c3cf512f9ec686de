"""The product's imports are layered: a package imports only from packages below it (or its
own), the two roles never import each other, and no module imports itself in a circle. Read from
the code's own import statements (function-level ones too), so the check cannot drift."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("protocol", "simnet", "template", "neurons")

# Lowest first. Packages in one tuple are siblings: neither may import the other.
LAYERS: list[tuple[str, ...]] = [
    ("protocol",),
    ("template.utils",),
    ("simnet",),
    ("template.chain",),
    ("template.training",),
    ("template.validation",),
    ("template.audit",),
    ("template.net",),
    ("template.config",),
    ("template.miner", "template.validator"),
    ("neurons",),
]


def product_modules() -> dict[str, Path]:
    modules = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def layer_of(module: str) -> tuple[int, str]:
    best = None
    for index, siblings in enumerate(LAYERS):
        for package in siblings:
            if module == package or module.startswith(package + "."):
                if best is None or len(package) > len(best[1]):
                    best = (index, package)
    assert best is not None, f"{module} is in no layer: add its package to LAYERS"
    return best


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items() if name != "template"}


def test_every_import_goes_down_the_layers():
    upward = []
    for module, targets in import_graph().items():
        here, package = layer_of(module)
        for target in targets:
            if target == "template":
                continue
            there, target_package = layer_of(target)
            if there > here or (there == here and target_package != package):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports that go up or sideways:\n" + "\n".join(sorted(upward))


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_the_check_sees_an_upward_import():
    """The checker itself: a validation module importing the validator role is caught."""
    here, _ = layer_of("template.validation.round")
    there, _ = layer_of("template.validator.lifecycle")
    assert there > here
    assert layer_of("template.miner.worker")[1] != layer_of("template.validator.round")[1]
    assert "template.training.workload" in import_graph()["template.miner.work_order"]
