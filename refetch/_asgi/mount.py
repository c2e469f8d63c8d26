"""The stream in front of the middleware stack: ``app = mount(app, "/api/updates", endpoint)``.

Starlette and FastAPI wrap ``send`` in their own middleware (``ServerErrorMiddleware``,
``ExceptionMiddleware``) and in every middleware the app adds, so a stream routed inside
the app writes each frame through that chain of ``send`` calls, and the hub's direct
write to uvicorn's transport never engages. ``mount`` answers the stream's path before
any of that: the endpoint gets the server's own ``send``, and every other request goes
to the app untouched. The stream then skips what the stack would have done to it (CORS
headers, session cookies, request ids, exception handlers); the one thing a browser
needs from that list, CORS, ``mount`` can add itself (``allow_origins=``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._exceptions import ConfigurationError
from .._fanout.send import StartHeaders
from .._types import ASGIApp, Receive, Scope, Send


class StreamMount:
    """An ASGI app: ``GET path`` goes to ``endpoint``, everything else to ``app``.

    Attribute access falls through to ``app``, so ``app.state``, ``app.include_router``
    and the like still work on the returned object. Requests other than ``GET`` on the
    path (a CORS preflight ``OPTIONS``, say) go to ``app`` too, so its CORS middleware
    still answers them.
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        endpoint: ASGIApp,
        *,
        allow_origins: Iterable[str] = (),
        allow_credentials: bool = False,
    ) -> None:
        if not path.startswith("/") or (path != "/" and path.endswith("/")):
            raise ConfigurationError(
                f"mount path must start with '/' and not end with one, e.g. '/api/updates'; "
                f"got {path!r}"
            )
        if isinstance(allow_origins, str):
            raise ConfigurationError(
                f"allow_origins takes a list of origins, e.g. [{allow_origins!r}]"
            )
        origins = frozenset(allow_origins)
        if allow_credentials and "*" in origins:
            raise ConfigurationError(
                "allow_origins=['*'] with allow_credentials=True: browsers refuse a wildcard "
                "on credentialed requests; list the origins instead"
            )
        self.app = app
        self.path = path
        self.endpoint = endpoint
        self.allow_origins = origins
        self.allow_credentials = allow_credentials

    def __getattr__(self, name: str) -> Any:
        # Only called for names StreamMount itself lacks: the app's own API.
        return getattr(self.__dict__["app"], name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET" or not self._matches(scope):
            await self.app(scope, receive, send)
            return
        # Starlette sets scope["app"] on the way in; authenticate() may read
        # request.app.state (the portal does), so it must be there on this path too.
        scope.setdefault("app", self.app)
        headers = self._cors(scope)
        await self.endpoint(scope, receive, send if not headers else StartHeaders(send, headers))

    def _matches(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if path == self.path:
            return True
        root: str = scope.get("root_path", "")
        return bool(root) and path.startswith(root) and path[len(root) :] == self.path

    def _cors(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """What ``CORSMiddleware`` would add to the stream's answer for this request."""
        if not self.allow_origins:
            return []
        origin = None
        for name, value in scope.get("headers", ()):
            if name == b"origin":
                origin = value
                break
        if origin is None:
            return []
        # The same answer as Starlette's: the origin echoed when listed, nothing for
        # others, and the credentials flag and Vary either way.
        headers = []
        if "*" in self.allow_origins:
            headers.append((b"access-control-allow-origin", b"*"))
        elif origin.decode("latin-1") in self.allow_origins:
            headers.append((b"access-control-allow-origin", origin))
        if self.allow_credentials:
            headers.append((b"access-control-allow-credentials", b"true"))
        headers.append((b"vary", b"Origin"))
        return headers


def mount(
    app: ASGIApp,
    path: str,
    endpoint: ASGIApp,
    *,
    allow_origins: Iterable[str] = (),
    allow_credentials: bool = False,
) -> StreamMount:
    """Serve ``endpoint`` at ``path`` in front of ``app`` and all of its middleware.

    ``app = refetch.mount(app, "/api/updates", UpdatesEndpoint(updates))`` after the app
    is built (routes and middleware added), and serve the returned object. With
    ``allow_origins`` the stream answers a listed ``Origin`` with
    ``Access-Control-Allow-Origin`` (and ``-Allow-Credentials`` when
    ``allow_credentials``), as ``CORSMiddleware`` with the same settings would.
    """
    return StreamMount(
        app, path, endpoint, allow_origins=allow_origins, allow_credentials=allow_credentials
    )
