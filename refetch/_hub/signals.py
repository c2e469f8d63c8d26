"""SIGINT/SIGTERM chaining: end the streams first, then let the server shut down.

uvicorn (and gunicorn's uvicorn worker) waits for open responses to end *before* it runs
the lifespan shutdown, and an SSE response never ends by itself. So, when started in the
main thread, the hub installs handlers that end its streams on the event loop and then
hand the signal on to whatever handler was there before (the server's).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class ShutdownSignals:
    """Chained handlers that call ``on_signal()`` in ``loop``; ``restore()`` undoes them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_signal: Callable[[], None]) -> None:
        self._loop = loop
        self._on_signal = on_signal
        self._previous: dict[int, Any] = {}

    def install(self) -> bool:
        """Chain the handlers; False where that is impossible (not the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        for signum in SHUTDOWN_SIGNALS:
            # ValueError/OSError: a platform without the signal, or an embedded interpreter.
            with contextlib.suppress(ValueError, OSError):
                self._previous[signum] = signal.signal(signum, self._handle)
        return bool(self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to end
            self._loop.call_soon_threadsafe(self._on_signal)
        previous = self._previous.get(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL and signum == signal.SIGINT:
            raise KeyboardInterrupt
        elif previous == signal.SIG_DFL:
            # No server handles SIGTERM: terminate, as the default action would, right
            # after the streams are told to end (swallowing it would leave the process
            # running).
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_terminate, signum)

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)
        self._previous.clear()


def _terminate(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)
