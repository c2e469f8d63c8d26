"""NATS JetStream: one stream, its sequence numbers as positions, ordered consumers to read.

JetStream sequences are contiguous, so a gap (trimmed by ``max_msgs``) is detected
exactly: a message whose sequence is not the next one means entries were dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import BackendUnavailable, ConfigurationError
from ._base import Backend, Channel, Entry, StreamGap
from ._urls import check_name, redact, require_driver, split_options

#: How long ``connect()`` tries before it raises ``BackendUnavailable``.
CONNECT_TIMEOUT = 5.0


class NatsBackend(Backend):
    """A JetStream stream ``stream`` on subject ``<stream>.updates``, capped at ``max_entries``.

    ``NatsBackend("nats://host:4222")`` opens its own connection;
    ``NatsBackend(client=nc)`` uses one the app has (and never closes it). The URL
    query parameters ``stream`` and ``max_entries`` set the same options.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        stream: str = "refetch_updates",
        max_entries: int = 100_000,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give NatsBackend a url or a client, not both")
        options: dict[str, str] = {}
        if url is not None:
            require_driver("nats", "nats", "NatsBackend")
            url, options = split_options(url, ("stream", "max_entries"))
        self.stream = check_name("stream name", options.get("stream", stream))
        self.subject = f"{self.stream}.updates"
        self.max_entries = int(options.get("max_entries", max_entries))
        if self.max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1")
        self._url = url
        self._nc = client
        self._owned = client is None
        self.url = redact(url) if url is not None else "nats (client given by the app)"
        # An idle read asks the server this often: a sign of life that nats-py's own
        # pings (every 2 minutes) would give far too late.
        self.liveness = 0.5

    @property
    def _js(self) -> Any:
        if self._nc is None:
            raise BackendUnavailable(f"NatsBackend({self.url}) is not connected")
        return self._nc.jetstream()

    async def connect(self) -> str:
        import nats
        from nats.js.api import StreamConfig

        errors: list[Exception] = []

        async def remember(exc: Exception) -> None:
            errors.append(exc)
            await _log_error(exc)

        try:
            if self._nc is None or (self._owned and self._nc.is_closed):
                secure = urlsplit(str(self._url)).scheme.lower() == "tls"
                # nats-py retries the first connection forever with reconnects on:
                # bound it, so an unreachable server is an error at start.
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        nc = await nats.connect(
                            servers=[str(self._url)],
                            connect_timeout=2,
                            allow_reconnect=True,
                            max_reconnect_attempts=-1,
                            reconnect_time_wait=0.5,
                            error_cb=remember,
                            **({"tls": ssl.create_default_context()} if secure else {}),
                        )
                except TimeoutError:
                    last = f"; the last error: {_explain(errors[-1])}" if errors else ""
                    raise BackendUnavailable(
                        f"cannot reach NATS JetStream at {self.url}: no connection within "
                        f"{CONNECT_TIMEOUT:g} s{last}"
                    ) from (errors[-1] if errors else None)
                if secure and not _tls_used(nc):
                    await nc.close()
                    raise BackendUnavailable(
                        f"NATS at {self.url} does not offer TLS: nats-py would have gone on in "
                        "plain text. Enable TLS on the server, or use nats:// if plain text "
                        "is what you want"
                    )
                self._nc = nc
            config = StreamConfig(
                name=self.stream, subjects=[self.subject], max_msgs=self.max_entries
            )
            try:
                info = await self._js.add_stream(config)
            except Exception:  # exists with another config: use it as it is
                info = await self._js.stream_info(self.stream)
        except BackendUnavailable:
            raise
        except Exception as exc:
            raise BackendUnavailable(
                f"cannot reach NATS JetStream at {self.url}: {_explain(exc)}"
            ) from exc
        # The creation time names this incarnation of the stream.
        return hashlib.sha1(str(info.created).encode()).hexdigest()[:8]

    async def _state(self) -> Any:
        return (await self._js.stream_info(self.stream)).state

    async def head(self) -> int:
        return int((await self._state()).last_seq)

    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        js = self._js
        acks = await asyncio.gather(
            *(js.publish(self.subject, bytes(p), stream=self.stream, timeout=5) for p in payloads)
        )
        return [int(ack.seq) for ack in acks]

    async def _subscribe(self, after: int) -> Any:
        from nats.js.api import ConsumerConfig, DeliverPolicy

        return await self._js.subscribe(
            self.subject,
            stream=self.stream,
            ordered_consumer=True,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1
            ),
        )

    def _gap(self, state: Any, after: int) -> bool:
        return int(state.first_seq) > after + 1 and int(state.last_seq) > after

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        if self._gap(await self._state(), after):
            raise StreamGap(f"stream {self.stream} was trimmed past {after}")
        sub = await self._subscribe(after)
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=self.liveness)
                except TimeoutError:
                    if not self._nc.is_connected:
                        raise ConnectionError(f"lost the connection to {self.url}") from None
                    # A stopped server keeps the TCP connection open: only a round
                    # trip tells it is still there. A request, not nc.flush(): a flush
                    # that times out leaves its PONG future behind, and the late PONG
                    # then breaks nats-py's read loop (InvalidStateError).
                    await self._nc.jetstream(timeout=1).stream_info(self.stream)
                    yield []
                    continue
                seq = int(msg.metadata.sequence.stream)
                if seq <= after:
                    continue
                if seq != after + 1:
                    raise StreamGap(f"stream {self.stream} jumped from {after} to {seq}")
                after = seq
                yield [Entry(seq, msg.data)]
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        if upto <= after:
            return []
        if self._gap(await self._state(), after):
            return None
        entries: list[Entry] = []
        async with contextlib.aclosing(self.read(after)) as reader:  # type: ignore[type-var]
            async for batch in reader:
                if not batch:
                    continue  # a sign of life, nothing new
                entries += [e for e in batch if e.position <= upto]
                if batch[-1].position >= upto:
                    break
        return entries

    async def ping(self) -> None:
        await self._nc.flush(timeout=5)

    async def aclose(self) -> None:
        if self._owned and self._nc is not None and not self._nc.is_closed:
            nc, self._nc = self._nc, None
            await nc.close()

    def side_channel(self, name: str) -> Channel:
        return NatsChannel(self, f"{self.subject.rpartition('.')[0]}.{name}")


class NatsChannel(Channel):
    """Core NATS publish / subscribe on ``<stream>.<name>`` (not JetStream: nothing is kept)."""

    def __init__(self, backend: NatsBackend, subject: str) -> None:
        self._backend = backend
        self.subject = subject
        self.max_payload = 64 * 1024

    async def publish(self, payload: bytes) -> None:
        nc = self._backend._nc
        if nc is None or not nc.is_connected:
            raise ConnectionError(f"not connected to {self._backend.url}")
        await nc.publish(self.subject, payload)

    async def listen(self) -> AsyncIterator[bytes]:
        nc = self._backend._nc
        if nc is None:
            raise ConnectionError(f"not connected to {self._backend.url}")
        sub = await nc.subscribe(self.subject)
        try:
            await nc.flush(timeout=5)  # the server has the subscription: yield "ready"
            yield b""
            while True:
                try:
                    msg = await sub.next_msg(timeout=5.0)
                except TimeoutError:
                    if not nc.is_connected:
                        raise ConnectionError(
                            f"lost the connection to {self._backend.url}"
                        ) from None
                    continue
                yield bytes(msg.data)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()


def _explain(exc: BaseException) -> str:
    """What failed, in words: nats-py's errors often have an empty ``str``."""
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "timed out (no NATS INFO from the server: is it a NATS server, is the port right?)"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _tls_used(nc: Any) -> bool:
    # nats-py upgrades a tls:// connection only when the server's INFO requires TLS and
    # exposes no public flag for it; the INFO it keeps is the one place that says.
    info = getattr(nc, "_server_info", None)
    return isinstance(info, dict) and bool(info.get("tls_required") or info.get("tls_available"))


async def _log_error(exc: Exception) -> None:
    # nats-py prints every failed reconnect attempt by default; the hub logs the outage.
    logging.getLogger("refetch.backends").debug("nats: %r", exc)
