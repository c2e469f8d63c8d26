"""Revocation across instances: who hears what changes on every instance, in order with the
updates, on every backend (two real uvicorn processes on Redis, PostgreSQL and NATS; two hubs
in one process on the shared in-memory backend). Checked on what the clients receive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refetch import ConfigurationError, Principal, UpdateService
from refetch._codec import NO_SUBJECT, encode_entry
from refetch._control import CloseStreams
from refetch._parser import SSEParser
from refetch.backends import MemoryBackend

from .conftest import (
    TYPES,
    Recorder,
    SharedStream,
    Stream,
    require_service,
    serve,
    service_port,
    unique_name,
    wait_for,
)
from .instance_app import build
from .test_multi_instance import Instance

ACME = "tenant:acme"


class Node(Protocol):
    url: str


async def post(node: Node, path: str, **params: str) -> Any:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{node.url}{path}", params=params)
    r.raise_for_status()
    return r.json()


def stream(node: Node, token: str | None = None, **kwargs: Any) -> Stream:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    return Stream(f"{node.url}/updates", headers=headers, **kwargs)


class InProcess:
    """One instance in this process: a hub on a shared MemoryBackend behind real uvicorn."""

    def __init__(self, url: str) -> None:
        self.url = url


@pytest.fixture(params=["memory", "redis", "postgres", "nats"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Node, Node]]:
    kind: str = request.param
    async with AsyncExitStack() as stack:
        if kind == "memory":
            backend = MemoryBackend()
            nodes: list[Node] = []
            for _ in range(2):
                hub = UpdateService(
                    TYPES, backend=backend, min_interval=0.02, close_on_signals=False
                )
                await stack.enter_async_context(hub)
                nodes.append(InProcess(await stack.enter_async_context(serve(build(hub)))))
            yield nodes[0], nodes[1]
            return
        require_service(kind)
        shared = SharedStream(kind, unique_name("refetch_rv"))
        stack.push_async_callback(shared.cleanup)
        a = await stack.enter_async_context(Instance(shared.url()))
        b = await stack.enter_async_context(Instance(shared.url()))
        yield a, b


async def test_reauthorize_on_one_instance_stops_the_old_scopes_on_the_other(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    async with (
        stream(b, f"bob:{ACME},user:bob") as bob_on_b,
        stream(a, f"bob:{ACME},user:bob") as bob_on_a,
    ):
        # Before: bob hears acme's updates on both instances.
        await post(a, "/notify", type="projects", key="before", audience=ACME)
        await wait_for(
            lambda: bob_on_b.saw("projects", "before") and bob_on_a.saw("projects", "before"), 10
        )

        # Removed from acme through A; A answers once every instance can hear it.
        await post(a, "/reauthorize", subject="bob", scopes="user:bob")
        # Every later acme update, from either instance, reaches bob nowhere...
        await post(b, "/notify", type="projects", key="leak-b", audience=ACME)
        await post(a, "/notify", type="projects", key="leak-a", audience=ACME)
        # ...while what he may still see arrives (and, being later in the stream, proves
        # the two before it were filtered, not merely slow).
        await post(b, "/notify", type="projects", key="mine", audience="user:bob")
        await wait_for(
            lambda: bob_on_b.saw("projects", "mine") and bob_on_a.saw("projects", "mine"), 10
        )
        for client in (bob_on_a, bob_on_b):
            assert not client.saw("projects", "leak-a")
            assert not client.saw("projects", "leak-b")


async def test_a_wider_principal_reaches_the_other_instance_too(pair: tuple[Node, Node]) -> None:
    a, b = pair
    async with stream(b, "bob:user:bob") as bob_on_b:
        await post(a, "/reauthorize", subject="bob", scopes=f"user:bob,{ACME}")
        await post(a, "/notify", type="compute", key="now-visible", audience=ACME)
        await wait_for(lambda: bob_on_b.saw("compute", "now-visible"), 10)


async def test_close_streams_of_a_subject_ends_them_on_every_instance(
    pair: tuple[Node, Node],
) -> None:
    a, b = pair
    async with (
        stream(b, f"bob:{ACME}") as bob_on_b,
        stream(a, f"bob:{ACME}") as bob_on_a,
        stream(b, f"carol:{ACME}") as carol_on_b,
    ):
        await post(a, "/close", subject="bob")
        # Both of bob's streams were ended (the client comes back with a new hello)...
        await wait_for(
            lambda: any(f.event == "hello" and f.reconnected for f in bob_on_b.frames), 10
        )
        await wait_for(
            lambda: any(f.event == "hello" and f.reconnected for f in bob_on_a.frames), 10
        )
        # ...carol's was not.
        await post(b, "/notify", type="projects", key="after", audience=ACME)
        await wait_for(lambda: carol_on_b.saw("projects", "after"), 10)
        assert not any(f.reconnected for f in carol_on_b.frames)


async def test_close_streams_of_a_session_ends_only_that_browser_on_every_instance(
    pair: tuple[Node, Node],
) -> None:
    """Sign-out in one browser: bob's streams of session s1 end on both instances; his
    other browser (s2) and carol carry on and keep hearing updates."""
    a, b = pair
    async with (
        stream(a, f"bob@s1:{ACME}") as s1_on_a,
        stream(b, f"bob@s1:{ACME}") as s1_on_b,
        stream(a, f"bob@s2:{ACME}") as s2_on_a,
        stream(b, f"carol@s3:{ACME}") as carol_on_b,
    ):
        assert (await post(a, "/close", session="s1"))["ended"] == 1  # the one on A
        for client in (s1_on_a, s1_on_b):
            await wait_for(
                lambda c=client: any(f.event == "hello" and f.reconnected for f in c.frames), 10
            )
        await post(b, "/notify", type="projects", key="after", audience=ACME)
        await wait_for(lambda: s2_on_a.saw("projects", "after"), 10)
        await wait_for(lambda: carol_on_b.saw("projects", "after"), 10)
        for client in (s2_on_a, carol_on_b):
            assert not any(f.reconnected for f in client.frames)
            assert len(client.of("hello")) == 1

        # Both given: bob's streams of that session only (carol's s3 is not bob's).
        assert (await post(b, "/close", session="s3", subject="bob"))["ended"] == 0
        # Sign out everywhere: the subject ends every session of bob's, not carol's.
        await post(b, "/close", subject="bob")
        await wait_for(
            lambda: any(f.event == "hello" and f.reconnected for f in s2_on_a.frames), 10
        )
        await post(a, "/notify", type="projects", key="later", audience=ACME)
        await wait_for(lambda: carol_on_b.saw("projects", "later"), 10)
        assert not any(f.reconnected for f in carol_on_b.frames)


async def test_audience_and_replay_stay_isolated_across_instances(pair: tuple[Node, Node]) -> None:
    a, b = pair
    async with stream(a, "bob:tenant:globex") as bob_on_a:
        first = bob_on_a.cursor
        assert first is not None
    await post(a, "/notify", type="projects", key="acme-only", audience=ACME)
    await post(b, "/notify", type="projects", key="globex", audience="tenant:globex")
    newest = (await post(a, "/notify", type="compute", key="all"))["cursor"]
    # Resuming on the other instance replays exactly what bob may see, merged.
    async with stream(b, "bob:tenant:globex", last_event_id=first) as bob_on_b:
        await wait_for(lambda: any(f.id == newest for f in bob_on_b.frames), 10)
        replay = bob_on_b.of("invalidate")[0]
        assert replay.data == {
            "updates": [
                {"type": "projects", "keys": ["globex"]},
                {"type": "compute", "keys": ["all"]},
            ]
        }


async def test_an_instance_that_cannot_hear_the_broker_ends_authenticated_streams(
    tcp_proxy: Callable[[int], Any], redis_url: str
) -> None:
    """Fail closed: a revocation made while an instance is cut off cannot reach it, so
    that instance ends its authenticated streams and refuses new ones until it hears
    the broker again; anonymous streams (nothing to revoke) carry on."""
    port = service_port("redis")
    shared = SharedStream("redis", unique_name("refetch_rv"))
    proxy = await tcp_proxy(port)
    through_proxy = shared.url().replace(f":{port}", f":{proxy.port}")
    try:
        async with AsyncExitStack() as stack:
            cut = UpdateService(TYPES, backend=through_proxy, close_on_signals=False)
            healthy = UpdateService(TYPES, backend=shared.url(), close_on_signals=False)
            await stack.enter_async_context(cut)
            await stack.enter_async_context(healthy)
            node = InProcess(await stack.enter_async_context(serve(build(cut))))
            bob = await stack.enter_async_context(stream(node, f"bob:{ACME}"))
            anonymous = await stack.enter_async_context(stream(node))
            await proxy.cut()
            # bob is removed from acme elsewhere; this instance cannot hear it...
            healthy.reauthorize("bob", Principal.of("bob", ["user:bob"]))
            # ...so it ends bob's stream, and answers his reconnects 503 + Retry-After.
            await wait_for(lambda: any(f.reconnected for f in bob.frames) or bob.ended, 10)
            async with httpx.AsyncClient() as http:
                r = await http.get(
                    f"{node.url}/updates", headers={"authorization": f"Bearer bob:{ACME}"}
                )
            assert r.status_code == 503
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"] == "unconfirmed"
            # The anonymous stream still hears local updates.
            cut.notify("progress")
            await wait_for(lambda: anonymous.saw("progress"), 10)
            assert not any(f.reconnected for f in anonymous.frames)
            await proxy.restore()
            await wait_for(lambda: cut.statistics().listener_down is None, 20)
            async with stream(node, "bob:user:bob") as again:
                assert again.of("hello")
    finally:
        await shared.cleanup()


async def test_a_reader_from_before_sessions_ends_nothing_on_a_session_close() -> None:
    """Rolling deploy: an instance on the old code reads "c", "s", "r" of a close and
    nothing else. Fed exactly that, a hub ends no stream (the old close-by-subject logic
    is unchanged), where reading the whole message ends the session's stream only."""
    body = json.loads(encode_entry(CloseStreams("bob", "signed out", session="s1")))
    assert body["s"] == NO_SUBJECT
    old_view = {k: body[k] for k in ("c", "s", "r", "o", "n")}
    backend = MemoryBackend()
    async with UpdateService(TYPES, backend=backend, min_interval=0, close_on_signals=False) as hub:
        s1, s2 = Recorder(), Recorder()
        hub.attach(s1, Principal.of("bob", ["a"], session="s1"), frozenset(TYPES), None, None)
        hub.attach(s2, Principal.of("bob", ["a"], session="s2"), frozenset(TYPES), None, None)
        await backend.append([json.dumps(old_view).encode()])
        await hub.publish("projects", "after-old")
        await wait_for(lambda: b"after-old" in s1.body and b"after-old" in s2.body, 5)
        assert len(hub.connections()) == 2
        await backend.append([json.dumps(body).encode()])
        await wait_for(lambda: [c.session for c in hub.connections()] == ["s2"], 5)
        assert [c.subject for c in hub.connections()] == ["bob"]


async def test_close_streams_by_session_without_a_backend_and_its_misuse() -> None:
    async with UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub:
        mine, other = Recorder(), Recorder()
        hub.attach(mine, Principal.of("bob", session="s1"), frozenset(TYPES), None, None)
        hub.attach(other, Principal.of("bob", session="s2"), frozenset(TYPES), None, None)
        # A reauthorization keeps each stream's own session.
        hub.reauthorize("bob", Principal.of("bob", ["a"]))
        with pytest.raises(ConfigurationError, match="close_streams\\('signed out'"):
            hub.close_streams(session="s1")  # the reason "shutdown" is for every stream
        with pytest.raises(ConfigurationError, match="session=''"):
            hub.close_streams("signed out", session="")
        with pytest.raises(ConfigurationError, match="subject=''"):
            hub.close_streams("signed out", subject="")
        assert hub.close_streams("signed out", session="s1") == 1
        assert hub.close_streams("signed out", session="s1") == 0
        assert [(c.subject, c.session, c.scopes) for c in hub.connections()] == [
            ("bob", "s2", frozenset({"a"}))
        ]
        await hub.publish("projects", "still")
        await wait_for(lambda: b"still" in other.body, 5)
        assert b"still" not in mine.body


# -- model-based: random notifies, revocations and sign-outs on two instances ----------

SUBJECTS = ["s0", "s1"]
SESSIONS = ["x", "y"]  # each subject has a stream in each, on each hub
POOL = ["a", "b", "c"]
_scope_sets = st.frozensets(st.sampled_from(POOL))
_ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("notify"),
            st.integers(0, 1),
            st.one_of(st.none(), st.frozensets(st.sampled_from(POOL), min_size=1)),
        ),
        st.tuples(
            st.just("reauthorize"), st.integers(0, 1), st.sampled_from(SUBJECTS), _scope_sets
        ),
        st.tuples(
            st.just("close"),
            st.integers(0, 1),
            st.one_of(st.none(), st.sampled_from(SUBJECTS)),
            st.one_of(st.none(), st.sampled_from(SESSIONS)),
        ).filter(lambda op: op[2] is not None or op[3] is not None),
    ),
    max_size=25,
)


@dataclass
class Watcher:
    """One stream of ``subject`` in ``session`` on one hub, and what it was told so far."""

    subject: str
    session: str
    hub: int
    recorder: Recorder = field(default_factory=Recorder)
    expected: set[str] = field(default_factory=set)
    closed: bool = False

    def received(self) -> set[str]:
        keys: set[str] = set()
        for event in SSEParser().feed(self.recorder.body):
            if event.event == "invalidate":
                for update in json.loads(event.data)["updates"]:
                    keys.update(update.get("keys", ()))
        return keys


def _position(cursor: str) -> int:
    return int(cursor.rpartition(".")[2])


async def run_model(ops: list[tuple[Any, ...]]) -> None:
    backend = MemoryBackend()
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(
                UpdateService(TYPES, backend=backend, min_interval=0, close_on_signals=False)
            )
            for _ in range(2)
        ]
        scopes = {s: frozenset({f"user:{s}", "a"}) for s in SUBJECTS}
        watchers: list[Watcher] = []
        for index, hub in enumerate(hubs):
            for subject in SUBJECTS:
                for session in SESSIONS:
                    w = Watcher(subject, session, index)
                    principal = Principal(subject, scopes[subject], session=session)
                    hub.attach(w.recorder, principal, frozenset(TYPES), None, None)
                    watchers.append(w)
        last = 0

        async def caught_up(hub: UpdateService) -> None:
            await wait_for(lambda: _position(hub.cursor) >= last, 5)

        for n, op in enumerate(ops):
            kind, index = op[0], op[1]
            hub = hubs[index]
            if kind == "notify":
                audience = op[2]
                key = f"k{n}"
                for w in watchers:
                    if not w.closed and (audience is None or audience & scopes[w.subject]):
                        w.expected.add(key)
                last = _position(await hub.publish("projects", key, audience=audience))
            elif kind == "reauthorize":
                _, _, subject, new = op
                # The calling instance applies the change at once; let it hear what came
                # before, so "at once" and "in the stream's order" name the same point.
                await caught_up(hub)
                scopes[subject] = frozenset(new) | {f"user:{subject}"}
                hub.reauthorize(subject, Principal(subject, scopes[subject]))
                last = _position(await hub.flush())
            else:
                _, _, subject, session = op
                for w in watchers:
                    if subject in (None, w.subject) and session in (None, w.session):
                        w.closed = True
                hub.close_streams("signed out", subject=subject, session=session)
                last = _position(await hub.flush())
        # A last update every open stream may see, through the shared stream: once it is
        # in, everything before it was delivered or filtered.
        for subject in SUBJECTS:
            last = _position(
                await hubs[0].publish("progress", f"end-{subject}", audience=[f"user:{subject}"])
            )
        for w in watchers:
            if not w.closed:
                w.expected.add(f"end-{w.subject}")
        for hub in hubs:
            await caught_up(hub)
        for index, hub in enumerate(hubs):  # exactly the streams not closed are still open
            assert sorted((c.subject, c.session) for c in hub.connections()) == sorted(
                (w.subject, w.session) for w in watchers if w.hub == index and not w.closed
            )
        for i, w in enumerate(watchers):
            if w.closed:
                # Ended mid-way: it may miss what it would have replayed on reconnect,
                # never receive what it was not allowed.
                assert w.received() <= w.expected, f"stream {i} ({w.subject}) leaked"
            else:
                await wait_for(lambda w=w: w.expected <= w.received(), 5)  # type: ignore[misc]
                assert w.received() == w.expected, f"stream {i} ({w.subject})"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_ops)
def test_every_stream_hears_exactly_what_its_current_principal_allows(
    ops: list[tuple[Any, ...]],
) -> None:
    asyncio.run(run_model(ops))
