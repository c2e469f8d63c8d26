"""The hub on its own: notify semantics, threads, lifecycle, statistics."""

from __future__ import annotations

import asyncio
import enum
import logging
import threading

import pytest

from refetch import (
    ConfigurationError,
    Principal,
    ServiceClosed,
    UnknownUpdateType,
    UpdateService,
)

from .conftest import TYPES, Recorder, wait_for


class UpdateType(enum.StrEnum):
    projects = "projects"
    compute = "compute"


def test_types_can_be_an_enum() -> None:
    service = UpdateService(UpdateType)
    assert service.types == ("projects", "compute")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"types": []}, "at least one"),
        ({"types": ["a,b"]}, "without commas"),
        ({"types": ["a", "a"]}, "twice"),
        ({"types": ["a"], "heartbeat": 0}, "heartbeat"),
        ({"types": ["a"], "min_interval": -1}, "min_interval"),
        ({"types": ["a"], "max_keys": 0}, "max_keys"),
    ],
)
def test_misconfiguration_raises_at_construction(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        UpdateService(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("positional", [True, False])
def test_a_plain_string_of_types_is_refused_naming_the_list_to_write(positional: bool) -> None:
    # Iterating "projects" would silently declare eight one-letter types.
    with pytest.raises(ConfigurationError) as info:
        if positional:
            UpdateService("projects")
        else:
            UpdateService(types="projects")
    assert 'UpdateService(["projects"])' in str(info.value)


def test_unknown_type_raises_with_the_known_ones() -> None:
    service = UpdateService(TYPES)
    with pytest.raises(UnknownUpdateType) as info:
        service.notify("projcts")
    assert info.value.unknown == ["projcts"]
    assert "projects" in str(info.value)


async def attach(service: UpdateService, types: list[str] | None = None, **kw: object) -> Recorder:
    recorder = Recorder()
    principal = kw.pop("principal", Principal())
    assert isinstance(principal, Principal)
    service.attach(
        recorder,
        principal,
        frozenset(types or service.types),
        kw.pop("last_event_id", None),  # type: ignore[arg-type]
        None,
    )
    return recorder


async def test_notify_before_start_is_delivered_once_started() -> None:
    service = UpdateService(TYPES, close_on_signals=False)
    service.notify("projects")
    async with service:
        await wait_for(lambda: service.statistics().updates == 1)
        assert service.cursor.endswith(".1")


async def test_notify_after_close_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with UpdateService(TYPES, close_on_signals=False) as service:
        pass
    with caplog.at_level(logging.WARNING, logger="refetch"):
        service.notify("projects")
    assert "after the UpdateService was closed" in caplog.text
    with pytest.raises(ServiceClosed):
        await service.publish("projects")


async def test_publish_returns_the_cursor_of_the_update(service: UpdateService) -> None:
    first = await service.publish("projects", key=1)
    second = await service.publish("projects")
    assert first != second
    assert second == service.cursor
    epoch, seq = second.rsplit(".", 1)
    assert first == f"{epoch}.{int(seq) - 1}"


async def test_cursors_of_two_services_never_match() -> None:
    a = UpdateService(TYPES)
    b = UpdateService(TYPES)
    assert a.cursor.split(".")[0] != b.cursor.split(".")[0]


async def test_notify_from_many_threads_loses_nothing(service: UpdateService) -> None:
    recorder = await attach(service)

    def burst(n: int) -> None:
        for i in range(200):
            service.notify("compute", key=f"{n}-{i}")

    threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        await asyncio.to_thread(thread.join)
    await wait_for(lambda: service.statistics().updates == 800)
    last = await service.publish("progress")
    await wait_for(lambda: f"id: {last}".encode() in recorder.body)
    assert service.statistics().replay_log == 801


async def test_audience_as_a_single_string_is_one_scope(service: UpdateService) -> None:
    acme = await attach(service, principal=Principal.of("a", ["tenant:acme"]))
    other = await attach(service, principal=Principal.of("b", ["tenant:acm"]))
    cursor = await service.publish("projects", audience="tenant:acme")
    await wait_for(lambda: f"id: {cursor}".encode() in acme.body)
    assert b"invalidate" not in other.body


async def test_statistics_count_what_happened(service: UpdateService) -> None:
    recorder = await attach(service)
    await service.publish("projects", key="1")
    await wait_for(lambda: b"invalidate" in recorder.body)
    stats = service.statistics()
    assert (stats.connections, stats.updates, stats.frames, stats.deliveries) == (1, 1, 1, 1)
    assert stats.cursor == service.cursor


async def test_updates_are_logged_centrally(
    service: UpdateService, caplog: pytest.LogCaptureFixture
) -> None:
    await attach(service)
    with caplog.at_level(logging.DEBUG, logger="refetch.updates"):
        await service.publish("projects", key="42", audience={"tenant:acme"})
        await service.publish("progress")
    lines = [r.getMessage() for r in caplog.records if r.name == "refetch.updates"]
    assert "notify projects key=42 audience=['tenant:acme']" in lines[0]
    assert lines[0].endswith("reached=0")
    assert lines[1].endswith("reached=1")


async def test_reauthorize_with_fewer_types_drops_them(service: UpdateService) -> None:
    recorder = await attach(service, principal=Principal.of("u", ["tenant:acme"]))
    changed = service.reauthorize("u", Principal.of("u", ["tenant:acme"], types=["progress"]))
    assert changed == 1
    service.notify("projects")
    cursor = await service.publish("progress")
    await wait_for(lambda: f"id: {cursor}".encode() in recorder.body)
    assert b'"projects"' not in recorder.body.split(b"event: hello")[1].split(b"\n", 2)[2]


async def test_broadcast_keys_past_the_cap_collapse_to_the_whole_type() -> None:
    async with UpdateService(TYPES, max_keys=2, min_interval=0.05, close_on_signals=False) as hub:
        recorder = await attach(hub)
        first = await hub.publish("projects", key="0")
        await wait_for(lambda: f"id: {first}".encode() in recorder.body)
        # Four keyed updates inside one coalescing window, one distinct key early on:
        # the hub keeps only the newest max_keys + 1, so it must not claim "just 2".
        for key in ["3", "2", "2", "2"]:
            hub.notify("projects", key=key)
        last = await hub.publish("images")
        await wait_for(lambda: f"id: {last}".encode() in recorder.body)
        frame = recorder.body.rsplit(b"event: invalidate\n", 1)[1]
        assert frame == b'data: {"updates":[{"type":"projects"},{"type":"images"}]}\n\n'


async def test_broadcast_keys_within_the_cap_are_sent_exactly() -> None:
    async with UpdateService(TYPES, max_keys=3, min_interval=0.05, close_on_signals=False) as hub:
        recorder = await attach(hub)
        first = await hub.publish("projects", key="0")
        await wait_for(lambda: f"id: {first}".encode() in recorder.body)
        for key in ["2", "1", "2"]:
            hub.notify("projects", key=key)
        last = await hub.publish("compute", key="9", audience="nobody")  # reaches no one
        await wait_for(lambda: hub.cursor == last)
        await wait_for(lambda: recorder.body.count(b"event: invalidate") == 2)
        frame = recorder.body.rsplit(b"event: invalidate\n", 1)[1]
        assert frame == b'data: {"updates":[{"type":"projects","keys":["1","2"]}]}\n\n'
