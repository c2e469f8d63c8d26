"""The server's own ``send`` for a stream whose handshake went through the app's stack.

``refetch.mount`` (mount.py) lets a stream request through the app and all of its middleware,
so sessions, authentication, CORS, cookies and request ids apply to the stream's ``200`` and to
every refusal, and it leaves a ``ServerSide`` in the scope. Once the response start the app's
stack produced is on the wire, and is still the stream's (a ``200``, not compressed), the
endpoint writes its frames with the server's own ``send``: one write to uvicorn's transport per
frame, no layer in between. Never before: a middleware may still hold the start back
(``BaseHTTPMiddleware`` relays it from a task, ``GZipMiddleware`` waits for the first body),
and a frame written ahead of it would corrupt the response. The end of the response goes back
through the stack, so every layer sees its response complete.
"""

from __future__ import annotations

import asyncio

from .._types import Message, Receive, Send

#: Where ``refetch.mount`` leaves the ``ServerSide`` of a stream request in the ASGI scope.
SCOPE_KEY = "refetch.server"
#: How long the endpoint waits for a start held back by middleware (once nudged by an empty
#: body message) before it writes its frames through the stack instead.
START_WAIT = 1.0
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": True}


class ServerSide:
    """The server's ``send`` and ``receive`` for one request, and the start it wrote."""

    __slots__ = ("_written", "receive", "send", "start")

    def __init__(self, send: Send, receive: Receive) -> None:
        self.send = send
        self.receive = receive
        self.start: Message | None = None
        self._written: asyncio.Event | None = None

    async def tap(self, message: Message) -> None:
        """The ``send`` the app's stack ends in: notes when the start is on the wire."""
        await self.send(message)
        if message["type"] == "http.response.start":
            self.start = message
            if self._written is not None:
                self._written.set()

    async def frames_send(self, stack_send: Send) -> Send:
        """Where the stream's frames go, once its start was sent through ``stack_send``."""
        if self.start is None:
            # A layer holds the start until a body message comes: an empty one writes nothing.
            self._written = asyncio.Event()
            await stack_send({**_EMPTY_BODY})
            try:
                async with asyncio.timeout(START_WAIT):
                    await self._written.wait()
            except TimeoutError:
                return stack_send  # a layer holding it longer: it must see every frame
        return self.send if self._unchanged() else stack_send

    def _unchanged(self) -> bool:
        """The start on the wire is the stream's: no layer replaced or encoded the response."""
        start = self.start
        if start is None or start.get("status") != 200:
            return False
        for name, value in start.get("headers", ()):
            if name.lower() == b"content-encoding" and value.lower() != b"identity":
                return False
        return True
