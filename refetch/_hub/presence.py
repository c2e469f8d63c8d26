"""Presence: which interests some stream on *any* instance would hear, for on-demand pollers.

Each instance counts its own streams (``_fanout/demand.py``) and announces the set of
interest ids they make wanted on the backend's ``Channel`` (Redis PUBLISH, PostgreSQL
NOTIFY, a NATS subject). Traffic is per change of that set, never per connect: a stream that
joins an interest already wanted here sends nothing. Announcements are coalesced: a gain (an
interest wanted here for the first time) goes out at once, but at most one message per
``min_gap`` (0.1 s); a loss waits ``settle`` (0.25 s) in case a stream comes back (a page
reload). Every ``ttl / 3`` seconds an instance repeats its set; what is not repeated within
``ttl`` is forgotten, so an instance that dies (kill -9) stops counting after ``ttl``. A new
listener asks the others to announce at once (``q``), and a closing instance says ``bye``.

Message (JSON): ``{"v": 1, "i": <instance>, "a": [<interest id>, ...]}``, ``{"v": 1, "i":
<instance>, "q": 1}`` or ``{"v": 1, "i": <instance>, "bye": 1}``. Interest ids are hashes
(``_demand.Interest.id``): no type, key or scope goes over the wire.

Without a channel (no backend, or ``memory://``) the instance knows only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from .._backoff import Backoff
from .._cancel import cancel_until_gone
from .._demand import Interest
from .._fanout.demand import LocalDemand
from ..backends._base import Channel

logger = logging.getLogger("refetch.presence")

#: Seconds an instance's announcement counts without being repeated.
TTL = 15.0
MIN_GAP = 0.1
SETTLE = 0.25


class DemandWatch:
    """What an on-demand poller sees of one interest: who listens, here and elsewhere.

    ``on_change(wanted)`` is called on the event loop whenever ``wanted`` flips.
    """

    def __init__(
        self, presence: Presence, interest: Interest, on_change: Callable[[bool], None] | None
    ) -> None:
        self._presence = presence
        self.interest = interest
        self.on_change = on_change
        self.closed = False

    @property
    def listeners(self) -> int:
        """Open streams on this instance that would hear the notify."""
        return self._presence.local.count(self.interest.id)

    @property
    def instances(self) -> int:
        """Other instances that announced at least one such stream (within their TTL)."""
        return self._presence.remote_count(self.interest.id)

    @property
    def wanted(self) -> bool:
        """Someone, on any instance, would hear the notify."""
        return self._presence.wanted(self.interest.id)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._presence.unwatch(self)


class Presence:
    def __init__(
        self,
        local: LocalDemand,
        channel: Channel | None = None,
        *,
        ttl: float = TTL,
        min_gap: float = MIN_GAP,
        settle: float = SETTLE,
    ) -> None:
        self.local = local
        self.channel = channel
        self.ttl = ttl
        self.min_gap = min_gap
        self.settle = settle
        self.instance = secrets.token_hex(6)
        local.on_flip = self._local_flip
        self._watches: dict[str, list[DemandWatch]] = {}
        self._last: dict[str, bool] = {}
        #: instance -> (interest ids it announced, loop time its announcement expires)
        self._remote: dict[str, tuple[frozenset[str], float]] = {}
        self._remote_counts: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()
        self._gained = asyncio.Event()
        self._sweep: asyncio.TimerHandle | None = None
        self._sent: frozenset[str] | None = None
        #: Counters for statistics: messages sent and heard.
        self.announced = 0
        self.heard = 0

    # -- what pollers ask ------------------------------------------------------------

    def watch(self, interest: Interest, on_change: Callable[[bool], None] | None) -> DemandWatch:
        watch = DemandWatch(self, interest, on_change)
        self._watches.setdefault(interest.id, []).append(watch)
        self._last.setdefault(interest.id, False)
        self.local.register(interest)
        self._flipped(interest.id)
        return watch

    def unwatch(self, watch: DemandWatch) -> None:
        watches = self._watches.get(watch.interest.id, [])
        if watch in watches:
            watches.remove(watch)
            if not watches:
                del self._watches[watch.interest.id]
                self._last.pop(watch.interest.id, None)
        self.local.unregister(watch.interest)

    def wanted(self, interest_id: str) -> bool:
        return self.local.count(interest_id) > 0 or self._remote_counts.get(interest_id, 0) > 0

    def remote_count(self, interest_id: str) -> int:
        return self._remote_counts.get(interest_id, 0)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.channel is None:
            return
        self._tasks = [
            asyncio.create_task(self._listen(), name="refetch presence listener"),
            asyncio.create_task(self._announce(), name="refetch presence announcer"),
        ]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        if tasks:
            await cancel_until_gone(tasks, grace=2.0)
        if self._sweep is not None:
            self._sweep.cancel()
        if self.channel is not None and tasks:
            # The others forget this instance at once instead of after its TTL.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.channel.publish(self._message(bye=1))
            with contextlib.suppress(Exception):
                await self.channel.aclose()

    # -- local changes ---------------------------------------------------------------

    def _local_flip(self, interest_id: str, wanted_here: bool) -> None:
        self._changed.set()
        if wanted_here:
            self._gained.set()
        self._flipped(interest_id)

    def _flipped(self, *ids: str) -> None:
        for interest_id in ids:
            watches = self._watches.get(interest_id)
            if not watches:
                continue
            now = self.wanted(interest_id)
            if now == self._last.get(interest_id):
                continue
            self._last[interest_id] = now
            for watch in list(watches):
                if watch.on_change is not None:
                    try:
                        watch.on_change(now)
                    except Exception:
                        logger.exception("a demand watcher raised")

    # -- the wire --------------------------------------------------------------------

    def _message(self, **fields: Any) -> bytes:
        return json.dumps({"v": 1, "i": self.instance, **fields}, separators=(",", ":")).encode()

    async def _publish(self, payload: bytes) -> None:
        assert self.channel is not None
        try:
            async with asyncio.timeout(5.0):
                await self.channel.publish(payload)
            self.announced += 1
        except Exception as exc:
            logger.warning("presence: announcing failed: %r", exc)

    async def _announce(self) -> None:
        """Send the local set when it changed (coalesced) and every ``ttl / 3`` seconds."""
        loop = asyncio.get_running_loop()
        last_sent = float("-inf")
        refresh = self.ttl / 3
        while True:
            changed = False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(refresh):
                    await self._changed.wait()
                    changed = True
            if self._changed.is_set() and not self._gained.is_set():
                # Only losses: a stream may be back in a moment (a reload).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.settle):
                        await self._gained.wait()
            gap = last_sent + self.min_gap - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)
            self._changed.clear()
            self._gained.clear()
            wanted = self.local.wanted()
            if wanted == self._sent and (changed or not wanted):
                # Back where it was (a stream left and another came), or nothing to repeat.
                continue
            payload = self._message(a=sorted(wanted))
            if len(payload) > self.channel.max_payload:  # type: ignore[union-attr]
                logger.warning(
                    "presence: %d wanted interests do not fit one message of the backend; "
                    "the others will not see this instance's listeners",
                    len(wanted),
                )
                continue
            last_sent = loop.time()
            self._sent = wanted
            await self._publish(payload)

    async def _listen(self) -> None:
        assert self.channel is not None
        backoff = Backoff(0.1, 5.0)
        while True:
            try:
                async for payload in self.channel.listen():
                    if not payload:  # subscribed: ask the others for their sets
                        backoff.reset()
                        await self._publish(self._message(q=1))
                        continue
                    self._receive(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning("presence: listening failed, again in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)

    def _receive(self, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            instance = message["i"]
            if not isinstance(instance, str) or message.get("v") != 1:
                return
        except (ValueError, KeyError, TypeError):
            logger.debug("presence: ignored a malformed message")
            return
        if instance == self.instance:
            return
        self.heard += 1
        if message.get("q"):
            if self.local.wanted():
                self._sent = None  # answer even if nothing changed
                self._changed.set()
                self._gained.set()
            return
        if message.get("bye"):
            self._set_remote(instance, frozenset(), None)
            return
        ids = message.get("a")
        if not isinstance(ids, list):
            return
        self._set_remote(instance, frozenset(i for i in ids if isinstance(i, str)), self.ttl)

    def _set_remote(self, instance: str, ids: frozenset[str], ttl: float | None) -> None:
        loop = self._loop or asyncio.get_running_loop()
        old = self._remote.pop(instance, (frozenset(), 0.0))[0]
        if ids:
            expires = loop.time() + (ttl or 0.0)
            self._remote[instance] = (ids, expires)
            if self._sweep is None:
                self._sweep = loop.call_at(expires + 0.01, self._expire)
        for gone in old - ids:
            count = self._remote_counts[gone] - 1
            if count:
                self._remote_counts[gone] = count
            else:
                del self._remote_counts[gone]
        for new in ids - old:
            self._remote_counts[new] = self._remote_counts.get(new, 0) + 1
        self._flipped(*(old ^ ids))

    def _expire(self) -> None:
        self._sweep = None
        loop = self._loop or asyncio.get_running_loop()
        now = loop.time()
        for instance, (_, expires) in list(self._remote.items()):
            if expires <= now:
                logger.info("presence: instance %s went silent; its listeners expire", instance)
                self._set_remote(instance, frozenset(), None)
        if self._remote:
            first = min(expires for _, expires in self._remote.values())
            self._sweep = loop.call_at(first + 0.01, self._expire)
