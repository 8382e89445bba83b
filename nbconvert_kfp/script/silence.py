"""Silence: drop what kfp prints to stdout in one thread, while other threads print as before.

``contextlib.redirect_stdout`` swaps ``sys.stdout`` for the whole process: two threads
that use it at once can leave the process printing into a discarded buffer. Here
``sys.stdout`` is swapped once, while any thread is silenced, for a stream that sends each
thread's writes to that thread's target. Uses the standard library only; the generated
script carries it.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from typing import Any, Iterator, TextIO


class _ThreadStream:
    """A stdout that writes to the current thread's sink when it has one, else to the real stream."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.local = threading.local()

    def _target(self) -> Any:
        return getattr(self.local, "sink", None) or self.stream

    def write(self, text: str) -> int:
        """Write to this thread's target."""
        return self._target().write(text)

    def flush(self) -> None:
        """Flush this thread's target."""
        self._target().flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target(), name)


_LOCK = threading.Lock()
_active: list[_ThreadStream] = []  # the installed stream, while any thread is silenced
_count = 0


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Drop what the current thread prints to ``sys.stdout`` inside the block."""
    global _count
    with _LOCK:
        if _count == 0 or not _active or sys.stdout is not _active[0]:
            _active[:] = [_ThreadStream(sys.stdout)]
            sys.stdout = _active[0]  # type: ignore[assignment]
        stream = _active[0]
        _count += 1
    previous = getattr(stream.local, "sink", None)
    stream.local.sink = io.StringIO()
    try:
        yield
    finally:
        stream.local.sink = previous
        with _LOCK:
            _count -= 1
            if _count == 0 and sys.stdout is stream:
                sys.stdout = stream.stream
                _active.clear()
