"""Interchange with Rust through ``spillq.MSGPACK``: a real Rust program (``rust_peer/``) opens
the same directory as ``spillq::Queue<Job>`` with the default codec, and reads what Python wrote,
and the other way round.

The peer is built with cargo. Without cargo these tests are skipped, except under CI (the
environment variable CI is set), where they fail.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import spillq

PEER = Path(__file__).parent / "rust_peer"
COUNT = 200


def job(n):
    """The Python form of ``job(n)`` in rust_peer/src/main.rs: a struct is the list of its
    fields, in order."""
    return [
        n,
        -n * 3,
        f"job-{n}",
        n / 4,
        n % 2 == 0,
        bytes([n % 256]) * (n % 5),
        n - 1 if n > 0 and n % 3 != 0 else None,
        [f"t{tag}" for tag in range(n % 3)],
        {"cpu": n * 1000, "max": 2**63 - 1},
        [8000 + n, "host"],
    ]


@pytest.fixture(scope="session")
def rust_peer():
    cargo = shutil.which("cargo")
    if cargo is None:
        message = "cargo not found: the Rust interchange tests need it to build tests/rust_peer"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI is set")
        pytest.skip(f"{message} (skipped outside CI only)")
    # The extension's target directory (python/target, or the workspace's), so that spillq's
    # dependencies compile once.
    metadata = subprocess.run(
        [
            cargo,
            "metadata",
            "--format-version=1",
            "--no-deps",
            "--manifest-path",
            str(PEER.parent.parent / "Cargo.toml"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    target = Path(json.loads(metadata.stdout)["target_directory"])
    subprocess.run(
        [
            cargo,
            "build",
            "--quiet",
            "--manifest-path",
            str(PEER / "Cargo.toml"),
            "--target-dir",
            str(target),
        ],
        check=True,
    )
    binary = target / "debug" / "spillq-rust-peer"
    assert binary.is_file()

    def run(*args):
        return subprocess.run(
            [str(binary), *map(str, args)], capture_output=True, text=True
        )

    return run


def test_python_writes_rust_reads(rust_peer, tmp_path):
    with spillq.Queue(
        tmp_path / "q", serializer=spillq.MSGPACK, cache_size=16, segment_size=4096
    ) as q:
        for n in range(COUNT):
            item = job(n)
            # Tuples encode as lists do.
            q.put(tuple(item) if n % 2 else item)
        assert q.stats()["on_disk"] > 0
    result = rust_peer("check", tmp_path / "q", COUNT)
    assert result.returncode == 0, result.stderr


def test_rust_writes_python_reads(rust_peer, tmp_path):
    result = rust_peer("produce", tmp_path / "q", COUNT)
    assert result.returncode == 0, result.stderr
    with spillq.Queue(tmp_path / "q", serializer=spillq.MSGPACK) as q:
        assert len(q) == COUNT
        assert [q.get_nowait() for _ in range(COUNT)] == [job(n) for n in range(COUNT)]


def test_round_trip_through_a_typed_rust_queue(rust_peer, tmp_path):
    with spillq.Queue(tmp_path / "from", serializer=spillq.MSGPACK, cache_size=0) as q:
        for n in range(COUNT):
            q.put(job(n))
    result = rust_peer("echo", tmp_path / "from", tmp_path / "to")
    assert result.returncode == 0, result.stderr
    with spillq.Queue(tmp_path / "to", serializer=spillq.MSGPACK) as q:
        assert [q.get_nowait() for _ in range(COUNT)] == [job(n) for n in range(COUNT)]


def test_rust_refuses_an_item_of_the_wrong_shape(rust_peer, tmp_path):
    # The peer really decodes the typed struct: a field too few is a codec error, not a guess.
    with spillq.Queue(tmp_path / "q", serializer=spillq.MSGPACK) as q:
        q.put(job(0)[:-1])
    result = rust_peer("check", tmp_path / "q", 1)
    assert result.returncode == 1
    assert "codec error" in result.stderr


def test_pickle_is_not_for_rust(rust_peer, tmp_path):
    with spillq.Queue(tmp_path / "q") as q:
        q.put(job(0))
    result = rust_peer("check", tmp_path / "q", 1)
    assert result.returncode == 1
    assert "codec error" in result.stderr
