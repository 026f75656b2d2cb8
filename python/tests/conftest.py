"""Shared fixtures: a fresh queue directory per test, and queues closed after it."""

import pytest

import spillq

# Small segments, so that a few hundred items already span several segment files.
SMALL_SEGMENT_BYTES = 4096


@pytest.fixture
def queue_dir(tmp_path):
    return tmp_path / "queue"


@pytest.fixture
def open_queue(queue_dir):
    """Opens queues in ``queue_dir`` (or elsewhere) and closes those still open afterwards."""
    opened = []

    def open_queue(path=queue_dir, **options):
        options.setdefault("segment_size", SMALL_SEGMENT_BYTES)
        queue = spillq.Queue(path, **options)
        opened.append(queue)
        return queue

    yield open_queue
    for queue in opened:
        queue.close()
