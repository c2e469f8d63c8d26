"""Writing one body message through an ASGI ``send()`` without a task per write.

ASGI servers complete ``send()`` without suspending unless the socket is backed up. On a
fan-out to thousands of streams a task per write would cost more than the write, so the
``send()`` coroutine is driven by hand up to its first suspension, right where the
fan-out runs (an event-loop callback, not a task); only a write that does suspend (a
slow reader, or middleware that passes the message on through a channel) is handed to a
task, which the caller owns.

Outside a task, libraries that ask "which event loop is this?" through sniffio (anyio,
so Starlette's ``BaseHTTPMiddleware``) find none and raise. During the hand-driven step
sniffio's context variable says "asyncio", which is where we are.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine, Generator
from typing import Any, cast

from .._types import Send

_library: contextvars.ContextVar[str | None] | None
try:
    import sniffio

    _library = sniffio.current_async_library_cvar
except ImportError:  # pragma: no cover - anyio then asks asyncio directly
    _library = None


def start_send(send: Send, body: bytes) -> asyncio.Task[None] | None:
    """Send ``body`` (more to come); None when done, else the task finishing the write."""
    coro = cast(
        "Coroutine[Any, Any, None]",
        send({"type": "http.response.body", "body": body, "more_body": True}),
    )
    token = None if _library is None else _library.set("asyncio")
    try:
        first = coro.send(None)
    except StopIteration:
        return None
    finally:
        if token is not None and _library is not None:
            _library.reset(token)
    return asyncio.get_running_loop().create_task(_finish(coro, first))


async def _finish(coro: Coroutine[Any, Any, None], first: Any) -> None:
    await _Resumed(coro, first)


class _Resumed:
    """Awaiting this continues a coroutine that already ran up to its first suspension."""

    __slots__ = ("coro", "first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self.coro = coro
        self.first = first

    def __await__(self) -> Generator[Any, Any, None]:
        to_yield = self.first
        while True:
            try:
                sent = yield to_yield
            except BaseException as exc:  # cancellation thrown in by the owning task
                try:
                    to_yield = self.coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    to_yield = self.coro.send(sent)
                except StopIteration:
                    return
