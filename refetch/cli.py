"""``refetch listen URL``: print a stream's frames, one readable line each.
``refetch tags SCHEMA -o FILE``: write the schema tags module for refetch-sse's ``fromSchema()``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from . import __version__, client
from ._exceptions import StreamError
from ._schema_tags import SchemaError, render

_DESCRIPTION = "Print the frames of a refetch update stream, one readable line each."
_EPILOG = """\
examples:
  refetch listen http://127.0.0.1:8000/api/updates
  refetch listen https://app.example/api/updates --types projects,compute \\
      -H 'Authorization: Bearer TOKEN' --max-attempts 5

Frames go to stdout; why the stream reconnects (HTTP status, silence, refused
connection) goes to stderr. Exit status: 130 after Ctrl-C; 1 when the server
rejects the stream or after --max-attempts failed attempts in a row; 2 for a usage
error.
"""


def _describe(frame: client.Frame) -> str:
    if frame.event == "invalidate":
        parts = [
            u.type if u.keys is None else f"{u.type}[{','.join(u.keys)}]" for u in frame.updates
        ]
        return f"invalidate {' '.join(parts)}  (cursor {frame.id})"
    if frame.event == "hello":
        types = ",".join(frame.data.get("types", []))
        return f"hello cursor={frame.data.get('cursor')} types={types}"
    if frame.event == "resync":
        return f"resync ({frame.data.get('reason')}): refetch everything  (cursor {frame.id})"
    return frame.event


def _header(text: str) -> tuple[str, str]:
    name, colon, value = text.partition(":")
    name = name.strip()
    if not colon or not name or any(c.isspace() for c in name):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a header: write it as 'Name: value', e.g. 'Authorization: Bearer x'"
        )
    return name, value.strip()


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refetch", description="refetch: the command-line client of a refetch hub."
    )
    parser.add_argument("--version", action="version", version=f"refetch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    listen = commands.add_parser(
        "listen",
        help="print the frames of a refetch stream",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listen.add_argument("url", help="the stream's URL, e.g. http://127.0.0.1:8000/api/updates")
    listen.add_argument("--types", help="comma-separated update types, e.g. projects,compute")
    listen.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        type=_header,
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable)",
    )
    listen.add_argument("--last-event-id", metavar="CURSOR", help="resume after this cursor")
    listen.add_argument("--pings", action="store_true", help="print ping frames too")
    listen.add_argument(
        "--max-attempts",
        type=_positive,
        metavar="N",
        help="give up after N failed attempts in a row (default: retry for ever)",
    )
    tags = commands.add_parser(
        "tags",
        help="write the schema tags module for refetch-sse's fromSchema()",
        description=(
            "Write a TypeScript module saying what each operation of an OpenAPI document reads "
            "(its x-refetch declarations), for refetch-sse's fromSchema()."
        ),
        epilog=_TAGS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tags.add_argument(
        "schema",
        help="the OpenAPI document: a JSON file, an http(s) URL, or module:app (a FastAPI app)",
    )
    tags.add_argument("-o", "--output", help="the module to write (default: stdout)")
    tags.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 when --output differs from what would be written",
    )
    return parser


_TAGS_EPILOG = """\
examples:
  refetch tags openapi.json -o src/refetch-tags.ts
  refetch tags http://127.0.0.1:8000/openapi.json -o src/refetch-tags.ts
  refetch tags myapp.main:app -o web/src/refetch-tags.ts --check

module:app is imported from the current directory (as uvicorn does) and its
.openapi() called. Exit status: 1 with --check when the file is stale; 2 when the
document cannot be read.
"""


def _load_schema(source: str) -> Any:
    """The OpenAPI document from a file, a URL, or ``module:app``."""
    if source.startswith(("http://", "https://")):
        response = httpx.get(source, follow_redirects=True, timeout=30)
        response.raise_for_status()
        return response.json()
    path = Path(source)
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    module_name, colon, attribute = source.partition(":")
    if not colon or not module_name or not attribute or os.sep in module_name:
        raise SchemaError(
            f"{source!r} is no file, no http(s) URL and no module:app (e.g. myapp.main:app)"
        )
    sys.path.insert(0, os.getcwd())
    app: Any = importlib.import_module(module_name)
    for name in attribute.split("."):
        app = getattr(app, name)
    if not callable(getattr(app, "openapi", None)):
        raise SchemaError(f"{source} has no openapi() method: is it a FastAPI app?")
    return app.openapi()


def _tags(args: argparse.Namespace) -> int:
    try:
        module = render(_load_schema(args.schema))
    except (OSError, ValueError, ImportError, AttributeError, httpx.HTTPError) as exc:
        print(f"refetch tags: {args.schema}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if not args.output:
            print("refetch tags: --check needs --output FILE", file=sys.stderr)
            return 2
        target = Path(args.output)
        if not target.is_file() or target.read_text(encoding="utf-8") != module:
            print(
                f"refetch tags: {args.output} is out of date with {args.schema}: run "
                f"`refetch tags {args.schema} -o {args.output}` and commit it",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.output:
        Path(args.output).write_text(module, encoding="utf-8")
    else:
        sys.stdout.write(module)
    return 0


async def _listen(args: argparse.Namespace) -> int:
    types = [t.strip() for t in args.types.split(",") if t.strip()] if args.types else None
    try:
        async for frame in client.listen(
            args.url,
            types=types,
            headers=dict(args.header),
            last_event_id=args.last_event_id,
            include_pings=args.pings,
            max_attempts=args.max_attempts,
        ):
            print(_describe(frame), flush=True)
    except StreamError as exc:
        print(f"refetch: {exc}", file=sys.stderr)
        return 1
    return 0


def _log_reconnects() -> None:
    # The client logs every reconnect with its reason; a terminal user wants to see them.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("refetch: %(message)s"))
    log = logging.getLogger("refetch.client")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "tags":
        return _tags(args)
    _log_reconnects()
    try:
        return asyncio.run(_listen(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
