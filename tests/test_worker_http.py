"""BackgroundWorker against real HTTP servers (Starlette served by uvicorn on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from refetch._polling.poller import poller
from refetch._polling.worker import BackgroundWorker

# Short real intervals keep the suite fast; nothing below asserts on wall-clock time.
FAST: dict[str, Any] = {"interval": 0.02, "max_backoff": 0.16, "timeout": 0.3, "jitter": 0.1}


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def notify(
        self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
    ) -> None:
        self.calls.append((type, key))


class ExternalAPI:
    """A real HTTP API whose behaviour the test switches: ok (with ETag), 500, hang, garbage."""

    def __init__(self) -> None:
        self.value = 1
        self.mode = "ok"
        self.served: list[int] = []
        self.release = asyncio.Event()

    async def state(self, request: Request) -> Response:
        if self.mode == "500":
            self.served.append(500)
            return PlainTextResponse("boom", status_code=500)
        if self.mode == "hang":
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self.release.wait()
            return PlainTextResponse("too late", status_code=503)
        if self.mode == "garbage":
            self.served.append(200)
            return Response(b"<html>maintenance</html>", media_type="application/json")
        etag = f'"v{self.value}"'
        if request.headers.get("if-none-match") == etag:
            self.served.append(304)
            return Response(status_code=304, headers={"ETag": etag})
        self.served.append(200)
        return JSONResponse({"value": self.value}, headers={"ETag": etag})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/state", self.state)])


@contextlib.asynccontextmanager
async def serve(app: Any, port: int = 0) -> AsyncIterator[str]:
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()  # the startup error, if any
                    raise RuntimeError("uvicorn exited before it started")
                await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{bound}"
    finally:
        server.should_exit = True
        await task


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():  # the worker has no event per poll, by design
            await asyncio.sleep(0.005)


async def test_change_304_failures_and_recovery_against_a_real_server() -> None:
    api = ExternalAPI()
    notifier = RecordingNotifier()
    async with serve(api.app()) as base:
        spec = poller("progress", url=f"{base}/state", extract=lambda b: b["value"], **FAST)
        async with BackgroundWorker(notifier, [spec]) as worker:

            def stats() -> Any:
                return worker.statistics()["progress"]

            # baseline, then an unchanged resource costs only 304s and no notification
            await wait_for(lambda: stats().not_modified >= 3)
            assert worker.latest("progress").value == 1
            assert notifier.calls == [("progress", None)]

            api.value = 2
            await wait_for(lambda: worker.latest("progress").value == 2)
            assert len(notifier.calls) == 2

            # 500s: the cached value is served, stale, one notification, backoff grows
            api.mode = "500"
            await wait_for(lambda: stats().consecutive_failures >= 4)
            cached = worker.latest("progress")
            assert (cached.value, cached.stale) == (2, True)
            assert cached.error == "HTTP 500: Internal Server Error"
            assert len(notifier.calls) == 3
            next_delay = stats().next_delay
            assert next_delay is not None and next_delay > FAST["interval"] * 1.1

            # a hanging API times out; still one stale notification in total
            api.mode = "hang"
            await wait_for(lambda: (worker.latest("progress").error or "").startswith("timeout"))
            assert worker.latest("progress").value == 2

            api.mode = "garbage"
            await wait_for(
                lambda: (worker.latest("progress").error or "").startswith("invalid JSON")
            )
            assert worker.latest("progress").value == 2
            assert len(notifier.calls) == 3

            # the API comes back with a new value: fresh, one notification, backoff reset
            api.value = 3
            api.mode = "ok"
            await wait_for(lambda: not worker.latest("progress").stale)
            cached = worker.latest("progress")
            assert (cached.value, cached.error) == (3, None)
            assert len(notifier.calls) == 4
            assert stats().consecutive_failures == 0
            await wait_for(lambda: stats().not_modified >= 4)
            next_delay = stats().next_delay
            assert next_delay is not None and next_delay <= FAST["interval"] * 1.1
            assert len(notifier.calls) == 4
        api.release.set()
    assert 304 in api.served and 500 in api.served


async def test_connection_refused_until_the_api_starts() -> None:
    api = ExternalAPI()
    port = free_port()
    notifier = RecordingNotifier()
    spec = poller("progress", url=f"http://127.0.0.1:{port}/state", **FAST)
    async with BackgroundWorker(notifier, [spec]) as worker:
        await wait_for(lambda: worker.statistics()["progress"].consecutive_failures >= 2)
        cached = worker.latest("progress")
        assert cached.stale and not cached.has_value
        assert (cached.error or "").startswith("connection failed")
        async with serve(api.app(), port=port):
            await wait_for(lambda: worker.latest("progress").has_value)
            assert worker.latest("progress").value == {"value": 1}
            assert not worker.latest("progress").stale
            # stale (nothing yet), then the first value
            assert len(notifier.calls) == 2


async def test_a_router_serves_the_cached_value_while_the_api_is_down() -> None:
    """The note's shape: the worker runs in the app's lifespan; a route reads `latest()`."""
    api = ExternalAPI()
    notifier = RecordingNotifier()
    async with serve(api.app()) as api_base:
        spec = poller("progress", url=f"{api_base}/state", extract=lambda b: b["value"], **FAST)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with BackgroundWorker(notifier, [spec]) as worker:
                app.state.worker = worker
                yield

        async def progress(request: Request) -> Response:
            cached = request.app.state.worker.latest("progress")
            if not cached.has_value:
                return JSONResponse({"error": cached.error}, status_code=503)
            return JSONResponse({"value": cached.value, "stale": cached.stale})

        portal = Starlette(routes=[Route("/progress", progress)], lifespan=lifespan)
        async with serve(portal) as portal_base, httpx.AsyncClient(base_url=portal_base) as http:
            await wait_for(lambda: len(notifier.calls) >= 1)
            assert (await http.get("/progress")).json() == {"value": 1, "stale": False}
            api.mode = "500"
            await wait_for(lambda: len(notifier.calls) >= 2)
            assert (await http.get("/progress")).json() == {"value": 1, "stale": True}
            api.mode = "ok"
            await wait_for(lambda: len(notifier.calls) >= 3)
            assert (await http.get("/progress")).json() == {"value": 1, "stale": False}
