"""One contract suite over every backend (memory, Redis, PostgreSQL, NATS JetStream), on the
real services; then two hubs sharing each backend, as two instances of one app would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from refetch import BackendUnavailable, UpdatesEndpoint, UpdateService
from refetch._codec import encode_resync_marker
from refetch.backends import Backend, Entry, backend_from_url
from refetch.backends._base import StreamGap

from .conftest import TYPES, SharedStream, Stream, serve, wait_for


async def take(backend: Backend, after: int, count: int) -> list[Entry]:
    """The next ``count`` entries after ``after``, read like a listener reads them."""
    entries: list[Entry] = []
    reader = backend.read(after)
    async with asyncio.timeout(10):
        async for batch in reader:
            entries += batch
            if len(entries) >= count:
                break
    await reader.aclose()  # type: ignore[attr-defined]
    return entries


@pytest.fixture
async def pair(shared: SharedStream) -> AsyncIterator[tuple[Backend, Backend]]:
    a, b = shared.make(), shared.make()
    await a.connect()
    await b.connect()
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_every_instance_sees_the_same_epoch(shared: SharedStream) -> None:
    a, b = shared.make(), shared.make()
    try:
        first = await a.connect()
        assert first == await b.connect() == await a.connect()
        assert first and "." not in first
    finally:
        await a.aclose()
        await b.aclose()


async def test_publish_returns_increasing_positions_that_every_instance_reads(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    start = await b.head()
    positions = await a.append([b"one", b"two"])
    positions += await a.append([b"three"])
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert positions[0] > start
    assert await b.head() == positions[-1]
    entries = await take(b, start, 3)
    assert entries == [
        Entry(p, v) for p, v in zip(positions, [b"one", b"two", b"three"], strict=True)
    ]


async def test_read_from_an_older_position_resumes_exactly_after_it(
    pair: tuple[Backend, Backend],
) -> None:
    a, b = pair
    positions = await a.append([b"1", b"2", b"3", b"4"])
    assert await take(b, positions[1], 2) == [Entry(positions[2], b"3"), Entry(positions[3], b"4")]


async def test_read_waits_for_new_entries(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    head = await b.head()
    reader = asyncio.create_task(take(b, head, 1))
    await asyncio.sleep(0.05)  # let the reader block first; correctness does not depend on it
    [position] = await a.append([b"late"])
    assert await reader == [Entry(position, b"late")]


async def test_replay_returns_exactly_the_range(pair: tuple[Backend, Backend]) -> None:
    a, b = pair
    positions = await a.append([b"a", b"b", b"c", b"d"])
    await take(b, positions[0], 3)  # replay() answers for positions a reader has reached
    assert await b.replay(positions[0], positions[2]) == [
        Entry(positions[1], b"b"),
        Entry(positions[2], b"c"),
    ]
    assert await b.replay(positions[3], positions[3]) == []


async def test_a_trimmed_position_is_a_gap_for_replay_and_read(shared: SharedStream) -> None:
    backend = shared.make(max_entries=3)
    await backend.connect()
    try:
        positions = await backend.append([str(i).encode() for i in range(10)])
        await take(backend, positions[-2], 1)
        assert await backend.replay(positions[0], positions[-1]) is None
        with pytest.raises(StreamGap):
            await take(backend, positions[0], 1)
        # The newest entries are still there.
        assert await backend.replay(positions[-2], positions[-1]) == [Entry(positions[-1], b"9")]
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:1/0",
        "postgresql://postgres:secret@127.0.0.1:1/test",
        "nats://127.0.0.1:1",
    ],
)
async def test_unreachable_broker_at_start_is_a_clear_error_naming_the_url(url: str) -> None:
    hub = UpdateService(TYPES, backend=url, close_on_signals=False)
    with pytest.raises(BackendUnavailable) as caught:
        await hub.start()
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "secret" not in message


def test_unknown_backend_url_is_a_configuration_error() -> None:
    from refetch import ConfigurationError

    with pytest.raises(ConfigurationError, match="memory://"):
        UpdateService(TYPES, backend="kafka://x")
    # "memory://" names a new in-process backend; a hub given only that URL numbers
    # its updates itself (nobody else can share that backend).
    from refetch.backends import MemoryBackend

    assert isinstance(backend_from_url("memory://"), MemoryBackend)


# -- two instances sharing a backend ---------------------------------------------------


@pytest.fixture
async def instances(shared: SharedStream) -> AsyncIterator[tuple[UpdateService, UpdateService]]:
    async with (
        UpdateService(TYPES, backend=shared.make(), min_interval=0.02, close_on_signals=False) as a,
        UpdateService(TYPES, backend=shared.make(), min_interval=0.02, close_on_signals=False) as b,
    ):
        yield a, b


async def test_notify_on_one_instance_reaches_clients_of_every_instance(
    instances: tuple[UpdateService, UpdateService],
) -> None:
    a, b = instances
    async with (
        serve(UpdatesEndpoint(a)) as url_a,
        serve(UpdatesEndpoint(b)) as url_b,
        Stream(url_a) as on_a,
        Stream(url_b) as on_b,
    ):
        a.notify("projects", key="42")
        cursor = await a.publish("compute", audience={"tenant:acme"})
        b.notify("images")
        await wait_for(lambda: ("images", None) in on_a.invalidated(), 10)
        await wait_for(lambda: ("images", None) in on_b.invalidated(), 10)
        for stream in (on_a, on_b):
            await wait_for(lambda s=stream: ("projects", "42") in s.invalidated(), 10)
            assert ("compute", None) not in stream.invalidated()  # anonymous: not its tenant
        assert a.cursor.split(".")[0] == b.cursor.split(".")[0] == cursor.split(".")[0]


async def test_client_resumes_on_another_instance_with_the_exact_merged_replay(
    instances: tuple[UpdateService, UpdateService],
) -> None:
    a, b = instances
    async with serve(UpdatesEndpoint(a)) as url_a, serve(UpdatesEndpoint(b)) as url_b:
        async with Stream(url_a) as on_a:
            last = await a.publish("progress")
            await wait_for(lambda: any(f.id == last for f in on_a.frames), 10)
        cursor = on_a.frames[-1].id
        await a.publish("projects", key="1")
        await a.publish("projects", key="2")
        newest = await b.publish("compute")
        await wait_for(lambda: b.cursor == newest, 10)
        async with Stream(url_b, last_event_id=cursor) as resumed:
            await wait_for(lambda: len(resumed.frames) >= 2, 10)
            assert resumed.frames[1].event == "invalidate"
            assert resumed.frames[1].id == newest
            assert resumed.frames[1].data == {
                "updates": [{"type": "projects", "keys": ["1", "2"]}, {"type": "compute"}]
            }


async def test_a_new_instance_replays_from_the_backend_what_it_never_saw(
    shared: SharedStream,
) -> None:
    async with UpdateService(TYPES, backend=shared.make(), close_on_signals=False) as a:
        before = a.cursor
        await a.publish("images", key="x")
        newest = await a.publish("gardener")
        async with (
            UpdateService(TYPES, backend=shared.make(), close_on_signals=False) as late,
            serve(UpdatesEndpoint(late)) as url,
            Stream(url, last_event_id=before) as resumed,
        ):
            await wait_for(lambda: len(resumed.frames) >= 2, 10)
            assert resumed.frames[1].id == newest
            assert resumed.invalidated() == {("images", "x"), ("gardener", None)}
            assert late.statistics().replays == 1


async def test_cursor_of_another_stream_gets_resync(
    instances: tuple[UpdateService, UpdateService],
) -> None:
    a, _ = instances
    async with UpdateService(TYPES, close_on_signals=False) as other:
        foreign = await other.publish("projects")
    async with serve(UpdatesEndpoint(a)) as url, Stream(url, last_event_id=foreign) as stream:
        await wait_for(lambda: stream.of("resync"), 10)
        assert stream.of("resync")[0].data == {"reason": "unknown cursor"}


async def test_a_resync_marker_in_the_stream_resyncs_every_client(
    shared: SharedStream, instances: tuple[UpdateService, UpdateService]
) -> None:
    a, b = instances
    async with (
        serve(UpdatesEndpoint(a)) as url_a,
        serve(UpdatesEndpoint(b)) as url_b,
        Stream(url_a) as on_a,
        Stream(url_b) as on_b,
    ):
        backend = shared.make()
        await backend.connect()
        await backend.append([encode_resync_marker("test said so")])
        if shared.kind != "memory":
            await backend.aclose()
        for stream in (on_a, on_b):
            await wait_for(lambda s=stream: s.of("resync"), 10)
            assert stream.of("resync")[0].data == {"reason": "test said so"}
