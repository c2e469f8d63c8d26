"""ETags for JSON GETs: a refetch of unchanged data costs a `304` and no body.

An ASGI middleware rather than per-route code, so every `GET` gets it and no route can forget.
The tag is a hash of the body, so it changes exactly when what this caller sees changes.
Streams (`text/event-stream`) and non-200 answers pass through untouched.
"""

from __future__ import annotations

import hashlib

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ETagMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        if_none_match = Headers(scope=scope).get("if-none-match")
        start: Message | None = None
        chunks: list[bytes] = []
        passthrough = False

        async def buffered_send(message: Message) -> None:
            nonlocal start, passthrough
            if passthrough:
                await send(message)
                return
            if message["type"] == "http.response.start":
                headers = Headers(raw=message["headers"])
                if message["status"] != 200 or not headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    passthrough = True
                    await send(message)
                    return
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            headers = MutableHeaders(raw=list(start["headers"]))
            headers["etag"] = etag
            # private: per-user data; no-cache: always revalidate, a 304 is cheap
            headers["cache-control"] = "private, no-cache"
            headers["vary"] = "Cookie, Authorization"
            if if_none_match is not None and etag in _tags(if_none_match):
                del headers["content-length"]
                del headers["content-type"]
                await send({"type": "http.response.start", "status": 304, "headers": headers.raw})
                await send({"type": "http.response.body", "body": b""})
                return
            headers["content-length"] = str(len(body))
            await send({**start, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, buffered_send)


def _tags(header: str) -> set[str]:
    tags = {t.strip() for t in header.split(",")}
    return tags | {t[2:] for t in tags if t.startswith("W/")}
