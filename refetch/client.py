"""A Python client for refetch streams: an async iterator that survives reconnects.

    async for frame in refetch.client.listen("http://127.0.0.1:8000/api/updates"):
        if frame.event == "invalidate":
            ...

It resends the last cursor on reconnect (so the server replays what was missed),
backs off with full jitter, and surfaces ``resync`` frames for the caller to act on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ._exceptions import StreamError, StreamRejected
from ._parser import ServerSentEvent, SSEParser

__all__ = ["Frame", "Invalidation", "listen"]

logger = logging.getLogger("refetch.client")


@dataclass(frozen=True, slots=True)
class Invalidation:
    type: str
    keys: tuple[str, ...] | None  # None: the whole type


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol-v1 frame: ``hello``, ``invalidate``, ``resync`` or ``ping``."""

    event: str
    data: dict[str, Any]
    id: str | None
    reconnected: bool = field(default=False)

    @property
    def updates(self) -> list[Invalidation]:
        return [
            Invalidation(u["type"], None if "keys" not in u else tuple(u["keys"]))
            for u in self.data.get("updates", ())
        ]


async def listen(
    url: str,
    *,
    types: Iterable[str] | None = None,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    client: httpx.AsyncClient | None = None,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    max_attempts: int | None = None,
    include_pings: bool = False,
) -> AsyncIterator[Frame]:
    """Yield frames from a refetch stream forever, reconnecting as needed.

    Final answers (400, 401, 403, 404, 405) raise ``StreamRejected``; after
    ``max_attempts`` failed connection attempts in a row it raises ``StreamError``.
    """
    params = {"types": ",".join(types)} if types else None
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
    cursor = last_event_id
    failures = 0
    reconnected = False
    delay_ms: int | None = None
    try:
        while True:
            request_headers = {"accept": "text/event-stream", **(headers or {})}
            if cursor is not None:
                request_headers["last-event-id"] = cursor
            try:
                async with http.stream("GET", url, params=params, headers=request_headers) as r:
                    if r.status_code != 200:
                        body = await _body(r)
                        if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                            raise StreamRejected(r.status_code, body)
                        raise StreamError(f"HTTP {r.status_code}: {body!r}")
                    failures = 0
                    parser = SSEParser()
                    async for chunk in r.aiter_raw():
                        for event in parser.feed(chunk):
                            frame = _frame(event, reconnected)
                            if parser.retry is not None:
                                delay_ms = parser.retry
                            if event.id is not None:
                                cursor = event.id or None
                            if frame.event == "ping" and not include_pings:
                                continue
                            yield frame
                    logger.info("stream ended by the server; reconnecting")
            except StreamRejected:
                raise
            except (httpx.HTTPError, StreamError) as exc:
                failures += 1
                if max_attempts is not None and failures >= max_attempts:
                    raise StreamError(f"gave up after {failures} attempts: {exc}") from exc
                logger.info("stream lost (%s); reconnecting", exc)
            reconnected = True
            base = backoff if delay_ms is None else delay_ms / 1000
            cap = min(max_backoff, base * 2 ** min(failures, 16))
            await asyncio.sleep(random.uniform(0, cap) if failures else random.uniform(0, base))
    finally:
        if own_client:
            await http.aclose()


def _frame(event: ServerSentEvent, reconnected: bool) -> Frame:
    try:
        data = json.loads(event.data) if event.data else {}
    except json.JSONDecodeError:
        data = {"raw": event.data}
    if not isinstance(data, dict):
        data = {"value": data}
    return Frame(event.event, data, event.id, reconnected)


async def _body(response: httpx.Response) -> object:
    raw = await response.aread()
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
