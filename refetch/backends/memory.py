"""An in-process broker: several UpdateServices in one process share one stream.

``UpdateService(types)`` (or ``backend="memory://"``) needs no backend at all: the hub
assigns cursors itself. ``MemoryBackend()`` exists to run the multi-instance code path
without a service (tests, examples), and it is the reference for the contract.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from collections.abc import AsyncIterator, Sequence

from .._exceptions import ConfigurationError
from ._base import Backend, Channel, Entry, StreamGap


class MemoryChannel(Channel):
    """Pub/sub among the hubs of one process that share one ``MemoryBackend``."""

    def __init__(self, listeners: set[asyncio.Queue[bytes]]) -> None:
        self._listeners = listeners

    async def publish(self, payload: bytes) -> None:
        for queue in list(self._listeners):
            queue.put_nowait(bytes(payload))

    async def listen(self) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            yield b""
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)


class MemoryBackend(Backend):
    """A bounded stream (``max_entries``) in this process; positions count from 1."""

    def __init__(self, *, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1")
        self.url = "memory://"
        self.max_entries = max_entries
        self._epoch = secrets.token_hex(4)
        self._entries: deque[Entry] = deque()
        self._last = 0
        self._dropped = 0  # position of the newest entry that was trimmed
        self._changed = asyncio.Condition()
        self._channels: dict[str, set[asyncio.Queue[bytes]]] = {}

    async def connect(self) -> str:
        return self._epoch

    async def head(self) -> int:
        return self._last

    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        positions = []
        for payload in payloads:
            self._last += 1
            self._entries.append(Entry(self._last, bytes(payload)))
            positions.append(self._last)
        while len(self._entries) > self.max_entries:
            self._dropped = self._entries.popleft().position
        async with self._changed:
            self._changed.notify_all()
        return positions

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        while True:
            if after < self._dropped:
                raise StreamGap(f"entries after {after} were trimmed")
            # Positions are contiguous from _dropped + 1, so this is an index.
            batch = list(itertools.islice(self._entries, after - self._dropped, None))
            if batch:
                after = batch[-1].position
                yield batch
                continue
            async with self._changed:
                while self._last <= after:
                    await self._changed.wait()

    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        if after < self._dropped:
            return None
        start = after - self._dropped
        return list(itertools.islice(self._entries, start, max(start, upto - self._dropped)))

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def side_channel(self, name: str) -> Channel:
        return MemoryChannel(self._channels.setdefault(name, set()))
