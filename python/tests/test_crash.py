"""A producer process killed with SIGKILL, then the queue reopened: everything that ``sync()``
(or, with ``durability="every_put"``, a returned ``put``) covered is there, in order, and no item
whose removal was synced comes back."""

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import spillq

# The child puts 0, 1, 2, ... without end, after taking TAKEN items from a first batch, and
# prints the number of items put each time they are covered: after each sync() (mode "sync"),
# or after each put (mode "every_put").
CHILD = textwrap.dedent(
    """
    import sys
    import spillq

    path, mode, cache_size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    durability = "every_put" if mode == "every_put" else "on_sync"
    q = spillq.Queue(path, cache_size=cache_size, segment_size=16384, durability=durability)
    for n in range({first}):
        q.put(n)
    for n in range({taken}):
        assert q.get() == n
    q.sync()
    n = {first}
    while True:
        for _ in range(50):
            q.put(n)
            n += 1
            if mode == "every_put":
                print(n, flush=True)
        if mode == "sync":
            q.sync()
            print(n, flush=True)
    """
)
FIRST = 1000
TAKEN = 100
# The parent kills the child once it has reported this many items covered.
KILL_AFTER = 3000
STUCK_AFTER_SECONDS = 120


def kill_producer(queue_dir, mode, cache_size):
    """Runs CHILD until it reported KILL_AFTER items covered, kills it with SIGKILL, and returns
    the last count it reported."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD.format(first=FIRST, taken=TAKEN),
            str(queue_dir),
            mode,
            str(cache_size),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(STUCK_AFTER_SECONDS, child.kill)
    watchdog.start()
    covered = 0
    try:
        for line in child.stdout:
            covered = int(line)
            if covered >= KILL_AFTER:
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        child.kill()
        _, errors = child.communicate()
    assert child.returncode == -signal.SIGKILL, errors
    assert covered >= KILL_AFTER, errors
    return covered


@pytest.mark.parametrize("mode", ["sync", "every_put"])
@pytest.mark.parametrize("cache_size", [0, 64, 4096])
def test_sigkill_loses_nothing_that_was_covered(queue_dir, mode, cache_size):
    covered = kill_producer(queue_dir, mode, cache_size)
    with spillq.Queue(queue_dir) as q:
        count = len(q)
        items = [q.get_nowait() for _ in range(count)]
        assert q.empty()
    # The taken items' removal was synced: none comes back. Then every item in order, at least
    # up to the last one reported covered, and maybe some put after it.
    assert items == list(range(TAKEN, TAKEN + count))
    assert TAKEN + count >= covered


def test_reopen_after_kill_takes_new_work(queue_dir):
    """After a kill during puts, the reopened queue works as new: puts go after the survivors."""
    kill_producer(queue_dir, "sync", 64)
    with spillq.Queue(queue_dir) as q:
        survivors = len(q)
        q.put("new")
        assert q.qsize() == survivors + 1
        q.delete(survivors)
        assert q.get() == "new"
