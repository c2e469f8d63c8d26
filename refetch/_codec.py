"""The wire form of what travels through a backend: updates, control messages, resync markers.

Backends move opaque bytes; this module is the one place that gives them meaning.
"""

from __future__ import annotations

import json
from typing import cast

from ._auth import Principal
from ._control import CloseStreams, Control, Reauthorize
from ._exceptions import PublishError
from ._update import Update

#: PostgreSQL's NOTIFY takes at most 8000 bytes; every backend keeps to the same
#: bound so an app can switch backends without finding a new failure.
MAX_PAYLOAD = 7900

#: The subject a close of one session is published under, for readers from before sessions
#: (they read "s" only): no app's stream has it, so such a reader ends nothing. A NUL never
#: appears in a user id, a cookie or a header value.
NO_SUBJECT = "\x00session"


def encode_entry(item: Update | Control) -> bytes:
    """The compact wire form of an update or a control message.

    An update is ``{"t": type, "k": key, "a": [scopes]}`` (k, a optional); a control
    message is ``{"c": "reauthorize" | "close", "s": subject, ...}``. A close of one
    session is ``{"c": "close", "s": NO_SUBJECT, "e": session, "u": subject, ...}`` ("u"
    optional): a reader from before sessions takes it as a close of ``NO_SUBJECT``, which
    no stream has, and ends nothing rather than every stream of the user.
    """
    body: dict[str, object]
    if isinstance(item, Update):
        body = {"t": item.type}
        if item.key is not None:
            body["k"] = item.key
        if item.audience is not None:
            body["a"] = sorted(item.audience)
        what = f"update {item.type!r}"
    elif isinstance(item, Reauthorize):
        principal = item.principal
        body = {"c": "reauthorize", "s": item.subject, "o": item.origin, "n": item.serial}
        body["p"] = {
            "s": principal.subject,
            "sc": sorted(principal.scopes),
            "ty": None if principal.types is None else sorted(principal.types),
        }
        what = f"reauthorize({item.subject!r})"
    elif item.session is None:
        body = {"c": "close", "s": item.subject, "r": item.reason}
        body.update(o=item.origin, n=item.serial)
        what = f"close_streams(subject={item.subject!r})"
    else:
        body = {"c": "close", "s": NO_SUBJECT, "e": item.session, "r": item.reason}
        if item.subject is not None:
            body["u"] = item.subject
        body.update(o=item.origin, n=item.serial)
        what = f"close_streams(session={item.session!r})"
    payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    if len(payload) > MAX_PAYLOAD:
        raise PublishError(
            f"{what} encodes to {len(payload)} bytes, more than the {MAX_PAYLOAD} a "
            "backend carries: use shorter keys or fewer scopes"
        )
    return payload


def encode_resync_marker(reason: str) -> bytes:
    """A marker that tells every instance to send ``resync`` to all its clients."""
    return json.dumps({"r": reason}, separators=(",", ":")).encode()


def decode_entry(payload: bytes) -> Update | Control | str:
    """An ``Update`` (without cursor), a control message, or the reason of a resync marker.

    Raises ValueError for anything else.
    """
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError(f"not an update: {payload[:80]!r}")
    if "r" in body and "c" not in body:
        return str(body["r"])
    if "c" in body:
        return _decode_control(body, payload)
    type_, key, audience = body.get("t"), body.get("k"), body.get("a")
    if not isinstance(type_, str) or (key is not None and not isinstance(key, str)):
        raise ValueError(f"not an update: {payload[:80]!r}")
    if audience is not None:
        if not _strings(audience):
            raise ValueError(f"not an update: {payload[:80]!r}")
        return Update(type_, key, frozenset(audience))
    return Update(type_, key, None)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _decode_control(body: dict[str, object], payload: bytes) -> Control:
    kind, subject = body.get("c"), body.get("s")
    origin, serial = body.get("o", ""), body.get("n", 0)
    if not isinstance(subject, str) or not isinstance(origin, str) or not isinstance(serial, int):
        raise ValueError(f"not a control message: {payload[:80]!r}")
    if kind == "close":
        reason = body.get("r")
        if not isinstance(reason, str):
            raise ValueError(f"not a control message: {payload[:80]!r}")
        if "e" not in body:
            return CloseStreams(subject, reason, origin, serial)
        session, user = body.get("e"), body.get("u")
        if not isinstance(session, str) or (user is not None and not isinstance(user, str)):
            raise ValueError(f"not a control message: {payload[:80]!r}")
        return CloseStreams(user, reason, origin, serial, session)
    if kind == "reauthorize":
        p = body.get("p")
        if not isinstance(p, dict):
            raise ValueError(f"not a control message: {payload[:80]!r}")
        who, scopes, types = p.get("s"), p.get("sc"), p.get("ty")
        if (
            (who is not None and not isinstance(who, str))
            or not _strings(scopes)
            or (types is not None and not _strings(types))
        ):
            raise ValueError(f"not a control message: {payload[:80]!r}")
        principal = Principal(
            who,
            frozenset(cast("list[str]", scopes)),
            None if types is None else frozenset(cast("list[str]", types)),
        )
        return Reauthorize(subject, principal, origin, serial)
    raise ValueError(f"unknown control message {kind!r}: {payload[:80]!r}")
