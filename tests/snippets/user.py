"""The signed-in user, the scopes they keep and their login, for the ``reauthorize`` and
sign-out snippets."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def setup(ns: dict[str, Any]) -> None:
    ns["user"] = SimpleNamespace(id=7)
    ns["new_scopes"] = ["user:7"]
    ns["login_id"] = "5f0c2a9e8d41b7c3"  # the browser session's public id (sign-out)
