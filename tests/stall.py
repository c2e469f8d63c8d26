"""A broker that stalls while two instances write: who ended up silently stale.

One run: a private broker (``tests/brokers.py``), two ``UpdateService`` instances on it, each
behind a real uvicorn server on a loopback port, ``clients`` real SSE streams on each. Both
instances notify a new key every ``interval`` seconds; after ``before`` seconds the broker is
frozen (``SIGSTOP``) for ``stall`` seconds, then thawed, and the writes go on for ``after``
seconds. Then each instance publishes a last update (retried until the broker takes it) that
every client must receive; it comes after every earlier notify of that instance.

A client is *silently stale* when it got no ``resync`` and yet misses a key that was notified,
or its frames' cursors went backwards, or it never got the last updates. Separately, a client
that connects afterwards to a third, fresh instance with the cursor from before the writes must
be replayed every key from the broker: what was accepted was published, late but not never.
And a client is *starved* when a notify of its own instance, made during the stall well before
the thaw, reached it only after the thaw: its instance needs no broker to tell it.

Each instance also has one *authenticated* client (subject ``bob``). An instance that cannot
hear the broker cannot hear of revocations made elsewhere, so it must end that stream and
refuse its reconnects (``503 unconfirmed``) soon after the freeze (*fail closed*; docs/scaling.md,
"Revocation across instances"); once the broker is back the client reconnects with its cursor
and, like every other client, must miss nothing. It is not judged for starvation: its instance
stops serving it on purpose.

Used by ``tests/test_broker_stalls.py`` (a few small runs) and ``scripts/broker-stalls`` (many).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from refetch import ANONYMOUS, Principal, PublishError, UpdatesEndpoint, UpdateService
from refetch.client import Frame, listen

from .brokers import PrivateBroker
from .conftest import TYPES, serve

#: Big enough that a frame never folds the keys of a burst into one type-wide invalidation:
#: every key a client saw stays visible, so "missed a key" is exact.
MAX_KEYS = 100_000
#: The request header that makes a stream authenticated (as ``bob``) in these runs.
USER_HEADER = "x-stall-user"


@dataclass
class Outcome:
    kind: str
    stall: float
    updates: int = 0
    clients: int = 0
    resynced: int = 0
    #: One line per silently stale client: which instance, what it missed.
    stale: list[str] = field(default_factory=list)
    #: Keys the broker did not replay to a fresh client resuming from before the writes.
    unpublished: list[str] = field(default_factory=list)
    #: Seconds from the freeze until each instance first said its listener / publisher was
    #: down (watched until the last updates arrived, so also after the thaw), or None.
    detected: dict[str, float | None] = field(default_factory=dict)
    #: The longest a client waited for a notify of its own instance (the broker is not
    #: needed for that: a stall must not starve local clients beyond the fallback bound).
    local_delay: float = 0.0
    #: One line per client that heard a notify of its own instance only after the thaw,
    #: although it was made more than ``local_bound`` seconds before it.
    starved: list[str] = field(default_factory=list)
    #: Seconds from the freeze until each instance ended its authenticated client's stream
    #: (fail closed; when the client read the end of the response), or None: never.
    closed: dict[str, float | None] = field(default_factory=dict)
    #: One line per instance that still served its authenticated client ``closed_bound``
    #: seconds into a stall at least that long, or opened a stream for it after that.
    unclosed: list[str] = field(default_factory=list)
    #: Seconds from the last write (``after`` seconds after the thaw) until both last
    #: updates reached every client.
    recovered: float | None = None

    @property
    def ok(self) -> bool:
        return not (self.stale or self.unpublished or self.starved or self.unclosed)

    def summary(self) -> str:
        detected = ", ".join(
            f"{k} {'-' if v is None else f'{v:.1f}s'}" for k, v in self.detected.items()
        )
        closed = ", ".join(
            f"{k} {'-' if v is None else f'{v:.1f}s'}" for k, v in self.closed.items()
        )
        recovered = "-" if self.recovered is None else f"{self.recovered:.1f}s"
        return (
            f"{self.kind} stall {self.stall:.1f}s: {self.updates} updates, {self.clients} "
            f"clients, {len(self.stale)} silently stale, {self.resynced} resynced, "
            f"{len(self.unpublished)} never published, {len(self.starved)} starved, "
            f"{len(self.unclosed)} not failed closed; "
            f"detected: {detected}; authenticated streams ended: {closed}; "
            f"local clients waited at most {self.local_delay:.1f}s; "
            f"all caught up {recovered} after the last write"
        )


def stream_url(broker: PrivateBroker, name: str) -> str:
    option = "table" if broker.kind == "postgres" else "stream"
    return f"{broker.url}?{option}={name}"


class Client:
    """One real SSE client that reconnects with its cursor, as browsers do.

    With a ``user`` it is authenticated as that subject. ``opened`` and ``ended`` hold when
    each of its streams began (``hello``) and when the server ended it (the response's end,
    read through ``_Timed``: ``listen()`` reconnects without saying when).
    """

    def __init__(
        self,
        url: str,
        instance: str,
        last_event_id: str | None = None,
        *,
        user: str | None = None,
    ) -> None:
        self.instance = instance
        self.user = user
        self.frames: list[Frame] = []
        self.heard: dict[str, float] = {}  # key -> when first heard
        self.opened: list[float] = []
        self.ended: list[float] = []
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0), transport=_Timed(self.ended))
        self._iterator = listen(
            url,
            headers={USER_HEADER: user} if user else None,
            client=self._http,
            backoff=0.1,
            max_backoff=0.5,
            last_event_id=last_event_id,
        )
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self._iterator:
            self.frames.append(frame)
            now = time.monotonic()
            if frame.event == "hello":
                self.opened.append(now)
            for update in frame.updates if frame.event == "invalidate" else ():
                for key in update.keys or ():
                    self.heard.setdefault(key, now)

    async def aclose(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self._iterator.aclose()
        await self._http.aclose()

    def keys(self) -> set[str]:
        return set(self.heard)

    @property
    def resynced(self) -> bool:
        return any(f.event == "resync" for f in self.frames)

    def backwards(self) -> str | None:
        """The first frame whose cursor is older than the one before it, if any."""
        last: tuple[str, int] | None = None
        for frame in self.frames:
            # <epoch>.<position> (docs/protocol.md): refetch._cursor is private to the library.
            epoch, _, position = (frame.id or "").rpartition(".")
            if not epoch or not position.isdigit():
                continue
            cursor = (epoch, int(position))
            if last is not None and cursor[0] == last[0] and cursor[1] < last[1]:
                return f"{frame.id} after {last[0]}.{last[1]}"
            last = cursor
        return None


class _Timed(httpx.AsyncBaseTransport):
    """A transport that appends to ``ended`` the moment a response's body ends."""

    def __init__(self, ended: list[float]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._ended = ended

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_TimedBody(response.stream, self._ended),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TimedBody(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, ended: list[float]) -> None:
        self._inner = inner
        self._ended = ended

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk
        self._ended.append(time.monotonic())  # the server ended it (not an error, not us)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def wait_for(predicate: Callable[[], object], timeout: float) -> bool:
    """Whether ``predicate()`` came true within ``timeout`` (a run reports, it does not raise)."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        return False
    return True


def _authenticate(scope: Mapping[str, Any]) -> Principal:
    """The ``x-stall-user`` header's subject, else anonymous (nothing to revoke)."""
    user = dict(scope["headers"]).get(USER_HEADER.encode())
    return ANONYMOUS if user is None else Principal.of(user.decode(), ["tenant:acme"])


@asynccontextmanager
async def instance(url: str) -> AsyncIterator[tuple[UpdateService, str]]:
    hub = UpdateService(
        TYPES, backend=url, min_interval=0.02, max_keys=MAX_KEYS, close_on_signals=False
    )
    async with hub, serve(UpdatesEndpoint(hub, authenticate=_authenticate)) as http:
        yield hub, f"{http}/updates"


async def _watch(
    hubs: dict[str, UpdateService], since: float, into: dict[str, float | None]
) -> None:
    """Record when each instance first says its listener or publisher is down."""
    for name in hubs:
        into[f"{name} listener"] = into[f"{name} publisher"] = None
    while True:
        for name, hub in hubs.items():
            stats = hub.statistics()
            for part, down in (
                ("listener", stats.listener_down),
                ("publisher", stats.publisher_down),
            ):
                if down is not None and into[f"{name} {part}"] is None:
                    into[f"{name} {part}"] = time.monotonic() - since
        await asyncio.sleep(0.01)


async def _last_update(hub: UpdateService, key: str, timeout: float) -> None:
    """Publish ``key`` once the broker takes it (``publish()`` fails fast while it is away)."""
    async with asyncio.timeout(timeout):
        while True:
            try:
                await hub.publish("gardener", key)
                return
            except PublishError:
                await asyncio.sleep(0.1)


async def run(
    broker: PrivateBroker,
    *,
    stall: float,
    clients: int = 5,
    interval: float = 0.2,
    before: float = 1.0,
    after: float = 1.5,
    settle: float = 30.0,
    local_bound: float = 2.0,
    closed_bound: float = 3.0,
) -> Outcome:
    """One stall; see the module docstring. ``settle`` bounds the wait for the last updates.

    ``local_bound``: a client must hear a notify of its own instance within this long even
    while the broker is frozen (the docs promise 1 s of publish stall; the rest is margin).
    ``closed_bound``: in a stall at least this long, each instance must have ended its
    authenticated stream within this long of the freeze (the docs promise 1.5 s after it
    last heard from the broker, which is at most 0.5 s before; the rest is margin).
    """
    outcome = Outcome(broker.kind, stall)
    url = stream_url(broker, f"stall_{uuid.uuid4().hex[:12]}")
    notified: dict[str, float] = {}  # key -> when notified
    async with AsyncExitStack() as stack:
        hubs: dict[str, UpdateService] = {}
        urls: dict[str, str] = {}
        for name in ("A", "B"):
            hubs[name], urls[name] = await stack.enter_async_context(instance(url))
        start = hubs["A"].cursor
        readers = [Client(urls[name], name) for name in hubs for _ in range(clients)]
        readers += [Client(urls[name], name, user="bob") for name in hubs]
        stack.push_async_callback(lambda: asyncio.gather(*(c.aclose() for c in readers)))
        if not await wait_for(lambda: all(c.frames for c in readers), 10):
            raise RuntimeError("the clients' streams did not open")

        async def write() -> None:
            for i in range(1_000_000):
                for name, hub in hubs.items():
                    key = f"{name}{i}"
                    hub.notify("projects", key)
                    notified[key] = time.monotonic()
                await asyncio.sleep(interval)

        writer = asyncio.create_task(write())
        watcher: asyncio.Task[None] | None = None
        lasts = {f"end-{name}" for name in hubs}
        try:
            await asyncio.sleep(before)
            broker.freeze()
            frozen_at = time.monotonic()
            watcher = asyncio.create_task(_watch(hubs, frozen_at, outcome.detected))
            try:
                await asyncio.sleep(stall)
            finally:
                broker.thaw()
            thawed_at = time.monotonic()
            await asyncio.sleep(after)
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            stopped_at = time.monotonic()

            with contextlib.suppress(TimeoutError):
                await asyncio.gather(
                    *(_last_update(hub, f"end-{name}", settle) for name, hub in hubs.items())
                )
            if await wait_for(
                lambda: all(c.resynced or lasts <= c.keys() for c in readers), settle
            ):
                outcome.recovered = time.monotonic() - stopped_at
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if watcher is not None:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)

        outcome.updates = len(notified)
        outcome.clients = len(readers)
        expected = set(notified) | lasts
        for client in readers:
            if client.user is None:
                continue
            ends = [at - frozen_at for at in client.ended if at >= frozen_at]
            outcome.closed[client.instance] = ended = min(ends, default=None)
            if stall < closed_bound:
                continue  # too short to judge
            if ended is None or ended > closed_bound:
                outcome.unclosed.append(
                    f"{client.instance} still served {client.user}'s authenticated stream "
                    f"{closed_bound:.1f}s into a {stall:.1f}s stall (ended: "
                    f"{'never' if ended is None else f'{ended:.1f}s'})"
                )
            reopened = [at for at in client.opened if frozen_at + closed_bound < at < thawed_at]
            if reopened:
                outcome.unclosed.append(
                    f"{client.instance} opened a stream for {client.user} "
                    f"{reopened[0] - frozen_at:.1f}s into the stall, unable to confirm"
                )
        for i, client in enumerate(readers):
            if client.user is not None:
                continue  # its instance stops serving it on purpose (fail closed)
            for key, at in client.heard.items():
                if key[0] == client.instance and key in notified:
                    outcome.local_delay = max(outcome.local_delay, at - notified[key])
            after_thaw = [
                key
                for key, at in notified.items()
                if key[0] == client.instance
                and frozen_at <= at <= thawed_at - local_bound
                and client.heard.get(key, thawed_at + 1) > thawed_at
            ]
            if after_thaw:
                outcome.starved.append(
                    f"client {i} on {client.instance}: {len(after_thaw)} of its instance's notifies "
                    f"made during the stall heard only after the thaw ({', '.join(after_thaw[:5])})"
                )
        for i, client in enumerate(readers):
            if client.resynced:
                outcome.resynced += 1
                continue
            missed = sorted(expected - client.keys(), key=_order)
            backwards = client.backwards()
            if missed or backwards:
                outcome.stale.append(
                    f"client {i} on {client.instance}: missed {len(missed)} "
                    f"({', '.join(missed[:8])}{'...' if len(missed) > 8 else ''})"
                    + (f"; cursor went backwards: {backwards}" if backwards else "")
                )

        # A fresh instance, a client resuming from before the writes: the broker replays all.
        async with instance(url) as (_, late_url):
            late = Client(late_url, "C", last_event_id=start)
            try:
                await wait_for(lambda: late.resynced or expected <= late.keys(), 15)
                if late.resynced:
                    outcome.unpublished.append("the late client got resync instead of a replay")
                else:
                    outcome.unpublished.extend(sorted(expected - late.keys(), key=_order))
            finally:
                await late.aclose()
    return outcome


def _order(key: str) -> tuple[str, int]:
    head, _, number = key.rpartition("-") if key.startswith("end-") else (key[0], "", key[1:])
    return (head, int(number) if number.isdigit() else -1)
