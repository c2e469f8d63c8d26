"""Redis Streams: XADD with a MAXLEN cap, XREAD BLOCK, XRANGE for replay.

Why a stream and not PUBLISH/SUBSCRIBE: pub/sub forgets a message the moment it is
sent, so an instance whose connection blinks misses updates without knowing, and
there is no position a reconnecting client could resume from. A stream entry id is
a global, ordered position: every instance reads the same sequence, a listener
resumes exactly where it stopped, and a client can resume on any instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from .._cancel import still_running
from .._exceptions import BackendUnavailable, ConfigurationError
from ._base import Backend, Channel, Entry, StreamGap
from ._urls import redact, require_driver, split_options

if TYPE_CHECKING:
    from redis.asyncio import Redis

# A stream id "<ms>-<seq>" becomes the position ms * 10**6 + seq: one int that keeps
# the order and still reads as the id. Redis would need a million entries in one
# millisecond to overflow the seq part.
_SEQ = 10**6
_FIELD = b"u"


def position(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms) * _SEQ + int(seq or 0)


def entry_id(position: int) -> str:
    return f"{position // _SEQ}-{position % _SEQ}"


class RedisBackend(Backend):
    """A Redis stream shared by every instance.

    ``RedisBackend("redis://host:6379/0")`` opens its own client;
    ``RedisBackend(client=app_redis)`` uses one the app already has (and never
    closes it). ``max_entries`` caps the stream (XADD MAXLEN ~), which bounds how far
    back a client can resume on an instance that did not see the updates itself.
    URL query parameters ``stream`` and ``max_entries`` set the same options.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Redis | None = None,
        stream: str = "refetch:updates",
        max_entries: int = 100_000,
        block: float = 0.5,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give RedisBackend a url or a client, not both")
        options: dict[str, str] = {}
        if url is not None:
            require_driver("redis", "redis", "RedisBackend")
            url, options = split_options(url, ("stream", "max_entries"))
        stream = options.get("stream", stream)
        max_entries = int(options.get("max_entries", max_entries))
        if not stream or any(c.isspace() for c in stream):
            raise ConfigurationError(f"stream name {stream!r} must be non-empty, without spaces")
        if max_entries < 1:
            raise ConfigurationError("max_entries must be >= 1")
        if block <= 0:
            raise ConfigurationError("block must be > 0 seconds")
        self._dsn = url
        self._client = client
        self._owned = client is None
        self.url = redact(url) if url is not None else _describe(client)
        self.stream = stream
        self.max_entries = max_entries
        self.block = block
        # Every XREAD BLOCK answers within ``block``: an empty answer is a sign of life.
        self.liveness = block
        # Exact trimming below a thousand entries (tests, tiny deployments); above,
        # "~" lets Redis trim whole nodes, which is much cheaper.
        self._approximate = max_entries >= 1000

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise BackendUnavailable(f"RedisBackend({self.url}) is not connected")
        return self._client

    async def connect(self) -> str:
        if self._client is None:
            import redis.asyncio

            assert self._dsn is not None
            self._client = redis.asyncio.Redis.from_url(
                self._dsn, socket_connect_timeout=5, socket_timeout=self.block + 10
            )
        epoch_key = f"{self.stream}:epoch"
        try:
            await self.client.set(epoch_key, secrets.token_hex(4), nx=True)
            epoch = await self.client.get(epoch_key)
        except Exception as exc:
            from redis.exceptions import TimeoutError as RedisTimeout

            hint = ""
            if self.url.startswith("rediss:") and isinstance(exc, RedisTimeout | TimeoutError):
                # A plain Redis reads the ClientHello as a command and waits for more.
                hint = " (no answer to the TLS handshake: does this port speak TLS?)"
            raise BackendUnavailable(f"cannot reach Redis at {self.url}: {exc}{hint}") from exc
        return epoch.decode() if isinstance(epoch, bytes) else str(epoch)

    async def _info(self) -> dict[str, Any] | None:
        from redis.exceptions import ResponseError

        try:
            info: dict[str, Any] = await self.client.xinfo_stream(self.stream)
        except ResponseError:  # no such key yet
            return None
        return info

    async def head(self) -> int:
        info = await self._info()
        return 0 if info is None else position(info["last-generated-id"])

    @staticmethod
    def _dropped(info: object) -> int:
        """A position at or after the newest entry that is gone (0 if none is).

        Trimming keeps no record of what it removed, only how many entries were ever
        added: if some are missing, anything before the first entry may be gone.
        """
        if not isinstance(info, dict):
            return 0
        deleted = position(info.get("max-deleted-entry-id") or b"0-0")  # XDEL
        if info.get("entries-added", info.get("length", 0)) == info.get("length", 0):
            return deleted
        first = info.get("first-entry")
        if not first:
            return max(deleted, position(info["last-generated-id"]))
        return max(deleted, position(first[0]) - 1)

    async def append(self, payloads: Sequence[bytes]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for payload in payloads:
            pipe.xadd(
                self.stream,
                {_FIELD: payload},
                maxlen=self.max_entries,
                approximate=self._approximate,
            )
        ids = await pipe.execute()
        return [position(i) for i in ids]

    async def read(self, after: int) -> AsyncIterator[list[Entry]]:
        block_ms = int(self.block * 1000)
        while True:
            # XINFO runs just before XREAD on the server: if the stream was trimmed
            # past our position, what XREAD returns would silently skip entries.
            pipe = self.client.pipeline(transaction=False)
            pipe.xinfo_stream(self.stream)
            pipe.xread({self.stream: entry_id(after)}, count=1000, block=block_ms)
            # Never trust a blocked read to return by itself: a dead TCP connection
            # would hang it forever (encode/broadcaster's silent hang).
            async with asyncio.timeout(self.block + 10):
                info, response = await pipe.execute(raise_on_error=False)
            if isinstance(response, Exception):
                raise response
            if after < self._dropped(info):
                raise StreamGap(f"stream {self.stream!r} was trimmed past {entry_id(after)}")
            if not response:
                yield []  # nothing new, but the broker answered: alive
                continue
            batch = [Entry(position(i), fields[_FIELD]) for i, fields in response[0][1]]
            after = batch[-1].position
            yield batch

    async def replay(self, after: int, upto: int) -> list[Entry] | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.xinfo_stream(self.stream)
        pipe.xrange(self.stream, f"({entry_id(after)}", entry_id(upto))
        info, entries = await pipe.execute(raise_on_error=False)
        if isinstance(entries, Exception):
            raise entries
        if after < self._dropped(info):
            return None
        return [Entry(position(i), fields[_FIELD]) for i, fields in entries]

    async def ping(self) -> None:
        await self.client.ping()

    async def aclose(self) -> None:
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def side_channel(self, name: str) -> Channel:
        return RedisChannel(self, name)


class RedisChannel(Channel):
    """PUBLISH / SUBSCRIBE on ``<stream>:<name>``, on a connection of the backend's pool."""

    #: A subscription silent this long is pinged; twice as long without a word: lost.
    SILENCE = 5.0

    def __init__(self, backend: RedisBackend, name: str) -> None:
        self._backend = backend
        self.name = f"{backend.stream}:{name}"
        self.max_payload = 64 * 1024

    async def publish(self, payload: bytes) -> None:
        await self._backend.client.publish(self.name, payload)
        still_running()

    async def listen(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        pubsub = self._backend.client.pubsub()
        try:
            await pubsub.subscribe(self.name)
            still_running()
            yield b""
            heard = loop.time()
            pinged = False
            while True:
                message = await pubsub.get_message(timeout=1.0)
                still_running()
                if message is not None:
                    heard, pinged = loop.time(), False
                    if message.get("type") == "message":
                        yield bytes(message["data"])
                    continue
                silent = loop.time() - heard
                if silent > 2 * self.SILENCE:
                    raise ConnectionError(
                        f"no answer on the pub/sub connection to {self._backend.url}"
                    )
                if silent > self.SILENCE and not pinged:
                    await pubsub.ping()
                    still_running()
                    pinged = True
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]


def _describe(client: object) -> str:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", {})
    host, port, db = kwargs.get("host"), kwargs.get("port"), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}" if host else "redis (client given by the app)"
