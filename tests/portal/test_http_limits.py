"""`python -m portal` bounds what a client can make it hold (portal/http_limits.py).

Each test runs the real entry point in a process of its own on a loopback port and speaks
raw HTTP/1.1 to it, as an attacker would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from portal.config import Settings
from portal.http_limits import KNOWN_VERSIONS, HttpLimits

from .conftest import portal_process


async def exchange(port: int, head: bytes) -> tuple[int | None, dict[str, Any] | None]:
    """Send `head`, read until the server closes: its status and JSON body (None if it reset)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        try:
            await writer.drain()
            answer = await reader.read()
        except ConnectionError:  # reset, or a broken pipe while still sending
            return None, None
        status_line, _, rest = answer.partition(b"\r\n")
        body = rest.partition(b"\r\n\r\n")[2]
        return int(status_line.split()[1]), json.loads(body) if body.startswith(b"{") else None
    finally:
        writer.close()


def head_with(headers: list[bytes]) -> bytes:
    return (
        b"GET /api/me HTTP/1.1\r\nHost: portal\r\nConnection: close\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


async def me(port: int) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"http://127.0.0.1:{port}/api/me")).status_code


def test_the_installed_uvicorn_is_one_the_limits_were_checked_against() -> None:
    assert uvicorn.__version__.startswith(KNOWN_VERSIONS), (
        f"uvicorn {uvicorn.__version__}: check that HttpToolsProtocol still has the hooks "
        "portal/http_limits.py overrides, then add the version to KNOWN_VERSIONS"
    )


def test_limits_that_cannot_work_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="header_timeout must be positive"):
        HttpLimits(max_connections=10, header_timeout=0)
    with pytest.raises(ValueError, match="max_headers must be at least 1"):
        HttpLimits(max_connections=10, max_headers=0)
    with pytest.raises(ValueError, match="body_timeout must be positive"):
        HttpLimits(max_connections=10, body_timeout=-1)


async def test_request_heads_are_bounded_in_bytes_and_lines(tmp_path: Path) -> None:
    async with portal_process(tmp_path, MAX_HEADER_BYTES="16384", MAX_HEADERS="50") as port:
        # under both limits: the app answers
        assert (await exchange(port, head_with([b"X-A: " + b"a" * 8000])))[0] == 401
        assert (await exchange(port, head_with([b"X-%d: v" % i for i in range(47)])))[0] == 401

        status, body = await exchange(port, head_with([b"X-A: " + b"a" * 20000]))
        assert status in (431, None)  # None: reset while the client still sent
        if body is not None:
            assert body == {"detail": "request line and headers exceed 16384 bytes"}
        # 8 MB, as in the issue: refused before the server has read it all
        assert (await exchange(port, head_with([b"X-A: " + b"a" * (8 << 20)])))[0] in (431, None)

        status, body = await exchange(port, head_with([b"X-%d: v" % i for i in range(60)]))
        assert (status, body) == (431, {"detail": "more than 50 header lines"})
        assert await me(port) == 401  # and the server still serves


def post(body: bytes, length: int | None = None) -> bytes:
    return (
        b"POST /api/projects HTTP/1.1\r\nHost: portal\r\nConnection: close\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%b"
        % (len(body) if length is None else length, body)
    )


async def test_request_bodies_are_bounded_in_bytes_and_time(tmp_path: Path) -> None:
    async with portal_process(tmp_path, MAX_BODY_BYTES="1000", BODY_TIMEOUT="1") as port:
        name = json.dumps({"name": "a" * 90}).encode()
        assert (await exchange(port, post(name)))[0] == 401  # within the limits: the app answers

        status, body = await exchange(port, post(b"[" + b"1," * 5000 + b"1]"))
        assert status in (413, None)  # None: reset while the client still sent
        if body is not None:
            assert body == {"detail": "request body exceeds 1000 bytes"}

        # A body that never ends: answered once its deadline passes (old: held for good).
        async with asyncio.timeout(20):
            status, body = await exchange(port, post(b'{"name": ', length=100))
        assert (status, body) == (408, {"detail": "request body not received within 1.0 s"})
        assert await me(port) == 401


async def test_a_slowloris_socket_is_cut_at_the_header_deadline_while_clients_get_answers(
    tmp_path: Path,
) -> None:
    async with portal_process(tmp_path, HEADER_TIMEOUT="1") as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /api/me HTTP/1.1\r\nHost: portal\r\nX-Slow: ")

        async def dribble() -> None:
            while True:  # one byte at a time, for ever
                writer.write(b"a")
                await asyncio.sleep(0.1)
                assert await me(port) == 401  # everyone else is served meanwhile

        drip = asyncio.create_task(dribble())
        try:
            async with asyncio.timeout(20):  # generous: the deadline is 1 s
                answer = await reader.read()
        finally:
            drip.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b'{"detail": "request head not received within 1.0 s"}' in answer


async def test_at_the_connection_cap_the_longest_waiting_socket_makes_room(
    tmp_path: Path,
) -> None:
    async with portal_process(tmp_path, MAX_CONNECTIONS="6", HEADER_TIMEOUT="60") as port:
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(6)]
        try:
            assert await me(port) == 401  # served: it took the place of the oldest idle socket
            async with asyncio.timeout(10):
                assert await idle[0][0].read() == b""  # evicted, nothing to answer
            assert await me(port) == 401
        finally:
            for _, w in idle:
                w.close()


async def test_streams_are_never_evicted_and_past_the_cap_new_sockets_get_503(
    tmp_path: Path,
) -> None:
    async with portal_process(tmp_path, MAX_CONNECTIONS="4", HEADER_TIMEOUT="60") as port:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as login:
            r = await login.post(
                "/api/login", json={"email": "alice@acme.test", "password": "demo"}
            )
            token = r.json()["token"]
        streams = []
        for _ in range(4):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                b"GET /api/updates HTTP/1.1\r\nHost: portal\r\nAuthorization: Bearer %b\r\n\r\n"
                % token.encode()
            )
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            streams.append((reader, writer))
        try:
            status, body = await exchange(port, b"")  # refused before it is read: just listen
            assert (status, body) == (503, {"detail": "too many connections, retry shortly"})
            for reader, _ in streams:  # every stream still open and readable
                assert not reader.at_eof()
            streams.pop()[1].close()
            await wait_until(lambda: exchange(port, head_with([])), lambda r: r[0] == 401)
        finally:
            for _, w in streams:
                w.close()


async def wait_until(
    attempt: Callable[[], Coroutine[Any, Any, Any]], done: Callable[[Any], bool]
) -> None:
    async with asyncio.timeout(10):
        while not done(await attempt()):
            await asyncio.sleep(0.05)


def test_the_limits_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {"MAX_HEADER_BYTES": "8192", "MAX_HEADERS": "20", "HEADER_TIMEOUT": "2.5"}
    )
    assert (settings.max_header_bytes, settings.max_headers, settings.header_timeout) == (
        8192,
        20,
        2.5,
    )
    assert settings.max_connections is None  # the fd limit less a reserve, at start
    assert Settings.from_env({"MAX_CONNECTIONS": "500"}).max_connections == 500
    with pytest.raises(ValueError, match="HEADER_TIMEOUT must be a number, got 'soon'"):
        Settings.from_env({"HEADER_TIMEOUT": "soon"})
