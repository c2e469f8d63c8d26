"""The OpenAPI schema, plus what FastAPI cannot see: the answers of FastAPI's own body parsing,
and how each operation authenticates.

The update stream describes itself (`refetch.fastapi`: its events, parameters and refusals);
`UpdateType` is added as a component, so the TypeScript client has the update types as one enum.
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
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from .auth import COOKIE_NAME, CSRF_HEADER, SAFE_METHODS, current_auth
from .schemas import Error
from .updates import UpdateType

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
    models: list[type[BaseModel]] = [Error]
    _, definitions = models_json_schema(
        [(model, "serialization") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    schemas["UpdateType"] = TypeAdapter(UpdateType).json_schema()
    # The stream's 401 is the portal's own (current_auth's), like every route's.
    schema["paths"]["/api/updates"]["get"]["responses"]["401"] = _error("Not signed in")
    _declare_security_and_bodies(schema, authenticated_operations(app) | {"streamUpdates"})
    schema.setdefault("tags", []).extend(
        {"name": t.value, "description": f"Routes whose data the `{t.value}` update refreshes."}
        for t in UpdateType
    )
    app.openapi_schema = schema
    return schema
