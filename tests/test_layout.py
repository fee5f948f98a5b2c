"""The shape of lib/: no import cycle, MLflow only behind lib.tracking, short functions where the engine lives.

Read from the source with ``ast`` (nothing is imported), so a failure names the file and the line.
"""

from __future__ import annotations

import ast

from lib.paths import PROJECT_ROOT

LIB = PROJECT_ROOT / "lib"
# the engine floor of issue 11: dispatcher, records, sweep driver, back-end interface and back-ends
ENGINE_FLOOR = ("engine", "records", "search", "backend", "local_backend", "ray_backend", "ray_tune")
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, ast.Module]:
    return {path.stem: ast.parse(path.read_text(), str(path)) for path in sorted(LIB.glob("*.py"))}


def _imported_lib_modules(tree: ast.Module, names: set[str]) -> set[str]:
    """Every ``lib`` module a module imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "lib":
                found |= {alias.name for alias in node.names if alias.name in names}
            elif node.module.startswith("lib."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("lib.")}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imported_lib_modules(tree, set(modules)) - {name} for name, tree in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_lib_has_no_import_cycle():
    graph = import_graph()
    assert {"engine", "tracking"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle in lib/: {' -> '.join(find_cycle(graph))}"


def test_only_tracking_imports_mlflow():
    offenders = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            if any(module == "mlflow" or module.startswith("mlflow.") for module in modules) and name != "tracking":
                offenders.append(f"lib/{name}.py:{node.lineno}")
    assert offenders == [], f"MLflow is imported outside lib/tracking.py: {offenders}"


def test_ray_is_imported_only_by_the_ray_modules():
    for name, tree in _modules().items():
        if name in ("ray_backend", "ray_tune"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m == "ray" or m.startswith("ray.") for m in modules), f"lib/{name}.py:{node.lineno}"


def test_no_function_of_the_engine_floor_is_longer_than_60_lines():
    long = []
    for name, tree in _modules().items():
        if name not in ENGINE_FLOOR:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"lib/{name}.py:{node.lineno} {node.name} ({length} lines)")
    assert long == [], f"functions longer than {MAX_FUNCTION_LINES} lines: {long}"


def test_the_ray_back_end_imports_ray_at_the_top_and_nothing_else_imports_it_at_the_top():
    tree = _modules()["ray_tune"]
    top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray") for node in top)
    for name, module in _modules().items():
        for node in module.body:
            if isinstance(node, ast.ImportFrom) and node.module == "lib":
                assert "ray_tune" not in {a.name for a in node.names}, f"lib/{name}.py imports lib.ray_tune at the top"
            if isinstance(node, ast.ImportFrom) and node.module == "lib.ray_tune":
                raise AssertionError(f"lib/{name}.py imports lib.ray_tune at the top")
