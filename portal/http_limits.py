"""Bounded HTTP/1.1 for `python -m portal`: uvicorn's httptools protocol with the limits it lacks.

uvicorn with httptools reads a request head of any size (an 8 MB header, 100,000 header lines),
for as long as the client likes (one byte a second keeps a socket open for good), and accepts
connections until the process runs out of file descriptors, after which nobody gets in. h11
bounds the head's size but has no head deadline and no connection cap either (measured in
`scripts/http-probes`), and it would lose refetch's direct writes (`refetch/_uvicorn.py`).

So the portal keeps httptools and adds, per connection: a budget of bytes for the request line
and headers (431 past it), a count of header lines (431), and a deadline for the whole head
from the moment the connection opens or its previous response ends (408); then a budget for the
body (413) and a deadline for it from the end of the head (408), since a request whose body
never ends holds its connection as surely as a head that never ends. Per server: a cap on
open connections. At the cap a new connection evicts the connection that has waited longest for
a request head (a slowloris socket or an idle keep-alive one); only when every connection is
busy (a request in progress, an update stream) is the new one refused with a 503. Streams are
never evicted, so the cap must sit above the number of streams expected (it defaults to the
file-descriptor limit less a reserve for the database, the backends and the logs).

This subclasses uvicorn's protocol: the quirk is fenced here and pinned to the uvicorn versions
checked (`KNOWN_VERSIONS`, `tests/portal/test_http_limits.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: uvicorn releases whose httptools protocol was checked against the hooks used here.
KNOWN_VERSIONS = ("0.54",)

#: file descriptors kept for everything that is not a client: the database pool, the backend
#: (Redis, PostgreSQL, NATS), the simulator client, logs, the listening socket.
FD_RESERVE = 128
#: how long a rejected connection's remaining input is read and dropped, so that the client
#: reads the 4xx instead of a reset (closing with unread input sends RST on Linux).
REJECT_LINGER = 2.0

logger = logging.getLogger("portal.http")


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(soft - FD_RESERVE, 16)


@dataclass(frozen=True, kw_only=True)
class HttpLimits:
    #: bytes of the request line and headers together (nginx: 4 buffers of 8 KiB)
    max_header_bytes: int = 32 * 1024
    max_headers: int = 100
    #: seconds for the whole request head, from connect or from the previous response's end
    header_timeout: float = 10.0
    #: bytes of a request body (the API takes small JSON bodies)
    max_body_bytes: int = 64 * 1024
    #: seconds for the whole request body, from the end of its head
    body_timeout: float = 10.0
    max_connections: int

    def __post_init__(self) -> None:
        for name in ("max_header_bytes", "max_headers", "max_body_bytes", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        for name in ("header_timeout", "body_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")


class _Rejected(Exception):
    """Raised from a parser callback to stop httptools; the response is already written."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Set `limits` and `waiting` on a subclass: `limited_protocol()` does."""

    limits: ClassVar[HttpLimits]
    #: the server's connections waiting for a request head, oldest first (insertion order)
    waiting: ClassVar[dict[LimitedHttpToolsProtocol, None]]
    refused: ClassVar[list[float]]  # [count since the last warning, time of that warning]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = False
        self._head_number = 0  # which head of the connection is being read
        self._head_bytes = 0
        self._head_lines = 0
        self._deadline: asyncio.TimerHandle | None = None
        self._body_bytes = 0
        self._body_deadline: asyncio.TimerHandle | None = None
        self._rejected = False

    # -- connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.limits.max_connections
        super().connection_made(transport)
        if full and not self._evict_one():
            self._refuse()
            return
        self._start_head()
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        self._stop_body_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return  # read and dropped until the linger ends
        if not self._reading_head:
            super().data_received(data)
            return
        budget = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= budget:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        head_number = self._head_number
        self._head_bytes += budget
        super().data_received(data[:budget])
        if self.transport.is_closing() or self._rejected:
            return
        if self._reading_head and self._head_number == head_number:
            self._reject(
                431, f"request line and headers exceed {self.limits.max_header_bytes} bytes"
            )
            return
        self.data_received(data[budget:])  # the body, or the next pipelined request's head

    # -- parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_lines += 1
        if self._head_lines > self.limits.max_headers:
            self._reject(431, f"more than {self.limits.max_headers} header lines")
            raise _Rejected
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._stop_waiting()
        # Cancelled by on_message_complete, at once for a request without a body.
        self._body_bytes = 0
        self._body_deadline = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._reject(413, f"request body exceeds {self.limits.max_body_bytes} bytes")
            raise _Rejected
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._stop_body_deadline()
        super().on_message_complete()
        # The next bytes are the next request's head, even while this response goes on
        # (a pipelined request; an update stream): budgeted, but no deadline until then.
        self._start_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._reading_head and not self.transport.is_closing():
            self._wait_for_head()

    def send_400_response(self, msg: str) -> None:
        if not self._rejected:  # not our own _Rejected surfacing through uvicorn
            super().send_400_response(msg)

    # -- the limits

    def _start_head(self) -> None:
        self._reading_head = True
        self._head_number += 1
        self._head_bytes = 0
        self._head_lines = 0

    def _wait_for_head(self) -> None:
        self._stop_waiting()
        self.waiting[self] = None
        self._deadline = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _stop_waiting(self) -> None:
        self.waiting.pop(self, None)
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _stop_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None

    def _body_timed_out(self) -> None:
        self._body_deadline = None
        self._reject(408, f"request body not received within {self.limits.body_timeout} s")

    def _head_timed_out(self) -> None:
        self._deadline = None
        self.waiting.pop(self, None)
        if self._head_bytes:
            self._reject(408, f"request head not received within {self.limits.header_timeout} s")
        else:  # never started one (a preconnect, an idle keep-alive): nothing to answer
            self.transport.close()

    def _evict_one(self) -> bool:
        for victim in self.waiting:
            if victim is not self:
                victim._stop_waiting()
                victim.transport.abort()
                return True
        return False

    def _refuse(self) -> None:
        # Closed at once, unlike a rejection: lingering would hold descriptors past the cap.
        self._write_error(503, "too many connections, retry shortly", b"retry-after: 1\r\n")
        self.transport.close()
        counter = self.refused
        counter[0] += 1
        now = time.monotonic()
        if now - counter[1] >= 10:  # one line per 10 s under a flood, with the count
            logger.warning(
                "connection cap (%d) reached with every connection busy: refused %d",
                self.limits.max_connections,
                int(counter[0]),
            )
            counter[0], counter[1] = 0, now

    def _reject(self, status: int, reason: str) -> None:
        if self._rejected:
            return
        self._rejected = True
        self._stop_waiting()
        self._stop_body_deadline()
        logger.info("%s from %s: %s", status, self.client, reason)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app's task is running: it reads a disconnect and its writes are dropped.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:  # our answer cannot go after the start of its own
                self.transport.abort()
                return
        self._write_error(status, reason)
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(REJECT_LINGER, self.transport.abort)

    def _write_error(self, status: int, reason: str, extra: bytes = b"") -> None:
        body = json.dumps({"detail": reason}).encode()
        phrase = {
            408: b"Request Timeout",
            413: b"Content Too Large",
            431: b"Request Header Fields Too Large",
        }.get(status, b"Service Unavailable")
        self.transport.write(
            b"HTTP/1.1 %d %b\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n%b\r\n%b" % (status, phrase, len(body), extra, body)
        )


def limited_protocol(limits: HttpLimits) -> type[asyncio.Protocol]:
    """A protocol class for `uvicorn.run(http=...)`, with its own set of waiting connections."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": limits, "waiting": {}, "refused": [0, 0.0]},
    )
