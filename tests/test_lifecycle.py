"""The hub's lifecycle (new -> running -> draining -> closed), checked against a model by hypothesis.

For any sequence of start, connect, disconnect, close_streams, notify, publish and aclose,
the endpoint answers what the model says (a stream, 503 not_started or 503 draining), no
stream outlives draining, and the state the hub reports is the model's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refetch import Principal, ServiceClosed, UpdatesEndpoint, UpdateService

from .conftest import Recorder, wait_for

ops = st.lists(
    st.one_of(
        st.sampled_from(["start", "connect", "aclose", "notify", "publish"]).map(lambda o: (o,)),
        st.tuples(st.just("disconnect"), st.integers(0, 3)),
        st.tuples(
            st.just("close_streams"),
            st.sampled_from(["shutdown", "signed out"]),
            st.sampled_from([None, "alice", "bob"]),
        ),
    ),
    max_size=25,
)


class Client:
    """One request to the endpoint, called as a plain ASGI app."""

    def __init__(self, endpoint: UpdatesEndpoint) -> None:
        self.send = Recorder()
        self.gone = asyncio.Event()
        scope = {"type": "http", "method": "GET", "query_string": b"", "headers": []}
        self.task = asyncio.create_task(endpoint(scope, self.receive, self.send))

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    @property
    def status(self) -> int | None:
        starts = [m for m in self.send.messages if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def error(self) -> str:
        error: str = json.loads(self.send.body)["error"]
        return error


async def run(steps: list[tuple[Any, ...]]) -> None:
    hub = UpdateService(["projects"], close_on_signals=False)
    endpoint = UpdatesEndpoint(hub, authenticate=lambda scope: Principal.of("alice", []))
    state = "new"
    open_streams: list[Client] = []
    for step in steps:
        op = step[0]
        if op == "start":
            if state == "new":
                await hub.start()
                state = "running"
            else:
                try:
                    await hub.start()
                    raise AssertionError("a second start() must be refused")
                except ServiceClosed:
                    pass
        elif op == "connect":
            client = Client(endpoint)
            await wait_for(lambda c=client: c.status is not None)
            if state == "running":
                assert client.status == 200
                assert b"event: hello" in client.send.body
                open_streams.append(client)
            else:
                await client.task
                assert client.status == 503
                assert client.error == ("not_started" if state == "new" else "draining")
        elif op == "disconnect" and step[1] < len(open_streams):
            client = open_streams.pop(step[1])
            client.gone.set()
            await client.task
        elif op == "close_streams":
            _, reason, subject = step
            ended = hub.close_streams(reason, subject=subject)
            if subject in (None, "alice"):
                assert ended == len(open_streams)
                for client in open_streams:
                    await client.task  # the hub ended it: the response is complete
                    last = client.send.messages[-1]
                    assert last["type"] == "http.response.body" and last["more_body"] is False
                    # Ended for everyone: told when to come back; for one subject: not.
                    told = last["body"].startswith(b"retry: ")
                    assert told == (subject is None), last
                    assert told or last["body"] == b""
                open_streams.clear()
            else:
                assert ended == 0
            if state == "running" and reason == "shutdown" and subject is None:
                state = "draining"
        elif op == "aclose":
            await hub.aclose()
            for client in open_streams:
                await client.task
            open_streams.clear()
            state = "closed"
        elif op == "notify":
            hub.notify("projects")
        elif op == "publish":
            try:
                cursor = await hub.publish("projects")
                assert state in ("running", "draining"), f"publish() worked while {state}"
                assert cursor == hub.cursor
            except ServiceClosed:
                assert state in ("new", "closed"), f"publish() refused while {state}"

        assert hub.statistics().state == hub.state == state
        assert hub.running == (state == "running")
        assert hub.draining == (state == "draining")
        assert all(not c.task.done() for c in open_streams)
        assert hub.statistics().connections == len(open_streams)
    await hub.aclose()
    for client in open_streams:
        await client.task


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_the_lifecycle_matches_the_model(steps: list[tuple[Any, ...]]) -> None:
    asyncio.run(run(steps))
