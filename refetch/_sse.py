"""Encoding of protocol-v1 frames into the bytes of a ``text/event-stream``.

Every frame is encoded once and the same ``bytes`` object is written to every
connection that gets it; see ``docs/protocol.md`` for the frames themselves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

PING = b"event: ping\ndata: {}\n\n"


def encode_frame(
    event: str,
    data: object,
    *,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one SSE frame. ``data`` is serialised as compact JSON on one line."""
    if "\n" in event or "\r" in event:
        raise ValueError("an event name cannot contain a line break")
    parts: list[str] = []
    if retry is not None:
        parts.append(f"retry: {int(retry)}\n")
    if id is not None:
        if "\n" in id or "\r" in id or "\0" in id:
            raise ValueError("an event id cannot contain a line break or NUL")
        parts.append(f"id: {id}\n")
    parts.append(f"event: {event}\n")
    # Compact JSON never contains a raw line break, so one data line is enough.
    parts.append(f"data: {json.dumps(data, separators=(',', ':'), sort_keys=False)}\n\n")
    return "".join(parts).encode()


def encode_hello(
    cursor: str,
    heartbeat: float,
    types: Sequence[str],
    *,
    retry: int,
    resumed: bool,
    watch: Sequence[str] = (),
) -> bytes:
    """``watch``: the types whose keys the stream should send (``watch=``); left out when none."""
    data: dict[str, object] = {"cursor": cursor, "heartbeat": heartbeat, "types": list(types)}
    if watch:
        data["watch"] = list(watch)
    return encode_frame("hello", data, id=None if resumed else cursor, retry=retry)


def encode_invalidate(cursor: str, pending: Mapping[str, set[str] | None]) -> bytes:
    updates: list[dict[str, object]] = []
    for type_, keys in pending.items():
        if keys is None:
            updates.append({"type": type_})
        else:
            updates.append({"type": type_, "keys": sorted(keys)})
    return encode_frame("invalidate", {"updates": updates}, id=cursor)


def encode_resync(cursor: str, reason: str) -> bytes:
    return encode_frame("resync", {"reason": reason}, id=cursor)


def encode_reconnect(delay_ms: int, reason: str) -> bytes:
    """The last frame of a stream the server ends for everyone: come back in ``delay_ms``.

    ``retry:`` carries the same delay, so a native ``EventSource`` (which reconnects after
    its retry time when a stream ends) returns on the same schedule; no ``id:``, so the
    client's cursor stays where it was.
    """
    return encode_frame("reconnect", {"delay": delay_ms, "reason": reason}, retry=delay_ms)
