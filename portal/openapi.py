"""The OpenAPI schema, plus what FastAPI cannot see: the update stream and its frames, the
answers of FastAPI's own body parsing, and how each operation authenticates.

The stream is refetch's plain ASGI endpoint, so it is described here by hand; its frames
reference `UpdateType`, which makes the update types one enum for the TypeScript client.
Security is read from the code: an operation whose dependencies include `current_auth` takes
the bearer token or the session cookie, and with the cookie a mutation also needs the CSRF
header (`portal/auth.py`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .auth import COOKIE_NAME, CSRF_HEADER, SAFE_METHODS, current_auth
from .schemas import Error
from .updates import STREAM_FRAMES, UpdateType

ERROR_REF = {"$ref": "#/components/schemas/Error"}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The token from POST /api/login"},
    "sessionCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE_NAME,
        "description": "Set by POST /api/login (browsers)",
    },
    "csrfToken": {
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
        "description": "`csrf_token` from POST /api/login or GET /api/me; with the cookie, "
        "on every request that is not GET, HEAD or OPTIONS",
    },
}
# FastAPI answers 400 itself when a JSON body is not UTF-8; other undecodable JSON is a 422.
UNDECODABLE_BODY = "The body is not UTF-8 text"


def operation_id(route: APIRoute) -> str:
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


def _depends_on(dependant: Dependant, call: Any) -> bool:
    return dependant.call is call or any(_depends_on(d, call) for d in dependant.dependencies)


def authenticated_operations(app: FastAPI) -> set[str]:
    """The operation ids whose routes run `current_auth`."""
    return {
        operation_id(context.original_route)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
        and _depends_on(context.original_route.dependant, current_auth)
    }


def _declare_security_and_bodies(schema: dict[str, Any], authenticated: set[str]) -> None:
    schema["components"]["securitySchemes"] = SECURITY_SCHEMES
    for item in schema["paths"].values():
        for method, operation in item.items():
            if "requestBody" in operation:
                operation["responses"].setdefault("400", _error(UNDECODABLE_BODY))
            if operation["operationId"] not in authenticated:
                operation["security"] = []
                continue
            cookie: dict[str, list[str]] = {"sessionCookie": []}
            if method.upper() not in SAFE_METHODS:
                cookie["csrfToken"] = []
            operation["security"] = [{"bearer": []}, cookie]


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    models: list[type[BaseModel]] = [*STREAM_FRAMES, Error]
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    schema["paths"]["/api/updates"] = {
        "get": {
            "operationId": "streamUpdates",
            "tags": ["updates"],
            "summary": "The one update stream (Server-Sent Events, refetch protocol v1)",
            "description": (
                "Frames: `hello` (HelloFrame), `invalidate` (InvalidateFrame), `resync` "
                "(ResyncFrame), `ping`. Resume with the `Last-Event-ID` header or `lastEventId`."
            ),
            "parameters": [
                {
                    "name": "types",
                    "in": "query",
                    "required": False,
                    "description": "Comma-separated update types; default: all.",
                    "schema": {"type": "string"},
                    "example": ",".join(t.value for t in list(UpdateType)[:2]),
                },
                {
                    "name": "lastEventId",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "The stream",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": _error("Unknown update type (the body lists the known ones)"),
                "401": _error("Not signed in"),
                "403": _error("An update type the caller may not watch"),
                "503": _error("The server is starting, draining, or lost its backend"),
            },
        }
    }
    _declare_security_and_bodies(schema, authenticated_operations(app) | {"streamUpdates"})
    schema.setdefault("tags", []).extend(
        {"name": t.value, "description": f"Routes whose data the `{t.value}` update refreshes."}
        for t in UpdateType
    )
    app.openapi_schema = schema
    return schema
