"""The UpdateService: the hub every part of an app calls ``notify()`` on.

It is the front of three pieces: a *sequencer* numbers updates and owns the replay
(``LocalSequencer`` in one process, ``BrokerSequencer`` with a backend), the *fan-out*
decides which connection hears what and writes it, and this class holds the settings,
the lifecycle and the thread-safe inbox that ``notify()`` feeds.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from .._auth import Principal
from .._control import CloseStreams, Control, Reauthorize
from .._demand import NO_WATCH, Interest, Watch
from .._exceptions import ConfigurationError, ServiceClosed, UnknownUpdateType
from .._fanout.connection import Connection, ConnectionInfo
from .._fanout.demand import LocalDemand
from .._fanout.fanout import FanOut
from .._sse import encode_hello, encode_reconnect
from .._types import Send
from .._update import declared_types, make_update
from ..backends._base import Backend
from ..backends._factory import backend_from_url
from ..backends._urls import kind_of
from .broker import BrokerSequencer
from .drain import reconnect_delays
from .gc import FreezePolicy
from .not_started import NOT_STARTED_FIX, NotStarted, warn_if_never_started
from .notified import enter as enter_notified
from .presence import DemandWatch, Presence
from .processes import warn_if_split
from .sequencer import Item, LocalSequencer, Sequencer
from .signals import ShutdownSignals
from .statistics import Statistics

logger = logging.getLogger("refetch")


class UpdateService:
    """The central notification hub.

    ``notify(type, key=None, audience=None)`` is callable from anywhere (async code,
    sync code, other threads), returns at once and never fails because of a client.
    Connections are indexed by type and by scope, so a notify costs what it reaches.
    """

    def __init__(
        self,
        types: Iterable[str] | type[enum.Enum],
        *,
        min_interval: float = 0.1,
        heartbeat: float = 15.0,
        retry: float = 2.0,
        drain_spread: float = 2.0,
        replay_size: int = 10_000,
        replay_age: float = 600.0,
        max_keys: int = 64,
        send_timeout: float = 30.0,
        close_on_signals: bool = True,
        backend: str | Backend | None = None,
        gc_freeze: bool = True,
    ) -> None:
        names = list(declared_types(types, spelled="UpdateService({})"))
        if not names:
            raise ConfigurationError("declare at least one update type, e.g. types=['projects']")
        for name in names:
            if not isinstance(name, str) or not name or "," in name or name.strip() != name:
                raise ConfigurationError(
                    f"update type {name!r} must be a non-empty string without commas or spaces"
                )
        if len(set(names)) != len(names):
            raise ConfigurationError(f"update types are declared twice: {names}")
        if min_interval < 0:
            raise ConfigurationError("min_interval must be >= 0 seconds")
        if heartbeat <= 0:
            raise ConfigurationError("heartbeat must be > 0 seconds")
        if replay_size < 0 or replay_age < 0:
            raise ConfigurationError("replay_size and replay_age must be >= 0")
        if max_keys < 1:
            raise ConfigurationError("max_keys must be >= 1")
        if not drain_spread > 0:
            raise ConfigurationError(
                "drain_spread must be > 0 seconds: the window over which the streams of a "
                "draining server are told to come back (e.g. drain_spread=2.0)"
            )
        self.types: tuple[str, ...] = tuple(names)
        self._type_set = frozenset(names)
        self.min_interval = min_interval
        self.heartbeat = heartbeat
        self.retry_ms = int(retry * 1000)
        self.drain_spread = drain_spread
        self.max_keys = max_keys
        self.send_timeout = send_timeout
        self.close_on_signals = close_on_signals
        if isinstance(backend, str):
            # "memory://" alone is private to this hub: numbering the updates here is
            # the same stream without the round trip (the fast path).
            backend = None if kind_of(backend) == "memory" else backend_from_url(backend)
        elif backend is not None and not isinstance(backend, Backend):
            raise ConfigurationError(
                f"backend must be a URL (redis://..., postgresql://..., nats://...) or a "
                f"Backend object, not {backend!r}"
            )
        # Who listens, here and on the other instances (on-demand pollers ask).
        self._presence = Presence(
            LocalDemand(), None if backend is None else backend.side_channel("demand")
        )
        # The fan-out is built on the loop the hub starts on; until then no stream is open.
        self._fanout: FanOut | NotStarted = NotStarted(self.types)
        self._sequencer: Sequencer
        if backend is None:
            self._sequencer = LocalSequencer(replay_size, replay_age)
        else:
            self._sequencer = BrokerSequencer(backend, self._type_set, replay_size, replay_age)

        self._inbox: deque[Item] = deque()
        self._wakeup_pending = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._state = "new"  # new -> running -> draining -> closed
        self._warned_not_started = False
        self._signals: ShutdownSignals | None = None
        # Open streams kept out of the cyclic GC's full collections (refetch/_hub/gc.py).
        self._gc = FreezePolicy() if gc_freeze else None

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        if self._state != "new":
            raise ServiceClosed("an UpdateService can be started once")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        fanout = FanOut(
            self._loop,
            self.types,
            min_interval=self.min_interval,
            heartbeat=self.heartbeat,
            max_keys=self.max_keys,
            send_timeout=self.send_timeout,
            demand=self._presence.local,
        )
        await self._sequencer.start(self._loop, fanout)
        await self._presence.start()
        if isinstance(self._sequencer, LocalSequencer):
            warn_if_split()  # several workers, each with its own hub: notifies get lost
        fanout.start(self._sequencer.cursor)
        self._fanout = fanout
        self._state = "running"
        if self._gc is not None:
            self._gc.start()
        if self.close_on_signals:
            self._signals = ShutdownSignals(self._loop, self._on_shutdown_signal)
            self._signals.install()
        if self._inbox:
            self._wake()
        logger.debug("UpdateService started (types: %s)", ", ".join(self.types))

    async def aclose(self, grace: float = 5.0) -> None:
        """End every open stream, then stop. Safe to call twice."""
        if self._state == "closed":
            return
        was_running = self._state in ("running", "draining")
        self._state = "closed"
        if self._signals is not None:
            self._signals.restore()
        if not was_running:
            return
        self._drain()  # deliver what was notified before close
        # Every stream ends now (its owner finishes the response); then the broker link.
        self._end_every_stream("shutdown")
        self._fanout.stop()
        await self._presence.stop()
        await self._sequencer.stop(grace)
        if self._gc is not None:
            self._gc.close()

    async def __aenter__(self) -> UpdateService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Use as (or inside) a Starlette/FastAPI ``lifespan``."""
        async with self:
            yield

    def _on_shutdown_signal(self) -> None:
        self.close_streams("shutdown")

    @property
    def running(self) -> bool:
        """True while the hub accepts new streams (started, not draining or closed)."""
        return self._state == "running"

    @property
    def draining(self) -> bool:
        """True once shutdown began: no new streams, but notify() still works until closed."""
        return self._state == "draining"

    @property
    def state(self) -> str:
        """``"new"``, ``"running"``, ``"draining"`` or ``"closed"``."""
        return self._state

    @property
    def cursor(self) -> str:
        """The cursor of the newest update (``<epoch>.0`` before the first one)."""
        return self._sequencer.cursor

    # -- notify --------------------------------------------------------------------

    def notify(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> None:
        """Tell every client that may see it that ``type`` (or one ``key`` of it) changed.

        Thread-safe and non-blocking. Raises only for an undeclared type.
        """
        update = make_update(type, key, audience, known=self._type_set)
        if self._state == "closed":
            logger.warning("notify(%r) after the UpdateService was closed: dropped", update.type)
            return
        if self._state == "new" and not self._warned_not_started:
            self._warned_not_started = True
            if not warn_if_never_started(update.type):
                logger.warning(
                    "notify(%r) before the UpdateService was started: it and later ones wait "
                    "for start(). %s",
                    update.type,
                    NOT_STARTED_FIX,
                )
        self._inbox.append((update, None, time.monotonic()))
        enter_notified(self)
        self._wake()

    async def publish(
        self,
        type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
    ) -> str:
        """Like ``notify()``, but returns the update's cursor once it is published."""
        update = make_update(type, key, audience, known=self._type_set)
        if self._state == "new":
            raise ServiceClosed(
                f"publish() before start(): {NOT_STARTED_FIX} (a process that serves no "
                "streams publishes with refetch.Publisher(url))"
            )
        if self._state == "closed":
            raise ServiceClosed("the UpdateService is closed")
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inbox.append((update, future, time.monotonic()))
        enter_notified(self)
        self._wake()
        return await future

    async def flush(self, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """Wait until everything notified, reauthorized or closed so far is published.

        With a backend, other instances can hear it once this returns: call it after
        ``reauthorize()`` / ``close_streams(subject=... or session=...)`` before answering the
        request that revoked. Returns the cursor. Raises ``PublishError`` when the
        backend does not take it within ``timeout`` seconds (``None``: 10 s, the
        publish timeout), or is known to be away; nothing else. The change still holds
        on this instance and is published when the broker answers; instances that
        cannot hear the broker end their authenticated streams on their own. Without a
        backend it returns at once.
        """
        # A parameter, not the caller's asyncio.timeout(): running out of time is a
        # PublishError that says the change is kept, and cancels nothing.
        if self._state == "new":
            raise ServiceClosed("the UpdateService is not running: start it first")
        self._drain()
        return await self._sequencer.flush(timeout)

    def _wake(self) -> None:
        loop = self._loop
        if loop is None or self._wakeup_pending:
            return
        self._wakeup_pending = True
        if threading.get_ident() == self._loop_thread:
            loop.call_soon(self._drain)
        else:
            try:
                loop.call_soon_threadsafe(self._drain)
            except RuntimeError:  # the loop is closed: nobody left to tell
                self._wakeup_pending = False

    def _drain(self) -> None:
        self._wakeup_pending = False
        inbox = self._inbox
        if inbox:
            # popleft until empty: notify() in other threads may append meanwhile.
            batch = [inbox.popleft() for _ in range(len(inbox))]
            self._sequencer.submit(batch)

    # -- who hears what ------------------------------------------------------------

    def close_streams(
        self,
        reason: str = "shutdown",
        *,
        subject: str | None = None,
        session: str | None = None,
    ) -> int:
        """End open streams now: all, those of one ``subject``, or of one ``session``.

        ``session=`` (a ``Principal.session``) ends the streams of one browser session:
        sign-out in one browser, the user's other browsers carry on. ``subject=`` ends
        every stream of the user (sign out everywhere, account deleted); both given end
        that user's streams of that session. Clients reconnect with their cursor and
        are authenticated again, so a signed-out browser gets 401. With a backend, a
        ``subject``'s or ``session``'s streams are ended on every instance (in order with
        the updates; ``await flush()`` waits until the other instances can hear it).
        ``close_streams()`` (all streams, reason ``"shutdown"``) also starts
        *draining*: from then on new streams are answered 503, so clients that
        reconnect at once cannot keep the server from exiting. Any other reason
        without a subject or session ends every stream and lets the clients back in.
        Then every stream's last frame is ``reconnect``, with a delay of its own
        spread over ``drain_spread`` (docs/protocol.md), so the clients come back
        spread out rather than all at once or on their error backoff.
        Returns the number of streams ended here.
        """
        if subject == "" or session == "":
            which = "subject" if subject == "" else "session"
            raise ConfigurationError(
                f"close_streams({which}='') names no {which}: pass the Principal.{which} "
                f"of the streams to end, or leave {which}= out"
            )
        if session is not None and reason == "shutdown":
            raise ConfigurationError(
                "close_streams(session=...) ends one browser session's streams, not a "
                "shutdown: give the reason, e.g. close_streams('signed out', session=...); "
                "close_streams() with no session ends every stream"
            )
        if subject is None and session is None:
            if reason == "shutdown" and self._state == "running":
                self._state = "draining"
                logger.info(
                    "UpdateService draining: %d stream(s) ended, new streams are answered 503",
                    self._fanout.connections,
                )
            return self._end_every_stream(reason)
        shared = None
        if self._state != "closed":
            shared = self._sequencer.share(CloseStreams(subject, reason, session=session))
        ended = self._fanout.close(reason, subject, session)
        self._queue(shared)
        return ended

    def _end_every_stream(self, reason: str) -> int:
        """End every stream, each told when to come back (``drain_spread``)."""
        return self._fanout.close_all(reason, lambda count: self._farewells(count, reason))

    def _farewells(self, count: int, reason: str) -> list[bytes]:
        return [encode_reconnect(d, reason) for d in reconnect_delays(count, self.drain_spread)]

    def farewell(self) -> bytes:
        """The ``reconnect`` frame for one stream ended for everyone: come back in a moment.

        For a stream whose response started just as the hub began draining (it never
        joined the hub, so ``close_streams()`` could not tell it).
        """
        return self._farewells(1, "shutdown")[0]

    def reauthorize(self, subject: str, principal: Principal) -> int:
        """Give every open stream of ``subject`` a new principal, at once.

        Use it when a user's permissions change (removed from a tenant, role
        changed): from this call on their streams carry only what the new scopes
        allow. With a backend the change reaches every instance, ordered with the
        updates: no update published after this call reaches a stream of
        ``subject`` on the old scopes, anywhere (``await flush()`` waits until it is
        out). Returns the number of streams changed here. A stream whose
        authentication was under way at the time gets the new principal too.
        """
        shared = None
        if self._state != "closed":
            shared = self._sequencer.share(Reauthorize(subject, principal))
        changed = self._fanout.reauthorize(subject, principal)
        self._queue(shared)
        return changed

    def _queue(self, control: Control | None) -> None:
        if control is not None:
            self._inbox.append((control, None, time.monotonic()))
            self._wake()

    def unavailable(self, principal: Principal) -> str | None:
        """Why a stream for ``principal`` cannot be served right now, or None."""
        if principal.subject is not None:
            return self._sequencer.unconfirmed
        return None

    def allowed_types(self, principal: Principal) -> frozenset[str]:
        return self._type_set if principal.types is None else self._type_set & principal.types

    def validate_types(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self._type_set]
        if unknown:
            raise UnknownUpdateType(unknown, list(self.types))

    # -- connections (used by the endpoint) ----------------------------------------

    def attach(
        self,
        send: Send,
        principal: Principal,
        types: frozenset[str],
        last_event_id: str | None,
        authenticated_at: float | None = None,
        watch: Watch = NO_WATCH,
    ) -> Connection:
        """Register a stream whose response has started, and write its first frames.

        Everything happens in one step on the event loop, so no update can fall
        between the replay and the live stream. ``authenticated_at`` (loop time when
        the principal was looked up) lets a ``reauthorize()`` that happened since win.
        The connection's ``ended`` future is done once the hub ended the stream;
        its owner then calls ``detach()``.
        """
        if self._state != "running":
            raise ServiceClosed(f"the UpdateService is {self._state}, not running")
        if self.unavailable(principal) is not None:
            raise ServiceClosed("permissions cannot be confirmed: the broker is away")
        self._drain()  # updates notified before this point belong in the replay
        revised = self._fanout.revised(principal, authenticated_at)
        if revised is not principal and revised.types is not None:
            types = types & revised.types  # the permissions changed during authentication
        conn = Connection(send, revised, types, watch)
        # The types some keyed on-demand poller here narrows by watch=: the client sends their keys.
        keyed = self._presence.local.keyed_types
        hello = encode_hello(
            self.cursor,
            self.heartbeat,
            [t for t in self.types if t in types],
            retry=self.retry_ms,
            resumed=last_event_id is not None,
            watch=[t for t in self.types if t in types and t in keyed] if keyed else (),
        )
        start = None if last_event_id is None else self._sequencer.resume(last_event_id)
        self._fanout.attach(conn, hello, start)
        if self._gc is not None:
            self._gc.attached(self._fanout.connections)
        return conn

    def detach(self, conn: Connection) -> None:
        """Forget a stream that ended; frees its state at once."""
        self._fanout.detach(conn)
        if self._gc is not None:
            # Also for streams the hub ended itself (the fan-out forgot them already).
            self._gc.detached(self._fanout.connections)

    def watch_demand(
        self,
        update_type: str | enum.Enum,
        key: str | int | None = None,
        *,
        audience: Iterable[str] | str | None = None,
        on_change: Callable[[bool], None] | None = None,
    ) -> DemandWatch:
        """Who would hear ``notify(update_type, key, audience=audience)``, here and on every
        instance of the backend (what on-demand pollers ask; docs/pollers.md, "On demand").

        The answer's ``wanted`` is True while at least one such stream is open anywhere;
        ``on_change(wanted)`` is called on the event loop when it flips. ``close()`` it when
        done.
        """
        update = make_update(update_type, key, audience, known=self._type_set)
        return self._presence.watch(Interest(update.type, update.key, update.audience), on_change)

    def statistics(self) -> Statistics:
        return Statistics.of(self._fanout.statistics(), self._sequencer.statistics(), self._state)

    def connections(self) -> list[ConnectionInfo]:
        """Who is connected right now, oldest stream first: for a debug or admin page.

        A snapshot: it costs one pass over the open streams, so call it on demand,
        not per request of a busy route.
        """
        return self._fanout.describe()
