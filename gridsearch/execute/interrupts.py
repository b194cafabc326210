"""Ctrl-C that never tears a record: an interrupt during a log write waits for the write to end."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


class DeferredInterrupts:
    """While installed, SIGINT raises ``KeyboardInterrupt`` at once, except inside :meth:`deferred`
    blocks, where it is held until the block ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[DeferredInterrupts]:
        """Handle SIGINT for the duration (only in the main thread; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold interrupts until the block is done, then raise one if it came."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending:
                self._pending = False
                raise KeyboardInterrupt
