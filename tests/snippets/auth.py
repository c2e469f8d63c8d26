"""A user store for the ``authenticate`` snippet, and a check of what it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class User:
    id: int
    tenants: tuple[str, ...]


def user_from_cookie_or_bearer(scope: dict[str, Any]) -> User | None:
    headers = dict(scope.get("headers", []))
    return User(7, ("acme",)) if headers.get(b"authorization") == b"Bearer seven" else None


def setup(ns: dict[str, Any]) -> None:
    ns["user_from_cookie_or_bearer"] = user_from_cookie_or_bearer


def check(ns: dict[str, Any]) -> None:
    authenticate = ns["authenticate"]
    assert authenticate({"type": "http", "headers": []}) is None
    principal = authenticate({"type": "http", "headers": [(b"authorization", b"Bearer seven")]})
    assert principal.subject == "7" and principal.scopes == frozenset({"user:7", "tenant:acme"})
