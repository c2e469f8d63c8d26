"""For an app's own tests: does every route say what it reads and changes?

``undeclared_routes(app, types)`` lists what the declarations miss (assert it is empty);
``StrictMutations(app, service)`` wraps the app for a test client and fails a 2xx mutation
that notified nothing, naming the route.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import UpdateService
from .routes import NOTHING, api_routes, declarations_of, running_route

__all__ = ["StrictMutations", "UndeclaredMutation", "undeclared_routes"]

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _name(route: Any) -> str:
    return f"{','.join(sorted(set(route.methods) & (MUTATING | {'GET'})))} {route.path}"


def undeclared_routes(app: FastAPI, types: Iterable[str | enum.Enum] = ()) -> list[str]:
    """What the routes of ``app`` fail to declare, one line each (empty: all declared).

    - a mutating route (POST, PUT, PATCH, DELETE) with no ``changes(...)`` and not marked
      ``changes_nothing()``;
    - a GET route tagged with one of ``types`` (the hub's update types) without ``reads``;
    - a declaration naming a type that is not one of ``types``.
    """
    known = {str(getattr(t, "value", t)) for t in types}
    problems = []
    for route in api_routes(app):
        declared = declarations_of(route)
        if set(route.methods) & MUTATING and not any(d.kind == "changes" for d in declared):
            problems.append(
                f"{_name(route)}: a mutation that declares nothing; add "
                "dependencies=[changes(...)] or [changes_nothing()]"
            )
        unknown = sorted({t for d in declared for t in d.types} - known) if known else []
        if unknown:
            problems.append(f"{_name(route)}: declares {unknown}, which are not update types")
        tagged = {str(getattr(t, "value", t)) for t in route.tags} & known
        if "GET" in route.methods and tagged and not any(d.kind == "reads" for d in declared):
            problems.append(
                f"{_name(route)}: tagged {sorted(tagged)} but declares no reads(...); add "
                f"dependencies=[reads({', '.join(map(repr, sorted(tagged)))})]"
            )
    return problems


class UndeclaredMutation(AssertionError):
    """A 2xx mutation notified nothing and is not marked ``changes_nothing()``."""


class StrictMutations:
    """ASGI wrapper for a test client: a 2xx mutation that produced no update fails.

    It compares the hub's cursor before and after each mutating request, so run the
    requests of one test one after the other. Routes marked ``changes_nothing()`` and
    answers other than 2xx are let through.
    """

    def __init__(self, app: ASGIApp, service: UpdateService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING:
            await self.app(scope, receive, send)
            return
        before = await self.service.flush()
        status = 0

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, record)
        route = running_route(scope)
        if route is None or not 200 <= status < 300 or NOTHING in declarations_of(route):
            return
        if await self.service.flush() == before:
            raise UndeclaredMutation(
                f"{scope['method']} {route.path} answered {status} but notified nothing: "
                "declare what it changes (dependencies=[changes(...)]) or mark it "
                "changes_nothing()"
            )
