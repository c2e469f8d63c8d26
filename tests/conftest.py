from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Scope

TYPES = ["progress", "projects", "compute", "images", "authentication", "gardener"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serve(app: ASGIApp, port: int | None = None) -> AsyncIterator[str]:
    """Run ``app`` on a real uvicorn server on a loopback port, in this event loop."""
    port = port or free_port()
    # The grace period only bounds a test that forgot to close its hub first: an
    # open stream would otherwise keep uvicorn waiting for ever.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def token_auth(tokens: dict[str, Principal]) -> Callable[[Scope], Principal | None]:
    """Bearer-token authentication for tests: ``Authorization: Bearer <name>``."""

    def authenticate(scope: Scope) -> Principal | None:
        for name, value in scope["headers"]:
            if name == b"authorization" and value.startswith(b"Bearer "):
                return tokens.get(value[7:].decode())
        return None

    return authenticate


@pytest.fixture
async def service() -> AsyncIterator[UpdateService]:
    async with UpdateService(TYPES, min_interval=0.05, close_on_signals=False) as hub:
        yield hub


@pytest.fixture
async def base_url(service: UpdateService) -> AsyncIterator[str]:
    async with serve(UpdatesEndpoint(service)) as url:
        yield url


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` is true; fail after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


class Recorder:
    """An ASGI ``send`` that keeps what the hub writes, for tests without a socket."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def __call__(self, message: Any) -> None:
        self.messages.append(dict(message))

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages)


async def never_disconnect() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}
