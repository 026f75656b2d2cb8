"""spillq: a persistent, thread-safe FIFO queue that keeps up to ``cache_size`` items in memory
and spills the rest to disk.

``spillq.Queue`` is a drop-in for ``queue.Queue`` that survives restarts and crashes: items come
back in order after a reopen, ``sync()`` makes everything durable, and segment files of consumed
items are deleted as the queue drains. ``PersistentQueue`` and ``DiskQueue`` take the arguments
of the two libraries of those names, for code written against them.

>>> import spillq, tempfile
>>> with spillq.Queue(tempfile.mkdtemp()) as q:
...     q.put({"id": 1})
...     q.get()
{'id': 1}
"""

import os
import pickle

from spillq._errors import (
    ClosedError,
    CodecError,
    CorruptError,
    Error,
    IoError,
    LockedError,
    PoisonedError,
    TooLargeError,
    VersionError,
)
from spillq._native import MSGPACK, PICKLE, Queue, Serializer

__all__ = [
    "Queue",
    "PersistentQueue",
    "DiskQueue",
    "Serializer",
    "PICKLE",
    "MSGPACK",
    "Error",
    "ClosedError",
    "LockedError",
    "IoError",
    "CorruptError",
    "VersionError",
    "CodecError",
    "TooLargeError",
    "PoisonedError",
]


class _Functions:
    """A serializer made of a ``dumps`` and a ``loads`` function."""

    def __init__(self, dumps, loads):
        self.dumps = dumps
        self.loads = loads


class PersistentQueue(Queue):
    """A ``Queue`` opened with python-persistent-queue's arguments.

    The queue lives in the directory ``path/filename``. ``dumps`` and ``loads`` default to
    pickle. ``flush_limit`` is accepted and ignored: consumed space is reclaimed on its own.
    Every ``push``/``put`` is on disk when it returns (``durability="every_put"``), as that
    library promises; pass ``durability="on_sync"`` for speed. Other keyword arguments go to
    ``Queue``.
    """

    def __new__(
        cls,
        filename,
        path=".",
        dumps=pickle.dumps,
        loads=pickle.loads,
        flush_limit=1048576,
        **options,
    ):
        if dumps is pickle.dumps and loads is pickle.loads:
            serializer = PICKLE
        else:
            serializer = _Functions(dumps, loads)
        options.setdefault("serializer", serializer)
        options.setdefault("durability", "every_put")
        return super().__new__(cls, os.path.join(path, filename), **options)

    def push(self, item):
        """``put(item)``."""
        self.put(item)


class DiskQueue(Queue):
    """A ``Queue`` opened with pydisq's arguments.

    The queue lives in the directory ``path/queue_name`` and serializes items with MessagePack,
    as pydisq does (``spillq.MSGPACK``: lists, dicts, str, bytes, numbers, None). Other
    keyword arguments go to ``Queue``.
    """

    def __new__(cls, path, queue_name, cache_size=None, **options):
        options.setdefault("serializer", MSGPACK)
        return super().__new__(
            cls, os.path.join(path, queue_name), cache_size=cache_size, **options
        )
