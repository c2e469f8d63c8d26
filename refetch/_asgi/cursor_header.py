"""``Refetch-Cursor`` on API responses: the cursor the data of a response was read at.

A client that opens its update stream from the oldest cursor of the data it shows gets a replay
of exactly what changed since that data was read, so nothing committed between a page's first
fetch and the stream's ``hello`` is lost (docs/protocol.md, "Refetch-Cursor").
"""

from __future__ import annotations

from collections.abc import Callable

from .._hub.front import UpdateService
from .._types import ASGIApp, Message, Receive, Scope, Send
from .endpoint import ANSWERED_BY_ENDPOINT

CURSOR_HEADER = b"refetch-cursor"


class CursorHeaderMiddleware:
    """ASGI middleware stamping ``Refetch-Cursor: <service.cursor>`` on every HTTP response.

        The cursor is taken when the request arrives, before the handler reads its data: a change
        committed while the handler runs is then newer than the cursor and is replayed (at worst
        one fetch too many, never one too few). The update stream's own responses (the stream and
    the endpoint's refusals) are left alone.
        Cross-origin clients need ``Access-Control-Expose-Headers: Refetch-Cursor`` to read it.

        ``when(scope)``, if given, is asked as the response starts (the app has run by then, so
        it can look at what the app left in ``scope["state"]``); the header is stamped only if it
        returns true. The cursor counts every change of every audience, so an app with tenants
        passes e.g. "the request was authenticated" and anonymous answers do not carry it.
    """

    def __init__(
        self,
        app: ASGIApp,
        service: UpdateService,
        *,
        when: Callable[[Scope], bool] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.when = when

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cursor = self.service.cursor.encode("ascii")

        async def stamped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                is_stream = any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in headers
                )
                is_stream = is_stream or scope.get(ANSWERED_BY_ENDPOINT, False)
                if not is_stream and (self.when is None or self.when(scope)):
                    headers = [(n, v) for n, v in headers if n.lower() != CURSOR_HEADER]
                    headers.append((CURSOR_HEADER, cursor))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped_send)
