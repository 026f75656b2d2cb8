"""spillq's exceptions. The message of each is spillq's own: what failed, where, what to do.

``queue.Full`` and ``queue.Empty`` are raised as ``queue.Queue`` raises them; every other failure
is a ``spillq.Error``.
"""


class Error(Exception):
    """Base class of spillq's errors."""


class ClosedError(Error):
    """The queue was closed (by ``close()``, the ``with`` block, or interpreter exit). Open it
    again to go on."""


class LockedError(Error):
    """Another open queue, in this process or another, holds the directory. Close it first."""


class IoError(Error, OSError):
    """The operating system refused an operation on the queue's files (``errno`` is set when
    known)."""


class CorruptError(Error):
    """Bytes on disk are not what spillq wrote and cannot be worked around. (Damaged records
    are skipped and counted in ``stats()["skipped"]``; this is for what cannot be skipped.)"""


class VersionError(Error):
    """A file was written by a newer spillq, in a format this one does not read. Upgrade."""


class CodecError(Error):
    """An item could not be serialized (``put``: the item is refused, the queue goes on) or
    deserialized (``get``, ``peek``). The serializer's own exception is the ``__cause__``; after
    a failed ``loads``, ``payload`` holds the stored bytes."""

    payload = None


class TooLargeError(Error):
    """An item serializes to more bytes than one record holds."""


class PoisonedError(Error):
    """An earlier fsync failed, so the queue refuses writes until it is reopened (the kernel
    may have dropped data it could not write)."""
