"""``refetch listen URL``: print a stream's frames, one readable line each."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from . import __version__, client
from ._exceptions import StreamError

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
    return parser


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
    _log_reconnects()
    try:
        return asyncio.run(_listen(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
