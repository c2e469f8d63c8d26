"""The hub's GC policy with real streams on a real uvicorn: open streams are frozen out of the
cyclic collector's way, and cyclic garbage frozen with them is collected once they left.

Each stream's ``authenticate`` puts a marker object with a reference cycle into the stream's
ASGI scope, which lives exactly as long as the stream: once the stream is gone, the marker
is cyclic garbage that only the cyclic GC can free. A ``WeakSet`` counts the live ones.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import Scope

from .conftest import serve, wait_for

TYPES = ["projects"]


class Marker:
    def __init__(self) -> None:
        self.me = self  # a cycle: refcounting alone never frees it


@asynccontextmanager
async def hub_with_markers(**options: Any) -> AsyncIterator[tuple[str, UpdateService, Any]]:
    markers: weakref.WeakSet[Marker] = weakref.WeakSet()

    def authenticate(scope: Scope) -> Principal:
        marker = Marker()
        markers.add(marker)
        scope["marker"] = marker
        return Principal.of("someone")

    service = UpdateService(TYPES, close_on_signals=False, **options)
    async with service, serve(UpdatesEndpoint(service, authenticate=authenticate)) as url:
        yield url, service, markers


async def open_streams(url: str, n: int) -> list[asyncio.StreamWriter]:
    port = int(url.rsplit(":", 1)[1])

    async def one() -> asyncio.StreamWriter:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
        await asyncio.wait_for(reader.readuntil(b"event: hello"), 10)
        return writer

    return list(await asyncio.gather(*(one() for _ in range(n))))


async def close_all(writers: list[asyncio.StreamWriter], service: UpdateService, left: int) -> None:
    for writer in writers:
        writer.close()
    await wait_for(lambda: service.statistics().connections == left, 10)


@pytest.fixture(autouse=True)
def _collector_back_to_normal() -> Any:
    yield
    gc.unfreeze()


async def test_open_streams_are_frozen_and_frozen_garbage_is_collected_once_half_left() -> None:
    assert gc.get_freeze_count() == 0
    async with hub_with_markers() as (url, service, markers):
        steady = await open_streams(url, 400)
        assert gc.get_freeze_count() > 0  # the open streams' objects are out of full collections
        # Churn: 100 streams come and go, five times, while 400 stay open (peak: 500).
        for _ in range(5):
            batch = await open_streams(url, 100)
            await close_all(batch, service, left=400)
        # Then most of them leave: 100 open, under half the peak. The markers of the streams
        # that left (cyclic garbage, frozen along with them: 800 of them) are collected, but
        # for those that left after the last recycle (at most half of the peak then).
        await close_all(steady[100:], service, left=100)
        gc.collect()
        assert 100 <= len(markers) <= 100 + 50
        await close_all(steady[:100], service, left=0)
    # Stopped: the hub handed everything back to the collector.
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert len(markers) == 0


async def test_gc_freeze_false_leaves_the_collector_alone() -> None:
    async with hub_with_markers(gc_freeze=False) as (url, service, markers):
        streams = await open_streams(url, 300)
        assert gc.get_freeze_count() == 0
        await close_all(streams, service, left=0)
        gc.collect()
        assert len(markers) == 0
