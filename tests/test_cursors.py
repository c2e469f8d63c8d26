"""Hostile cursors: whatever a client sends as ``Last-Event-ID`` or ``lastEventId=``,
the answer is a ``resync``, a replay, or a 4xx JSON, and the stream stays usable.

Before the fix, ``<epoch>.¹`` (``str.isdigit()`` accepts superscripts, ``int()`` does
not) and a position over 4,300 digits raised after the 200 was out: a dropped stream. Since
issue 19 a cursor over 128 characters is a 400 before authentication
(tests/test_request_limits.py); up to that length, anything is a resync or a replay.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refetch import UpdatesEndpoint, UpdateService
from refetch._cursor import Cursor
from refetch._hub.broker import BrokerSequencer
from refetch._parser import ServerSentEvent, SSEParser
from refetch.backends import MemoryBackend

from .conftest import Recorder, serve, wait_for

TYPES = ["projects", "compute"]
HUBS = ["local", "backend"]
VECTORS = Path(__file__).with_name("cursor_vectors.json")


def test_the_cursor_rule_is_the_one_the_js_client_reads_from_the_shared_vectors() -> None:
    # js/test/cursors.test.ts checks js/src/cursors.ts against the same file.
    for vector in json.loads(VECTORS.read_text("utf-8"))["cursors"]:
        expected = (
            None if vector["position"] is None else Cursor(vector["epoch"], int(vector["position"]))
        )
        assert Cursor.parse(vector["text"]) == expected, vector["text"]


def make_hub(kind: str) -> UpdateService:
    backend = MemoryBackend() if kind == "backend" else None
    return UpdateService(
        TYPES,
        min_interval=0,
        max_keys=10_000,
        replay_size=10_000,
        close_on_signals=False,
        backend=backend,
    )


def epoch_of(hub: UpdateService) -> str:
    return hub.cursor.rpartition(".")[0]


# -- the two cursors from the report, on a real uvicorn --------------------------------


@asynccontextmanager
async def running(kind: str) -> AsyncIterator[tuple[UpdateService, str]]:
    async with make_hub(kind) as hub, serve(UpdatesEndpoint(hub)) as url:
        yield hub, url


HOSTILE: dict[str, Callable[[str], str]] = {
    "superscript digit": lambda epoch: f"{epoch}.¹",
    "arabic-indic digits": lambda epoch: f"{epoch}.٣",
    "41 digits": lambda epoch: f"{epoch}.{'1' * 41}",
    "128 characters": lambda epoch: f"{epoch}{'e' * (87 - len(epoch))}.{'1' * 40}",
}


@pytest.mark.parametrize("kind", HUBS)
@pytest.mark.parametrize("name", list(HOSTILE))
@pytest.mark.parametrize("via", ["header", "query"])
async def test_a_hostile_cursor_gets_a_resync_and_the_stream_carries_on(
    kind: str, name: str, via: str
) -> None:
    async with running(kind) as (hub, url):
        await hub.publish("projects", key="1")
        cursor = HOSTILE[name](epoch_of(hub))
        if via == "header":
            # Latin-1 is what an HTTP header carries: "¹" is the single byte 0xB9.
            headers = [(b"last-event-id", cursor.encode("latin-1", "replace"))]
            target = url
        else:
            headers = []
            target = f"{url}/?lastEventId={quote(cursor)}"
        async with httpx.AsyncClient() as http, http.stream("GET", target, headers=headers) as r:
            assert r.status_code == 200
            chunks = r.aiter_raw()
            received = b""
            resync = (
                f'id: {hub.cursor}\nevent: resync\ndata: {{"reason":"unknown cursor"}}\n\n'.encode()
            )
            while resync not in received:
                received += await anext(chunks)
            hello = f'retry: 2000\nevent: hello\ndata: {{"cursor":"{hub.cursor}","heartbeat":15.0,"types":["projects","compute"]}}\n\n'.encode()
            assert received == hello + resync
            after = await hub.publish("compute", key="vm-1")
            live = f'id: {after}\nevent: invalidate\ndata: {{"updates":[{{"type":"compute","keys":["vm-1"]}}]}}\n\n'.encode()
            received = b""
            while live not in received:
                received += await anext(chunks)
            assert received == live


# -- any bytes at all, in process (hypothesis) -----------------------------------------


@dataclass
class Answer:
    status: int
    events: list[ServerSentEvent]
    body: bytes


async def ask(
    hub: UpdateService, headers: list[tuple[bytes, bytes]], query: bytes, marker: str
) -> Answer:
    """One request to the endpoint; for a stream, also one live update after it opened."""
    sent = Recorder()
    gone = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await gone.wait()
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": headers,
    }
    task = asyncio.create_task(UpdatesEndpoint(hub)(scope, receive, sent))
    parser = SSEParser()
    events: list[ServerSentEvent] = []
    read = 0

    def settled(cursor: str) -> bool:
        nonlocal read
        body = sent.body
        events.extend(parser.feed(body[read:]))
        read = len(body)
        if task.done():
            return True
        last = events[-1] if events else None
        # Told everything up to ``cursor``: the live update, or a resync that covers it.
        return last is not None and last.id == cursor and last.event in ("invalidate", "resync")

    try:
        await wait_for(lambda: task.done() or sent.messages)
        status = sent.messages[0]["status"]
        if status == 200:
            after = await hub.publish("projects", key=marker)
            await wait_for(lambda: settled(after))
            assert not task.done(), "the stream ended: the client would see it dropped"
        else:
            await task
    finally:
        gone.set()
        await task  # re-raises whatever the endpoint raised
    return Answer(status, events, sent.body)


texts = st.one_of(
    st.sampled_from(
        ["¹", "²³", "٣", "٣٣", "\U0001d7d7", "-1", "+1", "1_0", " 1", "1e3", "0x1", "", "."]
    ),
    st.sampled_from([41, 4300, 4301, 10_000]).map(lambda n: "9" * n),
    st.text(max_size=16),
)
# Headers are Latin-1 on the wire ("¹" is 0xB9), a query string is percent-encoded UTF-8.
junk = st.one_of(
    st.binary(max_size=64),
    st.tuples(texts, st.sampled_from(["latin-1", "utf-8"])).map(
        lambda pair: pair[0].encode(pair[1], "replace")
    ),
)


@st.composite
def cursors(draw: st.DrawFn, epoch: str, head: Callable[[], int]) -> tuple[bytes, int | None]:
    """A cursor and, when it is one of this hub's, its position."""
    choice = draw(st.sampled_from(["junk", "epoch junk", "ours"]))
    if choice == "junk":
        return draw(junk), None
    if choice == "epoch junk":
        return epoch.encode() + b"." + draw(junk), None
    # How far back, not where: the head moves between examples, the strategy must not.
    position = max(0, head() - draw(st.integers(0, 8)))
    return f"{epoch}.{position}".encode(), position


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize("kind", HUBS)
def test_any_cursor_bytes_get_a_resync_a_replay_or_a_4xx(kind: str, via: str) -> None:
    with asyncio.Runner() as runner:
        hub = make_hub(kind)
        runner.run(hub.start())
        sequencer = hub._sequencer
        if isinstance(sequencer, BrokerSequencer):
            # A cursor ahead of this instance waits this long for the shared stream to
            # catch up before it gets its resync; the default 5 s would make this slow.
            sequencer.catch_up_timeout = 0.05
        epoch = epoch_of(hub)
        history: list[str] = []  # the key of the update at each position (from 1)

        def head() -> int:
            return len(history)

        for key in ("a", "b", "c"):
            runner.run(hub.publish("projects", key=key))
            history.append(key)

        @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.data())
        def check(data: st.DataObject) -> None:
            raw, position = data.draw(cursors(epoch, head))
            if via == "header":
                headers, query = [(b"last-event-id", raw)], b""
            else:
                headers, query = [], b"lastEventId=" + quote_from_bytes(raw).encode()
            marker = f"m{len(history) + 1}"
            answer = runner.run(ask(hub, headers, query, marker))
            if answer.status == 200:
                history.append(marker)
            check_answer(answer, epoch, history, position)

        try:
            check()
        finally:
            runner.run(hub.aclose())


def check_answer(answer: Answer, epoch: str, history: list[str], position: int | None) -> None:
    if answer.status != 200:
        assert 400 <= answer.status < 500
        assert json.loads(answer.body)["error"]
        return
    hello, *rest = answer.events
    assert hello.event == "hello"
    assert rest, "a stream that carried nothing after hello"
    for event in rest:
        assert event.event in ("invalidate", "resync"), event
        assert event.id is not None and event.id.startswith(f"{epoch}.")
        if event.event == "resync":
            assert json.loads(event.data)["reason"] in ("unknown cursor", "cursor too old")
    if position is None:
        return
    # One of our own cursors: the replay is exactly what came after it, then the live one.
    assert [e.event for e in rest] in (["invalidate"], ["invalidate", "invalidate"])
    replayed = {
        key for e in rest for u in json.loads(e.data)["updates"] for key in u.get("keys", ())
    }
    assert replayed == set(history[position:])
