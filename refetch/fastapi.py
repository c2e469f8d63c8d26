"""The update stream as a FastAPI path operation, authenticated by the app's own dependencies.

    stream = UpdatesStream(updates)

    @app.get("/api/updates", **stream.operation)
    async def updates_stream(user: Annotated[User, Depends(current_user)]) -> UpdatesResponse:
        return stream.open(Principal.of(str(user.id), scopes=[f"user:{user.id}"]))

    app = refetch.mount(app, "/api/updates")   # the frames on the fast path

The dependencies run first (a signed-out caller gets the app's own ``401``); the response then
reads ``types=`` and the cursor and answers as ``UpdatesEndpoint`` does (docs/server.md,
"The FastAPI form"). ``stream.operation`` lists the stream in OpenAPI with its event schema and
its ``400/401/403/503`` answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.responses import Response

from ._asgi.endpoint import UpdatesEndpoint
from ._asgi.openapi import stream_parameters, stream_responses
from ._auth import Principal
from ._hub.front import UpdateService
from ._types import Receive, Scope, Send

__all__ = ["UpdatesResponse", "UpdatesStream"]


class UpdatesResponse(Response):
    """The stream for one principal: what a stream path operation returns."""

    # No media type of its own: FastAPI then documents the 200 only as stream.operation says.
    media_type = None

    def __init__(self, endpoint: UpdatesEndpoint, principal: Principal) -> None:
        super().__init__(status_code=200)
        self.endpoint = endpoint
        self.principal = principal
        # The dependencies looked the principal up just now: a reauthorize() since wins.
        self.authenticated_at = asyncio.get_running_loop().time()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.endpoint.open(scope, receive, send, self.principal, self.authenticated_at)


class UpdatesStream:
    """One hub's stream for FastAPI: ``operation`` for the decorator, ``open()`` in the body."""

    def __init__(self, service: UpdateService, *, types_title: str = "UpdateType") -> None:
        self.service = service
        self.endpoint = UpdatesEndpoint(service)
        types = list(service.types)
        #: Keyword arguments for ``@app.get(path, **stream.operation)``.
        self.operation: dict[str, Any] = {
            "response_class": UpdatesResponse,
            "status_code": 200,
            "responses": stream_responses(types, title=types_title),
            "openapi_extra": {"parameters": stream_parameters(types)},
        }

    def open(self, principal: Principal) -> UpdatesResponse:
        """The stream for ``principal``, as the path operation's return value."""
        if not isinstance(principal, Principal):
            raise TypeError(
                f"UpdatesStream.open() takes the caller's refetch.Principal, not {principal!r}: "
                "build it from your user, e.g. Principal.of(str(user.id), scopes=[...])"
            )
        return UpdatesResponse(self.endpoint, principal)
