"""Who imports whom among the ops code, the tests and the benchmarks, read from the source with `ast`.

Tests share fixtures through conftest.py and helpers through `ops` and `cloudhop.testing`, never
by importing another test module; benchmarks never import the tests; the library never imports
`ops`. A shared helper that creeps back into a test module fails here, with the line that imports it.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(folder: Path) -> list[tuple[str, int, str]]:
    """(file, line, module) for every import in the .py files under `folder`, nested ones included;
    a relative import's module starts with its dots."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        name = str(path.relative_to(folder.parent))
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                found += [(name, node.lineno, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((name, node.lineno, "." * node.level + (node.module or "")))
    return found


def offenders(folder: Path, *prefixes: str) -> list[str]:
    return [f"{f}:{line} imports {m}" for f, line, m in imports(folder)
            if any(m == p.rstrip(".") or m.startswith(p) for p in prefixes)]


def test_the_check_sees_imports_of_every_form(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.py").write_text("import tests.unit.x\nfrom tests.helpers import y\nfrom . import z\nimport ops\n"
                                         "def f():\n    from tests.integration.conftest_serving import w\n")
    assert offenders(tmp_path / "t", "tests.", ".") == [
        "t/a.py:1 imports tests.unit.x", "t/a.py:2 imports tests.helpers", "t/a.py:3 imports .",
        "t/a.py:6 imports tests.integration.conftest_serving"]
    assert offenders(tmp_path / "t", "ops.") == ["t/a.py:4 imports ops"]


def test_no_test_module_imports_another_test_module():
    bad = offenders(ROOT / "tests", "tests.", ".")
    assert bad == [], "share through conftest.py fixtures, ops or cloudhop.testing:\n" + "\n".join(bad)


def test_benchmarks_import_no_tests():
    bad = offenders(ROOT / "benchmarks", "tests.")
    assert bad == [], "benchmarks use ops and cloudhop.testing, not the tests:\n" + "\n".join(bad)


def test_the_library_imports_no_ops_code():
    bad = offenders(ROOT / "cloudhop", "ops.")
    assert bad == [], "\n".join(bad)
