"""A Python client for refetch streams: an async iterator that survives reconnects.

    async for frame in refetch.client.listen("http://127.0.0.1:8000/api/updates"):
        if frame.event == "invalidate":
            ...

It resends the last cursor on reconnect (so the server replays what was missed),
backs off with full jitter, treats twice the heartbeat of silence as a dead connection,
and surfaces ``resync`` frames for the caller to act on. Every reconnect is logged on
the ``refetch.client`` logger with its reason (``extra``: url, status, reason, delay).
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

from ._backoff import full_jitter
from ._exceptions import ConfigurationError, StreamError, StreamRejected
from ._parser import ServerSentEvent, SSEParser

__all__ = ["Frame", "Invalidation", "listen"]

logger = logging.getLogger("refetch.client")


@dataclass(frozen=True, slots=True)
class Invalidation:
    type: str
    keys: tuple[str, ...] | None  # None: the whole type


@dataclass(frozen=True, slots=True)
class Frame:
    """One protocol-v1 frame: ``hello``, ``invalidate``, ``resync``, ``ping`` or ``reconnect``."""

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


#: The heartbeat the protocol defaults to, for the silence allowed before a ``hello`` says.
DEFAULT_HEARTBEAT = 15.0
#: After a ``reconnect`` frame (a draining server): failed attempts are retried every
#: DRAIN_STEP to 2 x DRAIN_STEP seconds for DRAIN_WINDOW seconds, as refetch-sse does.
DRAIN_WINDOW = 15.0
DRAIN_STEP = 0.25
#: Bytes of a non-stream answer kept for the error message.
_BODY_LIMIT = 2000


class _Retry(Exception):
    """A failed attempt that retrying may fix (5xx, 408, 429, silence, a dropped connection)."""

    def __init__(self, reason: str, status: int | None = None, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.delay = delay  # the server's Retry-After, if it gave one


async def listen(
    url: str,
    *,
    types: Iterable[str] | None = None,
    watch: Mapping[str, Iterable[str]] | None = None,
    headers: Mapping[str, str] | None = None,
    last_event_id: str | None = None,
    client: httpx.AsyncClient | None = None,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    max_attempts: int | None = None,
    include_pings: bool = False,
    read_timeout: float | None = None,
) -> AsyncIterator[Frame]:
    """Yield frames from a refetch stream forever, reconnecting as needed.

    A stream silent for ``read_timeout`` seconds (default: twice the heartbeat its
    ``hello`` announced) is dead: the client reconnects with its cursor. Final answers
    (400, 401, 403, 404, 405, a redirect the client does not follow, a 200 that is not
    ``text/event-stream``) raise ``StreamRejected``; after ``max_attempts`` attempts in a
    row that opened no stream (no ``hello``) it raises ``StreamError``. The backoff
    grows until a stream stays open for one heartbeat interval, not merely until a 200:
    a server that accepts and drops every stream at once is backed off from, not hammered.
    """
    if read_timeout is not None and read_timeout <= 0:
        raise ConfigurationError("read_timeout must be > 0 seconds (or None: 2 x heartbeat)")
    if max_attempts is not None and max_attempts < 1:
        raise ConfigurationError("max_attempts must be >= 1 (or None: retry for ever)")
    # watch={"compute": ["eu-1"]}: watch=compute:eu-1, the keys on-demand pollers poll for
    # this stream (docs/protocol.md); it hears every update of its types all the same.
    params: list[tuple[str, str]] = [("types", ",".join(types))] if types else []
    params += [("watch", f"{t}:{key}") for t, keys in (watch or {}).items() for key in keys]
    own_client = client is None
    http = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=True)
    # Silence on the stream is judged here, from the hello's heartbeat: a fixed httpx read
    # timeout would either cut healthy idle streams or notice a dead one far too late.
    timeout = httpx.Timeout(
        http.timeout.connect, read=None, write=http.timeout.write, pool=http.timeout.pool
    )
    loop = asyncio.get_running_loop()
    cursor = last_event_id
    failures = 0  # attempts in a row that opened no stream: bounded by max_attempts
    unstable = 0  # attempts in a row whose stream did not last a heartbeat: the backoff
    reconnected = False
    retry_ms: int | None = None
    drain_until = 0.0  # loop time: until then failed attempts are retried quickly
    try:
        while True:
            # identity: behind a compressing proxy a gzip stream arrives in lumps, if at
            # all; a proxy that compresses anyway is decoded (aiter_bytes).
            request_headers = {
                "accept": "text/event-stream",
                "accept-encoding": "identity",
                **(headers or {}),
            }
            if cursor is not None:
                request_headers["last-event-id"] = cursor
            heartbeat = DEFAULT_HEARTBEAT
            silence = read_timeout if read_timeout is not None else 2 * heartbeat
            opened_at: float | None = None  # when the hello arrived
            server_delay: float | None = None
            drained: float | None = None  # the delay a ``reconnect`` frame asked for
            status: int | None = None
            request = http.build_request(
                "GET", url, params=tuple(params) or None, headers=request_headers, timeout=timeout
            )
            try:
                try:
                    async with asyncio.timeout(silence):
                        response = await http.send(request, stream=True)
                except TimeoutError:
                    raise _Retry(f"no response within {silence:g} s") from None
                try:
                    await _check(response, url)
                    parser = SSEParser()
                    chunks = response.aiter_bytes()
                    while (chunk := await _next(chunks, silence)) is not None:
                        for event in parser.feed(chunk):
                            frame = _frame(event, reconnected)
                            if parser.retry is not None:
                                retry_ms = parser.retry
                            if event.id is not None:
                                cursor = event.id or None
                            if frame.event == "hello":
                                opened_at, failures, drain_until = loop.time(), 0, 0.0
                                heartbeat = _heartbeat(frame, heartbeat)
                                if read_timeout is None:
                                    silence = 2 * heartbeat
                            elif frame.event == "reconnect":
                                drained = _drain_delay(frame, max_backoff)
                                drain_until = loop.time() + DRAIN_WINDOW
                            if frame.event == "ping" and not include_pings:
                                continue
                            yield frame
                        if drained is not None:
                            break  # the server ends it now: do not wait for a proxy to
                finally:
                    await response.aclose()
                reason, status = "the server ended the stream", 200
            except StreamRejected:
                raise
            except _Retry as exc:
                reason, status, server_delay = exc.reason, exc.status, exc.delay
            except httpx.HTTPError as exc:
                reason, status = _describe_error(exc), None
            healthy = opened_at is not None and loop.time() - opened_at >= heartbeat
            unstable = 0 if healthy else unstable + 1
            if opened_at is None:
                failures += 1
                if max_attempts is not None and failures >= max_attempts:
                    raise StreamError(
                        f"gave up on {url} after {failures} failed attempt(s) in a row; "
                        f"the last: {reason}"
                    )
            base = backoff if retry_ms is None else retry_ms / 1000
            if drained is not None:
                # A draining server said when (spread over its clients); then quick steps
                # while it restarts, not the backoff that grows while it is down.
                delay, unstable = drained, 0
            elif loop.time() < drain_until:
                delay = random.uniform(DRAIN_STEP, 2 * DRAIN_STEP)
            else:
                delay = full_jitter(base, max_backoff, max(unstable - 1, 0))
            if server_delay is not None and drained is None:
                delay = max(delay, min(server_delay, max_backoff))
            # A stream the server ended (a deploy, a sign-out) is routine; anything else
            # means the service is stale until the reconnect works.
            ended = status == 200 and opened_at is not None
            routine = (ended and unstable <= 1) or drained is not None
            log = logger.info if routine else logger.warning
            log(
                "%s: %s; reconnecting in %.2f s",
                url,
                reason,
                delay,
                extra={
                    "url": url,
                    "status": status,
                    "reason": reason,
                    "delay": delay,
                    "attempt": unstable,
                },
            )
            reconnected = True
            await asyncio.sleep(delay)
    finally:
        if own_client:
            await http.aclose()


def _drain_delay(frame: Frame, max_backoff: float) -> float:
    """Seconds a ``reconnect`` frame asks to wait (a quick step if it says nothing usable)."""
    delay = frame.data.get("delay")
    if isinstance(delay, int | float) and not isinstance(delay, bool) and delay >= 0:
        return min(delay / 1000, max_backoff)
    return random.uniform(DRAIN_STEP, 2 * DRAIN_STEP)


async def _next(chunks: AsyncIterator[bytes], silence: float) -> bytes | None:
    """The next chunk of the body, ``None`` at its end; raises ``_Retry`` after silence.

    The timeout covers only the read: the generator's ``yield`` runs the caller's code,
    which must never be cancelled for being slow.
    """
    try:
        async with asyncio.timeout(silence):
            return await anext(chunks, None)
    except TimeoutError:
        raise _Retry(f"no data for {silence:g} s, the stream is dead") from None


async def _check(response: httpx.Response, url: str) -> None:
    """Raise unless ``response`` is an event stream: final answers as ``StreamRejected``."""
    status = response.status_code
    if status == 200:
        media = response.headers.get("content-type", "").partition(";")[0].strip().lower()
        if media == "text/event-stream":
            return
        body = await _body(response)
        raise StreamRejected(
            status,
            body,
            f"{url} answered 200 with content-type {media or '(none)'!r}, not "
            f"'text/event-stream': is this the URL of the refetch endpoint? body: {body!r}",
        )
    body = await _body(response)
    if 300 <= status < 400:
        location = response.headers.get("location")
        raise StreamRejected(
            status,
            body,
            f"{url} redirects (HTTP {status}) to {location}: use that URL, or pass a client "
            "with follow_redirects=True",
        )
    if 400 <= status < 500 and status not in (408, 429):
        raise StreamRejected(
            status, body, f"{url} rejected the stream with HTTP {status}: {body!r}"
        )
    raise _Retry(f"HTTP {status}: {body!r}", status, _retry_after(response))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isascii() and value.isdigit() else None


def _heartbeat(hello: Frame, current: float) -> float:
    value = hello.data.get("heartbeat")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return current


def _describe_error(exc: httpx.HTTPError) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _frame(event: ServerSentEvent, reconnected: bool) -> Frame:
    try:
        data = json.loads(event.data) if event.data else {}
    except json.JSONDecodeError:
        data = {"raw": event.data}
    if not isinstance(data, dict):
        data = {"value": data}
    return Frame(event.event, data, event.id, reconnected)


async def _body(response: httpx.Response) -> object:
    raw = b""
    async for chunk in response.aiter_bytes():
        raw += chunk
        if len(raw) >= _BODY_LIMIT:
            raw = raw[:_BODY_LIMIT]
            break
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
