"""One open stream: what it may see, what it still has to be told, and how to write to it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .._auth import Principal
from .._changes import Changes, add_change
from .._demand import NO_WATCH, Watch
from .._types import Send
from .send import start_send
from .uvicorn import abort, uvicorn_cycle, write_direct

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
    #: ``Principal.session``: the browser session (login) it belongs to, or None.
    session: str | None = None


class State:
    """Where a connection is in its write cycle; exactly one at a time."""

    IDLE = 0  #: nothing to write: it waits in the fan-out's idle sets
    DUE = 1  #: something to write: queued for the next pass or a coalescing timer
    WRITING = 2  #: a write waits for the client's socket: changes collect meanwhile
    REPLAYING = 3  #: its catch-up replay is being fetched: changes collect meanwhile
    CLOSED = 4  #: ended; ``closing`` says why
    BUSY = (WRITING, REPLAYING)


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
        "farewell",
        "frames",
        "heard",
        "inflight",
        "last_invalidate",
        "last_write",
        "pending",
        "pending_cursor",
        "pending_since",
        "principal",
        "send",
        "since",
        "state",
        "types",
        "watch",
    )

    def __init__(
        self,
        send: Send,
        principal: Principal,
        types: frozenset[str],
        watch: Watch = NO_WATCH,
    ) -> None:
        self.send = send
        #: uvicorn's request cycle when ``send`` is its own: written directly (uvicorn.py).
        self.direct = uvicorn_cycle(send)
        self.principal = principal
        self.types = types
        #: The keys it watches per type (``watch=``): who it is demand for, not what it hears.
        self.watch = watch
        #: When it was opened (wall clock, for people) and frames written so far.
        self.since = time.time()
        self.frames = 0
        self.pending: Changes = {}
        #: time.monotonic() of the oldest update in ``pending``: how long it waited
        #: when the frame goes out (the latency histogram).
        self.pending_since = 0.0
        self.pending_cursor = ""
        #: The broadcast serial this stream has heard everything up to.
        self.heard = 0
        self.last_invalidate = NEVER
        self.last_write = NEVER
        self.state = State.IDLE
        #: The write task (WRITING) or catch-up fetch (REPLAYING) in flight.
        self.inflight: asyncio.Future[Any] | None = None
        self.busy_since = NEVER
        self.closing: str | None = None
        #: The last bytes of a stream the hub ended for everyone (its ``reconnect`` frame):
        #: its owner finishes the response with them.
        self.farewell = b""
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

    def drop(self) -> None:
        """Cut the socket under a write that cannot complete: the client stopped reading.

        Possible on uvicorn's own transport only; elsewhere the server's graceful
        shutdown timeout is the bound.
        """
        if self.direct is not None:
            abort(self.direct)

    def write(self, body: bytes, now: float) -> asyncio.Task[None] | None:
        """Write ``body`` now: straight to uvicorn's transport when possible, else
        through ``send()`` (``start_send``); returns the task of a write that has to
        wait for the socket, which the caller owns."""
        self.last_write = now
        direct = self.direct
        if direct is not None and write_direct(direct, body):
            return None
        writer = start_send(self.send, body)
        if writer is not None:
            self.busy_since = now
        return writer
