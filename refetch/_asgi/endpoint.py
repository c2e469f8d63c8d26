"""The one SSE endpoint: a plain ASGI app that mounts in Starlette, FastAPI or anything ASGI."""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import time

from .._auth import ANONYMOUS, Authenticate, Principal
from .._exceptions import ServiceClosed
from .._fanout.connection import Connection
from .._fanout.uvicorn import abort_receiving
from .._hub.front import UpdateService
from .._hub.not_started import NOT_STARTED_FIX
from .._log import stream_closed, stream_opened, stream_rejected
from .._types import Receive, Scope, Send
from .fast_path import SCOPE_KEY, ServerSide
from .request import Refusal, RequestReader, StreamRequest

#: Ends after which the client's socket is no use: a write failed, or the client stopped
#: reading.
_CUT = ("send failed", "slow")
#: How long an ended stream waits for the server to notice its client is gone: one turn of
#: the loop after an abort; where refetch cannot abort (not uvicorn, or middleware wrapped
#: ``receive``) a client that stopped reading may never go, and the server closes it.
CUT_GRACE = 1.0
#: Set in the scope of every request the endpoint answers (stream or refusal), so that
#: ``CursorHeaderMiddleware`` leaves its answers alone: a cursor means "the data of this
#: response was read at", and a refusal carries no data.
ANSWERED_BY_ENDPOINT = "refetch.endpoint"


def _stream_headers() -> list[tuple[bytes, bytes]]:
    """The headers of one stream's response, in a list of its own.

    ASGI middleware edits ``message["headers"]`` in place (Starlette's
    ``MutableHeaders``, ``BaseHTTPMiddleware``, a plain ``append``), so a list shared
    between responses would carry one client's ``Set-Cookie`` onto the next stream.

    ``Content-Encoding: identity`` makes compressing middleware (Starlette's
    ``GZipMiddleware`` since 0.22, Django's, nginx's gzip) leave the stream alone:
    compressed, frames would wait in the compressor's buffer. ``no-transform`` asks
    proxies and CDNs for the same; ``X-Accel-Buffering: no`` turns nginx's buffering off.
    """
    return [
        (b"content-type", b"text/event-stream"),
        (b"cache-control", b"no-store, no-transform"),
        (b"content-encoding", b"identity"),
        (b"x-accel-buffering", b"no"),
    ]


class UpdatesEndpoint:
    """``GET`` opens a stream of protocol-v1 frames for one client.

    ``authenticate(scope)`` (sync or async) returns the client's ``Principal`` or
    ``None`` for 401. Without it every client is anonymous: it sees updates sent to
    everyone, never those with an ``audience``. ``challenge`` (e.g. ``"Bearer"``), for an
    app that takes an ``Authorization`` header, is the 401's ``WWW-Authenticate``.
    """

    def __init__(
        self,
        service: UpdateService,
        *,
        authenticate: Authenticate | None = None,
        challenge: str | None = None,
    ) -> None:
        self.service = service
        self.authenticate = authenticate
        self._reader = RequestReader(service.types, service.max_keys)
        # The 401 names the credentials the app takes: a cookie-only app says nothing of
        # bearer tokens, and only an app that takes an Authorization header challenges.
        self._unauthorized: tuple[dict[str, object], list[tuple[bytes, bytes]]] = (
            {"error": "unauthorized", "detail": "sign in to open the update stream"},
            [],
        )
        if challenge is not None:
            self._unauthorized = (
                {
                    "error": "unauthorized",
                    "detail": f"sign in to open the update stream (Authorization: {challenge} "
                    "credentials, or the app's session)",
                },
                [(b"www-authenticate", challenge.encode("latin-1"))],
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"UpdatesEndpoint serves HTTP, not {scope['type']!r}")
        scope[ANSWERED_BY_ENDPOINT] = True
        if scope["method"] != "GET":
            await _json(
                scope,
                send,
                405,
                {"error": "method_not_allowed", "detail": "the update stream answers GET only"},
                [(b"allow", b"GET")],
            )
            return
        if not self.service.running:  # before authenticating: a draining server sheds load
            await self._unavailable(scope, send)
            return
        request = self._reader.read(scope)
        if isinstance(request, Refusal):
            await _json(scope, send, 400, request.body())
            return

        authenticated_at = asyncio.get_running_loop().time()
        principal = await self._authenticate(scope)
        if principal is None:
            await _json(scope, send, 401, *self._unauthorized)
            return
        await self._serve(scope, receive, send, request, principal, authenticated_at)

    async def open(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        principal: Principal,
        authenticated_at: float | None = None,
    ) -> None:
        """The stream for a principal the app authenticated itself (``refetch.fastapi``).

        ``authenticated_at`` is the loop time the principal was looked up at, so that a
        ``reauthorize()`` since then wins.
        """
        scope[ANSWERED_BY_ENDPOINT] = True
        if not self.service.running:
            await self._unavailable(scope, send)
            return
        request = self._reader.read(scope)
        if isinstance(request, Refusal):
            await _json(scope, send, 400, request.body())
            return
        await self._serve(scope, receive, send, request, principal, authenticated_at)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        request: StreamRequest,
        principal: Principal,
        authenticated_at: float | None,
    ) -> None:
        requested = request.types
        allowed = self.service.allowed_types(principal)
        forbidden = [t for t in self.service.types if t in requested and t not in allowed]
        if forbidden:
            await _json(
                scope,
                send,
                403,
                {
                    "error": "forbidden_type",
                    "detail": f"not allowed to watch: {', '.join(forbidden)}",
                    "forbidden": forbidden,
                },
            )
            return
        types = requested or allowed
        if not self.service.running:  # shutdown began while authenticating
            await self._unavailable(scope, send)
            return

        unconfirmed = self.service.unavailable(principal)
        if unconfirmed is not None:
            await _json(
                scope,
                send,
                503,
                {"error": "unconfirmed", "detail": unconfirmed},
                [(b"retry-after", b"1")],
            )
            return

        last_event_id = request.last_event_id
        await send({"type": "http.response.start", "status": 200, "headers": _stream_headers()})
        # Behind refetch.mount the frames skip the app's stack once the start is on the wire.
        server: ServerSide | None = scope.get(SCOPE_KEY)
        frames_send = send if server is None else await server.frames_send(send)
        try:
            conn = self.service.attach(
                frames_send, principal, types, last_event_id, authenticated_at, request.watch
            )
        except ServiceClosed:  # closed while the headers were on their way
            farewell = self.service.farewell() if self.service.state != "running" else b""
            await send({"type": "http.response.body", "body": farewell, "more_body": False})
            return
        opened = time.monotonic()
        stream_opened(scope, conn.principal, conn.types, last_event_id)
        # This task owns the stream: it waits until the stream ends, whether the hub
        # ends it or the client goes away (its watcher ends it then), and cleans up.
        # One future to wait on, not asyncio.wait(): a few objects less per stream.
        watcher = asyncio.ensure_future(_watch_disconnect(receive, conn))
        try:
            await conn.ended
            if conn.closing in _CUT:
                # The client cannot be written to, so the response cannot be finished: cut
                # the connection and let the server see it go. Returning unfinished before
                # that is what uvicorn logs at ERROR ("ASGI callable returned without
                # completing response"), for what is only a client that went away or
                # stopped reading.
                abort_receiving(receive if server is None else server.receive)
                await asyncio.wait((watcher,), timeout=CUT_GRACE)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            self.service.detach(conn)
            stream_closed(
                scope,
                conn.principal,
                conn.closing or "gone",
                conn.frames,
                time.monotonic() - opened,
            )
        if conn.closing != "gone" and conn.closing not in _CUT:
            # The hub ended the stream (shutdown, sign-out): finish the response cleanly,
            # with its ``reconnect`` frame when it ended every stream. A slow reader's
            # socket is full, so a last write to it would only hang.
            await send({"type": "http.response.body", "body": conn.farewell, "more_body": False})

    async def _unavailable(self, scope: Scope, send: Send) -> None:
        if self.service.state == "new":
            # No Retry-After: waiting does not help, the app has to be fixed.
            await _json(scope, send, 503, {"error": "not_started", "detail": NOT_STARTED_FIX})
            return
        # Draining (or closed): the process is on its way out. ``connection: close``
        # makes the client's retry open a new connection, which the load balancer
        # (or, once the server stops accepting, the refused connect) sends elsewhere.
        retry_after = str(max(1, math.ceil(self.service.retry_ms / 1000))).encode()
        await _json(
            scope,
            send,
            503,
            {
                "error": "draining",
                "detail": "the server is shutting down; reconnect in a moment "
                "(another instance may answer)",
            },
            [(b"retry-after", retry_after), (b"connection", b"close")],
        )

    async def _authenticate(self, scope: Scope) -> Principal | None:
        if self.authenticate is None:
            return ANONYMOUS
        result = self.authenticate(scope)
        if inspect.isawaitable(result):
            result = await result
        if result is not None and not isinstance(result, Principal):
            raise TypeError(f"authenticate() must return a Principal or None, not {result!r}")
        return result


async def _watch_disconnect(receive: Receive, conn: Connection) -> None:
    """End the stream when the client goes away (or receiving fails)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    finally:
        conn.end("gone")


async def _json(
    scope: Scope,
    send: Send,
    status: int,
    body: dict[str, object],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A refusal: logged on ``refetch.streams``, answered with a JSON body saying why."""
    stream_rejected(scope, status, body)
    payload = json.dumps(body).encode()
    # A new list per response, like the stream's: middleware appends to it in place.
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
