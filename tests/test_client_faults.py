"""The Python client and `refetch listen` against real uvicorn servers that misbehave.

Each server is a small raw ASGI app that records the requests it got, so the tests assert
on what went over the wire: the cursor a reconnect carries, the encoding it asks for, how
many times a wrong URL was tried.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from refetch import StreamError, StreamRejected, __version__
from refetch._types import Receive, Scope, Send
from refetch.client import Frame, listen

from .conftest import serve, wait_for

ROOT = Path(__file__).resolve().parents[1]


def hello(cursor: str, heartbeat: float) -> bytes:
    data = json.dumps({"cursor": cursor, "heartbeat": heartbeat, "types": ["projects"]})
    return f"retry: 10\nid: {cursor}\nevent: hello\ndata: {data}\n\n".encode()


def invalidate(cursor: str, key: str) -> bytes:
    data = json.dumps({"updates": [{"type": "projects", "keys": [key]}]})
    return f"id: {cursor}\nevent: invalidate\ndata: {data}\n\n".encode()


@dataclass
class Scripted:
    """An ASGI app whose n-th request is answered by ``script(n, send, receive)``."""

    script: Callable[[int, Send, Receive], Awaitable[None]]
    requests: list[dict[str, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        self.requests.append({k.decode(): v.decode() for k, v in scope["headers"]})
        await self.script(len(self.requests), send, receive)


async def start(send: Send, status: int, content_type: bytes, *extra: tuple[bytes, bytes]) -> None:
    headers = [(b"content-type", content_type), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def body(send: Send, chunk: bytes, more: bool = True) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": more})


async def until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def json_answer(
    send: Send, status: int, payload: object, *extra: tuple[bytes, bytes]
) -> None:
    await start(send, status, b"application/json", *extra)
    await body(send, json.dumps(payload).encode(), more=False)


async def read_all(url: str, frames: list[Frame], **kwargs: Any) -> None:
    async for frame in listen(url, backoff=0.01, max_backoff=0.05, **kwargs):
        frames.append(frame)


async def test_a_silent_stream_is_dead_after_twice_its_heartbeat() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await start(send, 200, b"text/event-stream")
        if n == 1:
            await body(send, hello("e.1", 0.2))  # and then nothing, not even a ping
        else:
            await body(send, hello("e.1", 30.0) + invalidate("e.2", "while-silent"))
        await until_disconnect(receive)

    app = Scripted(script)
    frames: list[Frame] = []
    async with serve(app) as url:
        reader = asyncio.create_task(read_all(url, frames))
        try:
            await wait_for(lambda: any(f.event == "invalidate" for f in frames), 10)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert len(app.requests) == 2
    assert "last-event-id" not in app.requests[0]
    assert app.requests[1]["last-event-id"] == "e.1"
    assert [(f.event, f.reconnected) for f in frames] == [
        ("hello", False),
        ("hello", True),
        ("invalidate", True),
    ]


async def test_a_server_that_never_answers_is_retried_then_given_up() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await until_disconnect(receive)  # accepts the request, never sends headers

    app = Scripted(script)
    async with serve(app) as url:
        with pytest.raises(StreamError) as info:
            await read_all(url, [], read_timeout=0.2, max_attempts=2)
    assert "after 2 failed attempt(s)" in str(info.value)
    assert "no response within 0.2 s" in str(info.value)
    assert len(app.requests) == 2


async def test_a_json_route_is_a_final_error_not_an_endless_reconnect() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await json_answer(send, 200, [{"id": 1, "name": "a project"}])

    app = Scripted(script)
    async with serve(app) as url:
        with pytest.raises(StreamRejected) as info:
            await read_all(f"{url}/api/projects", [])
    assert len(app.requests) == 1
    assert info.value.status_code == 200
    assert info.value.body == [{"id": 1, "name": "a project"}]
    message = str(info.value)
    assert "content-type 'application/json'" in message
    assert "not 'text/event-stream'" in message
    assert f"{url}/api/projects" in message


async def test_a_compressing_proxy_is_asked_for_identity_and_decoded_if_it_insists() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await start(send, 200, b"text/event-stream", (b"content-encoding", b"gzip"))
        gzip = zlib.compressobj(wbits=31)
        for chunk in (hello("e.1", 30.0), invalidate("e.2", "7")):
            # A sync flush per frame, as a streaming-aware proxy does: each frame is
            # decodable on its own, while the stream stays open.
            await body(send, gzip.compress(chunk) + gzip.flush(zlib.Z_SYNC_FLUSH))
        await until_disconnect(receive)

    app = Scripted(script)
    frames: list[Frame] = []
    async with serve(app) as url:
        reader = asyncio.create_task(read_all(url, frames))
        try:
            await wait_for(lambda: len(frames) == 2, 10)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    assert app.requests[0]["accept-encoding"] == "identity"
    assert [f.event for f in frames] == ["hello", "invalidate"]
    assert frames[1].updates[0].keys == ("7",)
    assert len(app.requests) == 1


async def test_the_backoff_grows_until_a_stream_stays_up_not_merely_until_a_200(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first stream lives longer than its heartbeat (healthy); every later one is
    # dropped right after its hello, so each counts as one more unstable attempt, and
    # the cursor is resent every time.
    async def script(n: int, send: Send, receive: Receive) -> None:
        await start(send, 200, b"text/event-stream")
        if n == 1:
            await body(send, hello("e.1", 0.01))
            await asyncio.sleep(0.05)  # open for longer than its heartbeat
            await body(send, b"", more=False)
        else:
            await body(send, hello("e.1", 5.0), more=False)

    app = Scripted(script)
    frames: list[Frame] = []
    caplog.set_level(logging.INFO, logger="refetch.client")
    async with serve(app) as url:
        # A read timeout of its own: the first stream's silence is not what this is about.
        reader = asyncio.create_task(read_all(url, frames, read_timeout=5))
        try:
            await wait_for(lambda: len(app.requests) >= 5, 10)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    records = [r for r in caplog.records if r.name == "refetch.client"][:4]
    assert [r.attempt for r in records] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    assert all(r.reason == "the server ended the stream" for r in records)  # type: ignore[attr-defined]
    # Routine at first, a warning once the server keeps dropping streams.
    assert [r.levelname for r in records] == ["INFO", "INFO", "WARNING", "WARNING"]
    assert [r.get("last-event-id") for r in app.requests[:3]] == [None, "e.1", "e.1"]
    assert [f.reconnected for f in frames[:3]] == [False, True, True]


async def test_a_stream_that_opens_resets_max_attempts() -> None:
    # max_attempts counts attempts that opened no stream: a 503 between good streams
    # never adds up to giving up, two 503s in a row do.
    async def script(n: int, send: Send, receive: Receive) -> None:
        if n in (2, 4, 5):
            await json_answer(send, 503, {"error": "busy"})
            return
        await start(send, 200, b"text/event-stream")
        await body(send, hello(f"e.{n}", 5.0), more=False)

    app = Scripted(script)
    frames: list[Frame] = []
    async with serve(app) as url:
        with pytest.raises(StreamError) as info:
            await read_all(url, frames, max_attempts=2)
    assert len(app.requests) == 5
    assert "after 2 failed attempt(s) in a row; the last: HTTP 503" in str(info.value)
    assert [f.id for f in frames] == ["e.1", "e.3"]
    assert [r.get("last-event-id") for r in app.requests] == [None, "e.1", "e.1", "e.3", "e.3"]


async def test_a_503_is_retried_and_logged_with_its_status_and_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        if n == 1:
            await json_answer(send, 503, {"error": "starting"}, (b"retry-after", b"0"))
            return
        await start(send, 200, b"text/event-stream")
        await body(send, hello("e.1", 30.0))
        await until_disconnect(receive)

    app = Scripted(script)
    frames: list[Frame] = []
    caplog.set_level(logging.INFO, logger="refetch.client")
    async with serve(app) as url:
        reader = asyncio.create_task(read_all(url, frames))
        try:
            await wait_for(lambda: frames, 10)
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
    [record] = [r for r in caplog.records if r.name == "refetch.client"]
    assert record.levelno == logging.WARNING
    assert record.status == 503  # type: ignore[attr-defined]
    assert "{'error': 'starting'}" in record.reason  # type: ignore[attr-defined]
    assert record.getMessage().startswith(f"{url}: HTTP 503: ")
    assert frames[0].reconnected


@pytest.mark.parametrize("kwargs", [{"read_timeout": 0}, {"max_attempts": 0}])
async def test_nonsense_limits_are_refused_with_the_fix(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        await read_all("http://127.0.0.1:1/", [], **kwargs)


# The CLI, as a user runs it: a real process.


async def run_cli(*args: str, timeout: float = 20) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "refetch.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_cli_version_and_plain_text_help() -> None:
    code, out, _ = await run_cli("--version")
    assert (code, out.strip()) == (0, f"refetch {__version__}")
    code, out, _ = await run_cli("listen", "--help")
    assert code == 0
    assert "--max-attempts N" in out and "examples:" in out
    assert "``" not in out and "::" not in out


async def test_cli_malformed_header_is_a_usage_error() -> None:
    code, out, err = await run_cli("listen", "http://127.0.0.1:1/", "-H", "Authorization")
    assert code == 2
    assert out == ""
    assert err.startswith("usage: refetch listen")
    assert "argument -H/--header: 'Authorization' is not a header" in err
    assert "Traceback" not in err


async def test_cli_says_why_it_reconnects_and_gives_up_after_max_attempts() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await json_answer(send, 503, {"error": "maintenance"})

    app = Scripted(script)
    async with serve(app) as url:
        code, out, err = await run_cli("listen", url, "--max-attempts", "3")
    assert code == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 3
    assert all(line.startswith(f"refetch: {url}: HTTP 503: ") for line in lines[:2])
    assert "maintenance" in lines[0] and "reconnecting in" in lines[0]
    assert lines[2].startswith(f"refetch: gave up on {url} after 3 failed attempt(s)")
    assert len(app.requests) == 3


async def test_cli_rejected_stream_exits_1_with_the_reason() -> None:
    async def script(n: int, send: Send, receive: Receive) -> None:
        await json_answer(send, 401, {"error": "unauthorized"})

    app = Scripted(script)
    async with serve(app) as url:
        code, _, err = await run_cli("listen", url, "-H", "Authorization: Bearer nope")
    assert code == 1
    assert err.strip() == (
        f"refetch: {url} rejected the stream with HTTP 401: {{'error': 'unauthorized'}}"
    )
    assert app.requests[0]["authorization"] == "Bearer nope"
