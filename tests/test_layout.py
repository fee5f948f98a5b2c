"""The shape of lib/: five rooms that never import upward, no import cycle, MLflow only behind
lib.tracking, runs read only through lib.store, Ray only behind the Ray back-end, no private name imported
from another room, and no function anywhere in lib/ longer than one screen.

The rooms, lowest first: the course library (``lib``: config, model, data, train, tracking, the store
``lib.store``, ...), the experiment engine (``lib.engine``) with the assignment beside it (``lib.assignment``:
edition, hand-in, rubric check), the report (``lib.report``), the worked study (``lib.study``) and the front
doors (``lib.cli``, ``lib.__main__`` and the hand-out command ``lib.handout``). The class server
(``lib.class_server``) stands beside the engine: it may use the course library only, and nothing imports it.
Read from the source with ``ast`` (nothing is imported), so a failure names the file and the line.
"""

from __future__ import annotations

import ast

from lib.paths import PROJECT_ROOT

LIB = PROJECT_ROOT / "lib"
MAX_FUNCTION_LINES = 60
ROOMS = {
    "lib": 0,
    "lib.engine": 1,
    "lib.class_server": 1,
    "lib.assignment": 1,
    "lib.report": 2,
    "lib.study": 3,
    "lib.cli": 4,
    "lib.handout": 4,
    "lib.__main__": 4,
}


def _name(path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    """Every module of lib/ by dotted name (``lib.engine.trial``; a package by its own name)."""
    return {_name(path): ast.parse(path.read_text(), str(path)) for path in sorted(LIB.rglob("*.py"))}


def room(module: str) -> str:
    """The room a module belongs to: ``lib.engine.trial`` -> ``lib.engine``, ``lib.config`` -> ``lib``."""
    parts = module.split(".")
    candidate = ".".join(parts[:2])
    return candidate if candidate in ROOMS else "lib"


def _imported(tree: ast.Module, names: set[str]) -> set[str]:
    """Every lib module a module imports, at the top or inside a function (``from lib import x`` -> lib.x,
    not the package ``lib`` itself when ``x`` is a submodule)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("lib"):
            submodules = {f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in names}
            found |= submodules
            if len(submodules) < len(node.names):  # names defined in the module itself (not its submodules)
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("lib.")}
    return {name for name in found if name in names}


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    return {name: _imported(tree, names) - {name} for name, tree in modules.items()}


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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Imports from a lower room into a higher one, or between the two side rooms (engine, class server).

    A package's own ``__init__`` (``lib``) is not a room's member for this purpose: importing ``lib`` itself
    is importing the course library.
    """
    bad = []
    for source, targets in graph.items():
        for target in targets:
            a, b = room(source), room(target)
            if a == b or target == "lib":
                continue
            if ROOMS[b] > ROOMS[a] or "lib.class_server" in (a, b) and b != "lib":
                bad.append(f"{source} -> {target}")
    return sorted(bad)


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_room_check_finds_an_upward_import():
    assert upward_imports({"lib.config": {"lib.engine.trial"}}) == ["lib.config -> lib.engine.trial"]
    assert upward_imports({"lib.engine.trial": {"lib.study.analysis"}}) == ["lib.engine.trial -> lib.study.analysis"]
    assert upward_imports({"lib.class_server.server": {"lib.engine.grid"}}) != []
    assert upward_imports({"lib.study.analysis": {"lib.engine.trial", "lib.stats"}}) == []


def test_lib_has_no_import_cycle():
    graph = import_graph()
    assert {"lib.engine.grid", "lib.tracking", "lib.study.analysis", "lib.cli"} <= set(graph)
    assert find_cycle(graph) is None, f"import cycle in lib/: {' -> '.join(find_cycle(graph))}"


def test_no_room_imports_a_higher_one():
    assert upward_imports(import_graph()) == []


def test_every_package_says_what_it_is_and_is_not():
    for name, tree in _modules().items():
        doc = ast.get_docstring(tree) or ""
        assert doc, f"{name} has no docstring"
        if name in ROOMS and name != "lib.__main__":
            assert "not" in doc.lower(), f"{name}'s docstring does not say what it is not"


def test_only_tracking_imports_mlflow():
    offenders = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            if any(module == "mlflow" or module.startswith("mlflow.") for module in modules) and name != "lib.tracking":
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == [], f"MLflow is imported outside lib/tracking.py: {offenders}"


def test_ray_is_imported_only_by_the_ray_modules():
    for name, tree in _modules().items():
        if name in ("lib.engine.ray_backend", "lib.engine.ray_tune"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(m == "ray" or m.startswith("ray.") for m in modules), f"{name}:{node.lineno}"


def test_the_ray_back_end_imports_ray_at_the_top_and_nothing_else_imports_it_at_the_top():
    tree = _modules()["lib.engine.ray_tune"]
    top = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    assert any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ray") for node in top)
    for name, module in _modules().items():
        for node in module.body:
            if isinstance(node, ast.ImportFrom) and node.module == "lib.engine":
                assert "ray_tune" not in {a.name for a in node.names}, f"{name} imports lib.engine.ray_tune at the top"
            if isinstance(node, ast.ImportFrom) and node.module == "lib.engine.ray_tune":
                raise AssertionError(f"{name} imports lib.engine.ray_tune at the top")


def long_functions(modules: dict[str, ast.Module] | None = None) -> list[str]:
    long = []
    for name, tree in (modules if modules is not None else _modules()).items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}:{node.lineno} {node.name} ({length} lines)")
    return long


def test_the_long_function_finder_finds_one():
    fits, long = "    x = 1\n" * (MAX_FUNCTION_LINES - 1), "        x = 1\n" * MAX_FUNCTION_LINES
    tree = ast.parse(f"def fits():\n{fits}\n\nclass A:\n    def long(self):\n{long}")
    assert long_functions({"lib.x": tree}) == [f"lib.x:{MAX_FUNCTION_LINES + 4} long ({MAX_FUNCTION_LINES + 1} lines)"]


def test_no_function_in_lib_is_longer_than_60_lines():
    """Every room, the course library included: a function fits one screen (issue 20)."""
    long = long_functions()
    assert long == [], f"functions longer than {MAX_FUNCTION_LINES} lines: {long}"


def test_the_class_server_uses_only_paths_tracking_store_and_errors_of_the_course_library():
    allowed = {"lib.paths", "lib.tracking", "lib.store", "lib.errors"}  # errors: the one base of fixable errors
    graph = import_graph()
    used = {target for source, targets in graph.items() if room(source) == "lib.class_server" for target in targets} - {
        name for name in graph if room(name) == "lib.class_server"
    }
    assert used <= allowed, f"lib.class_server imports {sorted(used - allowed)} from the course library"
    assert graph["lib.errors"] == set(), "lib.errors is the bottom of the course library: it imports nothing of lib"
    assert {"lib.class_server.server", "lib.class_server.database", "lib.class_server.accounts"} <= set(graph)


def test_the_study_is_split_by_job_and_analysis_only_re_exports():
    """lib.study.analysis is the notebooks' facade: imports only, no study logic."""
    tree = _modules()["lib.study.analysis"]
    functions = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert functions == [], f"lib.study.analysis defines {functions}: move them to the module of their job"
    for name in ("inputs", "verdicts", "hypotheses", "final", "comparisons", "figures", "ledger"):
        assert f"lib.study.{name}" in _modules()


def test_the_report_is_a_room_split_by_job_and_the_store_names_the_tags():
    """lib.report is a room of one job per module (markdown at most 400 lines) with a public surface of its own;
    the tag names are defined once, in lib.store.schema, and no other module spells the trial-key tag or a
    ``tag.`` column; the report reuses the engine's tuning rule, and the engine imports nothing of the report."""
    modules = _modules()
    for name in ("table", "figures", "checks", "links", "markdown"):
        assert f"lib.report.{name}" in modules, name
    assert len((LIB / "report" / "markdown.py").read_text().splitlines()) <= 400
    assert {"lib.store", "lib.store.schema", "lib.store.reader"} <= set(modules) and room("lib.store.reader") == "lib"
    for text, fix in (('"trial_key"', "lib.store.schema.TAG_TRIAL_KEY"), ('"tag.', "lib.store.schema.column")):
        spelled = [
            str(path.relative_to(LIB))
            for path in LIB.rglob("*.py")
            if path.name != "schema.py" and path.name != "tracking.py" and text in path.read_text().replace("'", '"')
        ]
        assert spelled == [], f"spell {text} as {fix}: {spelled}"
    graph = import_graph()
    assert "lib.engine.tuning" in graph["lib.report.checks"]  # the report reuses the rule
    assert not any(room(target) == "lib.report" for source in graph if room(source) == "lib.engine"
                   for target in graph[source])  # fmt: skip


def test_every_read_of_runs_goes_through_the_store_reader():
    """Only lib.store.reader calls lib.tracking's readers of runs (lib.tracking keeps the low-level calls)."""
    readers = {"runs_frame", "find_runs", "metric_history", "search_ids", "search", "get_run"}
    offenders = []
    for name, tree in _modules().items():
        if name in ("lib.tracking", "lib.store.reader"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in readers
                and isinstance(node.value, ast.Name)
                and node.value.id == "tracking"
            ):
                offenders.append(f"{name}:{node.lineno} tracking.{node.attr}")
            if isinstance(node, ast.ImportFrom) and node.module == "lib.tracking":
                offenders += [f"{name}:{node.lineno} {a.name}" for a in node.names if a.name in readers]
    assert offenders == [], f"read runs through lib.store: {offenders}"


def private_imports(modules: dict[str, ast.Module]) -> list[str]:
    """``from lib.x import _name`` where ``lib.x`` lies in another room than the importing module."""
    found = []
    for name, tree in modules.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("lib"):
                if room(node.module) == room(name):
                    continue
                found += [f"{name}:{node.lineno} {a.name}" for a in node.names if a.name.startswith("_")]
    return found


def test_the_private_import_finder_finds_one():
    tree = ast.parse("from lib.plots import _subtitle\nfrom lib.study.final import _clean\n")
    assert private_imports({"lib.study.figures": tree}) == ["lib.study.figures:1 _subtitle"]


def test_no_private_name_is_imported_from_another_room():
    assert private_imports(_modules()) == []
