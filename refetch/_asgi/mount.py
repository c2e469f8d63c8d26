"""The stream's fast path: ``app = refetch.mount(app, "/api/updates", endpoint)``.

Starlette and FastAPI wrap ``send`` in their own middleware (``ServerErrorMiddleware``,
``ExceptionMiddleware``) and in every middleware the app adds, so a stream routed inside the
app writes each frame through that chain of ``send`` calls, and the hub's direct write to
uvicorn's transport never engages. ``mount`` keeps the stream inside the app (its handshake goes
through every layer: sessions, authentication, CORS, cookies, request ids, exception handlers)
and puts a ``StreamMount`` outside the whole stack, which hands the endpoint the server's own
``send`` for the frames once the response start is on the wire (fast_path.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .._exceptions import ConfigurationError
from .._types import ASGIApp, Receive, Scope, Send
from .fast_path import SCOPE_KEY, ServerSide

AppT = TypeVar("AppT")


class StreamMount:
    """ASGI middleware, outermost: requests to ``path`` get the server's own ``send`` in the
    scope for their frames (``UpdatesEndpoint`` uses it), and go through ``app`` as usual.

    ``refetch.mount`` installs it in a Starlette or FastAPI app; wrap any other ASGI app in it
    by hand (``StreamMount(app, "/api/updates")``) with the endpoint routed inside ``app``.
    Attribute access falls through to ``app``.
    """

    def __init__(self, app: ASGIApp, path: str) -> None:
        _check_path(path)
        self.app = app
        self.path = path

    def __getattr__(self, name: str) -> Any:
        # Only called for names StreamMount itself lacks: the app's own API.
        return getattr(self.__dict__["app"], name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._matches(scope):
            await self.app(scope, receive, send)
            return
        server = ServerSide(send, receive)
        scope[SCOPE_KEY] = server
        await self.app(scope, receive, server.tap)

    def _matches(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if path == self.path:
            return True
        root: str = scope.get("root_path", "")
        return bool(root) and path.startswith(root) and path[len(root) :] == self.path


def _check_path(path: str) -> None:
    if not path.startswith("/") or (path != "/" and path.endswith("/")):
        raise ConfigurationError(
            f"mount path must start with '/' and not end with one, e.g. '/api/updates'; "
            f"got {path!r}"
        )


def mount(
    app: AppT,
    path: str,
    endpoint: ASGIApp | None = None,
    *,
    allow_origins: object = None,
    allow_credentials: object = None,
) -> AppT:
    """Put the stream at ``path`` on the fast path of a Starlette or FastAPI ``app``; returns it.

    With ``endpoint`` (an ``UpdatesEndpoint``) the route is added too (any method: the endpoint
    answers all but ``GET`` with its JSON ``405``); without it, ``path`` is the app's own route
    (the FastAPI form, ``refetch.fastapi``). The request goes through every middleware of the
    app; only the frames skip them. Call it before the app serves its first request.
    """
    if allow_origins is not None or allow_credentials is not None:
        raise ConfigurationError(
            "mount() no longer takes allow_origins/allow_credentials: the stream goes through "
            "the app's own CORSMiddleware now, so configure CORS there once and drop them here"
        )
    build: Callable[[], ASGIApp] | None = getattr(app, "build_middleware_stack", None)
    if build is None or not hasattr(app, "add_route"):
        raise ConfigurationError(
            f"refetch.mount() installs itself in a Starlette or FastAPI app, not in "
            f"{type(app).__name__}: route the endpoint inside your app and serve "
            f"refetch.StreamMount(app, {path!r}) instead"
        )
    if getattr(app, "middleware_stack", None) is not None:
        raise ConfigurationError(
            "refetch.mount() after the app started serving: call it where the app is built"
        )
    _check_path(path)
    if endpoint is not None:
        app.add_route(path, endpoint)

    def build_with_fast_path() -> ASGIApp:
        return StreamMount(build(), path)

    # Starlette builds its stack lazily, on the first request, from
    # ``self.build_middleware_stack()``: middleware added until then is inside the mount.
    app.build_middleware_stack = build_with_fast_path  # type: ignore[attr-defined]
    return app
