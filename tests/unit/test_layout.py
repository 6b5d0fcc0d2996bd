"""The house rules of the source tree, checked so they stay true as crmtasks grows.

A package per domain with a small face, small modules and functions, no
import cycles, imports at the top of modules (a function-level import of a
crmtasks module must say why in a comment), one root exception, and the four
seed jobs as thin modules of the same shape.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

import crmtasks
from crmtasks.errors import CrmtasksError
from crmtasks.jobs import registry

PACKAGE_DIR = Path(crmtasks.__file__).parent
MOST_TOP_LEVEL_MODULES = 14
MOST_LINES_PER_FILE = 450
MOST_LINES_PER_FUNCTION = 60
SEED_JOBS = ("precompute_facets", "precompute_aggregates", "audit_maintenance", "warm_caches")


def _source_files() -> list[Path]:
    return sorted(PACKAGE_DIR.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _all_module_names() -> list[str]:
    return [_module_name(path) for path in _source_files()]


def _importable_module_names() -> list[str]:
    """Every module but the entry points whose import runs something: ``python -m crmtasks`` and the
    Dramatiq/periodiq entry ``crmtasks.tasks`` (it builds the broker; see test_actor_wiring)."""
    return [name for name in _all_module_names() if name not in ("crmtasks.__main__", "crmtasks.tasks")]


def test_at_most_fourteen_modules_sit_directly_in_the_package():
    top_level = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
    assert len(top_level) <= MOST_TOP_LEVEL_MODULES, top_level


def test_the_domains_machinery_and_edges_are_packages():
    expected = {"search", "reports", "audit", "sharing", "scheduler", "runs", "broker", "pg", "services", "cli",
                "web", "jobs", "demo", "settings"}
    packages = {path.parent.name for path in PACKAGE_DIR.glob("*/__init__.py")}
    assert expected <= packages, expected - packages


def test_no_source_file_is_longer_than_450_lines():
    long_files = {str(path.relative_to(PACKAGE_DIR)): count for path in _source_files()
                  if (count := len(path.read_text().splitlines())) > MOST_LINES_PER_FILE}
    assert long_files == {}


def test_no_function_is_longer_than_60_lines():
    long_functions = []
    for path in _source_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MOST_LINES_PER_FUNCTION:
                    long_functions.append(f"{path.relative_to(PACKAGE_DIR)}:{node.name} ({length} lines)")
    assert long_functions == []


def _imported_crmtasks_names(node: ast.ImportFrom | ast.Import) -> list[str]:
    """The crmtasks modules an import statement may load: ``from a.b import c`` yields a.b and a.b.c."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("crmtasks")]
    if not node.module or not node.module.startswith("crmtasks"):
        return []
    return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]


def _function_level_imports(tree: ast.AST):
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and _imported_crmtasks_names(node):
                    yield node


def test_crmtasks_modules_are_imported_at_module_level_unless_a_comment_says_why():
    unexplained = []
    for path in _source_files():
        lines = path.read_text().splitlines()
        for node in _function_level_imports(ast.parse("\n".join(lines))):
            nearby = lines[max(0, node.lineno - 3):node.end_lineno]
            if not any("#" in line for line in nearby):
                unexplained.append(f"{path.relative_to(PACKAGE_DIR)}:{node.lineno}")
    assert unexplained == []


def _import_graph() -> dict[str, set[str]]:
    """Module -> crmtasks modules it imports when it is itself imported (module level only)."""
    modules = set(_all_module_names())
    graph: dict[str, set[str]] = {}
    for path in _source_files():
        name = _module_name(path)
        tree = ast.parse(path.read_text())
        function_imports = set(map(id, _function_level_imports(tree)))
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in function_imports:
                edges |= {target for target in _imported_crmtasks_names(node) if target in modules}
        # Importing a.b.c first runs a/__init__ and a/b/__init__.
        for target in list(edges):
            parts = target.split(".")
            edges |= {".".join(parts[:i]) for i in range(2, len(parts)) if ".".join(parts[:i]) in modules}
        edges.discard(name)
        graph[name] = edges
    return graph


def test_there_are_no_import_cycles():
    graph = _import_graph()
    cycles, state = [], {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    # A package importing its own submodules for its public face is not a cycle of concern:
    # the submodule never needs the package's face to load.
    real = [cycle for cycle in cycles
            if not all(step == cycle[0] or step.startswith(cycle[0] + ".") for step in cycle)]
    assert real == []


def test_every_module_imports_on_its_own():
    for name in _importable_module_names():
        importlib.import_module(name)


def _crmtasks_exception_classes() -> list[type]:
    found = []
    for name in _importable_module_names():
        module = importlib.import_module(name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == name:
                found.append(value)
    return found


def test_every_crmtasks_error_derives_from_the_one_root():
    classes = _crmtasks_exception_classes()
    assert len(classes) >= 15
    assert [cls.__qualname__ for cls in classes if not issubclass(cls, CrmtasksError)] == []


@pytest.mark.parametrize("name", ["SettingsError", "ReportError", "AuditRowTooOld", "CrmNotEmpty"])
def test_bad_input_errors_keep_the_value_error_contract(name):
    cls = next(cls for cls in _crmtasks_exception_classes() if cls.__name__ == name)
    assert issubclass(cls, ValueError)


@pytest.mark.parametrize("job_name", SEED_JOBS)
def test_each_seed_job_is_a_thin_module_named_for_it(job_name):
    spec = registry.get(job_name)
    module = importlib.import_module(f"crmtasks.jobs.{job_name}")
    assert spec.job == f"crmtasks.jobs.{job_name}:run"
    assert module.JOB_NAME == job_name
    assert inspect.signature(module.run).parameters == {}
    assert (module.__doc__ or "").startswith(f"Job ``{spec.actor_name}`` (``{job_name}``)")
    public_functions = [name for name, value in inspect.getmembers(module, inspect.isfunction)
                        if value.__module__ == module.__name__ and not name.startswith("_")]
    assert public_functions == ["run"]
    assert len(Path(module.__file__).read_text().splitlines()) <= 80


def test_package_faces_are_small():
    for init in PACKAGE_DIR.glob("*/__init__.py"):
        if init.parent.name in ("settings",):
            continue  # the settings object itself is the package's face
        assert len(init.read_text().splitlines()) <= 100, init
