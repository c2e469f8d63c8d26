"""Run one documentation snippet (and what it builds on) in this fresh interpreter.

Reads a JSON list of blocks on stdin, each ``{"path", "line", "source", "harnesses"}``: the
block this test is about, after the blocks it continues.
Every step shares one namespace and one event loop; top-level ``await`` is allowed. The code
is compiled under its Markdown file's name, padded so that a traceback's line numbers are the
lines of the ``.md`` file.
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import inspect
import json
import sys
from types import ModuleType
from typing import Any


def _call(loop: asyncio.AbstractEventLoop, function: Any, ns: dict[str, Any]) -> None:
    result = function(ns)
    if inspect.isawaitable(result):
        loop.run_until_complete(result)


def _code(loop: asyncio.AbstractEventLoop, step: dict[str, Any], ns: dict[str, Any]) -> None:
    padded = "\n" * (step["line"] - 1) + step["source"]
    code = compile(padded, step["path"], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    # Code without a top-level await runs outside the loop, as a plain script would (it
    # may call asyncio.run itself); with one, it runs on the loop the other steps share.
    result = eval(code, ns)
    if inspect.isawaitable(result):
        loop.run_until_complete(result)


def main() -> None:
    steps: list[dict[str, Any]] = json.load(sys.stdin)
    ns: dict[str, Any] = {"__name__": "__snippet__"}
    loop = asyncio.new_event_loop()
    started: list[ModuleType] = []
    try:
        for step in steps:
            harnesses = [importlib.import_module(f"tests.snippets.{n}") for n in step["harnesses"]]
            for harness in harnesses:
                started.append(harness)
                if hasattr(harness, "setup"):
                    _call(loop, harness.setup, ns)
            _code(loop, step, ns)
            for harness in harnesses:
                if hasattr(harness, "check"):
                    _call(loop, harness.check, ns)
    finally:
        for harness in reversed(started):
            if hasattr(harness, "teardown"):
                _call(loop, harness.teardown, ns)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


if __name__ == "__main__":
    main()
