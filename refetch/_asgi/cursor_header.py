"""``Refetch-Cursor`` on API responses: the cursor the data of a response was read at.

A client that opens its update stream from the oldest cursor of the data it shows gets a replay
of exactly what changed since that data was read, so nothing committed between a page's first
fetch and the stream's ``hello`` is lost (docs/protocol.md, "Refetch-Cursor").
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .._exceptions import PublishError, ServiceClosed
from .._hub.front import UpdateService
from .._hub.notified import close_record, notified, open_record
from .._types import ASGIApp, Message, Receive, Scope, Send
from .endpoint import ANSWERED_BY_ENDPOINT

CURSOR_HEADER = b"refetch-cursor"
NOTIFIED_HEADER = b"refetch-notified"
#: How long the answer of a request that notified may wait for the hub (a broker) to number its
#: updates, counted from the request's arrival (as a declared route's own wait); then it answers
#: without ``Refetch-Notified``.
NOTIFIED_TIMEOUT = 2.0


class CursorHeaderMiddleware:
    """ASGI middleware stamping ``Refetch-Cursor: <service.cursor>`` on every HTTP response.

    The cursor is taken when the request arrives, before the handler reads its data: a change
    committed while the handler runs is then newer than the cursor and is replayed (at worst one
    fetch too many, never one too few). The update stream's own responses (the stream and the
    endpoint's refusals) are left alone. Cross-origin clients need
    ``Access-Control-Expose-Headers: Refetch-Cursor, Refetch-Notified`` to read them.

    A request that called ``notify()`` or ``publish()`` on ``service`` also gets
    ``Refetch-Notified: <cursor>``: its answer waits until the hub has numbered those updates (at
    once without a broker; with one, until it confirms, at most 2 s from the request's arrival,
    else the header is left out) and names the hub's cursor then, at or after every one of them.
    A read that starts after this answer sees them, so the client that made the change can skip
    the stream's frame for it where it has read since (docs/js.md, "The tab that made the change").

    ``when(scope)``, if given, is asked as the response starts (the app has run by then, so it
    can look at what the app left in ``scope["state"]``); the headers are stamped only if it
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
        deadline = time.monotonic() + NOTIFIED_TIMEOUT
        record, token = open_record()

        async def stamped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                is_stream = any(
                    name.lower() == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in headers
                )
                is_stream = is_stream or scope.get(ANSWERED_BY_ENDPOINT, False)
                if not is_stream and (self.when is None or self.when(scope)):
                    ours = (CURSOR_HEADER, NOTIFIED_HEADER)
                    headers = [(n, v) for n, v in headers if n.lower() not in ours]
                    headers.append((CURSOR_HEADER, cursor))
                    if notified(record, self.service):
                        after = await self._numbered(deadline)
                        if after is not None:
                            headers.append((NOTIFIED_HEADER, after.encode("ascii")))
                    message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, stamped_send)
        finally:
            close_record(token)

    async def _numbered(self, deadline: float) -> str | None:
        """The hub's cursor once everything notified so far is numbered; None past the deadline,
        or while this instance cannot hear the broker: it then delivers its own updates to its
        streams before they are numbered, in frames whose id does not bound them, and a client
        must not match such a frame against this cursor."""
        try:
            cursor = await self.service.flush(timeout=max(0.0, deadline - time.monotonic()))
        except (PublishError, ServiceClosed):
            return None
        return None if self.service.statistics().listener_down is not None else cursor
