"""Import boundaries of the library, read from the source and proven in a clean interpreter.

- cloudhop/ never imports Prefect, flows or tasks;
- a cloud SDK is imported only inside the provider folder of a cloud that uses it;
- the core (everything but cloudhop/providers/<cloud>/) imports, and a local store and the
  local provider work, with every cloud SDK missing.
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIB = ROOT / "cloudhop"

# top-level module -> the provider folders allowed to import it
SDKS: dict[str, set[str]] = {
    "boto3": {"aws"}, "botocore": {"aws"}, "s3fs": {"aws"}, "prefect_aws": set(),
    "google": {"gcp"}, "gcsfs": {"gcp"}, "prefect_gcp": set(),
    "azure": {"azure"}, "adlfs": {"azure"}, "prefect_azure": set(),
    "kubernetes": {"coreweave"}, "kubernetes_validate": {"coreweave"}, "prefect_kubernetes": set(),
    "docker": {"container"}, "prefect_docker": set(),
}
NEVER = {"prefect", "flows", "tasks"}
# what the no-SDK interpreter refuses (google.cloud: other google.* packages such as protobuf are
# not cloud SDKs and come with onnx)
BLOCKED = ["boto3", "botocore", "google.cloud", "azure", "kubernetes", "kubernetes_validate", "s3fs", "gcsfs",
           "adlfs", "prefect_aws", "prefect_gcp", "prefect_azure", "prefect_kubernetes", "docker", "prefect_docker"]


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in a file, lazy ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _provider_of(path: Path) -> str | None:
    """The provider folder a file lies in (cloudhop/providers/<name>/...), else None."""
    parts = path.relative_to(LIB).parts
    return parts[1] if len(parts) > 2 and parts[0] == "providers" else None


def _core_modules() -> list[str]:
    out = []
    for f in sorted(LIB.rglob("*.py")):
        if _provider_of(f) is not None or f.name == "__main__.py":
            continue
        rel = f.relative_to(ROOT).with_suffix("")
        out.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return out


def test_the_library_imports_no_prefect_and_no_cloud_sdk_outside_its_provider():
    problems = []
    for f in sorted(LIB.rglob("*.py")):
        where = _provider_of(f)
        for line, top in _imports(f):
            rel = f"{f.relative_to(ROOT)}:{line}"
            if top in NEVER:
                problems.append(f"{rel} imports {top} (the library never does)")
            elif top in SDKS and where not in SDKS[top]:
                allowed = ", ".join(f"cloudhop/providers/{p}/" for p in sorted(SDKS[top])) or "nowhere in cloudhop/"
                problems.append(f"{rel} imports {top} (allowed in {allowed})")
    assert not problems, "\n".join(problems)


def test_the_boundary_check_sees_lazy_and_dotted_imports(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    import google.cloud.storage\n    from botocore.exceptions import ClientError\n")
    assert [top for _, top in _imports(f)] == ["google", "botocore"]


BLOCKER = """
import importlib.abc, sys
BLOCKED = {blocked!r}
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            raise ImportError(f"blocked for this test: {{name}}", name=name)
        return None
sys.meta_path.insert(0, Refuse())
"""


def _run_without_sdks(body: str) -> subprocess.CompletedProcess:
    code = BLOCKER.format(blocked=BLOCKED) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_the_core_imports_and_works_without_any_cloud_sdk(tmp_path):
    modules = _core_modules()
    assert "cloudhop.store" in modules and "cloudhop.providers" in modules
    r = _run_without_sdks(f"""
        import importlib
        for m in {modules!r}:
            importlib.import_module(m)
        try:
            import boto3
        except ImportError:
            pass
        else:
            raise SystemExit("the blocker let boto3 through")
        from cloudhop import providers
        from cloudhop.store import Store
        s = Store({str(tmp_path / "store")!r})
        s.write_bytes("a/b.json", b'{{"k": 1}}')
        assert s.read_json("a/b.json") == {{"k": 1}}
        assert s.write_bytes_if_absent("once", b"x") and not s.write_bytes_if_absent("once", b"y")
        local = providers.get("local")
        assert local.name == "local" and local.extra is None
        assert "process" in [t.name for t in local.pool_types]
        print("ok")
    """)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]


def test_a_cloud_target_without_its_sdk_names_the_extra_to_install():
    r = _run_without_sdks("""
        from cloudhop.spec import ServingTargetSpec
        from cloudhop.targets import TargetError, build_target

        class Spec:
            name, store, store_options = "m", "/tmp/unused", {}

        t = ServingTargetSpec(name="t1", kind="aws", options={"store": "s3://b/p", "endpoint": "http://x",
                                                              "cluster": "c"})
        try:
            build_target(t, Spec())
        except TargetError as e:
            print(e)
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "the aws provider needs boto3" in r.stdout and "pip install 'cloudhop[aws]'" in r.stdout
