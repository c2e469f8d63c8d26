"""The direct write to uvicorn's transport (refetch/_fanout/uvicorn.py), pinned to the versions it knows.

It engages only when the endpoint gets uvicorn's own ``send``; the bytes on the wire must be
exactly what the plain ASGI path writes. A new uvicorn release fails the version check here
until someone has looked at its httptools cycle and added it to ``KNOWN_VERSIONS``.
"""

from __future__ import annotations

from typing import Any

import httpx
import uvicorn

from refetch import UpdatesEndpoint, UpdateService
from refetch._fanout.uvicorn import KNOWN_VERSIONS, uvicorn_cycle
from refetch._types import ASGIApp, Receive, Scope, Send

from .conftest import TYPES, serve


def test_the_installed_uvicorn_is_one_the_fast_path_was_checked_against() -> None:
    minor = ".".join(uvicorn.__version__.split(".")[:2])
    assert minor in KNOWN_VERSIONS, (
        f"uvicorn {uvicorn.__version__}: check that its httptools cycle still has "
        "transport/flow/disconnected/chunked_encoding/response_complete with the same "
        "meaning and that send() writes a body as one chunk, then add it to KNOWN_VERSIONS"
    )


def passthrough(app: ASGIApp) -> ASGIApp:
    """Middleware that only wraps ``send``: the plain ASGI path."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        async def forward(message: Any) -> None:
            await send(message)

        await app(scope, receive, forward)

    return wrapped


async def _wire_bytes(app_of: Any) -> tuple[bytes, list[bool]]:
    engaged: list[bool] = []
    async with UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub:
        endpoint = UpdatesEndpoint(hub)

        async def spy(scope: Scope, receive: Receive, send: Send) -> None:
            engaged.append(uvicorn_cycle(send) is not None)
            await endpoint(scope, receive, send)

        async with serve(app_of(spy)) as url, httpx.AsyncClient() as http:
            async with http.stream("GET", url) as r:
                chunks = r.aiter_raw()
                received = await anext(chunks)
                for key in ("1", "2", "3"):
                    await hub.publish("projects", key=key)
                    received += await anext(chunks)
        epoch = hub.cursor.rpartition(".")[0]
    return received.replace(epoch.encode(), b"EPOCH"), engaged


async def test_the_direct_write_sends_exactly_what_send_would() -> None:
    direct, engaged_direct = await _wire_bytes(lambda app: app)
    plain, engaged_plain = await _wire_bytes(passthrough)
    assert engaged_direct == [True]  # uvicorn's own send: the fast path
    assert engaged_plain == [False]  # wrapped by middleware: plain send()
    assert direct == plain
    assert direct.count(b"event: invalidate") == 3
