"""A draining server tells every open stream when to come back: jittered, bounded, spread.

The bytes each client receives are checked, on a real uvicorn server, for the ways a hub
ends every stream (``close_streams()``, the lifespan's ``aclose()``; SIGTERM is in
test_shutdown.py), on the bare endpoint and behind middleware that passes ``send()``
through a channel (Starlette's ``BaseHTTPMiddleware``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from refetch import ConfigurationError, Principal, UpdatesEndpoint, UpdateService
from refetch._hub.drain import reconnect_delays
from refetch._types import ASGIApp

from .conftest import TYPES, serve, wait_for
from .test_shutdown import reconnect_delay

STREAMS = 40


async def _passthrough(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    return await call_next(request)


def bare(hub: UpdateService) -> ASGIApp:
    return UpdatesEndpoint(hub)


def behind_middleware(hub: UpdateService) -> ASGIApp:
    return Starlette(
        routes=[Route("/", UpdatesEndpoint(hub))],
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_passthrough)],
    )


async def after_hello(http: httpx.AsyncClient, url: str, opened: list[None]) -> bytes:
    """Everything a stream received after its ``hello``, until the server ended it."""
    body = b""
    async with http.stream("GET", url) as r:
        assert r.status_code == 200
        async for chunk in r.aiter_raw():
            if not body:
                opened.append(None)
            body += chunk
    hello, rest = body.split(b"\n\n", 1)
    assert b"event: hello" in hello
    return rest


@pytest.mark.parametrize("app", [bare, behind_middleware])
@pytest.mark.parametrize("end", ["close_streams", "aclose"])
async def test_every_open_stream_is_told_when_to_come_back_spread_over_the_window(
    app: Callable[[UpdateService], ASGIApp], end: str
) -> None:
    hub = UpdateService(TYPES, drain_spread=2.0, close_on_signals=False)
    await hub.start()
    try:
        limits = httpx.Limits(max_connections=STREAMS)
        async with (
            serve(app(hub)) as url,
            httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None), limits=limits) as http,
        ):
            opened: list[None] = []
            tails = [asyncio.create_task(after_hello(http, url, opened)) for _ in range(STREAMS)]
            await wait_for(
                lambda: len(opened) == STREAMS and hub.statistics().connections == STREAMS
            )
            if end == "close_streams":
                assert hub.close_streams() == STREAMS
            else:
                await hub.aclose()
            delays = sorted(reconnect_delay(tail) for tail in await asyncio.gather(*tails))
    finally:
        await hub.aclose()
    assert len(delays) == STREAMS  # every stream, none cut without it
    # Bounded: from an eighth of the window (250 ms) to all of it (2 s) ...
    assert delays[0] >= 250 and delays[-1] <= 2000
    # ... and spread: the window is cut into one slice per stream, one stream in each, so
    # no two clients are told the same moment and they return at an even rate.
    width = 1750 / STREAMS
    for i, delay in enumerate(delays):
        assert 250 + i * width - 1 <= delay <= 250 + (i + 1) * width + 1, (i, delays)


async def test_a_stream_ended_for_its_subject_gets_no_reconnect_frame() -> None:
    # Sign-out: the client should reconnect now and hear 401, not wait for a schedule.
    hub = UpdateService(TYPES, close_on_signals=False)
    endpoint = UpdatesEndpoint(hub, authenticate=lambda scope: Principal.of("alice"))
    async with hub, serve(endpoint) as url, httpx.AsyncClient() as http:
        tail = asyncio.create_task(after_hello(http, url, []))
        await wait_for(lambda: hub.statistics().connections == 1)
        assert hub.close_streams(subject="alice") == 1
        assert await tail == b""


async def test_every_stream_ended_for_another_reason_is_told_when_to_come_back_too() -> None:
    hub = UpdateService(TYPES, close_on_signals=False)
    async with hub, serve(UpdatesEndpoint(hub)) as url, httpx.AsyncClient() as http:
        tail = asyncio.create_task(after_hello(http, url, []))
        await wait_for(lambda: hub.statistics().connections == 1)
        assert hub.close_streams("rebalance") == 1
        frame = re.fullmatch(
            rb'retry: (\d+)\nevent: reconnect\ndata: \{"delay":(\d+),"reason":"rebalance"\}\n\n',
            await tail,
        )
        assert frame is not None and frame[1] == frame[2]
        assert hub.running  # not draining: the clients are let back in


def test_the_schedule_is_stratified_over_an_eighth_to_all_of_the_window() -> None:
    assert reconnect_delays(4, 2.0, random=lambda: 0.0) == [250, 688, 1125, 1562]
    assert reconnect_delays(4, 2.0, random=lambda: 0.5) == [469, 906, 1344, 1781]
    assert reconnect_delays(4, 2.0, random=lambda: 0.999) == [687, 1125, 1562, 2000]
    assert reconnect_delays(1, 8.0, random=lambda: 0.5) == [4500]
    assert reconnect_delays(0, 2.0) == []


@pytest.mark.parametrize("spread", [0, -1.0])
def test_a_drain_spread_that_is_not_positive_names_the_fix(spread: float) -> None:
    with pytest.raises(
        ConfigurationError, match=r"drain_spread must be > 0 seconds.*drain_spread=2"
    ):
        UpdateService(TYPES, drain_spread=spread)
