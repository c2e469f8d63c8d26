"""Routes that declare what they read and what they change; refetch notifies for them.

    router = APIRouter(route_class=DeclaredRoute)

    @router.get("/projects/{project_id}", dependencies=[reads("projects", key="project_id")])
    async def get_project(project_id: int) -> Project: ...

    @router.patch("/projects/{project_id}", dependencies=[changes("projects", key="project_id")])
    async def rename_project(project_id: int, body: Rename, db: Database) -> Project: ...

A declaration is a FastAPI dependency, so it sits where FastAPI users look for per-route
behaviour and works on a router's ``dependencies=`` too. ``DeclaredRoute`` runs the route and,
only if it answered 2xx and every ``scope="function"`` dependency closed without an error (a
session that commits there has committed), notifies each declared change and waits until the
hub has taken it (``flush``) before the response is sent: the caller's next read, and the
``Refetch-Cursor`` of the next response, cannot miss it. An exception, an error status or a
failed commit notifies nothing. The declarations also go into OpenAPI as ``x-refetch``
(docs/protocol.md, "Route declarations").
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Scope

from . import PublishError, UpdateService

__all__ = [
    "Context",
    "Declaration",
    "DeclaredRoute",
    "FromResult",
    "changes",
    "changes_nothing",
    "declarations_of",
    "from_result",
    "reads",
    "use_service",
]

logger = logging.getLogger("refetch")

#: The request's declarations, collected by the dependencies as FastAPI solves them.
_DECLARED = "refetch.declared"
#: Set by DeclaredRoute: a declaration on any other route would silently notify nothing.
_RUNNING = "refetch.declared_route"
#: Where use_service() keeps the hub on the app's state.
_SERVICE = "refetch_service"
#: How long a mutation may wait for the hub (a broker) to take its updates, counted from the
#: request's start (a route that already waited for the broker itself, e.g. to publish a
#: revocation, does not wait twice); then it answers anyway, and the updates are kept and
#: published when the broker answers.
FLUSH_TIMEOUT = 2.0


@dataclass(frozen=True)
class FromResult:
    """A key read from the route's JSON result (a top-level field)."""

    field: str


def from_result(field: str) -> FromResult:
    """``key=from_result("id")``: the key is the ``id`` of what the route returned."""
    return FromResult(field)


@dataclass(frozen=True)
class Context:
    """What an ``audience`` callable sees: the request (``request.state`` holds what the
    app's dependencies left there, e.g. its principal), the path parameters, and the JSON
    result (None without a JSON body, e.g. a 204)."""

    request: Request
    params: Mapping[str, Any]
    result: Any


Audience = Callable[[Context], Iterable[str] | str | None]
#: A key the server computes (e.g. the caller's own id): opaque to a client.
KeyOf = Callable[[Context], str | int | None]


@dataclass(frozen=True, eq=False)
class Declaration:
    """One ``reads(...)`` or ``changes(...)``; as a dependency it records itself."""

    kind: Literal["reads", "changes"]
    types: tuple[str, ...]
    key: str | FromResult | KeyOf | None = None
    audience: Audience | None = field(default=None, repr=False)

    async def __call__(self, request: Request) -> None:
        if not request.scope.get(_RUNNING):
            raise RuntimeError(
                f"{self.kind}({', '.join(map(repr, self.types))}) is declared on a route that "
                "is not a refetch DeclaredRoute, so it would notify nothing: create its router "
                "with APIRouter(route_class=refetch.routes.DeclaredRoute)"
            )
        request.scope.setdefault(_DECLARED, []).append(self)

    def openapi(self) -> list[dict[str, Any]]:
        """This declaration's entries in ``x-refetch``: one per type."""
        key: dict[str, Any] | None = None
        if isinstance(self.key, str):
            key = {"path": self.key}
        elif isinstance(self.key, FromResult):
            key = {"result": self.key.field}
        elif self.key is not None:
            key = {"computed": True}
        return [{"type": t} if key is None else {"type": t, "key": key} for t in self.types]

    def updates(self, context: Context) -> list[tuple[str, str | None, Any]]:
        key: Any = None
        if isinstance(self.key, str):
            if self.key not in context.params:
                raise RuntimeError(
                    f"changes(key={self.key!r}): the route has no such path parameter"
                )
            key = context.params[self.key]
        elif isinstance(self.key, FromResult):
            if not isinstance(context.result, dict) or self.key.field not in context.result:
                raise RuntimeError(
                    f"changes(key=from_result({self.key.field!r})): the route's JSON result has "
                    "no such field; return it, or take the key from a path parameter"
                )
            key = context.result[self.key.field]
        elif self.key is not None:
            key = self.key(context)
        audience = None if self.audience is None else self.audience(context)
        return [(t, None if key is None else str(key), audience) for t in self.types]


def _types(types: tuple[str | Any, ...], kind: str) -> tuple[str, ...]:
    if not types:
        raise TypeError(f"{kind}() needs at least one update type, e.g. {kind}('projects')")
    # an enum member (e.g. a StrEnum of the app's types) stands for its value
    return tuple(str(getattr(t, "value", t)) for t in types)


def reads(*types: str | Any, key: str | None = None) -> Any:
    """The route's data is refreshed by these update types (``key``: a path parameter)."""
    return Depends(Declaration("reads", _types(types, "reads"), key))


def changes(
    *types: str | Any,
    key: str | FromResult | KeyOf | None = None,
    audience: Audience | None = None,
) -> Any:
    """A 2xx answer means these types changed: notify them after the commit.

    ``key``: a path parameter's name, ``from_result("field")``, or ``key(context)`` (e.g.
    the caller's id; clients see it as "some key"); none: the whole type.
    ``audience(context)``: the scopes that may hear it (None: everyone).
    """
    return Depends(Declaration("changes", _types(types, "changes"), key, audience))


#: A mutating route that notifies nothing, on purpose (the contract check accepts it).
NOTHING = Declaration("changes", ())


def changes_nothing() -> Any:
    """Mark a mutating route that changes no update type (e.g. a login)."""
    return Depends(NOTHING)


def use_service(app: Any, service: UpdateService) -> None:
    """Tell the declared routes of ``app`` which hub to notify."""
    setattr(app.state, _SERVICE, service)


def declarations_of(route: Any) -> list[Declaration]:
    """Every declaration among the dependencies of ``route`` (an APIRoute, or FastAPI's
    view of one included in a router), nested ones too."""
    found: list[Declaration] = []
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, Declaration):
            found.append(dependant.call)
        pending.extend(dependant.dependencies)
    return found


def x_refetch(declarations: Iterable[Declaration]) -> dict[str, list[dict[str, Any]]] | None:
    """The ``x-refetch`` of an operation, or None when it declares nothing."""
    declared = list(declarations)
    if not declared:
        return None
    return {
        kind: [entry for d in declared if d.kind == kind for entry in d.openapi()]
        for kind in ("reads", "changes")
        if any(d.kind == kind for d in declared)
    }


class DeclaredRoute(APIRoute):
    """An APIRoute that notifies what its ``changes(...)`` declare, after its commit."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        declared = declarations_of(self)
        for declaration in declared:
            if isinstance(declaration.key, str) and declaration.key not in self.param_convertors:
                raise ValueError(
                    f"{declaration.kind}(key={declaration.key!r}) on {path}: the key must be one "
                    f"of the path's parameters ({', '.join(self.param_convertors) or 'none'}); "
                    "for a field of the result use key=from_result(...)"
                )
        extension = x_refetch(declared)
        if extension is not None:
            self.openapi_extra = {**(self.openapi_extra or {}), "x-refetch": extension}

    def service_for(self, request: Request) -> UpdateService:
        """The hub to notify; override to find it elsewhere than ``use_service()``."""
        service: UpdateService | None = getattr(request.app.state, _SERVICE, None)
        if service is None:
            raise RuntimeError(
                "a route declares changes(...) but the app has no hub: call "
                "refetch.routes.use_service(app, service) where the app is built"
            )
        return service

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            request.scope[_RUNNING] = True
            deadline = time.monotonic() + FLUSH_TIMEOUT
            answered: list[Response] = []

            async def after(
                exc_type: type[BaseException] | None,
                exc: BaseException | None,
                traceback: TracebackType | None,
            ) -> bool:
                # Runs after every scope="function" dependency closed (LIFO): a session
                # that commits there has committed; one that failed raised into here.
                if exc_type is None and answered:
                    await _notify(request, answered[0], self.service_for, deadline)
                return False

            stack = request.scope.get("fastapi_function_astack")
            if stack is not None:
                stack.push_async_exit(after)
            response = await handle(request)
            answered.append(response)
            if stack is None:  # a FastAPI without function-scoped dependencies
                await _notify(request, response, self.service_for, deadline)
            return response

        return handler


async def _notify(
    request: Request,
    response: Response,
    service_for: Callable[[Request], UpdateService],
    deadline: float,
) -> None:
    declared: list[Declaration] = request.scope.get(_DECLARED, [])
    changed = [d for d in declared if d.kind == "changes" and d.types]
    if not changed or not 200 <= response.status_code < 300:
        return
    service = service_for(request)
    context = Context(request, request.path_params, _json_result(response))
    for declaration in changed:
        for type_, key, audience in declaration.updates(context):
            service.notify(type_, key, audience=audience)
    try:
        # Without a broker this returns at once: the updates are numbered now.
        await service.flush(timeout=max(0.0, deadline - time.monotonic()))
    except PublishError as exc:
        # Kept and in force on this instance; published when the broker answers.
        logger.warning("declared updates not yet published to the other instances: %r", exc)


def _json_result(response: Response) -> Any:
    body = getattr(response, "body", None)
    if not body or "json" not in (response.media_type or response.headers.get("content-type", "")):
        return None
    try:
        return json.loads(body)
    except ValueError:
        return None


def running_route(scope: Scope) -> Any:
    """The route that answered this request, as FastAPI saw it: with the dependencies and
    the prefix of the routers it was included through (None if no APIRoute answered)."""
    effective = scope.get("fastapi", {}).get("effective_route_context")
    if effective is not None:
        return effective
    route = scope.get("route")
    return route if isinstance(route, APIRoute) else None


def api_routes(app: Any) -> list[Any]:
    """The app's APIRoutes as FastAPI serves them (with their routers' prefix and
    dependencies)."""
    try:  # FastAPI >= 0.160 keeps included routers as such and resolves them lazily
        from fastapi.routing import iter_route_contexts
    except ImportError:
        return [r for r in app.routes if isinstance(r, APIRoute)]
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]
