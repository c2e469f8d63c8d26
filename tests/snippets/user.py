"""The signed-in user and the scopes they keep, for the ``reauthorize`` snippet."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any


def setup(ns: dict[str, Any]) -> None:
    ns["user"] = SimpleNamespace(id=7)
    ns["new_scopes"] = ["user:7"]
