"""The freshness invariant, checked by hypothesis over random interleavings.

For any sequence of notifies, connects, disconnects and reconnects with a cursor,
once things settle every connected client has received, for each (type, key) it
may see that changed since its cursor, an ``invalidate`` covering it or a ``resync``.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refetch import Principal, UpdateService
from refetch._fanout.connection import Connection, State
from refetch._parser import SSEParser

from .conftest import Recorder, wait_for

TYPES = ["projects", "compute", "progress"]
SCOPES = ["tenant:a", "tenant:b"]

notify_op = st.tuples(
    st.just("notify"),
    st.sampled_from(TYPES),
    st.sampled_from([None, "1", "2", "3"]),
    st.sampled_from([None, ("tenant:a",), ("tenant:b",), ("tenant:a", "tenant:b")]),
)
client_op = st.tuples(st.sampled_from(["connect", "disconnect"]), st.integers(0, 3))
operations = st.lists(st.one_of(notify_op, client_op), max_size=40)


@dataclass
class Client:
    scopes: frozenset[str]
    types: frozenset[str]
    cursor: str | None = None
    conn: Connection | None = None
    recorder: Recorder | None = None
    parser: SSEParser = field(default_factory=SSEParser)
    read: int = 0
    owed: set[tuple[str, str | None]] = field(default_factory=set)
    ever_connected: bool = False

    def sees(self, type_: str, audience: frozenset[str] | None) -> bool:
        return type_ in self.types and (audience is None or bool(audience & self.scopes))

    def consume(self) -> None:
        if self.recorder is None:
            return
        body = self.recorder.body
        for event in self.parser.feed(body[self.read :]):
            if event.event in ("invalidate", "resync"):
                self.cursor = event.id
            if event.event == "resync":
                self.owed.clear()
            elif event.event == "invalidate":
                for update in json.loads(event.data)["updates"]:
                    if "keys" not in update:
                        self.owed = {o for o in self.owed if o[0] != update["type"]}
                    else:
                        self.owed -= {(update["type"], k) for k in update["keys"]}
            elif event.event == "hello" and event.id is not None:
                self.cursor = event.id
        self.read = len(body)


async def run(ops: list[tuple[object, ...]]) -> None:
    clients = [
        Client(frozenset({"tenant:a"}), frozenset(TYPES)),
        Client(frozenset({"tenant:b"}), frozenset(TYPES)),
        Client(frozenset(SCOPES), frozenset({"projects"})),
        Client(frozenset(), frozenset({"progress", "compute"})),
    ]
    async with UpdateService(
        TYPES, min_interval=0.02, replay_size=6, max_keys=2, close_on_signals=False
    ) as service:

        def connect(client: Client) -> None:
            client.recorder = Recorder()
            client.parser = SSEParser()
            client.read = 0
            principal = Principal(None, client.scopes)
            resume = client.cursor if client.ever_connected else None
            client.conn = service.attach(client.recorder, principal, client.types, resume, None)
            client.ever_connected = True

        for op in ops:
            if op[0] == "notify":
                _, type_, key, audience = op
                aud = None if audience is None else frozenset(audience)  # type: ignore[arg-type]
                for client in clients:
                    # Owed by whoever is connected, or away with a cursor to resume from.
                    if client.ever_connected and client.sees(type_, aud):  # type: ignore[arg-type]
                        client.owed.add((type_, key))  # type: ignore[arg-type]
                await service.publish(type_, key, audience=aud)  # type: ignore[arg-type]
            else:
                client = clients[op[1]]  # type: ignore[index]
                if op[0] == "connect" and client.conn is None:
                    connect(client)
                elif op[0] == "disconnect" and client.conn is not None:
                    client.consume()
                    service.detach(client.conn)
                    client.conn = None
            for client in clients:
                if client.conn is not None:
                    client.consume()

        for client in clients:
            if client.ever_connected and client.conn is None:
                connect(client)
        await wait_for(lambda: all(c.state == State.IDLE for c in service._fanout._streams))
        for client in clients:
            client.consume()
            assert not client.owed, f"client {clients.index(client)} is stale: {client.owed}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_every_connected_client_ends_fresh(ops: list[tuple[object, ...]]) -> None:
    asyncio.run(run(ops))
