"""The backend contract: move bytes between instances and give them global positions.

A backend knows nothing of update types or connections. It appends opaque payloads to
one shared, ordered stream (a Redis stream, a PostgreSQL table, a JetStream stream) and
reads them back in order. The hub turns a position into a cursor ``<epoch>.<position>``;
the epoch names the stream, so a cursor from another deployment (or from a stream that
was wiped and recreated) is recognised as foreign and answered with ``resync``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from typing import NamedTuple


class Entry(NamedTuple):
    """One payload at its position in the shared stream (positions strictly increase)."""

    position: int
    payload: bytes


class StreamGap(Exception):
    """Entries after the requested position were dropped (trimmed, or the stream reset)."""


class Channel(abc.ABC):
    """Small messages broadcast between instances (pub/sub), beside the ordered stream.

    Best effort: no order between senders, no delivery promise, nothing kept for an
    instance that was not listening. Whoever uses it repeats what matters (the presence of
    on-demand pollers announces its state again every few seconds and ages out what is not
    repeated). Every instance hears its own messages too.
    """

    #: The largest payload ``publish()`` takes, in bytes.
    max_payload: int = 65536

    @abc.abstractmethod
    async def publish(self, payload: bytes) -> None:
        """Send ``payload`` to every instance listening now. Raises on failure."""

    @abc.abstractmethod
    def listen(self) -> AsyncIterator[bytes]:
        """The payloads sent from now on, forever. Yields ``b""`` once when the
        subscription is in place (what is published after that is heard); raises when
        the subscription is lost (the caller listens again)."""

    async def aclose(self) -> None:
        """Release what the channel opened (the backend's own connections stay)."""
        return None


class Backend(abc.ABC):
    """A shared, ordered stream of payloads. Positions are non-negative ints, 0 = empty."""

    #: The broker's address without credentials, for messages and logs.
    url: str = ""

    #: ``read()`` yields at least this often (seconds) while the broker answers: an
    #: empty batch after a round trip that found nothing new. The listener then counts
    #: a broker silent for ``liveness + 1`` s as lost (a stalled broker: alive, silent),
    #: so the instance fails closed on time. ``None``: no such promise; only an error
    #: from ``read()`` tells a lost broker. The built-in backends promise 0.5 s.
    liveness: float | None = None

    @abc.abstractmethod
    async def connect(self) -> str:
        """Reach the broker, create the stream if needed, return its epoch.

        Idempotent: the hub calls it again after losing the broker, and a changed
        epoch means the stream was recreated. Raises ``BackendUnavailable``.
        """

    @abc.abstractmethod
    async def head(self) -> int:
        """The position of the newest entry (0 when there is none)."""

    @abc.abstractmethod
    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        """Append payloads in order; return their positions. Raises on failure."""

    @abc.abstractmethod
    def read(self, after: int) -> AsyncIterator[list[Entry]]:
        """Every entry after ``after``, in order, as batches, forever (an empty batch
        now and then when idle, see ``liveness``).

        Raises ``StreamGap`` if entries after ``after`` were dropped, and any other
        exception when the broker is lost (the hub reconnects and reads again).
        """

    @abc.abstractmethod
    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        """The entries in ``(after, upto]``, or ``None`` when some were dropped.

        ``upto`` is a position that ``read()`` has returned: only those are final
        (a PostgreSQL row becomes readable once older transactions end).
        """

    @abc.abstractmethod
    async def ping(self) -> None:
        """One round trip to the broker; raises when it cannot be reached."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release connections this backend opened (never a client it was given)."""

    def side_channel(self, name: str) -> Channel | None:
        """A ``Channel`` named ``name`` among the instances of this stream, or ``None``
        when the backend has none (then each instance knows only itself). Built before
        ``connect()``; used after it."""
        return None
