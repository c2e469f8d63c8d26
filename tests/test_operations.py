"""What an operator sees: the Prometheus exposition, connections(), and the structured logs.

Everything runs on a real uvicorn server; the metrics are scraped over HTTP and parsed
with prometheus-client's own parser, and compared with what the clients received.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from refetch import ConnectionInfo, Principal, UpdatesEndpoint, UpdateService
from refetch.metrics import metrics_app

from .conftest import (
    TYPES,
    Recorder,
    Stream,
    serve,
    token_auth,
    unique_name,
    wait_for,
)

TOKENS = {
    "alice": Principal.of("alice", ["tenant:acme"]),
    "carol": Principal.of("carol", ["tenant:globex"], types=["projects"]),
}


def app_for(hub: UpdateService) -> Starlette:
    endpoint = UpdatesEndpoint(hub, authenticate=token_auth(TOKENS))
    return Starlette(routes=[Route("/api/updates", endpoint), Mount("/metrics", metrics_app(hub))])


async def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{url}/metrics/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


@pytest.fixture
async def hub() -> AsyncIterator[UpdateService]:
    async with UpdateService(TYPES, min_interval=0.01, close_on_signals=False) as service:
        yield service


async def test_metrics_count_what_the_clients_received(hub: UpdateService) -> None:
    async with serve(app_for(hub)) as url:
        api = f"{url}/api/updates"
        async with (
            Stream(api, headers=bearer("alice")) as alice,
            Stream(api, headers=bearer("carol")) as carol,
        ):
            for key in ("1", "2", "3"):
                await hub.publish("projects", key=key)
            await hub.publish("compute", audience="tenant:acme")
            await wait_for(lambda: alice.saw("compute") and carol.saw("projects", "3"))
            await wait_for(lambda: alice.saw("projects", "3"))
            m = await scrape(url)

    received = alice.of("invalidate") + carol.of("invalidate")
    assert m[("refetch_connections", ())] == 2
    assert m[("refetch_connections_by_type", (("type", "projects"),))] == 2
    assert m[("refetch_connections_by_type", (("type", "compute"),))] == 1
    assert m[("refetch_updates_total", (("type", "projects"),))] == 3
    assert m[("refetch_updates_total", (("type", "compute"),))] == 1
    assert m[("refetch_updates_total", (("type", "images"),))] == 0
    assert m[("refetch_frames_total", ())] == len(received)
    named = {t: sum(1 for f in received for u in f.updates if u.type == t) for t in TYPES}
    for type_, count in named.items():
        assert m[("refetch_type_deliveries_total", (("type", type_),))] == count
    # One latency observation per frame written, cumulative buckets ending at +Inf.
    assert m[("refetch_frame_latency_seconds_count", ())] == len(received)
    assert m[("refetch_frame_latency_seconds_bucket", (("le", "+Inf"),))] == len(received)
    buckets = sorted(
        (float(labels[0][1]), value)
        for (name, labels), value in m.items()
        if name == "refetch_frame_latency_seconds_bucket"
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert m[("refetch_frame_latency_seconds_sum", ())] >= 0
    # One process, no broker: no backend series at all.
    assert not any(name.startswith("refetch_backend") for name, _ in m)


async def test_metrics_show_the_backend_and_its_round_trip(redis_url: str) -> None:
    stream = unique_name("refetch_ops")
    backend = f"{redis_url}?stream={stream}"
    try:
        async with UpdateService(TYPES, backend=backend, close_on_signals=False) as hub:
            async with serve(app_for(hub)) as url:
                async with Stream(f"{url}/api/updates", headers=bearer("alice")) as alice:
                    await hub.publish("projects", key="7")
                    await wait_for(lambda: alice.saw("projects", "7"))
                    m = await scrape(url)
    finally:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        await client.delete(stream, f"{stream}:epoch")
        await client.aclose()
    up = {labels: v for (name, labels), v in m.items() if name == "refetch_backend_up"}
    assert {dict(labels)["role"]: v for labels, v in up.items()} == {"publish": 1, "listen": 1}
    assert all(dict(labels)["backend"].startswith("redis://") for labels in up)
    assert m[("refetch_backend_lag_seconds", ())] >= 0
    assert m[("refetch_updates_total", (("type", "projects"),))] == 1
    assert m[("refetch_frame_latency_seconds_count", ())] == 1


def test_metrics_without_prometheus_client_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "try:\n    import refetch.metrics\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == (
        "ConfigurationError refetch.metrics needs prometheus-client: "
        "pip install 'refetch[prometheus]'"
    )


async def test_connections_lists_who_is_connected_and_what_they_wait_for() -> None:
    # A long min_interval holds the second frame back, so it is visibly pending.
    async with UpdateService(TYPES, min_interval=30, close_on_signals=False) as hub:
        async with serve(app_for(hub)) as url:
            api = f"{url}/api/updates"
            before = datetime.now(UTC)
            async with (
                Stream(api, headers=bearer("alice"), types=["projects", "compute"]) as alice,
                Stream(api, headers=bearer("carol")) as carol,
            ):
                after = datetime.now(UTC)
                hub.notify("projects", key="1")
                await wait_for(lambda: alice.saw("projects", "1") and carol.saw("projects", "1"))
                hub.notify("compute", audience="tenant:acme")
                hub.notify("projects", key="2")
                await wait_for(lambda: all(c.pending for c in hub.connections()))
                found = {c.subject: c for c in hub.connections()}
                assert alice.invalidated() == {("projects", "1")}  # the rest is held back

    assert set(found) == {"alice", "carol"}
    a, c = found["alice"], found["carol"]
    assert isinstance(a, ConnectionInfo)
    assert a.types == {"projects", "compute"} and a.scopes == {"tenant:acme"}
    assert c.types == {"projects"}
    assert a.pending == {"projects", "compute"}
    assert c.pending == {"projects"}
    assert a.frames == c.frames == 1  # what each client had received
    assert before <= a.since <= after and a.since.tzinfo is UTC
    assert not a.busy
    with pytest.raises(AttributeError):
        a.frames = 2  # type: ignore[misc]


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self, event: str) -> list[logging.LogRecord]:
        return [r for r in self.records if getattr(r, "event", None) == event]


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    loggers = [logging.getLogger("refetch.streams"), logging.getLogger("refetch.updates")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


async def test_structured_logs_carry_fields_not_text(hub: UpdateService, captured: Capture) -> None:
    async with serve(app_for(hub)) as url:
        api = f"{url}/api/updates"
        async with httpx.AsyncClient() as http:
            assert (await http.get(api)).status_code == 401
            assert (await http.get(api, params={"types": "nope"})).status_code == 400
            assert (
                await http.get(api, headers=bearer("carol"), params={"types": "compute"})
            ).status_code == 403
        async with Stream(api, headers=bearer("alice"), types=["projects"]) as alice:
            await hub.publish("projects", key="9", audience=["tenant:acme", "user:1"])
            await wait_for(lambda: alice.saw("projects", "9"))
        await wait_for(lambda: captured.events("stream.closed"))

    rejected = [(r.status, r.reason, r.path) for r in captured.events("stream.rejected")]  # type: ignore[attr-defined]
    assert rejected == [
        (401, "unauthorized", "/api/updates"),
        (400, "unknown_type", "/api/updates"),
        (403, "forbidden_type", "/api/updates"),
    ]
    assert all(r.detail for r in captured.events("stream.rejected"))  # type: ignore[attr-defined]

    (opened,) = captured.events("stream.opened")
    assert (opened.status, opened.subject, opened.types, opened.resumed_from) == (  # type: ignore[attr-defined]
        200,
        "alice",
        ["projects"],
        None,
    )
    assert opened.client.startswith("127.0.0.1:")  # type: ignore[attr-defined]

    (update,) = captured.events("update")
    frame = alice.of("invalidate")[0]
    assert update.update_type == "projects" and update.key == "9"  # type: ignore[attr-defined]
    assert update.audience == ["tenant:acme", "user:1"]  # type: ignore[attr-defined]
    assert update.reached == 1  # type: ignore[attr-defined]
    assert update.cursor == frame.id  # type: ignore[attr-defined]
    assert update.levelno == logging.DEBUG and update.name == "refetch.updates"

    (closed,) = captured.events("stream.closed")
    assert (closed.subject, closed.reason, closed.frames) == ("alice", "gone", 1)  # type: ignore[attr-defined]
    assert closed.duration >= 0  # type: ignore[attr-defined]
    assert closed.levelno == logging.INFO and closed.name == "refetch.streams"


async def test_update_logs_cost_nothing_when_disabled(hub: UpdateService) -> None:
    # The default: refetch.updates is not enabled for DEBUG, so no record is built.
    handler = Capture()
    logger = logging.getLogger("refetch.updates")
    logger.addHandler(handler)
    try:
        await hub.publish("projects")
    finally:
        logger.removeHandler(handler)
    assert handler.records == []


# -- the counters under arbitrary traffic (a model of what each stream should get) ----------

notifies = st.lists(
    st.tuples(
        st.sampled_from(["projects", "compute"]),
        st.one_of(st.none(), st.sampled_from(["1", "2"])),
        st.one_of(st.none(), st.sampled_from(["tenant:acme", "tenant:globex"])),
    ),
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(streams=st.lists(st.sampled_from(list(TOKENS)), min_size=1, max_size=4), batch=notifies)
async def test_counters_match_a_model_of_the_traffic(
    streams: list[str], batch: list[tuple[str, str | None, str | None]]
) -> None:
    async with UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub:
        recorders = []
        for name in streams:
            recorder = Recorder()
            principal = TOKENS[name]
            hub.attach(recorder, principal, hub.allowed_types(principal), None, None)
            recorders.append(recorder)
        for type_, key, audience in batch:
            hub.notify(type_, key=key, audience=audience)
        cursor = await hub.publish("projects", key="end")  # every stream hears this one last
        await wait_for(lambda: all(cursor.encode() in r.body for r in recorders))
        stats = hub.statistics()
        infos = hub.connections()

    expected = {t: sum(1 for n in batch if n[0] == t) for t in TYPES}
    expected["projects"] += 1
    assert stats.updates_by_type == expected
    assert stats.connections_by_type["projects"] == len(streams)
    assert stats.connections_by_type["compute"] == streams.count("alice")
    frames = sum(r.body.count(b"event: invalidate") for r in recorders)
    assert stats.frames == frames
    assert sum(stats.deliveries_by_type.values()) == stats.deliveries
    for type_ in TYPES:
        named = sum(r.body.count(f'"type":"{type_}"'.encode()) for r in recorders)
        assert stats.deliveries_by_type[type_] == named, type_
    assert sum(stats.latency_counts) == frames
    assert [i.frames for i in infos] == [r.body.count(b"event: invalidate") for r in recorders]
    assert all(not i.pending for i in infos)
