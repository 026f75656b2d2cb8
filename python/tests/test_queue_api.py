"""``spillq.Queue`` against the semantics of ``queue.Queue``, and the seeds' extra methods.

Waiting is checked by what another thread observes (an event, the queue's contents), never by
measuring time; timeouts only need to end.
"""

import datetime
import queue
import threading

import pytest

import spillq

# Through memory only, through disk only, and a cache that items overflow.
CACHE_SIZES = [0, 3, 4096]


@pytest.fixture(params=CACHE_SIZES, ids=lambda size: f"cache{size}")
def cache_size(request):
    return request.param


def test_fifo_across_memory_and_disk(open_queue, cache_size):
    q = open_queue(cache_size=cache_size)
    items = [{"n": n, "text": "x" * n} for n in range(300)]
    for item in items:
        q.put(item)
    assert q.qsize() == len(q) == 300
    assert [q.get() for _ in items] == items
    assert q.empty()


def test_reopen_keeps_order_and_count(open_queue, queue_dir, cache_size):
    q = open_queue(cache_size=cache_size)
    for n in range(100):
        q.put(n)
    assert [q.get() for _ in range(10)] == list(range(10))
    q.close()
    q = open_queue(cache_size=cache_size)
    assert len(q) == 90
    assert [q.get() for _ in range(90)] == list(range(10, 100))


def test_nowait_calls_raise_the_standard_exceptions(open_queue):
    q = open_queue(maxsize=2)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(block=False)
    with pytest.raises(queue.Empty):
        q.peek(block=False)
    q.put_nowait("a")
    q.put("b", block=False)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put_nowait("c")
    with pytest.raises(queue.Full):
        q.put("c", block=False)
    assert q.get_nowait() == "a"
    assert not q.full()


def test_timeouts_end_with_the_standard_exceptions(open_queue):
    q = open_queue(maxsize=1)
    with pytest.raises(queue.Empty):
        q.get(timeout=0.01)
    with pytest.raises(queue.Empty):
        q.get(True, 0)
    with pytest.raises(queue.Empty):
        q.peek(timeout=0.01)
    q.put(1)
    with pytest.raises(queue.Full):
        q.put(2, timeout=0.01)
    with pytest.raises(queue.Full):
        q.put(2, True, 0)
    assert q.get(timeout=0.01) == 1


def test_block_false_ignores_timeout(open_queue):
    q = open_queue()
    with pytest.raises(queue.Empty):
        q.get(block=False, timeout=-1)


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")])
def test_negative_timeout_is_a_value_error(open_queue, timeout):
    q = open_queue(maxsize=1)
    with pytest.raises(ValueError, match="non-negative"):
        q.get(timeout=timeout)
    with pytest.raises(ValueError, match="non-negative"):
        q.put(1, timeout=timeout)
    assert q.qsize() == 0 and q.unfinished_tasks == 0


def test_huge_timeout_waits_like_none(open_queue):
    q = open_queue()
    q.put("x")
    assert q.get(timeout=float("inf")) == "x"
    q.put("y")
    assert q.get(timeout=1e300) == "y"


def test_get_waits_for_a_put(open_queue):
    q = open_queue()
    got = []
    consumer = threading.Thread(target=lambda: got.append(q.get()))
    consumer.start()
    q.put("late")
    consumer.join()
    assert got == ["late"]


def test_peek_waits_for_a_put_and_leaves_the_item(open_queue):
    q = open_queue()
    seen = []
    watcher = threading.Thread(target=lambda: seen.append(q.peek()))
    watcher.start()
    q.put("head")
    watcher.join()
    assert seen == ["head"]
    assert q.get_nowait() == "head"


def test_put_waits_for_room_at_maxsize(open_queue):
    q = open_queue(maxsize=2)
    q.put(1)
    q.put(2)
    put_done = threading.Event()

    def producer():
        q.put(3)
        put_done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    # While nothing is taken, the third item cannot be in: whatever the thread has done so far,
    # the queue holds at most maxsize items and the put has not returned.
    assert not put_done.wait(0.05)
    assert q.qsize() == 2
    assert q.get() == 1
    thread.join()
    assert put_done.is_set()
    assert [q.get(), q.get()] == [2, 3]


def test_maxsize_zero_or_negative_is_unbounded(open_queue, tmp_path):
    for maxsize in (0, -5):
        q = open_queue(tmp_path / f"q{maxsize}", maxsize=maxsize)
        for n in range(50):
            q.put_nowait(n)
        assert not q.full() and q.maxsize == 0


def test_task_done_and_join(open_queue):
    q = open_queue(cache_size=2)
    for n in range(10):
        q.put(n)
    assert q.unfinished_tasks == 10
    processed = []

    def worker():
        while True:
            item = q.get()
            processed.append(item)
            q.task_done()
            if item == 9:
                return

    thread = threading.Thread(target=worker)
    thread.start()
    q.join()
    # join returned only after the tenth task_done, which follows the tenth append.
    assert processed == list(range(10))
    thread.join()
    with pytest.raises(ValueError, match="too many times"):
        q.task_done()


def test_join_with_nothing_put_returns(open_queue):
    q = open_queue()
    q.join()


def test_delete_and_clear_end_their_tasks(open_queue):
    q = open_queue(cache_size=2)
    for n in range(6):
        q.put(n)
    assert q.peek() == 0
    assert q.delete() == 1
    assert q.delete(2) == 2
    assert q.unfinished_tasks == 3
    q.clear()
    assert q.unfinished_tasks == 0 and len(q) == 0
    q.join()
    assert q.delete(5) == 0


def test_reopened_queue_counts_its_items_as_tasks(open_queue):
    q = open_queue()
    for n in range(4):
        q.put(n)
    q.close()
    q = open_queue()
    assert q.unfinished_tasks == 4


def test_delete_rejects_a_negative_count(open_queue):
    q = open_queue()
    with pytest.raises(ValueError):
        q.delete(-1)


def test_clear_is_durable(open_queue):
    q = open_queue(cache_size=2)
    for n in range(50):
        q.put(n)
    q.clear()
    q.put("after")
    q.close()
    q = open_queue()
    assert [q.get_nowait()] == ["after"]
    with pytest.raises(queue.Empty):
        q.get_nowait()


def test_peek_delete_loop(open_queue):
    """The seeds' consumer loop: look, work, delete only on success."""
    q = open_queue(cache_size=2)
    for n in range(20):
        q.put(n)
    done, failures = [], 0
    while not q.empty():
        item = q.peek()
        if item % 4 == 1 and failures < 5:
            failures += 1  # the work failed: the item stays at the head
            continue
        done.append(item)
        q.delete()
    assert done == list(range(20))


def test_flush_is_a_harmless_no_op(open_queue):
    q = open_queue()
    q.put(1)
    q.flush()
    assert q.get() == 1


def test_context_manager_closes(queue_dir):
    with spillq.Queue(queue_dir) as q:
        q.put("kept")
        assert not q.closed
    assert q.closed
    with pytest.raises(spillq.ClosedError):
        q.put("refused")
    with spillq.Queue(queue_dir) as q:
        assert q.get() == "kept"


def test_close_twice_is_harmless(open_queue):
    q = open_queue()
    q.close()
    q.close()
    assert "closed" in repr(q)


def test_every_call_after_close_raises_closed(open_queue):
    q = open_queue()
    q.put(1)
    q.close()
    for call in (
        lambda: q.put(2),
        q.get,
        q.get_nowait,
        q.peek,
        q.delete,
        q.sync,
        q.clear,
    ):
        with pytest.raises(spillq.ClosedError):
            call()


def test_close_wakes_waiting_threads(open_queue):
    q = open_queue(maxsize=1)
    q.put("full")
    outcomes = []

    def wait_for(call):
        try:
            call()
        except spillq.ClosedError:
            outcomes.append("closed")

    threads = [
        threading.Thread(target=wait_for, args=(lambda: q.put("blocked"),)),
        threading.Thread(target=wait_for, args=(q.join,)),
    ]
    for thread in threads:
        thread.start()
    q.close()
    for thread in threads:
        thread.join()
    assert outcomes == ["closed", "closed"]


def test_blocked_get_raises_closed_on_close(open_queue):
    q = open_queue()
    outcomes = []

    def consumer():
        try:
            q.get()
        except spillq.ClosedError:
            outcomes.append("closed")

    thread = threading.Thread(target=consumer)
    thread.start()
    q.close()
    thread.join()
    assert outcomes == ["closed"]


def test_path_like_and_repr(open_queue, queue_dir):
    q = open_queue(queue_dir)
    assert q.path == queue_dir
    q.put(1)
    assert repr(q) == f"<spillq.Queue path='{queue_dir}' qsize=1>"


def test_second_open_of_a_directory_is_locked(open_queue, queue_dir):
    open_queue()
    with pytest.raises(spillq.LockedError, match="in use"):
        spillq.Queue(queue_dir)


def test_stats_show_spilled_items(open_queue):
    q = open_queue(cache_size=2)
    for n in range(10):
        q.put(n)
    stats = q.stats()
    assert stats["len"] == 10
    assert stats["in_memory"] + stats["on_disk"] == 10
    assert stats["on_disk"] >= 8


@pytest.mark.parametrize(
    "durability", ["on_sync", "every_put", 0.05, datetime.timedelta(milliseconds=50)]
)
def test_durability_modes_open_and_work(open_queue, durability):
    q = open_queue(durability=durability, cache_size=2)
    for n in range(20):
        q.put(n)
    q.sync()
    assert [q.get() for _ in range(20)] == list(range(20))


@pytest.mark.parametrize("durability", ["always", "", 0, -1, True, float("nan"), [1]])
def test_bad_durability_is_refused(queue_dir, durability):
    with pytest.raises((ValueError, TypeError), match="durability"):
        spillq.Queue(queue_dir, durability=durability)


def test_every_put_fsyncs_each_put(open_queue):
    q = open_queue(durability="every_put")
    before = q.stats()["fsyncs"]
    for n in range(3):
        q.put(n)
    assert q.stats()["fsyncs"] >= before + 3


@pytest.mark.parametrize("option", ["cache_size", "segment_size"])
def test_negative_sizes_are_refused(queue_dir, option):
    with pytest.raises(ValueError, match=option):
        spillq.Queue(queue_dir, **{option: -1})


def test_max_disk_bytes_holds_puts_back_as_maxsize_does(open_queue):
    segment = 64 * 1024
    cap = 2 * segment + 8225
    q = open_queue(cache_size=0, segment_size=segment, max_disk_bytes=cap)
    item = b"x" * 1000
    put = 0
    with pytest.raises(queue.Full):
        while True:
            q.put_nowait(item)
            put += 1
            assert put < 10_000, "the cap never held"
    with pytest.raises(queue.Full):
        q.put(item, timeout=0.01)
    assert q.qsize() == put
    assert q.stats()["disk_bytes"] <= cap
    # Consumers free the segments they leave behind; puts go in again.
    for _ in range(put):
        assert q.get_nowait() == item
    q.put_nowait(item)
    assert q.get_nowait() == item


def test_a_disk_cap_too_small_for_one_segment_is_a_value_error(queue_dir):
    with pytest.raises(ValueError, match="max_disk_bytes"):
        spillq.Queue(queue_dir, segment_size=64 * 1024, max_disk_bytes=64 * 1024)
