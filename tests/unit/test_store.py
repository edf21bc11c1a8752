import os
import threading

import pytest

from cloudhop.store import Store, StoreError, sha256_bytes


def test_roundtrip_list_and_delete(tmp_path):
    s = Store(str(tmp_path / "root"))
    s.write_bytes("a/b/c.bin", b"123")
    s.write_json("a/x.json", {"k": 1})
    assert s.read_bytes("a/b/c.bin") == b"123"
    assert s.read_json("a/x.json") == {"k": 1}
    assert s.list("a") == ["a/b/c.bin", "a/x.json"]
    assert s.list_dirs("a") == ["b"]
    s.delete("a/b")
    assert s.list() == ["a/x.json"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        s.read_bytes("a/b/c.bin")


def test_write_leaves_no_temp_files_and_replaces_whole(tmp_path):
    s = Store(str(tmp_path))
    s.write_bytes("k", b"old" * 1000)
    s.write_bytes("k", b"new")
    assert s.read_bytes("k") == b"new"
    assert os.listdir(tmp_path) == ["k"]


def test_create_only_write_has_one_winner(tmp_path):
    s = Store(str(tmp_path))
    wins = []

    def attempt(i):
        if s.write_bytes_if_absent("once", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(16)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len(wins) == 1
    assert s.read_bytes("once") == str(wins[0]).encode()
    assert not s.write_bytes_if_absent("once", b"x")


def test_bad_keys_rejected(tmp_path):
    s = Store(str(tmp_path))
    for key in ["", "../escape", "a/../../b"]:
        with pytest.raises(StoreError):
            s.write_bytes(key, b"x")


def test_sha256():
    assert sha256_bytes(b"abc").startswith("ba7816bf")
