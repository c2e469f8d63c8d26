"""A deterministic fault schedule: three hubs on one scripted broker whose latencies, failures,
stalls and disconnects hypothesis chooses, with notifies, reauthorizes and sign-outs from every
hub and streams on every hub (the kind of test FoundationDB and TigerBeetle rely on).

Time is virtual: the event loop jumps to its next timer whenever nothing is ready, so a schedule
of a minute of broker trouble runs in milliseconds and the same example always runs the same way.

The invariants, checked on the bytes each client received over all its reconnects:
- every update a client may see arrives (merged, cursor order), or the client got a ``resync``
  after it was notified;
- an update addressed only to scopes a subject lost is never heard by that subject once the
  revocation's ``flush()`` returned, except from its own instance's local delivery while that
  instance could not hear the broker, and then only within the promised fail-closed bound.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import selectors
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from refetch import Principal, ServiceClosed, UpdateService
from refetch._parser import SSEParser
from refetch.backends import Backend, Entry

TYPES = ["projects", "compute"]
SUBJECTS = ["alice", "bob"]
TENANTS = ["tenant:acme", "tenant:globex"]
HUBS = 3
#: The promise (docs/scaling.md): an instance that cannot hear the broker ends its
#: authenticated streams at most ``liveness + 1`` s after it last heard from it; plus the
#: coalescing interval and a turn of the loop for the frame that was already on its way.
LIVENESS = 0.5
FAIL_CLOSED = LIVENESS + 1.0 + 0.05 + 0.01
#: Faults end by then (virtual seconds after the last operation): long enough for
#: every backoff, retry and catch-up to finish.
SETTLE = 60.0


# -- virtual time ------------------------------------------------------------------------


class _Selector(selectors.DefaultSelector):
    """Never blocks: when nothing is ready, the clock jumps to the next timer instead."""

    def __init__(self, clock: VirtualClockLoop) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[Any]:
        self._clock.turns += 1
        if self._clock.turns > 2_000_000:
            raise RuntimeError(
                f"livelock at {self._clock.now}: {self._clock._ready!r:.500} "  # type: ignore[attr-defined]
                f"{self._clock._scheduled[:5]!r:.500}"  # type: ignore[attr-defined]
            )
        ready = super().select(0)
        # Every turn of the loop takes a little time, as on a real clock: code that
        # waits "until the clock passes t" must not spin at t - 1 ulp.
        self._clock.now += 1e-6
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("deadlock: every task waits and no timer is scheduled")
        self._clock.now += timeout
        return []


class VirtualClockLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.now = 0.0
        self.turns = 0
        super().__init__(_Selector(self))

    def time(self) -> float:
        return self.now


# -- the scripted broker -----------------------------------------------------------------


class Broker:
    """The shared stream: positions from 1, appended at once, read by every link."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.changed = asyncio.Event()

    def append(self, payloads: Sequence[bytes]) -> list[int]:
        positions = []
        for payload in payloads:
            self.entries.append(Entry(len(self.entries) + 1, bytes(payload)))
            positions.append(len(self.entries))
        self.changed.set()
        self.changed = asyncio.Event()
        return positions


class Link(Backend):
    """One hub's connection to the broker, with the faults the schedule puts on it.

    - ``refuse(until)``: every call fails (a connection refused, reset or timed out), reads
      in progress end with an error;
    - ``stall(until)``: every call hangs until then (the broker process is stopped: alive,
      silent), then completes (an append is applied when the broker wakes);
    - ``slow(latency, count)``: the next ``count`` appends take ``latency`` (applied halfway);
    - ``lose_ack()``: the next append is applied but its answer is lost (an error);
    - ``cut()``: reads in progress end with an error (the connection dropped), nothing else.

    ``read()`` yields an empty batch after ``liveness`` seconds without entries, as the
    built-in backends do, so a listener can tell a quiet broker from a silent one.
    """

    liveness = LIVENESS

    def __init__(self, broker: Broker) -> None:
        self.url = "scripted://"
        self.broker = broker
        self.refused_until = 0.0
        self.stalled_until = 0.0
        self.latencies: list[float] = []
        self.ack_lost = False
        self.cuts = 0

    @property
    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def _gate(self) -> None:
        while True:
            # With a margin: a float clock may stop a hair short of the deadline.
            if self._now < self.stalled_until - 1e-6:
                await asyncio.sleep(self.stalled_until - self._now)
                continue
            if self._now < self.refused_until - 1e-6:
                raise ConnectionError("refused (scripted)")
            return

    async def connect(self) -> str:
        await self._gate()
        return "e0"

    async def head(self) -> int:
        await self._gate()
        return len(self.broker.entries)

    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        await self._gate()
        latency = self.latencies.pop(0) if self.latencies else 0.0
        await asyncio.sleep(latency / 2)
        await self._gate()  # a stall or refusal that began meanwhile
        positions = self.broker.append(payloads)
        await asyncio.sleep(latency / 2)
        await self._gate()
        if self.ack_lost:
            self.ack_lost = False
            raise ConnectionError("the answer was lost (scripted)")
        return positions

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        cuts = self.cuts
        while True:
            await self._gate()
            if self.cuts != cuts:
                raise ConnectionError("connection dropped (scripted)")
            batch = self.broker.entries[after:]
            if batch:
                after = batch[-1].position
                yield batch
                continue
            changed = self.broker.changed
            try:
                async with asyncio.timeout(self.liveness):
                    await changed.wait()
            except TimeoutError:
                await self._gate()
                yield []

    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        await self._gate()
        return self.broker.entries[after:upto]

    async def ping(self) -> None:
        await self._gate()

    async def aclose(self) -> None:
        return None


# -- clients -----------------------------------------------------------------------------


@dataclass
class Frame:
    at: float
    event: str
    id: str | None
    data: dict[str, Any]


@dataclass
class Client:
    """One browser tab: a stream on one hub that reconnects with its cursor, as clients do."""

    hub: int
    subject: str | None
    frames: list[Frame] = field(default_factory=list)
    cursor: str | None = None
    _parser: SSEParser = field(default_factory=SSEParser)

    async def send(self, message: Any) -> None:
        now = asyncio.get_running_loop().time()
        for event in self._parser.feed(message.get("body", b"")):
            frame = Frame(now, event.event, event.id, json.loads(event.data))
            self.frames.append(frame)
            if event.id is not None:  # the stream's last event id, kept across reconnects
                self.cursor = event.id

    def received(self) -> dict[str, list[Frame]]:
        """key -> the invalidate frames that named it."""
        found: dict[str, list[Frame]] = {}
        for frame in self.frames:
            if frame.event == "invalidate":
                for update in frame.data["updates"]:
                    assert "keys" in update, "max_keys is large: every frame names its keys"
                    for key in update["keys"]:
                        found.setdefault(key, []).append(frame)
        return found


@dataclass
class Notified:
    key: str
    hub: int
    audience: frozenset[str] | None
    at: float


@dataclass
class Revocation:
    subject: str
    scopes: frozenset[str]
    called: float
    since: int = 0  # its index in the subject's history of scopes
    returned: float | None = None
    cursor: str | None = None


def position(cursor: str) -> int:
    return int(cursor.rpartition(".")[2])


# -- the schedule ------------------------------------------------------------------------

hub_index = st.integers(0, HUBS - 1)
audiences = st.one_of(
    st.none(),
    st.sampled_from([frozenset({f"user:{s}"}) for s in SUBJECTS]),
    st.sampled_from([frozenset({t}) for t in TENANTS]),
)
notify = st.tuples(st.just("notify"), hub_index, audiences)
operation = st.one_of(
    *[notify] * 6,
    *[
        st.tuples(
            st.just("reauthorize"),
            hub_index,
            st.sampled_from(SUBJECTS),
            st.frozensets(st.sampled_from(TENANTS)),
        )
    ]
    * 2,
    st.tuples(st.just("close"), hub_index, st.sampled_from(SUBJECTS)),
    st.tuples(st.just("refuse"), hub_index, st.sampled_from([0.3, 1.0, 3.0, 8.0])),
    # A broker that comes back slowly: refused for a while, then slow to answer.
    st.tuples(
        st.just("recover_slowly"),
        hub_index,
        st.sampled_from([0.3, 1.0, 3.0]),
        st.sampled_from([0.6, 1.5, 3.0]),
    ),
    *[st.tuples(st.just("stall"), hub_index, st.sampled_from([0.5, 2.0, 6.0, 15.0]))] * 2,
    st.tuples(st.just("stall_all"), st.just(0), st.sampled_from([0.5, 3.0, 12.0])),
    st.tuples(
        st.just("slow"),
        hub_index,
        st.sampled_from([0.2, 0.6, 1.5, 4.0]),
        st.integers(1, 3),
    ),
    st.tuples(st.just("lose_ack"), hub_index),
    st.tuples(st.just("cut"), hub_index),
)
schedule = st.lists(
    st.tuples(st.sampled_from([0.0, 0.05, 0.2, 0.5, 1.0, 2.5]), operation),
    min_size=5,
    max_size=40,
)


class Run:
    def __init__(self) -> None:
        self.broker = Broker()
        self.links = [Link(self.broker) for _ in range(HUBS)]
        self.hubs = [
            UpdateService(
                TYPES,
                backend=link,
                min_interval=0.05,
                max_keys=10_000,
                close_on_signals=False,
                gc_freeze=False,
            )
            for link in self.links
        ]
        self.scopes = {s: frozenset({f"user:{s}", *TENANTS}) for s in SUBJECTS}
        self.history = {s: [self.scopes[s]] for s in SUBJECTS}
        self.clients = [Client(h, subject) for h in range(HUBS) for subject in [*SUBJECTS, None]]
        self.notified: list[Notified] = []
        self.revocations: list[Revocation] = []
        self.changes: list[Revocation] = []  # reauthorizes and sign-outs, in call order
        self.tasks: list[asyncio.Task[None]] = []

    def principal(self, subject: str | None) -> Principal:
        return Principal() if subject is None else Principal(subject, self.scopes[subject])

    async def connect(self, client: Client) -> None:
        """Stream, and when the hub ends it, reconnect with the cursor (1 s later, then retry)."""
        hub = self.hubs[client.hub]
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn = hub.attach(
                    client.send,
                    self.principal(client.subject),
                    frozenset(TYPES),
                    None if client.cursor is None or not client.frames else client.cursor,
                    loop.time(),
                )
            except ServiceClosed:  # 503: permissions cannot be confirmed now
                await asyncio.sleep(1.0)
                continue
            await conn.ended
            hub.detach(conn)
            await asyncio.sleep(1.0)

    async def write(self, index: int) -> None:
        """Steady writes through every hub (every 0.3 s), so each fault meets some."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1 * index)
        for n in itertools.count():
            key = f"w{index}.{n}"
            audience = (None, frozenset({f"user:{SUBJECTS[n % 2]}"}), frozenset(TENANTS[:1]))[n % 3]
            self.notified.append(Notified(key, index, audience, loop.time()))
            self.hubs[index].notify("compute", key, audience=audience)
            await asyncio.sleep(0.3)

    async def revoke(self, hub: UpdateService, revocation: Revocation) -> None:
        try:
            revocation.cursor = await hub.flush()
        except Exception:
            return  # not confirmed: the app answers an error, nothing is promised
        revocation.returned = asyncio.get_running_loop().time()

    async def apply(self, op: tuple[Any, ...], n: int) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        kind, index = op[0], op[1]
        hub, link = self.hubs[index], self.links[index]
        if kind == "notify":
            key = f"k{n}"
            self.notified.append(Notified(key, index, op[2], now))
            hub.notify("projects", key, audience=op[2])
        elif kind == "reauthorize":
            subject, tenants = op[2], op[3]
            self.scopes[subject] = frozenset({f"user:{subject}", *tenants})
            self.history[subject].append(self.scopes[subject])
            since = len(self.history[subject]) - 1
            revocation = Revocation(subject, self.scopes[subject], now, since)
            self.revocations.append(revocation)
            self.changes.append(revocation)
            hub.reauthorize(subject, self.principal(subject))
            self.tasks.append(loop.create_task(self.revoke(hub, revocation)))
        elif kind == "close":
            hub.close_streams("signed out", subject=op[2])
            closing = Revocation(op[2], frozenset(), now)
            self.changes.append(closing)
            self.tasks.append(loop.create_task(self.revoke(hub, closing)))
        elif kind == "refuse":
            link.refused_until = max(link.refused_until, now + op[2])
            link.cuts += 1
        elif kind == "recover_slowly":
            link.refused_until = max(link.refused_until, now + op[2])
            link.cuts += 1
            link.latencies += [op[3]] * 3
        elif kind == "stall":
            link.stalled_until = max(link.stalled_until, now + op[2])
        elif kind == "stall_all":
            for each in self.links:
                each.stalled_until = max(each.stalled_until, now + op[2])
        elif kind == "slow":
            link.latencies += [op[2]] * op[3]
        elif kind == "lose_ack":
            link.ack_lost = True
        elif kind == "cut":
            link.cuts += 1

    async def run(self, ops: list[tuple[float, tuple[Any, ...]]]) -> None:
        loop = asyncio.get_running_loop()
        for hub in self.hubs:
            await hub.start()
        clients = [loop.create_task(self.connect(c)) for c in self.clients]
        await asyncio.sleep(0.1)
        writers = [loop.create_task(self.write(h)) for h in range(HUBS)]
        try:
            for n, (delay, op) in enumerate(ops):
                await asyncio.sleep(delay)
                await self.apply(op, n)
            for writer in writers:
                writer.cancel()
            await asyncio.sleep(SETTLE)
            assert not [t for t in self.tasks if not t.done()], "a flush() never returned"
            for t in self.tasks:
                t.result()
            self.check()
        finally:
            for task in clients:
                task.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
            for hub in self.hubs:
                await hub.aclose(grace=1.0)

    def expected(self, client: Client, update: Notified) -> bool:
        if client.subject is None or update.audience is None:
            return update.audience is None
        # Seen under every principal the subject had: whatever the order of a concurrent
        # reauthorize, the update may be seen.
        return all(not update.audience.isdisjoint(s) for s in self.history[client.subject])

    def forbidden_after(self, client: Client, update: Notified) -> Revocation | None:
        """The revocation, returned before ``update`` was notified, that hides it for good."""
        if client.subject is None or update.audience is None:
            return None
        for revocation in self.revocations:
            if (
                revocation.subject == client.subject
                and revocation.returned is not None
                and revocation.returned < update.at
                and self.settled_before(revocation)
            ):
                later = self.history[client.subject][revocation.since :]
                if all(update.audience.isdisjoint(s) for s in later):
                    return revocation
        return None

    def settled_before(self, revocation: Revocation) -> bool:
        """Every earlier change of the subject was confirmed before this one was made.

        Otherwise the two are concurrent: the stream's order decides which principal
        holds (docs/scaling.md), not the order of the calls.
        """
        for change in self.changes:
            if change is revocation:
                return True
            if change.subject == revocation.subject and (
                change.returned is None or change.returned > revocation.called
            ):
                return False
        return True

    def check(self) -> None:
        for i, client in enumerate(self.clients):
            who = f"client {i} ({client.subject or 'anonymous'} on hub {client.hub})"
            ids = [position(f.id) for f in client.frames if f.event != "hello" and f.id]
            assert ids == sorted(ids), f"{who}: frames out of cursor order: {ids}"
            resyncs = [f.at for f in client.frames if f.event == "resync"]
            received = client.received()
            for update in self.notified:
                if self.expected(client, update) and update.key not in received:
                    excused = any(at >= update.at for at in resyncs)
                    assert excused, (
                        f"{who} never heard {update.key} (notified on hub {update.hub} at "
                        f"{update.at:.2f}, audience {update.audience}) and got no resync"
                    )
                revocation = self.forbidden_after(client, update)
                if revocation is not None and update.key in received:
                    assert revocation.cursor is not None and revocation.returned is not None
                    for frame in received[update.key]:
                        assert frame.id is not None
                        # Through the stream: never. From the instance's own notifies
                        # while it could not hear the broker (so not the revocation
                        # either): only until it fails closed.
                        assert position(frame.id) < position(revocation.cursor), (
                            f"{who} heard {update.key} ({update.audience}) through the "
                            f"stream after the revocation to {sorted(revocation.scopes)} "
                            f"returned at {revocation.returned:.2f}"
                        )
                        assert frame.at <= revocation.returned + FAIL_CLOSED, (
                            f"{who} heard {update.key} ({update.audience}) at {frame.at:.2f}, "
                            f"{frame.at - revocation.returned:.2f} s after the revocation to "
                            f"{sorted(revocation.scopes)} returned: its instance did not fail "
                            "closed in time"
                        )


# derandomize: the same schedules on every run (CI's verdict does not depend on luck).
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# Besides what hypothesis generates, the two schedules of the issue that found these bugs
# with real brokers (both fail on the code before the fix): a broker that comes back slowly
# while an instance writes (the update notified during the recovery append was kept until
# the next outage), and a revocation while the instance of the revoked stream is stalled
# (its local notifies reached the revoked scopes until its listener's 12 s read deadline).
@example(
    [
        (0.0, ("notify", 0, None)),
        (0.0, ("recover_slowly", 0, 0.3, 0.6)),
        (0.5, ("notify", 0, None)),
        (0.0, ("notify", 1, None)),
        (0.0, ("notify", 2, None)),
    ]
)
@example(
    [
        (0.5, ("stall", 1, 15.0)),
        (0.5, ("reauthorize", 0, "bob", frozenset())),
        (3.0, ("notify", 1, frozenset({"tenant:acme"}))),
        (3.0, ("notify", 1, frozenset({"tenant:acme"}))),
        (0.0, ("notify", 2, None)),
    ]
)
@given(schedule)
def test_every_stream_hears_what_it_may_or_a_resync_under_any_broker_timing(
    ops: list[tuple[float, tuple[Any, ...]]],
) -> None:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        runner.run(Run().run(ops))


async def revoke_during_stall(timeouts: Sequence[float | None]) -> list[tuple[str, float]]:
    """Two hubs, the broker stalled: what each revoking ``flush()`` raised, and when."""
    broker = Broker()
    links = [Link(broker), Link(broker)]
    outcomes: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    async with (
        UpdateService(TYPES, backend=links[0], close_on_signals=False, gc_freeze=False) as a,
        UpdateService(TYPES, backend=links[1], close_on_signals=False, gc_freeze=False),
    ):
        await a.flush()
        for link in links:
            link.stalled_until = loop.time() + 30
        for timeout in timeouts:
            a.reauthorize("bob", Principal.of("bob", ["user:bob"]))
            started = loop.time()
            try:
                await (a.flush() if timeout is None else a.flush(timeout=timeout))
                outcomes.append(("returned", loop.time() - started))
            except Exception as exc:
                outcomes.append((type(exc).__name__, loop.time() - started))
    return outcomes


def test_flush_on_a_stalled_broker_raises_publish_error_within_its_timeout() -> None:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        (default, after_default), (short, after_short) = runner.run(
            revoke_during_stall([None, 0.5])
        )
    # Without a timeout: the publish timeout (10 s) at most, and PublishError, not the
    # TimeoutError that escaped before (the portal catches PublishError).
    assert default == "PublishError" and after_default <= 10.1
    # With one: within it (at once when the instance already knows the broker is away).
    assert short == "PublishError" and after_short <= 0.6


async def change_kept_then_newer_revocation() -> list[Client]:
    """Hub 0 widens alice while it cannot publish; hub 1 then revokes her and is confirmed."""
    run = Run()
    loop = asyncio.get_running_loop()
    for hub in run.hubs:
        await hub.start()
    clients = [loop.create_task(run.connect(c)) for c in run.clients]
    try:
        await asyncio.sleep(0.1)
        await run.apply(("refuse", 0, 1.0), 0)
        await run.apply(("reauthorize", 0, "alice", frozenset(TENANTS)), 1)
        await asyncio.sleep(0.5)
        await run.apply(("reauthorize", 1, "alice", frozenset()), 2)
        await asyncio.sleep(SETTLE)  # hub 0 is back and published what it kept
        run.hubs[1].notify("projects", "after", audience=TENANTS[:1])
        run.hubs[1].notify("projects", "mine", audience=["user:alice"])
        await asyncio.sleep(5)
        assert run.revocations[1].returned is not None  # the revocation was confirmed
        return [c for c in run.clients if c.subject == "alice"]
    finally:
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        for hub in run.hubs:
            await hub.aclose(grace=1.0)


def test_a_change_kept_during_an_outage_never_undoes_a_newer_one() -> None:
    with asyncio.Runner(loop_factory=VirtualClockLoop) as runner:
        alice = runner.run(change_kept_then_newer_revocation())
    for client in alice:
        received = client.received()
        assert "mine" in received  # the stream is live: "after" was filtered, not slow
        assert "after" not in received, f"alice on hub {client.hub} hears acme again"
