"""The stream in OpenAPI: its parameters, its events and its refusals, as plain dicts.

The events follow OpenAPI 3.2's description of Server-Sent Events (an ``itemSchema`` on
``text/event-stream``: one item per event, its ``data`` a JSON string), the form FastAPI's own
SSE uses since 0.135. Everything is inline, so an app gets it from its route alone, without
adding components to its schema; the types enum carries the title ``title`` (``UpdateType``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .._cursor import MAX_LENGTH as MAX_CURSOR_LENGTH

EVENTS = ("hello", "invalidate", "resync", "ping", "reconnect")


def _json_data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


def _event(name: str, data: dict[str, Any], *, with_id: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"event": {"const": name}, "data": _json_data(data)}
    if with_id:
        properties["id"] = {
            "type": "string",
            "description": "the cursor: send it back as Last-Event-ID",
        }
    if name in ("hello", "reconnect"):
        properties["retry"] = {"type": "integer", "minimum": 0}
    return {
        "title": f"{name.capitalize()}Event",
        "type": "object",
        "required": ["event", "data"],
        "properties": properties,
    }


def event_schema(types: Sequence[str], *, title: str = "UpdateType") -> dict[str, Any]:
    """One event of the stream: ``hello``, ``invalidate``, ``resync``, ``ping`` or ``reconnect``."""
    update_type = {"title": title, "type": "string", "enum": list(types)}
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": list(EVENTS)},
            "data": {"type": "string", "contentMediaType": "application/json"},
            "id": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": [
            _event(
                "hello",
                {
                    "type": "object",
                    "required": ["cursor", "heartbeat", "types"],
                    "properties": {
                        "cursor": {"type": "string"},
                        "heartbeat": {
                            "type": "number",
                            "description": "seconds; no frame for twice as long: reconnect",
                        },
                        "types": {"type": "array", "items": update_type},
                        "watch": {
                            "type": "array",
                            "items": update_type,
                            "description": "the types polled per key on demand: send the keys "
                            "shown of these as watch=<type>:<key>; absent: none",
                        },
                    },
                },
                with_id=True,
            ),
            _event(
                "invalidate",
                {
                    "type": "object",
                    "required": ["updates"],
                    "properties": {
                        "updates": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["type"],
                                "properties": {
                                    "type": update_type,
                                    "keys": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "description": "only these objects; absent: the whole type",
                                    },
                                },
                            },
                        }
                    },
                },
                with_id=True,
            ),
            _event(
                "resync",
                {
                    "type": "object",
                    "required": ["reason"],
                    "properties": {"reason": {"type": "string"}},
                },
                with_id=True,
            ),
            _event("ping", {"type": "object"}, with_id=False),
            _event(
                "reconnect",
                {
                    "type": "object",
                    "required": ["delay", "reason"],
                    "properties": {
                        "delay": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "ms: the server ends the stream now; reconnect "
                            "after this long, with the cursor",
                        },
                        "reason": {"type": "string"},
                    },
                },
                with_id=False,
            ),
        ],
    }


def _refusal(description: str, codes: Sequence[str]) -> dict[str, Any]:
    """A JSON refusal: ``error`` (one of ``codes``), ``detail``, and extra fields."""
    schema = {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "enum": list(codes)},
            "detail": {"type": "string"},
        },
        "additionalProperties": True,
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def stream_responses(
    types: Sequence[str], *, title: str = "UpdateType"
) -> dict[int | str, dict[str, Any]]:
    """The stream's answers, by status (docs/protocol.md, "Answers before a stream starts")."""
    return {
        200: {
            "description": "The update stream (Server-Sent Events, refetch protocol v1)",
            # ``schema`` is the whole body, for tools that predate OpenAPI 3.2's ``itemSchema``
            # (hey-api 0.95 types the stream as a string then, not as unknown).
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "itemSchema": event_schema(types, title=title),
                }
            },
        },
        400: _refusal(
            "A malformed request: unknown or malformed types= or watch=, too many watched keys, "
            "a cursor or query string too long",
            [
                "unknown_type",
                "malformed_types",
                "malformed_watch",
                "too_many_watched_keys",
                "cursor_too_long",
                "query_too_long",
            ],
        ),
        401: {"description": "Not signed in"},
        403: _refusal("An update type the caller may not watch", ["forbidden_type"]),
        503: _refusal(
            "The server is starting, draining, or cannot confirm permissions (its broker is away)",
            ["not_started", "draining", "unconfirmed"],
        ),
    }


def stream_parameters(types: Sequence[str]) -> list[dict[str, Any]]:
    """``types=``, ``watch=``, ``lastEventId=``, ``Last-Event-ID``: read by the endpoint itself."""
    return [
        {
            "name": "types",
            "in": "query",
            "required": False,
            "description": "Comma-separated update types; default: every type the caller may see",
            "schema": {"type": "string"},
            "example": ",".join(types[:2]),
        },
        {
            "name": "watch",
            "in": "query",
            "required": False,
            "description": (
                "Repeatable: <type>:<key>, the keys of a type this stream shows (demand for "
                "on-demand pollers; delivery is unchanged); default: every key of its types"
            ),
            "schema": {"type": "array", "items": {"type": "string", "pattern": "^[^:]+:.+$"}},
            "style": "form",
            "explode": True,
        },
        {
            "name": "lastEventId",
            "in": "query",
            "required": False,
            "description": "Resume after this cursor (the Last-Event-ID header wins)",
            "schema": {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
        },
        {
            "name": "Last-Event-ID",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": MAX_CURSOR_LENGTH},
        },
    ]
