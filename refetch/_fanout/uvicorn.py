"""The one place refetch knows a server's internals: uvicorn's httptools request cycle.

On a fan-out to thousands of streams, building a message dict and driving a ``send()``
coroutine per connection is most of the Python time per delivery. When ``send`` is
uvicorn's own (no middleware wrapped it) and the response is chunked, a body message is
exactly one ``transport.write()`` of the chunk while the transport is not paused: this
module does that write directly. Anything else, or any uvicorn whose cycle does not look
as expected, gets ``None`` and the caller uses plain ``send()``. Pinned by
``tests/test_uvicorn_fast_path.py`` to the uvicorn versions it was checked against.

A stream that cannot be finished (its client stopped reading) has its connection cut here
too: through the cycle behind ``send`` when it is uvicorn's own, else behind ``receive``
(``tests/test_request_limits.py`` checks that uvicorn then logs no error).
"""

from __future__ import annotations

from typing import Any

from .._types import Receive, Send

#: uvicorn releases whose httptools cycle was checked to match what ``write_direct`` writes.
KNOWN_VERSIONS = ("0.54",)
_MODULE = "uvicorn.protocols.http.httptools_impl"
_H11_MODULE = "uvicorn.protocols.http.h11_impl"
_FIELDS = ("transport", "flow", "disconnected", "chunked_encoding", "response_complete")


def uvicorn_cycle(send: Send) -> Any:
    """uvicorn's request cycle behind ``send``, or None when ``send`` is not uvicorn's own."""
    cycle: Any = getattr(send, "__self__", None)
    if type(cycle).__module__ != _MODULE:
        return None
    if getattr(send, "__func__", None) is not getattr(type(cycle), "send", None):
        return None
    if not all(hasattr(cycle, name) for name in _FIELDS):
        return None
    return cycle


def write_direct(cycle: Any, body: bytes) -> bool:
    """True when ``body`` went out as a chunk; False when ``send()`` must do it."""
    if (
        cycle.chunked_encoding is not True
        or cycle.flow.write_paused
        or cycle.disconnected
        or cycle.response_complete
    ):
        return False
    cycle.transport.write(_chunk(body))
    return True


def abort(cycle: Any) -> None:
    """Cut the connection under a write that cannot complete (the client stopped reading).

    Ending the response is no use then (the end cannot be written either), and the
    server would wait for it for ever, e.g. at shutdown.
    """
    cycle.transport.abort()


def abort_receiving(receive: Receive) -> bool:
    """Cut the connection behind uvicorn's own ``receive`` (either HTTP implementation).

    For a stream that cannot be finished (its client stopped reading, or a write failed)
    when ``send`` is wrapped by middleware, so ``abort()`` has no cycle to cut: middleware
    rarely wraps ``receive``. uvicorn then sees the connection gone and does not log the
    unfinished response as an error. False when ``receive`` is not uvicorn's.
    """
    cycle: Any = getattr(receive, "__self__", None)
    if type(cycle).__module__ not in (_MODULE, _H11_MODULE):
        return False
    if getattr(receive, "__func__", None) is not getattr(type(cycle), "receive", None):
        return False
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return False
    transport.abort()
    return True


_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _chunk(body: bytes) -> bytes:
    """``body`` in HTTP/1.1 chunked framing; a fan-out frames the same bytes once."""
    global _last_chunk
    last = _last_chunk  # read once: hubs in other threads may swap it
    if last[0] is body:
        return last[1]
    chunk = b"%x\r\n%b\r\n" % (len(body), body)
    _last_chunk = (body, chunk)
    return chunk
