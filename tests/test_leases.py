"""Pollers on several instances: leases on the real Redis and PostgreSQL (127.0.0.1).

Two BackgroundWorkers (two "instances") poll one real HTTP API (Starlette on a loopback
port) through leases on one store. The API records which instance asked (`X-Instance`), so
"only one polls" is counted on the server. Every key, table and poller name is unique per
test; nothing waits a fixed time, every condition is polled with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from refetch import BackgroundWorker, SharedLease, poller
from refetch.leases import PostgresLease, RedisLease, has_leases, lease_from_url, with_leases

from .conftest import unique_name, wait_for
from .test_worker_http import serve

DEADLINE = 10.0


@dataclass(frozen=True)
class Reading:
    """A typed value: followers must get the same type the leader's extract made."""

    value: int

    @classmethod
    def of(cls, body: Any) -> Reading:
        return cls(int(body["value"]))


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def notify(
        self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
    ) -> None:
        self.calls.append(type)


class API:
    """The external API; `requests` says which instance polled, in order."""

    def __init__(self) -> None:
        self.value = 1
        self.fail = False
        self.hang_for: set[str] = set()
        self.release = asyncio.Event()
        self.requests: list[str] = []

    async def state(self, request: Request) -> Response:
        who = request.headers.get("x-instance", "?")
        self.requests.append(who)
        if who in self.hang_for:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DEADLINE):
                    await self.release.wait()
            return PlainTextResponse("too late", status_code=503)
        if self.fail:
            return PlainTextResponse("boom", status_code=500)
        etag = f'"v{self.value}"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        return JSONResponse({"value": self.value}, headers={"ETag": etag})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/state", self.state)])

    def count(self, who: str) -> int:
        return self.requests.count(who)


@dataclass
class Store:
    kind: str
    url: str
    name: str


@pytest.fixture(params=["redis", "postgres"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """A test-unique namespace on the real Redis (keys) or PostgreSQL (a table)."""
    kind: str = request.param
    name = unique_name("refetch_lease")
    if kind == "redis":
        redis_url: str = request.getfixturevalue("redis_url")
        yield Store(kind, f"{redis_url}?stream={name}", name)
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    else:
        postgres_dsn: str = request.getfixturevalue("postgres_dsn")
        yield Store(kind, f"{postgres_dsn}?table={name}", name)
        import asyncpg

        conn = await asyncpg.connect(postgres_dsn)
        await conn.execute(f'DROP TABLE IF EXISTS "{name}_pollers"')
        await conn.close()


@pytest.fixture
async def api() -> AsyncIterator[tuple[API, str]]:
    external = API()
    async with serve(external.app()) as base:
        yield external, base
        external.release.set()  # let hanging requests end before the server stops


class Instance:
    """One instance's BackgroundWorker with one leased poller."""

    def __init__(
        self,
        who: str,
        base: str,
        lease: SharedLease,
        name: str,
        *,
        interval: float = 0.05,
        timeout: float = 1.0,
    ) -> None:
        self.who = who
        self.name = name
        self.lease = lease
        self.notifier = RecordingNotifier()
        spec = poller(
            "progress",
            name=name,
            url=f"{base}/state",
            headers={"X-Instance": who},
            extract=Reading.of,
            interval=interval,
            timeout=timeout,
            max_backoff=max(0.2, interval),
            lease=lease,
        )
        self.worker = BackgroundWorker(self.notifier, [spec])

    @property
    def leader(self) -> bool:
        return bool(self.worker.statistics()[self.name].leader)

    def value(self) -> Any:
        return self.worker.latest(self.name).value


@contextlib.asynccontextmanager
async def running(*instances: Instance) -> AsyncIterator[None]:
    async with contextlib.AsyncExitStack() as stack:
        for instance in instances:
            await stack.enter_async_context(instance.worker)
        yield


async def polls_alone(api: API, leader: Instance, follower: Instance, polls: int = 8) -> None:
    """Wait for `polls` more requests and check that the leader made every one of them."""
    seen = len(api.requests)
    await wait_for(lambda: len(api.requests) >= seen + polls, DEADLINE)
    newer = api.requests[seen:]
    assert set(newer) == {leader.who}, newer
    assert leader.leader and not follower.leader


async def test_one_instance_polls_and_the_other_serves_its_value(
    store: Store, api: tuple[API, str]
) -> None:
    external, base = api
    name = unique_name("poller")
    a = Instance("a", base, lease_from_url(store.url, name), name)
    b = Instance("b", base, lease_from_url(store.url, name), name)
    async with running(a, b):
        await wait_for(lambda: a.leader or b.leader, DEADLINE)
        leader, follower = (a, b) if a.leader else (b, a)
        await polls_alone(external, leader, follower)

        # the follower serves the leader's value, of the type the extractor makes
        await wait_for(lambda: follower.value() == Reading(1), DEADLINE)
        cached = follower.worker.latest(name)
        assert cached.has_value and not cached.stale and cached.changed_at is not None

        external.value = 2
        await wait_for(lambda: follower.value() == Reading(2), DEADLINE)
        assert leader.value() == Reading(2)
        assert follower.worker.latest(name).changed_at == leader.worker.latest(name).changed_at

        # staleness travels too, with the leader's error, and so does the recovery
        external.fail = True
        await wait_for(lambda: follower.worker.latest(name).stale, DEADLINE)
        assert follower.worker.latest(name).error == "HTTP 500: Internal Server Error"
        assert follower.value() == Reading(2)
        external.fail = False
        await wait_for(lambda: not follower.worker.latest(name).stale, DEADLINE)

        # only the leader notifies (the hub carries it to every instance's clients)
        # first value, 2, stale, fresh: once each
        await wait_for(lambda: leader.notifier.calls == ["progress"] * 4, DEADLINE)
        assert follower.notifier.calls == []
        assert follower.worker.statistics()[name].polls == 0
        assert set(external.requests) == {leader.who}


async def test_a_follower_hears_a_change_without_waiting_for_its_own_cycle(
    store: Store, api: tuple[API, str]
) -> None:
    external, base = api
    name = unique_name("poller")
    a = Instance("a", base, lease_from_url(store.url, name), name)
    # b's own cycle is a minute: within the deadline only the leader's signal can wake it
    b = Instance("b", base, lease_from_url(store.url, name), name, interval=60.0)
    async with running(a):
        await wait_for(lambda: a.leader and a.value() == Reading(1), DEADLINE)
        async with running(b):
            await wait_for(lambda: b.value() == Reading(1), DEADLINE)
            external.value = 7
            await wait_for(lambda: b.value() == Reading(7), DEADLINE)
            assert not b.leader and external.count("b") == 0


async def test_when_the_leader_closes_the_other_takes_over(
    store: Store, api: tuple[API, str]
) -> None:
    external, base = api
    name = unique_name("poller")
    a = Instance("a", base, lease_from_url(store.url, name), name)
    b = Instance("b", base, lease_from_url(store.url, name), name)
    async with running(a):
        await wait_for(lambda: a.leader, DEADLINE)
        async with running(b):
            await wait_for(lambda: b.value() == Reading(1), DEADLINE)
            assert not b.leader
            await a.worker.aclose()  # releases the lease (a deploy, a scale-down)
            await wait_for(lambda: b.leader, DEADLINE)
            seen = len(external.requests)
            await wait_for(lambda: len(external.requests) >= seen + 5, DEADLINE)
            assert set(external.requests[seen:]) == {"b"}
            external.value = 3
            await wait_for(lambda: b.value() == Reading(3), DEADLINE)
            # b continued from the shared value: 1 was no change, 3 was (b notifies after
            # it shared the value, so its cache may show 3 a moment before)
            await wait_for(lambda: b.notifier.calls == ["progress"], DEADLINE)


async def test_a_stalled_leader_whose_redis_key_expired_is_replaced_and_fenced(
    api: tuple[API, str], redis_url: str
) -> None:
    external, base = api
    prefix = unique_name("refetch_lease")
    url = f"{redis_url}?stream={prefix}"
    name = unique_name("poller")
    # a's poll hangs for its whole timeout, far longer than the lease lives
    lease_a = lease_from_url(url, name, ttl=0.5)
    a = Instance("a", base, lease_a, name, timeout=3.0)
    b = Instance("b", base, lease_from_url(url, name, ttl=0.5), name)
    try:
        async with running(a):
            await wait_for(lambda: a.leader and a.value() == Reading(1), DEADLINE)
            async with running(b):
                await wait_for(lambda: b.value() == Reading(1), DEADLINE)
                external.hang_for = {"a"}
                external.value = 5
                await wait_for(lambda: b.leader, DEADLINE)  # a's key expired mid-poll
                await wait_for(lambda: b.value() == Reading(5), DEADLINE)
                # a stale leader can neither extend nor overwrite what the new one shares
                assert not await lease_a.renew()
                assert not await lease_a.publish('{"body": null}', changed=True)
                external.release.set()  # a's poll ends (a 503): it learns it lost
                await wait_for(lambda: not a.leader, DEADLINE)
                await wait_for(lambda: a.value() == Reading(5), DEADLINE)
                assert not a.worker.latest(name).stale  # b's fresh snapshot, not a's failure
                external.hang_for = set()
                await polls_alone(external, b, a)
    finally:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def test_a_leader_whose_postgres_connection_is_terminated_loses_the_lock(
    api: tuple[API, str], postgres_dsn: str
) -> None:
    import asyncpg

    external, base = api
    table = unique_name("refetch_lease")
    url = f"{postgres_dsn}?table={table}"
    name = unique_name("poller")
    lease_a = lease_from_url(url, name)
    assert isinstance(lease_a, PostgresLease)
    # a retries the lock only every 0.4 s after losing it; b every 0.05 s: b wins the race
    a = Instance("a", base, lease_a, name, interval=0.4)
    b = Instance("b", base, lease_from_url(url, name), name)
    admin = await asyncpg.connect(postgres_dsn)
    try:
        async with running(a):
            await wait_for(lambda: a.leader and a.value() == Reading(1), DEADLINE)
            async with running(b):
                await wait_for(lambda: b.value() == Reading(1), DEADLINE)
                pid = lease_a.pid
                assert pid is not None
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                await wait_for(lambda: b.leader, DEADLINE)
                await wait_for(lambda: not a.leader, DEADLINE)
                external.value = 9
                await wait_for(lambda: a.value() == Reading(9), DEADLINE)
                await polls_alone(external, b, a)
                assert lease_a.pid not in (None, pid)  # a follows on a new connection
    finally:
        await admin.execute(f'DROP TABLE IF EXISTS "{table}_pollers"')
        await admin.close()


async def test_lease_contract(store: Store) -> None:
    name = unique_name("poller")
    a, b = lease_from_url(store.url, name, ttl=5), lease_from_url(store.url, name, ttl=5)
    assert isinstance(a, RedisLease if store.kind == "redis" else PostgresLease)
    assert isinstance(a, SharedLease)
    try:
        assert await a.acquire()
        assert not await b.acquire()
        assert await a.acquire()  # holding it already is holding it, not a second level
        assert await a.renew()
        assert await b.snapshot() is None

        waiter = asyncio.create_task(b.wait(DEADLINE))
        assert await a.publish("one", changed=False)
        assert await a.publish("two", changed=True)
        await wait_for(waiter.done, DEADLINE)  # woken by the change, not by the deadline
        assert await b.snapshot() == "two"
        assert not await b.publish("three", changed=True)  # not the holder
        assert await a.snapshot() == "two"

        await a.release()
        assert not await a.renew()
        assert await b.acquire()
        assert not await a.acquire()
        await b.release()
        assert await a.acquire()
    finally:
        await a.aclose()
        await b.aclose()


def test_lease_from_url_and_with_leases() -> None:
    from refetch import ConfigurationError

    redis_lease = lease_from_url("redis://127.0.0.1:6379/0?stream=app:updates", "progress", ttl=9)
    assert isinstance(redis_lease, RedisLease)
    assert redis_lease.lease_key == "app:updates:poller:{progress}:lease"
    assert redis_lease.ttl == 9
    pg_lease = lease_from_url("postgresql://u:secret@db/app?table=app_updates", "images")
    assert isinstance(pg_lease, PostgresLease)
    assert pg_lease.table == "app_updates_pollers" and "secret" not in pg_lease.url
    assert isinstance(lease_from_url("postgresql://db/app", "x"), PostgresLease)
    with pytest.raises(ConfigurationError, match="redis:// or postgresql://"):
        lease_from_url("nats://127.0.0.1:4222", "progress")

    specs = [
        poller("progress", url="http://api.test/a", interval=2, timeout=5),
        poller("images", url="http://api.test/b", interval=5, max_backoff=60, timeout=1),
    ]
    leased = with_leases(specs, "redis://127.0.0.1:6379/0")
    assert [p.name for p in leased] == ["progress", "images"]
    ttls = [p.lease.ttl for p in leased if isinstance(p.lease, RedisLease)]
    assert ttls == [30 + 10 + 1, 60 + 2 + 1]  # outlives the longest cycle


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "rediss://h/0",
        "unix:///tmp/redis.sock",
        "postgres://db/app",
        "postgresql://db/app",
        "postgresql+asyncpg://u@db/app?ssl=require",
        "POSTGRESQL+psycopg://db/app",
        "nats://127.0.0.1:4222",
        "tls://127.0.0.1:4222",
        "memory://",
        "mysql://db/app",
    ],
)
def test_has_leases_answers_as_lease_from_url_does(url: str) -> None:
    # One scheme table: an app asking "does this backend also hold leases?" (the portal
    # does) gets the answer lease_from_url acts on, SQLAlchemy's postgresql+asyncpg:// too.
    from refetch import ConfigurationError

    try:
        lease_from_url(url, "progress")
    except ConfigurationError:
        builds = False
    else:
        builds = True
    assert has_leases(url) is builds


# -- the worker's side of sharing, without a service -------------------------------------


class MemoryLeases:
    """One in-process lease store; `lease(who)` is one instance's SharedLease."""

    def __init__(self) -> None:
        self.holder: str | None = None
        self.snapshot: str | None = None
        self.published = 0
        self.reads = 0

    def lease(self, who: str) -> SharedLease:
        store = self

        class Lease:
            async def acquire(self) -> bool:
                if store.holder in (None, who):
                    store.holder = who
                return store.holder == who

            async def renew(self) -> bool:
                return store.holder == who

            async def release(self) -> None:
                if store.holder == who:
                    store.holder = None

            async def publish(self, snapshot: str, *, changed: bool) -> bool:
                if store.holder != who:
                    return False
                store.snapshot = snapshot
                store.published += 1
                return True

            async def snapshot(self) -> str | None:
                store.reads += 1
                return store.snapshot

            async def wait(self, seconds: float) -> None:
                await asyncio.sleep(seconds)

            async def aclose(self) -> None:
                pass

        return Lease()


def fetch_worker(who: str, lease: SharedLease, fetch: Any) -> tuple[BackgroundWorker, Any]:
    notifier = RecordingNotifier()
    spec = poller("progress", fetch=fetch, interval=0.01, max_backoff=0.05, lease=lease)
    return BackgroundWorker(notifier, [spec]), notifier


async def test_a_body_that_is_not_json_is_not_shared(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryLeases()

    async def fetch() -> Any:
        return {1, 2}  # a set: a fine value here, but no JSON for the others

    a, _ = fetch_worker("a", store.lease("a"), fetch)
    b, _ = fetch_worker("b", store.lease("b"), fetch)
    async with a:
        await wait_for(lambda: a.statistics()["progress"].polls >= 3, DEADLINE)
        async with b:
            await wait_for(lambda: a.statistics()["progress"].polls >= 6, DEADLINE)
            assert a.latest("progress").value == {1, 2}
            assert store.snapshot is None and not b.latest("progress").has_value
    warnings = [r for r in caplog.records if "not JSON" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per poll


async def test_a_follower_keeps_its_value_when_the_snapshot_is_malformed() -> None:
    store = MemoryLeases()
    value = {"value": 1}

    async def fetch() -> Any:
        return value

    a, _ = fetch_worker("a", store.lease("a"), fetch)
    b, b_notes = fetch_worker("b", store.lease("b"), fetch)
    async with a, b:
        await wait_for(lambda: b.latest("progress").value == {"value": 1}, DEADLINE)
        await a.aclose()
        store.holder = "nobody"  # nobody polls now, and a broken snapshot turns up
        store.snapshot = "{not json"
        reads = store.reads
        await wait_for(lambda: store.reads >= reads + 2, DEADLINE)  # b read the broken one
        assert b.latest("progress").value == {"value": 1}
        # b takes over from the shared value: the same value is no change, no notification
        store.holder = None
        store.snapshot = None
        await wait_for(lambda: b.statistics()["progress"].leader is True, DEADLINE)
        await wait_for(lambda: b.statistics()["progress"].polls >= 2, DEADLINE)
        assert b_notes.calls == []
        value = {"value": 2}
        await wait_for(lambda: b_notes.calls == ["progress"], DEADLINE)
