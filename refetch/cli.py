"""``refetch listen URL``: print a stream's frames, one readable line each."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from . import client
from ._exceptions import StreamError


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


async def _listen(args: argparse.Namespace) -> int:
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    types = args.types.split(",") if args.types else None
    try:
        async for frame in client.listen(
            args.url,
            types=types,
            headers=headers,
            last_event_id=args.last_event_id,
            include_pings=args.pings,
        ):
            print(_describe(frame), flush=True)
    except StreamError as exc:
        print(f"refetch: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refetch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    listen = commands.add_parser("listen", help="print the frames of a refetch stream")
    listen.add_argument("url")
    listen.add_argument("--types", help="comma-separated update types, e.g. projects,compute")
    listen.add_argument(
        "-H", "--header", action="append", default=[], help="extra header, 'Name: value'"
    )
    listen.add_argument("--last-event-id", help="resume after this cursor")
    listen.add_argument("--pings", action="store_true", help="print ping frames too")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_listen(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
