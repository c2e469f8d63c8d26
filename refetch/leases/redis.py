"""``RedisLease``: leadership of one poller as a Redis key, plus its shared snapshot.

``SET <lease> <token> NX PX <ttl>``; renew, release and publish are Lua compare-and-sets on
the random token, so an instance whose lease expired can neither extend, delete nor
overwrite another's. The snapshot is a key; the signal a pub/sub channel. A leader that dies
is replaced once its key expires (``ttl``). redis-py is imported when the lease first
connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import TYPE_CHECKING

from .._cancel import still_running
from .._exceptions import ConfigurationError
from ..backends._urls import redact, require_driver

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

logger = logging.getLogger("refetch.worker")

#: How long the leader's snapshot outlives its last publish (Redis): long enough to serve
#: it through any outage of the pollers, short enough that a renamed poller leaves no trace.
SNAPSHOT_TTL = 7 * 24 * 3600.0

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', KEYS[2], 'released')
  return 1
end
return 0
"""
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if ARGV[4] == '1' then
  redis.call('PUBLISH', KEYS[3], 'changed')
end
return 1
"""


class RedisLease:
    """Leadership of one poller in Redis, plus its shared snapshot.

    Keys (one hash slot per poller): ``<prefix>{<name>}:lease`` (the holder's token),
    ``<prefix>{<name>}:snapshot``, and the channel ``<prefix>{<name>}:changed``.
    ``ttl`` must outlive the poller's longest cycle (``max_backoff`` plus ``timeout``): the
    leader renews once per cycle. ``RedisLease(name, url)`` opens its own connections;
    ``RedisLease(name, client=app_redis)`` uses the app's client (never closed here; the
    pub/sub connection comes from its pool).
    """

    def __init__(
        self,
        name: str,
        url: str | None = None,
        *,
        client: Redis | None = None,
        ttl: float = 30.0,
        prefix: str = "refetch:poller:",
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("give RedisLease a url or a client, not both")
        if ttl <= 0:
            raise ConfigurationError(f"RedisLease({name!r}): ttl must be > 0 seconds")
        if url is not None:
            require_driver("redis", "redis", "RedisLease")
        self.name = name
        self.ttl = ttl
        self.url = redact(url) if url is not None else "redis (client given by the app)"
        self._dsn = url
        self._client = client
        self._owned = client is None
        base = f"{prefix}{{{name}}}"
        self.lease_key = f"{base}:lease"
        self.snapshot_key = f"{base}:snapshot"
        self.channel = f"{base}:changed"
        self._token = secrets.token_hex(16)
        self._pubsub: PubSub | None = None

    def _redis(self) -> Redis:
        if self._client is None:
            import redis.asyncio

            assert self._dsn is not None
            self._client = redis.asyncio.Redis.from_url(
                self._dsn, socket_connect_timeout=5, socket_timeout=5
            )
        return self._client

    async def acquire(self) -> bool:
        won = bool(
            await self._redis().set(self.lease_key, self._token, nx=True, px=self._ms(self.ttl))
        )
        still_running()
        if not won:
            won = await self.renew()  # it may be ours already
        if won:
            # a leader reads no signals: do not let its own pile up in the subscription
            await self._drop_pubsub()
        return won

    async def renew(self) -> bool:
        result = await self._redis().eval(
            _RENEW, 1, self.lease_key, self._token, self._ms(self.ttl)
        )
        still_running()
        return bool(result)

    async def release(self) -> None:
        await self._redis().eval(_RELEASE, 2, self.lease_key, self.channel, self._token)

    async def publish(self, snapshot: str, *, changed: bool) -> bool:
        result = await self._redis().eval(
            _PUBLISH,
            3,
            self.lease_key,
            self.snapshot_key,
            self.channel,
            self._token,
            snapshot,
            self._ms(SNAPSHOT_TTL),
            "1" if changed else "0",
        )
        still_running()
        return bool(result)

    async def snapshot(self) -> str | None:
        # Subscribe before reading: a change published after this read wakes wait().
        await self._subscribe()
        raw = await self._redis().get(self.snapshot_key)
        still_running()
        return None if raw is None else raw.decode() if isinstance(raw, bytes) else str(raw)

    async def wait(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        pubsub = self._pubsub
        if pubsub is None:
            await asyncio.sleep(seconds)
            return
        try:
            while (left := deadline - loop.time()) > 0:
                # returns None early for a subscribe confirmation: hence the loop
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                still_running()
                if message is not None:
                    while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0):
                        pass  # several signals mean one re-read
                    return
        except Exception as exc:
            logger.debug("lease %s: pub/sub failed, resubscribing: %r", self.name, exc)
            await self._drop_pubsub()
            await asyncio.sleep(max(0.0, deadline - loop.time()))

    async def _subscribe(self) -> None:
        if self._pubsub is not None:
            return
        pubsub = self._redis().pubsub()
        try:
            await pubsub.subscribe(self.channel)
            still_running()
        except BaseException:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        await self._drop_pubsub()
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    @staticmethod
    def _ms(seconds: float) -> int:
        return max(1, int(seconds * 1000))
