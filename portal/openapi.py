"""The OpenAPI schema, plus what FastAPI cannot see: the update stream and its frames.

The stream is refetch's plain ASGI endpoint, so it is described here by hand; its frames
reference `UpdateType`, which makes the update types one enum for the TypeScript client.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic.json_schema import models_json_schema

from .updates import STREAM_FRAMES, UpdateType


def operation_id(route: APIRoute) -> str:
    first, *rest = route.name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def custom_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, definitions = models_json_schema(
        [(model, "serialization") for model in STREAM_FRAMES],
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
                "400": {"description": "Unknown update type (the body lists the known ones)"},
                "401": {"description": "Not signed in"},
            },
        }
    }
    schema.setdefault("tags", []).extend(
        {"name": t.value, "description": f"Routes whose data the `{t.value}` update refreshes."}
        for t in UpdateType
    )
    app.openapi_schema = schema
    return schema
