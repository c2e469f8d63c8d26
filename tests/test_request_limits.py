"""Before authentication a request costs little and answers small; what it sends is logged escaped.

From the report (issue 19): 16,000 distinct ``types`` names in a 62 KB URL cost 1.24 s of
event-loop CPU per request (a list ``in`` check per name) and were echoed whole, a 190 KB
answer and a 158 KB log line; ``lastEventId=x.1%0AINFO%20portal%3A%20FORGED-LINE`` wrote a
forged log line, ANSI escapes reached the log, and a 1 MB cursor wrote a 1 MB line. A client
that stopped reading was logged by uvicorn at ERROR when its stream was dropped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import string
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.routing import Route

import refetch
from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Receive, Scope, Send

from .conftest import TYPES, Recorder, serve, token_auth, wait_for

#: What a refusal may weigh: a few named values, each cut short, plus the declared types.
MAX_BODY = 4096
#: What one log line about a request may weigh: a few fields of at most ~200 characters each.
MAX_LINE = 2048
TOKENS = {"alice": Principal.of("alice", ["tenant:acme"])}


def endpoint_for(hub: UpdateService) -> UpdatesEndpoint:
    return UpdatesEndpoint(hub, authenticate=token_auth(TOKENS))


def routed(hub: UpdateService) -> ASGIApp:
    """Inside a Starlette app, behind middleware: the endpoint gets a wrapped ``send``."""
    return Starlette(
        routes=[Route("/api/updates", endpoint_for(hub))], middleware=[Middleware(GZipMiddleware)]
    )


def mounted(hub: UpdateService) -> ASGIApp:
    """``refetch.mount``'s fast path in front of the same app."""
    return refetch.mount(Starlette(), "/api/updates", endpoint_for(hub))


APPS: dict[str, Callable[[UpdateService], ASGIApp]] = {"routed": routed, "mounted": mounted}


@asynccontextmanager
async def running(shape: str) -> AsyncIterator[tuple[UpdateService, str]]:
    async with (
        UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub,
        serve(APPS[shape](hub)) as url,
    ):
        yield hub, url


async def raw_get(
    url: str, target: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One GET written by hand: httpx refuses URLs over 64 KB, an attacker does not."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    lines = [f"GET {target} HTTP/1.1", "host: x", "connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        async with asyncio.timeout(10):
            response = await reader.read()  # connection: close, so the answer ends with EOF
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture
def stream_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="refetch.streams"):
        yield caplog


def lines_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    """refetch.streams records as a plain-text handler writes them (extras included)."""
    plain = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    out = []
    for record in caplog.records:
        if record.name != "refetch.streams":
            continue
        out.append(plain.format(record))
        for field in ("subject", "types", "resumed_from", "reason", "detail", "client", "path"):
            value = getattr(record, field, None)
            out.append(f"{field}={value}")
    return out


def assert_one_clean_line_each(lines: list[str]) -> None:
    assert lines
    for line in lines:
        assert len(line) <= MAX_LINE, f"a {len(line)}-character log line"
        assert "\n" not in line and "\r" not in line, line
        assert "\x1b" not in line, line
        assert line.isprintable(), line


# -- bounded answers to hostile parameters, on both paths --------------------------------


def name_of(i: int) -> str:
    """Three characters of base 36: 16,000 distinct names in a 62 KB URL, as in the report."""
    return "".join(ALPHABET[i // 36**n % 36] for n in (2, 1, 0))


ALPHABET = string.digits + string.ascii_lowercase


@pytest.mark.parametrize("shape", list(APPS))
async def test_16k_distinct_types_get_a_small_400_and_a_short_log_line(
    shape: str, stream_log: pytest.LogCaptureFixture
) -> None:
    names = ",".join(name_of(i) for i in range(16_000))
    async with running(shape) as (_, url):
        # uvicorn itself refuses a URL over 64 KB; this one it passes on.
        status, body = await raw_get(url, f"/api/updates?types={names}")
    assert status == 400
    assert len(body) <= MAX_BODY
    answer = json.loads(body)
    assert answer["error"] == "query_too_long"
    assert "the query string is 64005 bytes" in answer["detail"]
    assert_one_clean_line_each(lines_of(stream_log))


@pytest.mark.parametrize("shape", list(APPS))
async def test_thousands_of_unknown_types_within_the_bound_name_only_a_few(
    shape: str, stream_log: pytest.LogCaptureFixture
) -> None:
    names = ",".join(["projects"] * 200 + [f"no{i}" for i in range(900)])  # under 8 KB
    async with running(shape) as (_, url):
        status, body = await raw_get(url, f"/api/updates?types={names}")
    assert status == 400
    assert len(body) <= MAX_BODY
    answer = json.loads(body)
    assert answer["error"] == "unknown_type"
    assert answer["unknown"] == ["no0", "no1", "no2"]
    assert answer["detail"] == "unknown update type(s): no0, no1, no2 and maybe more"
    assert answer["known"] == TYPES
    assert_one_clean_line_each(lines_of(stream_log))


CURSORS = {
    # via, characters of the cursor's epoch, the answer's error
    "header, 1 MB": ("header", 1_000_000, "cursor_too_long"),
    "query, 1 KB": ("query", 1_000, "cursor_too_long"),
    "query, 60 KB": ("query", 60_000, "query_too_long"),  # refused for its size, unread
}


@pytest.mark.parametrize("shape", list(APPS))
@pytest.mark.parametrize("case", list(CURSORS))
async def test_a_huge_cursor_gets_a_small_400_and_a_short_log_line(
    shape: str, case: str, stream_log: pytest.LogCaptureFixture
) -> None:
    via, size, error = CURSORS[case]
    async with running(shape) as (hub, url):
        cursor = "x" * size + "." + hub.cursor.rpartition(".")[2]
        if via == "header":
            status, body = await raw_get(url, "/api/updates", {"last-event-id": cursor})
        else:
            status, body = await raw_get(url, f"/api/updates?lastEventId={cursor}")
    assert status == 400
    assert len(body) <= MAX_BODY
    answer = json.loads(body)
    assert answer["error"] == error
    if error == "cursor_too_long":
        where = "Last-Event-ID header" if via == "header" else "lastEventId="
        assert f"{where} is {len(cursor)} characters" in answer["detail"]
        assert "at most 128" in answer["detail"]
    assert_one_clean_line_each(lines_of(stream_log))


async def test_a_cursor_just_over_the_limit_is_refused_and_one_at_it_gets_a_resync(
    stream_log: pytest.LogCaptureFixture,
) -> None:
    async with running("mounted") as (_, url):
        at_limit = "e" * 87 + "." + "1" * 40  # 128 characters: a cursor of another run
        status, body = await raw_get(url, f"/api/updates?lastEventId={at_limit}e")
        assert status == 400
        assert json.loads(body)["error"] == "cursor_too_long"
        reader, writer = await asyncio.open_connection(*urlsplit(url).netloc.split(":"))
        writer.write(
            f"GET /api/updates HTTP/1.1\r\nhost: x\r\nauthorization: Bearer alice\r\n"
            f"last-event-id: {at_limit}\r\n\r\n".encode()
        )
        received = b""
        try:
            async with asyncio.timeout(5):
                while b"event: resync" not in received:
                    received += await reader.read(4096)
        finally:
            writer.close()
    assert received.startswith(b"HTTP/1.1 200")


# -- what a request sends never forges or colours a log line -----------------------------

FORGED = "\nINFO portal: FORGED-LINE \x1b[31mred\x1b[0m\r\u2028\x85end"


async def resynced(url: str, target: str, headers: dict[str, str]) -> None:
    """Open a stream resuming from a cursor the hub does not know; close it at the resync."""
    reader, writer = await asyncio.open_connection(*urlsplit(url).netloc.split(":"))
    lines = [f"GET {target} HTTP/1.1", "host: x", *(f"{k}: {v}" for k, v in headers.items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    received = b""
    try:
        async with asyncio.timeout(5):
            while b"event: resync" not in received:
                received += await reader.read(4096)
    finally:
        writer.close()


async def test_forged_lines_and_escapes_in_request_values_stay_on_one_line(
    stream_log: pytest.LogCaptureFixture,
) -> None:
    # The subject comes from the app's authenticate(), which may take it from the request.
    tokens = {"alice": Principal.of(f"alice{FORGED}", ["tenant:acme"])}
    bearer = {"authorization": "Bearer alice"}
    async with UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub:
        endpoint = UpdatesEndpoint(hub, authenticate=token_auth(tokens))
        async with serve(endpoint) as url:
            evil = quote(f"x.1{FORGED}")
            # The cursor, the subject and the path, in stream.opened and stream.closed.
            await resynced(url, f"/updates{quote(FORGED)}?lastEventId={evil}", bearer)
            # A header carries no controls below 0x20 (uvicorn refuses them), but Latin-1's
            # C1 controls pass: 0x85 is a line break to Python's str.splitlines().
            await resynced(url, "/updates", {**bearer, "last-event-id": "x.1\x85FORGED"})
            await wait_for(
                lambda: sum("stream closed" in r.getMessage() for r in stream_log.records) == 2
            )
            # Rejected, with the forged text among the types.
            status, _ = await raw_get(url, f"/updates?types=projects,{evil}")
            assert status == 400
    lines = lines_of(stream_log)
    assert_one_clean_line_each(lines)
    assert sum("stream opened" in line for line in lines) == 2
    assert not any(line.startswith("INFO portal") for line in lines)
    opened = [r for r in stream_log.records if "stream opened" in r.getMessage()]
    assert [r.resumed_from for r in opened] == [  # type: ignore[attr-defined]
        "x.1\\nINFO portal: FORGED-LINE \\x1b[31mred\\x1b[0m\\r\\u2028\\x85end",
        "x.1\\x85FORGED",
    ]


# -- any query string: a valid parse or a small 400, never an exception (hypothesis) -------

names = st.one_of(
    st.sampled_from(["projects", "compute", "images", "", " ", "projects "]), st.text(max_size=12)
)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """Query strings, from plain junk to long lists of names (cheaply made long)."""
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["types", "many types", "cursor", "junk"]))
        if kind == "types":
            value = ",".join(draw(st.lists(names, max_size=6)))
            parts.append("types=" + quote(value, safe=","))
        elif kind == "many types":
            prefix = draw(st.text(max_size=6))
            count = draw(st.integers(0, 3000))
            parts.append("types=" + quote(",".join(f"{prefix}{i}" for i in range(count)), safe=","))
        elif kind == "cursor":
            cursor = draw(st.text(max_size=20)) * draw(st.integers(1, 400))
            parts.append("lastEventId=" + quote(cursor))
        else:
            parts.append(draw(st.text(max_size=40)))
    raw = "&".join(parts).encode("utf-8", "surrogatepass")
    return raw + draw(st.binary(max_size=16))


async def ask(endpoint: UpdatesEndpoint, query: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    sent = Recorder()

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": query,
        "headers": headers,
    }
    await endpoint(scope, receive, sent)
    return sent


def test_any_query_string_is_a_valid_parse_or_a_small_400(caplog: pytest.LogCaptureFixture) -> None:
    with asyncio.Runner() as runner, caplog.at_level(logging.INFO, logger="refetch.streams"):
        hub = UpdateService(TYPES, close_on_signals=False)
        runner.run(hub.start())
        # No principal: a request that parses is answered 401, one that does not 400.
        endpoint = UpdatesEndpoint(hub, authenticate=lambda scope: None)

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(queries(), st.one_of(st.none(), st.binary(max_size=300)))
        def check(query: bytes, cursor: bytes | None) -> None:
            caplog.clear()
            headers = [] if cursor is None else [(b"last-event-id", cursor)]
            sent = runner.run(ask(endpoint, query, headers))
            status = sent.messages[0]["status"]
            assert status in (400, 401)
            assert len(sent.body) <= MAX_BODY
            answer = json.loads(sent.body)
            assert answer["error"] and answer["detail"]
            assert_one_clean_line_each(lines_of(caplog))

        try:
            check()
        finally:
            runner.run(hub.aclose())


# -- a client that stops reading is dropped quietly ------------------------------------


def wrapped_send(app: ASGIApp) -> ASGIApp:
    """Middleware around ``send``: the hub cannot cut the socket under a stuck write itself."""

    async def wrapper(scope: Scope, receive: Receive, send: Send) -> None:
        async def forward(message: Any) -> None:
            await send(message)

        await app(scope, receive, forward)

    return wrapper


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


async def test_a_client_that_stops_reading_is_dropped_without_an_error_in_the_log() -> None:
    # With uvicorn's own send the hub cuts the socket under the stuck write, and uvicorn saw
    # it go before the endpoint returned; behind middleware nothing cut it, and uvicorn
    # logged "ASGI callable returned without completing response" at ERROR.
    errors = Errors()
    async with UpdateService(
        TYPES, min_interval=0, send_timeout=0.5, heartbeat=0.5, close_on_signals=False
    ) as hub:
        async with serve(wrapped_send(UpdatesEndpoint(hub))) as url:
            # serve() configured uvicorn's loggers, which do not propagate: listen on them.
            watched = [logging.getLogger("uvicorn"), logging.getLogger()]
            for logger in watched:
                logger.addHandler(errors)
            stuck = socket.socket()
            try:
                stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stuck.connect(("127.0.0.1", int(url.rsplit(":", 1)[1])))
                stuck.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
                await wait_for(lambda: hub.statistics().connections == 1)
                pad = "x" * 500
                batch = 0
                while hub.statistics().slow_disconnects == 0:
                    for i in range(60):
                        hub.notify("projects", key=f"{batch}-{i}-{pad}")
                    batch += 1
                    await asyncio.sleep(0.01)
                    assert batch < 2000, "the stuck client was never dropped"
                await wait_for(lambda: hub.statistics().connections == 0)
                # Read what is left until the connection ends: by then the server is done
                # with it, and would have logged its complaint.
                stuck.setblocking(False)
                loop = asyncio.get_running_loop()
                async with asyncio.timeout(10):
                    try:
                        while await loop.sock_recv(stuck, 65536):
                            pass
                    except ConnectionResetError:
                        pass
            finally:
                stuck.close()
                for logger in watched:
                    logger.removeHandler(errors)
    assert errors.messages == []
