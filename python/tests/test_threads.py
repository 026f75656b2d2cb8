"""Many Python threads on one queue: every item is delivered exactly once."""

import threading

import pytest

PRODUCERS = 8
CONSUMERS = 8
ITEMS_PER_PRODUCER = 2000


@pytest.mark.parametrize("cache_size", [0, 16, 100_000], ids=["disk", "spilling", "memory"])
@pytest.mark.parametrize("maxsize", [0, 64], ids=["unbounded", "bounded"])
def test_eight_producers_eight_consumers_exactly_once(open_queue, cache_size, maxsize):
    q = open_queue(cache_size=cache_size, maxsize=maxsize, segment_size=64 * 1024)
    received = [[] for _ in range(CONSUMERS)]
    start = threading.Barrier(PRODUCERS + CONSUMERS)

    def produce(producer):
        start.wait()
        for n in range(ITEMS_PER_PRODUCER):
            q.put((producer, n))

    def consume(consumer):
        start.wait()
        while True:
            item = q.get()
            q.task_done()
            if item is None:
                return
            received[consumer].append(item)

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    consumers = [threading.Thread(target=consume, args=(c,)) for c in range(CONSUMERS)]
    for thread in producers + consumers:
        thread.start()
    for thread in producers:
        thread.join()
    q.join()
    for _ in consumers:
        q.put(None)
    for thread in consumers:
        thread.join()

    everything = [item for items in received for item in items]
    expected = [(p, n) for p in range(PRODUCERS) for n in range(ITEMS_PER_PRODUCER)]
    assert sorted(everything) == expected
    # FIFO per producer: each consumer sees a producer's items in the order they were put.
    for items in received:
        for p in range(PRODUCERS):
            sequence = [n for producer, n in items if producer == p]
            assert sequence == sorted(sequence)
    assert q.empty() and q.unfinished_tasks == 0


def test_peek_delete_consumers_share_a_queue_under_a_lock(open_queue):
    """The seeds' peek/delete loop with several consumers needs one lock around peek+delete;
    with it, nothing is lost or doubled."""
    q = open_queue(cache_size=8)
    total = 4000
    for n in range(total):
        q.put(n)
    lock = threading.Lock()
    taken = []

    def consume():
        while True:
            with lock:
                if q.empty():
                    return
                taken.append(q.peek())
                q.delete()

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert taken == list(range(total))
