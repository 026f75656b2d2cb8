"""Puts 100,000 small dicts into a queue, then gets them all: spillq against the standard
library's ``queue.Queue`` and persist-queue's file ``Queue`` and ``SQLiteQueue``.

Setup (persist-queue is needed by the benchmark only, not by spillq)::

    python -m venv /tmp/bench && . /tmp/bench/bin/activate
    pip install ./python persist-queue==1.1.0

Run::

    python python/bench.py                 # 5 rounds, the median of each case
    python python/bench.py --items 10000 --rounds 3 --only spillq

Each round runs every case once, in a fresh directory under ``--dir`` (default: the system's
temporary directory; put it on the disk you care about). Times are wall-clock seconds for the
puts and for the gets, on one thread. What each case makes durable differs, and the table says
so: persist-queue fsyncs every put; spillq's default writes items to disk as they overflow
memory and fsyncs at ``sync()``, called here once after the puts.
"""

import argparse
import os
import queue
import shutil
import statistics
import sys
import tempfile
import time


def item(n):
    return {"id": n, "name": "sensor-7", "value": n * 0.5, "ok": True}


class Case:
    """A queue to measure: ``open(path)`` returns an object with put/get; ``after_puts``
    runs inside the timed put phase (a sync, for instance)."""

    def __init__(self, name, durable, open_queue, after_puts=None, close=None):
        self.name = name
        self.durable = durable
        self.open = open_queue
        self.after_puts = after_puts or (lambda q: None)
        self.close = close or (lambda q: None)


def spillq_cases(items):
    import spillq

    return [
        Case(
            "spillq, nothing spills",
            "at sync() (not called)",
            lambda path: spillq.Queue(path, cache_size=items),
            close=lambda q: q.close(),
        ),
        Case(
            "spillq, default (spills past 4096)",
            "all, at the sync() after the puts",
            lambda path: spillq.Queue(path),
            after_puts=lambda q: q.sync(),
            close=lambda q: q.close(),
        ),
        Case(
            'spillq, durability="every_put"',
            "every put (fsync)",
            lambda path: spillq.Queue(path, durability="every_put"),
            close=lambda q: q.close(),
        ),
    ]


def persist_queue_cases():
    import persistqueue

    return [
        Case(
            "persist-queue Queue (file)",
            "every put (fsync)",
            lambda path: persistqueue.Queue(path),
        ),
        Case(
            "persist-queue SQLiteQueue",
            "every put (commit)",
            lambda path: persistqueue.SQLiteQueue(path, auto_commit=True),
        ),
    ]


def stdlib_case():
    return Case("queue.Queue (memory only)", "nothing", lambda path: queue.Queue())


def run_once(case, items, base):
    path = tempfile.mkdtemp(dir=base)
    try:
        q = case.open(os.path.join(path, "q"))
        values = [item(n) for n in range(items)]
        start = time.perf_counter()
        for value in values:
            q.put(value)
        case.after_puts(q)
        middle = time.perf_counter()
        for _ in range(items):
            q.get()
        end = time.perf_counter()
        case.close(q)
        return middle - start, end - middle
    finally:
        shutil.rmtree(path, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the queues live")
    parser.add_argument(
        "--only", default="", help="run the cases whose name contains this text"
    )
    args = parser.parse_args()

    cases = [stdlib_case(), *spillq_cases(args.items)]
    try:
        cases += persist_queue_cases()
    except ImportError:
        print("persist-queue is not installed: pip install persist-queue==1.1.0", file=sys.stderr)
    cases = [case for case in cases if args.only in case.name]

    times = {case.name: [] for case in cases}
    for round_number in range(1, args.rounds + 1):
        for case in cases:
            put_seconds, get_seconds = run_once(case, args.items, args.dir)
            times[case.name].append((put_seconds, get_seconds))
            print(
                f"round {round_number}: {case.name}: put {put_seconds:.3f} s, "
                f"get {get_seconds:.3f} s",
                file=sys.stderr,
            )

    def median(name, phase):
        return statistics.median(run[phase] for run in times[name])

    def total(name):
        return statistics.median(sum(run) for run in times[name])

    print(
        f"\n{args.items:,} small dicts put, then got, one thread; "
        f"median of {args.rounds} rounds; Python {sys.version.split()[0]}\n"
    )
    header = (
        f"| {'queue':<36} | {'put/s':>10} | {'get/s':>10} | {'put+get s':>9} "
        f"| {'durable':<33} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for case in cases:
        print(
            f"| {case.name:<36} | {args.items / median(case.name, 0):>10,.0f} "
            f"| {args.items / median(case.name, 1):>10,.0f} | {total(case.name):>9.3f} "
            f"| {case.durable:<33} |"
        )

    names = {case.name for case in cases}
    persist = [name for name in names if name.startswith("persist-queue")]
    default = "spillq, default (spills past 4096)"
    in_memory = "spillq, nothing spills"
    stdlib = "queue.Queue (memory only)"
    print()
    if persist and default in names:
        fastest = min(persist, key=total)
        print(
            f"spillq (default) is {total(fastest) / total(default):.0f}x faster than "
            f"{fastest} (target: at least 20x)"
        )
    if in_memory in names and stdlib in names:
        print(
            f"spillq (nothing spills) takes {total(in_memory) / total(stdlib):.2f}x the time "
            f"of queue.Queue (target: within 3x)"
        )


if __name__ == "__main__":
    main()
