"""One open stream: what it may see, what it still has to be told, and how to write to it."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any, cast

from ._auth import Principal
from ._types import Send

NEVER = float("-inf")


class Connection:
    """The hub's state for one SSE stream.

    It holds a *pending set* (type -> keys, ``None`` meaning the whole type), never a
    queue, so a slow client costs bounded memory and loses nothing: its next frame
    carries everything merged.
    """

    __slots__ = (
        "busy_since",
        "closing",
        "last_invalidate",
        "last_write",
        "pending",
        "pending_cursor",
        "principal",
        "scheduled",
        "scopes",
        "send",
        "task",
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
        self.principal = principal
        self.scopes = principal.scopes
        self.types = types
        self.task = task
        self.pending: dict[str, set[str] | None] = {}
        self.pending_cursor = ""
        self.last_invalidate = NEVER
        self.last_write = NEVER
        self.writer: asyncio.Task[None] | None = None
        self.busy_since = NEVER
        self.scheduled = False
        self.closing: str | None = None

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
