"""One open stream: what it may see, what it still has to be told, and how to write to it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, cast

from ._auth import Principal
from ._changes import Changes, add_change
from ._types import Send
from ._uvicorn import direct_writer

NEVER = float("-inf")


class State:
    """Where a connection is in its write cycle; exactly one at a time."""

    IDLE = 0  #: nothing to write: it waits in the fan-out's idle sets
    DUE = 1  #: something to write: queued for the next pass or a coalescing timer
    BUSY = 2  #: a write (or a catch-up replay) is in flight: changes collect meanwhile
    CLOSED = 3  #: ended; ``closing`` says why


class Connection:
    """The fan-out's state for one SSE stream.

    It holds a *pending set* (type -> keys, ``None`` meaning the whole type) of the
    updates addressed to an audience, never a queue, so a slow client costs bounded
    memory and loses nothing: its next frame carries everything merged. Updates for
    everyone are not copied into each pending set; the fan-out keeps them per type
    (``Broadcasts``) and merges in what came after ``heard`` when it writes.
    """

    __slots__ = (
        "busy_since",
        "closing",
        "direct",
        "ended",
        "heard",
        "inflight",
        "last_invalidate",
        "last_write",
        "opened",
        "pending",
        "pending_cursor",
        "principal",
        "send",
        "state",
        "types",
    )

    def __init__(
        self, send: Send, principal: Principal, types: frozenset[str], opened: float
    ) -> None:
        self.send = send
        self.direct = direct_writer(send)
        self.principal = principal
        self.types = types
        self.opened = opened
        self.pending: Changes = {}
        self.pending_cursor = ""
        #: The broadcast serial this stream has heard everything up to.
        self.heard = 0
        self.last_invalidate = NEVER
        self.last_write = NEVER
        self.state = State.IDLE
        #: The write task or catch-up replay in flight (state BUSY), owned by the fan-out.
        self.inflight: asyncio.Future[Any] | None = None
        self.busy_since = NEVER
        self.closing: str | None = None
        #: Done once the stream was ended by the fan-out (its owner then finishes it).
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def scopes(self) -> frozenset[str]:
        return self.principal.scopes

    def sees(self, type_: str, audience: frozenset[str] | None) -> bool:
        return type_ in self.types and (
            audience is None or not audience.isdisjoint(self.principal.scopes)
        )

    def add(self, type_: str, key: str | None, cursor: str, max_keys: int) -> bool:
        """Merge one update into the pending set; True if it was already covered."""
        self.pending_cursor = cursor
        return add_change(self.pending, type_, key, max_keys)

    def take(self) -> tuple[Changes, str]:
        pending, self.pending = self.pending, {}
        return pending, self.pending_cursor

    def end(self, reason: str) -> None:
        """Mark the stream ended (the first reason wins) and wake its owner."""
        if self.closing is None:
            self.closing = reason
        self.state = State.CLOSED
        if not self.ended.done():
            self.ended.set_result(None)

    def write(self, body: bytes, now: float) -> asyncio.Task[None] | None:
        """Write ``body`` now, without a task switch when the transport accepts it at once.

        ASGI servers complete ``send()`` without suspending unless the socket is
        backed up. So the coroutine is driven by hand; only when it does suspend
        (a slow reader) is the rest handed to a task, which the caller owns.
        """
        self.last_write = now
        direct = self.direct
        if direct is not None and direct(body):
            return None
        coro = cast(
            "Coroutine[Any, Any, None]",
            self.send({"type": "http.response.body", "body": body, "more_body": True}),
        )
        try:
            first = coro.send(None)
        except StopIteration:
            return None
        self.busy_since = now
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
