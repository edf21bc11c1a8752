"""The process helpers every script, test and benchmark starts things with (no Prefect server needed)."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ops.localserver import LocalServer, ServerError
from ops.net import free_port, wait_http
from ops.procs import kill_pidfile, pidfile_process, stop

SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)  # cloudhop-test-sleeper"]


def sleeper() -> subprocess.Popen:
    """A process whose command line says what it is (once it has printed, the kernel shows it)."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True, stdout=subprocess.PIPE)
    assert proc.stdout.readline() == b"up\n"
    return proc


def test_kill_pidfile_stops_only_the_process_it_names(tmp_path):
    proc = sleeper()
    try:
        pid_file = tmp_path / "x.pid"
        pid_file.write_text(str(proc.pid))
        assert pidfile_process(pid_file, b"cloudhop-test-sleeper") == proc.pid
        assert pidfile_process(pid_file, b"someone-else") is None
        assert not kill_pidfile(pid_file, b"someone-else")  # the id now belongs to another program
        assert proc.poll() is None and not pid_file.exists()
        pid_file.write_text(str(proc.pid))
        assert kill_pidfile(pid_file, b"cloudhop-test-sleeper", grace=5)
        assert proc.wait(5) is not None and not pid_file.exists()
    finally:
        stop(proc)
    pid_file.write_text(str(proc.pid))
    assert pidfile_process(pid_file, b"cloudhop-test-sleeper") is None  # it has exited
    assert not kill_pidfile(tmp_path / "missing.pid", b"x")
    (tmp_path / "junk.pid").write_text("not a pid")
    assert not kill_pidfile(tmp_path / "junk.pid", b"x") and not (tmp_path / "junk.pid").exists()


def test_wait_http_names_the_log_of_a_process_that_died(tmp_path):
    log = tmp_path / "p.log"
    log.write_text("bind: address already in use")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait(10)
    with pytest.raises(RuntimeError, match="exited with 3:\nbind: address already in use"):
        wait_http(f"http://127.0.0.1:{free_port()}/", 10, proc, log)
    t = time.monotonic()
    with pytest.raises(TimeoutError, match="not up after 0.5s"):
        wait_http(f"http://127.0.0.1:{free_port()}/", 0.5)
    assert time.monotonic() - t < 5


def test_a_server_that_cannot_start_says_where_its_log_is(tmp_path):
    """A port taken by something that answers no HTTP: `prefect server start` cannot bind and exits;
    start() stops waiting at once, leaves no pid file and names the log."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = LocalServer(port, tmp_path / "home", tmp_path / "state")
        with pytest.raises(ServerError, match=f"Prefect server did not start; see {tmp_path / 'state'}"):
            server.start(timeout=120)
        assert not server.healthy()
    assert not server.pid_file.exists() and server.log.exists()


def test_image_source_hash_follows_what_the_dockerfile_copies_and_its_base(tmp_path):
    from ops.images import Image, source_hash

    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "a.py").write_text("a = 1\n")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "notes.txt").write_text("not in the image\n")
    (tmp_path / "Dockerfile").write_text(
        "FROM base\nCOPY pkg ./pkg\nRUN --mount=type=secret,id=ca \\\n    --mount=type=bind,source=wheels,target=/w true\n")
    image = Image("localhost/x:dev", "Dockerfile")
    first = source_hash(image, "base1", tmp_path)
    (tmp_path / "notes.txt").write_text("changed, still not in the image\n")
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert source_hash(image, "base1", tmp_path) == first
    assert source_hash(image, "base2", tmp_path) != first
    (tmp_path / "wheels" / "torch.whl").write_bytes(b"wheel")
    second = source_hash(image, "base1", tmp_path)
    assert second != first
    (tmp_path / "pkg" / "a.py").write_text("a = 2\n")
    assert source_hash(image, "base1", tmp_path) not in (first, second)


def test_local_pools_keep_the_types_that_run_on_this_machine():
    from cloudhop.clouds import load_catalog
    from tasks.pools import desired_pools

    pools = {p.name: p.type for p in desired_pools(load_catalog("deployments/clouds.yaml"), local=True)}
    assert pools["docker"] == pools["docker-b"] == "docker"
    assert pools["local"] == pools["coreweave-gpu"] == pools["aws-gpu"] == "process"
