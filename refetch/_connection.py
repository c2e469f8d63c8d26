"""One open stream: what it may see, what it still has to be told, and how to write to it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from ._auth import Principal
from ._mount import StartHeaders
from ._types import Send

NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """One open stream as ``UpdateService.connections()`` reports it, for a debug page."""

    #: ``Principal.subject`` (None for anonymous streams).
    subject: str | None
    scopes: frozenset[str]
    #: The update types the stream listens to.
    types: frozenset[str]
    #: When the stream was opened (UTC).
    since: datetime
    #: ``invalidate`` frames written to it so far (hello, pings and resyncs not counted).
    frames: int
    #: Types its next frame will name: news it has not been sent yet.
    pending: frozenset[str]
    #: A write is waiting for the client's socket (a slow reader, or a replay on its way).
    busy: bool


class Connection:
    """The hub's state for one SSE stream.

    It holds a *pending set* (type -> keys, ``None`` meaning the whole type) of the
    updates addressed to an audience, never a queue, so a slow client costs bounded
    memory and loses nothing: its next frame carries everything merged. Updates for
    everyone are not copied into each pending set; the hub keeps them per type and
    merges them in when it writes (``told``).
    """

    __slots__ = (
        "busy_since",
        "closing",
        "cycle",
        "frames",
        "last_invalidate",
        "last_write",
        "pending",
        "pending_cursor",
        "pending_since",
        "principal",
        "scheduled",
        "scopes",
        "send",
        "since",
        "task",
        "told",
        "types",
        "writer",
    )

    def __init__(
        self,
        send: Send,
        principal: Principal,
        types: frozenset[str],
        task: asyncio.Task[Any] | None,
    ) -> None:
        self.send = send
        self.cycle = _uvicorn_cycle(send)
        self.principal = principal
        self.scopes = principal.scopes
        self.types = types
        self.task = task
        self.pending: dict[str, set[str] | None] = {}
        self.pending_cursor = ""
        # The hub's mark count when this stream was last told everything sent to all
        # of its types: what was broadcast since is computed per type at write time.
        self.told = 0
        self.last_invalidate = NEVER
        self.last_write = NEVER
        self.writer: asyncio.Task[None] | None = None
        self.busy_since = NEVER
        self.scheduled = False
        self.closing: str | None = None
        self.since = time.time()
        self.frames = 0
        # time.monotonic() of the oldest update in ``pending``: how long it waited,
        # when the frame goes out (the hub's latency histogram).
        self.pending_since = 0.0

    def sees(self, type_: str, audience: frozenset[str] | None) -> bool:
        return type_ in self.types and (audience is None or not audience.isdisjoint(self.scopes))

    def add(self, type_: str, key: str | None, cursor: str, max_keys: int) -> bool:
        """Merge one update into the pending set; True if it was already covered."""
        self.pending_cursor = cursor
        pending = self.pending
        if type_ not in pending:
            pending[type_] = None if key is None else {key}
            return False
        keys = pending[type_]
        if keys is None:
            return True
        if key is None:
            pending[type_] = None
            return False
        if key in keys:
            return True
        keys.add(key)
        if len(keys) > max_keys:
            # Past the cap the keys are worth less than the memory: the whole type.
            pending[type_] = None
        return False

    def take(self) -> tuple[dict[str, set[str] | None], str]:
        pending, self.pending = self.pending, {}
        return pending, self.pending_cursor

    def write(self, body: bytes, now: float) -> asyncio.Task[None] | None:
        """Write ``body`` now, without a task switch when the transport accepts it at once.

        ASGI servers complete ``send()`` without suspending unless the socket is
        backed up. So the coroutine is driven by hand; only when it does suspend
        (a slow reader) is the rest handed to a task, which the caller owns.
        """
        self.last_write = now
        cycle = self.cycle
        if (
            cycle is not None
            and cycle.chunked_encoding is True
            and not cycle.flow.write_paused
            and not cycle.disconnected
            and not cycle.response_complete
        ):
            # Exactly what uvicorn's send() would write, minus a message dict, a
            # coroutine and its checks per connection: on a fan-out to thousands of
            # streams that overhead is most of the Python time per delivery.
            cycle.transport.write(_chunk(body))
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
        self.writer = asyncio.get_running_loop().create_task(_finish(coro, first))
        return self.writer

    def drop(self) -> None:
        """Cut the socket under a write that cannot complete: the client stopped reading.

        Ending the response is no use then (the end cannot be written either), and the
        server would wait for it for ever, e.g. at shutdown. Possible on uvicorn's own
        transport only; elsewhere the server's graceful-shutdown timeout is the bound.
        """
        if self.cycle is not None:
            self.cycle.transport.abort()


def _uvicorn_cycle(send: Send) -> Any:
    """uvicorn's httptools request cycle, when ``send`` is its own bound method.

    Then a body write is a plain chunked ``transport.write()`` while the transport
    is not paused, and the hub may do it directly. Anything else (another server,
    or middleware that wraps ``send``) goes through ``send()``.
    """
    if isinstance(send, StartHeaders):  # refetch.mount's: bodies pass unchanged
        send = send.body_send
    cycle = getattr(send, "__self__", None)
    if type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    if getattr(send, "__func__", None) is not getattr(type(cycle), "send", None):
        return None
    names = ("transport", "flow", "disconnected", "chunked_encoding", "response_complete")
    if not all(hasattr(cycle, name) for name in names):
        return None
    return cycle


_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _chunk(body: bytes) -> bytes:
    """``body`` in HTTP/1.1 chunked framing; a fan-out frames the same bytes once."""
    global _last_chunk
    last = _last_chunk  # read once: hubs in other threads may swap it
    if last[0] is body:
        return last[1]
    chunk = b"%x\r\n%b\r\n" % (len(body), body)
    _last_chunk = (body, chunk)
    return chunk


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
