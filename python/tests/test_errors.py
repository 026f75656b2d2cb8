"""Bad input and failures: each is a clear exception, and the queue goes on."""

import json
import os
import pickle
import queue
import subprocess
import sys
import textwrap
import threading

import pytest

import spillq


class Unloadable:
    """Pickles fine; fails to unpickle, as a class whose code changed would."""

    def __reduce__(self):
        return (_refuse, ("was pickled",))


def _refuse(reason):
    raise RuntimeError(f"cannot rebuild: {reason}")


def test_error_family():
    for name in (
        "ClosedError",
        "LockedError",
        "IoError",
        "CorruptError",
        "VersionError",
        "CodecError",
        "TooLargeError",
        "PoisonedError",
    ):
        assert issubclass(getattr(spillq, name), spillq.Error)
    assert issubclass(spillq.IoError, OSError)
    assert not issubclass(spillq.Error, (queue.Full, queue.Empty))


@pytest.mark.parametrize("cache_size", [0, 4096])
def test_unpicklable_item_is_refused_and_the_queue_goes_on(open_queue, cache_size):
    q = open_queue(cache_size=cache_size)
    q.put("before")
    with pytest.raises(spillq.CodecError, match="cannot serialize an object of type lock") as info:
        q.put(threading.Lock())
    assert isinstance(info.value.__cause__, TypeError)
    with pytest.raises(spillq.CodecError, match="function"):
        q.put(lambda: None)
    assert len(q) == 1 and q.unfinished_tasks == 1
    q.put("after")
    assert [q.get(), q.get()] == ["before", "after"]


def test_item_that_fails_to_load_is_reported_with_its_bytes(open_queue):
    q = open_queue(cache_size=1)
    q.put(Unloadable())
    q.put("next")
    with pytest.raises(spillq.CodecError, match="cannot rebuild") as info:
        q.get()
    assert isinstance(info.value.__cause__, RuntimeError)
    assert info.value.payload == pickle.dumps(Unloadable(), protocol=5)
    # The item left the queue with the error (its bytes are in `payload`); the rest goes on.
    assert q.get() == "next"
    assert q.unfinished_tasks == 1


def test_peek_of_an_unloadable_head_leaves_it_for_delete(open_queue):
    q = open_queue()
    q.put(Unloadable())
    q.put("next")
    for _ in range(2):
        with pytest.raises(spillq.CodecError):
            q.peek()
    assert len(q) == 2
    assert q.delete() == 1
    assert q.peek() == "next"


def test_keyboard_interrupt_in_a_serializer_is_not_wrapped(open_queue):
    class Interrupting:
        def __reduce__(self):
            raise KeyboardInterrupt

    q = open_queue()
    with pytest.raises(KeyboardInterrupt):
        q.put(Interrupting())
    assert len(q) == 0


@pytest.mark.parametrize(
    "item, cause",
    [
        ({1, 2}, TypeError),
        (object(), TypeError),
        (2**64, OverflowError),
        (-(2**63) - 1, OverflowError),
        ("\ud800", UnicodeEncodeError),
    ],
)
def test_msgpack_refuses_what_it_cannot_encode(open_queue, item, cause):
    q = open_queue(serializer=spillq.MSGPACK)
    with pytest.raises(spillq.CodecError) as info:
        q.put(item)
    assert isinstance(info.value.__cause__, cause)
    assert len(q) == 0


def test_msgpack_bounds_nesting():
    nested = []
    for _ in range(255):
        nested = [nested]
    assert spillq.MSGPACK.loads(spillq.MSGPACK.dumps(nested)) == nested
    with pytest.raises(spillq.CodecError, match="nested deeper"):
        spillq.MSGPACK.dumps([nested])
    itself = []
    itself.append(itself)
    with pytest.raises(spillq.CodecError, match="contains itself"):
        spillq.MSGPACK.dumps(itself)


def test_msgpack_round_trip_of_every_type():
    item = {
        "none": None,
        "flags": [True, False],
        "ints": [0, 1, -1, 127, 128, -33, 2**32, -(2**63), 2**64 - 1],
        "float": 1.5,
        "text": "héllo",
        "bytes": b"\x00\xff",
        "bytearray": bytearray(b"ab"),
        "tuple": (1, "two"),
        7: "int key",
        (1, 2): "tuple key",
    }
    back = spillq.MSGPACK.loads(spillq.MSGPACK.dumps(item))
    expected = dict(item, bytearray=b"ab", tuple=[1, "two"])
    assert back == expected
    assert isinstance(back["flags"][0], bool) and isinstance(back["ints"][1], int)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x92\x01",  # an array of 2 with 1 element
        b"\xdd\xff\xff\xff\xff",  # an array claiming 4 billion elements
        b"\xc4\x05ab",  # bin of 5 with 2 bytes
        b"\xa2\xff\xfe",  # str that is not UTF-8
        b"\xd4\x01\x00",  # an extension type
        b"\x81\x80\x01",  # a map whose key is a map: not hashable in Python
        b"\x01\x02",  # a value, then trailing bytes
        b"\x91" * 5000,  # nested beyond the bound
    ],
)
def test_msgpack_loads_rejects_bad_bytes_without_crashing(data):
    with pytest.raises(spillq.CodecError):
        spillq.MSGPACK.loads(data)


def test_reading_with_the_wrong_serializer_is_a_codec_error(open_queue, tmp_path):
    q = open_queue(tmp_path / "q")
    q.put({"written": "with pickle"})
    q.put([1, 2])
    q.close()
    q = open_queue(tmp_path / "q", serializer=spillq.MSGPACK)
    with pytest.raises(spillq.CodecError, match="not one MessagePack value"):
        q.get()
    with pytest.raises(spillq.CodecError):
        q.get()
    assert q.empty()


def test_custom_serializers(open_queue, tmp_path):
    q = open_queue(tmp_path / "json", serializer=json)
    q.put({"a": [1, 2]})
    assert q.get() == {"a": [1, 2]}
    q = open_queue(tmp_path / "pickle", serializer=pickle)
    q.put({1, 2})
    assert q.get() == {1, 2}

    class Broken:
        @staticmethod
        def dumps(item):
            return 42

        @staticmethod
        def loads(data):
            return data

    q = open_queue(tmp_path / "broken", serializer=Broken)
    with pytest.raises(spillq.CodecError, match="must return bytes"):
        q.put("x")


def test_serializer_without_loads_is_refused(queue_dir):
    class DumpsOnly:
        dumps = staticmethod(json.dumps)

    with pytest.raises(TypeError, match="no callable loads"):
        spillq.Queue(queue_dir, serializer=DumpsOnly())


def test_a_file_where_the_directory_should_be_is_an_io_error(tmp_path):
    path = tmp_path / "file"
    path.write_bytes(b"")
    with pytest.raises(spillq.IoError) as info:
        spillq.Queue(path)
    assert isinstance(info.value, OSError) and info.value.errno is not None
    assert str(path) in str(info.value)


def test_a_forked_child_cannot_use_the_parents_queue(open_queue):
    q = open_queue()
    q.put("parent's")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's cleanup
        try:
            q.put("child's")
            outcome = b"put worked"
        except spillq.Error as error:
            outcome = b"refused: " + str(error).encode()
        os.write(write, outcome)
        os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as pipe:
        outcome = pipe.read()
    assert status == 0
    assert outcome.startswith(b"refused: this queue was opened before os.fork()")
    assert q.get_nowait() == "parent's" and q.empty()


def run_child(source, *args):
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_queues_still_open_at_exit_are_synced(queue_dir):
    # A daemon thread's frame keeps the queue alive through interpreter exit, so only the exit
    # hook can write the items held in memory.
    run_child(
        """
        import sys, threading, spillq
        q = spillq.Queue(sys.argv[1], cache_size=100)
        for n in range(10):
            q.put(n)
        def hold(queue):
            threading.Event().wait()
        threading.Thread(target=hold, args=(q,), daemon=True).start()
        """,
        queue_dir,
    )
    with spillq.Queue(queue_dir) as q:
        assert [q.get_nowait() for _ in range(len(q))] == list(range(10))


def test_exit_with_daemon_threads_waiting_is_quiet(queue_dir):
    # As with queue.Queue, daemon threads waiting in get or put end with the process, silently.
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, threading, spillq
                q = spillq.Queue(sys.argv[1], maxsize=1)
                taken = threading.Event()
                def consume():
                    q.get()
                    taken.set()
                    q.get()
                threading.Thread(target=consume, daemon=True).start()
                q.put("first")
                taken.wait()
                q.put("second")
                q.put("third")
                threading.Thread(target=q.put, args=("blocked",), daemon=True).start()
                """
            ),
            str(queue_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stderr) == (0, "")
    with spillq.Queue(queue_dir) as q:
        # "second" may or may not have been taken before the exit; "third" was put after it.
        assert q.get_nowait() in ("second", "third")


def test_a_signal_interrupts_a_get_that_waits_forever(queue_dir):
    output = run_child(
        """
        import signal, sys, spillq
        class Interrupted(Exception):
            pass
        def interrupt(signum, frame):
            raise Interrupted
        signal.signal(signal.SIGALRM, interrupt)
        q = spillq.Queue(sys.argv[1])
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        try:
            q.get()
        except Interrupted:
            print("interrupted")
        q.put("still works")
        print(q.get())
        """,
        queue_dir,
    )
    assert output.split() == ["interrupted", "still", "works"]
