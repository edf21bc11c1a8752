"""The library's public surface: every name one module imports from another cloudhop module
is listed in that module's `__all__` (a name not listed there is private to its module).

Read from the source with `ast` (nothing is imported), over the library and every layer
that uses it: flows, tasks, ops, benchmarks and the tests.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
USERS = ["cloudhop", "flows", "tasks", "ops", "benchmarks", "tests"]


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for f in (base.with_suffix(".py"), base / "__init__.py"):
        if f.exists():
            return f
    return None


def declared_all(name: str) -> set[str] | None:
    """A module's `__all__` from its source; a computed one (e.g. lazy exports) is read by importing it."""
    tree = ast.parse(module_file(name).read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            try:
                return set(ast.literal_eval(node.value))
            except ValueError:
                return set(importlib.import_module(name).__all__)
    return None


def imports_of_cloudhop() -> list[tuple[str, int, str, str]]:
    """(file, line, module, name) for each `from cloudhop... import name` in the code base."""
    found = []
    for top in USERS:
        for f in sorted((ROOT / top).rglob("*.py")) if (ROOT / top).exists() else []:
            for node in ast.walk(ast.parse(f.read_text())):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                        and node.module.split(".")[0] == "cloudhop":
                    for a in node.names:
                        found.append((str(f.relative_to(ROOT)), node.lineno, node.module, a.name))
    return found


def test_every_imported_name_is_in_its_modules_all():
    problems = []
    for where, line, module, name in imports_of_cloudhop():
        if module_file(module) is None:
            problems.append(f"{where}:{line}: imports from {module}, which does not exist")
            continue
        if module_file(f"{module}.{name}") is not None:  # a submodule, not a name
            continue
        if where == str(module_file(module).relative_to(ROOT)):
            continue
        exported = declared_all(module)
        if exported is None:
            problems.append(f"{where}:{line}: {module} has no __all__ (imports {name})")
        elif name not in exported:
            problems.append(f"{where}:{line}: {module}.{name} is not in {module}.__all__")
    assert not problems, "\n".join(problems)


def test_the_check_sees_imports():
    """The scan finds the imports it checks (a scan that found none would pass anything)."""
    modules = {m for _, _, m, _ in imports_of_cloudhop()}
    assert {"cloudhop.spec", "cloudhop.store"} <= modules
