"""On-demand pollers in one process: a real hub behind real uvicorn, a real upstream API on a
loopback port that counts the requests it gets, and streams opened by the real client.

The multi-instance cases (Redis, PostgreSQL, NATS, kill -9) are in
``test_pollers_on_demand_instances.py``; the bookkeeping's model test in
``test_demand_model.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from refetch import (
    BackgroundWorker,
    ConfigurationError,
    Principal,
    UpdatesEndpoint,
    UpdateService,
    poller,
)

from .conftest import TYPES, Stream, serve, token_auth, wait_for

INTERVAL = 0.1
IDLE_AFTER = 0.5


class Upstream:
    """The external API: counts requests per path; the value of a path can be changed."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.values: dict[str, int] = {}

    async def state(self, request: Request) -> JSONResponse:
        where = request.path_params["where"]
        self.requests.append(where)
        return JSONResponse({"value": self.values.get(where, 1)})

    def count(self, where: str | None = None) -> int:
        return len(self.requests) if where is None else self.requests.count(where)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/state/{where}", self.state)])


@contextlib.asynccontextmanager
async def setup(
    *pollers_: Any, authenticate: Any = None
) -> AsyncIterator[tuple[Upstream, BackgroundWorker, str, UpdateService]]:
    upstream = Upstream()
    async with serve(upstream.app()) as api:
        specs = [p(api) for p in pollers_]
        hub = UpdateService(TYPES, close_on_signals=False, min_interval=0.01)
        async with (
            hub,
            serve(UpdatesEndpoint(hub, authenticate=authenticate)) as updates,
            BackgroundWorker(hub, specs) as worker,
        ):
            yield upstream, worker, updates, hub


def progress(api: str, **kwargs: Any) -> Any:
    return poller(
        "progress",
        url=f"{api}/state/progress",
        extract=lambda body: body["value"],
        interval=INTERVAL,
        on_demand=True,
        idle_after=IDLE_AFTER,
        **kwargs,
    )


async def quiet_for(intervals: int) -> None:
    await asyncio.sleep(intervals * INTERVAL)


async def test_nobody_listens_no_request_then_one_at_once_then_none_after_idle_after() -> None:
    async with setup(progress) as (upstream, worker, updates, _hub):
        await quiet_for(10)
        assert upstream.count() == 0
        stats = worker.statistics()["progress"]
        assert (stats.why, stats.active, stats.polls) == ("idle", False, 0)
        assert stats.polls_avoided >= 5

        async with Stream(f"{updates}?types=progress") as stream:
            # The poll follows the stream, and its notify (the first value) reaches it.
            await wait_for(lambda: stream.saw("progress"), 2)
            assert upstream.count() >= 1
            stats = worker.statistics()["progress"]
            assert (stats.why, stats.active, stats.listeners) == ("listeners", True, 1)
            # it goes on polling at its interval while the stream is open
            await wait_for(lambda: upstream.count() >= 4, 5)

        await wait_for(lambda: worker.statistics()["progress"].why == "idle", 5)
        stopped = upstream.count()
        await quiet_for(10)
        assert upstream.count() == stopped


async def test_the_first_poll_does_not_wait_for_the_interval() -> None:
    # An interval far longer than the test: only the edge "someone listens" can poll.
    def slow(api: str) -> Any:
        return poller("progress", url=f"{api}/state/p", interval=3600, on_demand=True)

    async with setup(slow) as (upstream, _worker, updates, _hub):
        await quiet_for(3)
        assert upstream.count() == 0
        async with Stream(f"{updates}?types=progress") as stream:
            await wait_for(lambda: upstream.count() == 1, 2)
            await wait_for(lambda: stream.saw("progress"), 2)


async def test_a_stream_of_another_type_is_no_demand() -> None:
    async with setup(progress) as (upstream, worker, updates, _hub):
        async with Stream(f"{updates}?types=projects"):
            await quiet_for(10)
            assert upstream.count() == 0
            assert worker.statistics()["progress"].listeners == 0


async def test_audience_counts_only_streams_holding_one_of_its_scopes() -> None:
    def tenant(api: str) -> Any:
        return progress(api, audience={"tenant:acme"})

    auth = token_auth(
        {
            "bob": Principal.of("bob", ["tenant:globex"]),
            "alice": Principal.of("alice", ["tenant:acme"]),
        }
    )
    async with setup(tenant, authenticate=auth) as (upstream, worker, updates, hub):
        bob = {"Authorization": "Bearer bob"}
        async with Stream(f"{updates}?types=progress", headers=bob):
            await quiet_for(10)
            assert upstream.count() == 0
            # bob joins acme: his open stream is demand from now on
            hub.reauthorize("bob", Principal.of("bob", ["tenant:acme"]))
            await wait_for(lambda: upstream.count() >= 1, 2)
            assert worker.statistics()["progress"].listeners == 1


async def test_per_key_only_the_watched_key_is_polled() -> None:
    def region(key: str) -> Any:
        def make(api: str) -> Any:
            return poller(
                "compute",
                key=key,
                url=f"{api}/state/{key}",
                interval=INTERVAL,
                on_demand=True,
                idle_after=IDLE_AFTER,
            )

        return make

    async with setup(region("eu-1"), region("us-1"), region("ap-1")) as (
        upstream,
        worker,
        updates,
        _hub,
    ):
        async with Stream(f"{updates}?types=compute&watch=compute:eu-1") as stream:
            await wait_for(lambda: upstream.count("eu-1") >= 5, 5)
            assert upstream.count("us-1") == upstream.count("ap-1") == 0
            assert stream.saw("compute", "eu-1")
            stats = worker.statistics()
            assert stats["compute:eu-1"].why == "listeners"
            assert stats["compute:us-1"].why == "idle"
        # a stream of the whole type is demand for every key
        async with Stream(f"{updates}?types=compute"):
            await wait_for(lambda: upstream.count("us-1") >= 1 and upstream.count("ap-1") >= 1, 5)


async def test_latest_marks_an_old_value_stale_while_nobody_listens() -> None:
    async with setup(progress) as (_upstream, worker, updates, _hub):
        async with Stream(f"{updates}?types=progress") as stream:
            await wait_for(lambda: stream.saw("progress"), 2)
            fresh = worker.latest("progress")
            assert fresh.value == 1 and not fresh.stale and fresh.error is None
        await wait_for(lambda: worker.statistics()["progress"].why == "idle", 5)
        await quiet_for(2)
        stale = worker.latest("progress")
        assert stale.value == 1 and stale.stale and stale.error == "not polled: nobody listens"
        assert worker.statistics()["progress"].stale

        # The next listener gets a fresh poll, and hears of it although the value is the
        # same: what it may have read meanwhile said "stale".
        async with Stream(f"{updates}?types=progress") as stream:
            await wait_for(lambda: stream.saw("progress"), 2)
            assert not worker.latest("progress").stale


async def test_start_and_stop_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="refetch.worker")
    async with setup(progress) as (_upstream, worker, updates, _hub):
        async with Stream(f"{updates}?types=progress"):
            await wait_for(lambda: worker.statistics()["progress"].why == "listeners", 2)
        await wait_for(lambda: worker.statistics()["progress"].why == "idle", 5)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("poller.started") == 1 and events.count("poller.stopped") == 1
    started = next(r for r in caplog.records if getattr(r, "event", None) == "poller.started")
    assert started.poller == "progress" and started.listeners == 1  # type: ignore[attr-defined]


async def test_an_always_poller_beside_is_unchanged() -> None:
    def always(api: str) -> Any:
        return poller("images", url=f"{api}/state/images", interval=INTERVAL)

    async with setup(progress, always) as (upstream, worker, _updates, _hub):
        await wait_for(lambda: upstream.count("images") >= 5, 5)
        assert upstream.count("progress") == 0
        stats = worker.statistics()["images"]
        assert (stats.why, stats.active, stats.on_demand) == ("always", True, False)


class PlainNotifier:
    def notify(self, type: str, key: str | None = None, *, audience: Any = None) -> None:
        pass


def test_on_demand_needs_a_notifier_that_knows_who_listens() -> None:
    spec = poller("progress", url="http://127.0.0.1:1/x", on_demand=True)
    with pytest.raises(ConfigurationError, match="pass the UpdateService"):
        BackgroundWorker(PlainNotifier(), [spec])
    BackgroundWorker(PlainNotifier(), [poller("progress", url="http://127.0.0.1:1/x")])


def test_idle_after_must_not_be_negative() -> None:
    with pytest.raises(ConfigurationError, match="idle_after"):
        poller("progress", url="http://127.0.0.1:1/x", on_demand=True, idle_after=-1)


# -- watch= on the wire ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "error", "named"),
    [
        ("types=compute&watch=compute", "malformed_watch", "compute"),
        ("types=compute&watch=compute:", "malformed_watch", "compute:"),
        ("types=compute&watch=compute:" + "k" * 129, "malformed_watch", "compute:kkk"),
        ("types=compute&watch=nope:eu-1", "unknown_type", "nope"),
        ("types=compute&watch=%0Abad%1b:x", "unknown_type", "\\nbad\\x1b"),
        ("types=projects&watch=compute:eu-1", "malformed_watch", "compute"),
        ("types=compute&" + "&".join(f"watch=compute:{i}" for i in range(65)), "too_many", ""),
        ("&".join(f"watch=compute:{i}" for i in range(257)), "too_many", ""),
    ],
)
async def test_watch_refusals_are_400_with_a_json_body(query: str, error: str, named: str) -> None:
    hub = UpdateService(TYPES, close_on_signals=False)
    async with hub, serve(UpdatesEndpoint(hub)) as url, httpx.AsyncClient() as http:
        response = await http.get(f"{url}?{query}")
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith(error)
    assert named in body["detail"]
    assert len(response.content) < 1000


async def test_watch_keys_are_percent_decoded_and_split_at_the_first_colon() -> None:
    def keyed(api: str) -> Any:
        return poller(
            "compute", key="a:b c", url=f"{api}/state/x", interval=INTERVAL, on_demand=True
        )

    async with setup(keyed) as (upstream, worker, updates, _hub):
        async with Stream(f"{updates}?types=compute&watch=compute%3Aa%3Ab%20c"):
            await wait_for(lambda: upstream.count() >= 1, 2)
            assert worker.statistics()["compute:a:b c"].listeners == 1


async def test_prometheus_says_which_pollers_are_active_and_why() -> None:
    from prometheus_client.parser import text_string_to_metric_families
    from starlette.routing import Mount

    from refetch.metrics import metrics_app

    def always(api: str) -> Any:
        return poller("images", url=f"{api}/state/images", interval=INTERVAL)

    async with setup(progress, always) as (upstream, worker, updates, hub):
        app = Starlette(routes=[Mount("/metrics", metrics_app(hub, worker=worker))])
        async with serve(app) as metrics, httpx.AsyncClient() as http:

            async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
                text = (await http.get(f"{metrics}/metrics/")).text
                return {
                    (s.name, tuple(sorted(s.labels.items()))): s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                }

            await quiet_for(5)
            m = await scrape()
            progress_, images = (("poller", "progress"),), (("poller", "images"),)
            assert m[("refetch_poller_active", progress_)] == 0
            assert m[("refetch_poller_why", (("poller", "progress"), ("why", "idle")))] == 1
            assert m[("refetch_poller_why", (("poller", "images"), ("why", "always")))] == 1
            assert m[("refetch_poller_active", images)] == 1
            assert m[("refetch_poller_polls_total", progress_)] == 0
            assert m[("refetch_poller_polls_avoided_total", progress_)] >= 2
            assert m[("refetch_poller_polls_avoided_total", images)] == 0
            async with Stream(f"{updates}?types=progress"):
                await wait_for(lambda: upstream.count("progress") >= 1, 2)
                m = await scrape()
                assert m[("refetch_poller_active", progress_)] == 1
                assert m[("refetch_poller_listeners", progress_)] == 1
                assert (
                    m[("refetch_poller_why", (("poller", "progress"), ("why", "listeners")))] == 1
                )
                assert m[("refetch_poller_polls_total", progress_)] >= 1


async def test_mount_reads_watch_as_the_endpoint_does() -> None:
    import refetch

    def keyed(api: str) -> Any:
        return poller("compute", key="eu-1", url=f"{api}/state/eu", interval=60, on_demand=True)

    upstream = Upstream()
    async with serve(upstream.app()) as api:
        hub = UpdateService(TYPES, close_on_signals=False)
        app = refetch.mount(Starlette(), "/api/updates", UpdatesEndpoint(hub))
        async with (
            hub,
            serve(app) as base,
            BackgroundWorker(hub, [keyed(api)]) as worker,
            httpx.AsyncClient() as http,
        ):
            refused = await http.get(f"{base}/api/updates?types=compute&watch=compute")
            assert refused.status_code == 400 and refused.json()["error"] == "malformed_watch"
            async with Stream(f"{base}/api/updates?types=compute&watch=compute:us-1"):
                await quiet_for(5)
                assert upstream.count() == 0
            async with Stream(f"{base}/api/updates?types=compute&watch=compute:eu-1"):
                await wait_for(lambda: upstream.count() == 1, 2)
                assert worker.statistics()["compute:eu-1"].listeners == 1


async def test_idle_after_counted_on_the_worker_clock_and_the_edge_skips_the_wait() -> None:
    """Fake time (the worker's ``sleep``/``monotonic``), the real hub: polls every 0.25 s,
    the only stream leaves at t=0.5, so the polls at 0.75, 1.0 and 1.25 still happen and the
    one at 1.5 (idle_after=1.0 later) does not; a new stream polls without any sleep ending."""
    from .conftest import Recorder
    from .test_worker import Script, SteppedClock, ok

    script = Script(ok(1))
    clock = SteppedClock()
    hub = UpdateService(TYPES, close_on_signals=False)
    spec = poller(
        "progress",
        url="http://api.test/state",
        interval=0.25,
        jitter=0,
        on_demand=True,
        idle_after=1.0,
    )
    async with (
        hub,
        httpx.AsyncClient(transport=httpx.MockTransport(script)) as client,
    ):
        types = frozenset({"progress"})
        first = hub.attach(Recorder(), Principal(), types, None)
        worker = BackgroundWorker(
            hub, [spec], client=client, sleep=clock.sleep, monotonic=clock.monotonic
        )
        async with worker:
            await clock.until_poll(3)  # polls at 0, 0.25, 0.5
            assert len(script.requests) == 3 and clock.now == 0.5
            hub.detach(first)
            await clock.until_poll(7)  # 0.75, 1.0, 1.25 poll; 1.5 does not
            assert len(script.requests) == 6
            stats = worker.statistics()["progress"]
            assert (stats.why, stats.polls_avoided) == ("idle", 1)
            await clock.until_poll(10)
            assert len(script.requests) == 6
            assert worker.statistics()["progress"].polls_avoided == 4
            hub.attach(Recorder(), Principal(), types, None)
            now = clock.now
            await wait_for(lambda: len(script.requests) == 7, 5)
            assert clock.now == now  # no sleep had to end: the edge woke the poller


async def test_the_python_client_sends_watch() -> None:
    def region(key: str) -> Any:
        def make(api: str) -> Any:
            return poller("compute", key=key, url=f"{api}/state/{key}", interval=60, on_demand=True)

        return make

    async with setup(region("eu-1"), region("us-1")) as (upstream, worker, updates, _hub):
        async with Stream(updates, types=["compute"], watch={"compute": ["us-1"]}):
            await wait_for(lambda: upstream.count("us-1") == 1, 2)
            await quiet_for(3)
            assert upstream.count("eu-1") == 0
            assert worker.statistics()["compute:us-1"].listeners == 1


# -- the hello's watch: which types' keys a client should send ----------------------------


async def hello_bytes(url: str) -> bytes:
    """The stream's first frame, bytes as sent, its cursor (which the pollers move) as ``C``."""
    async with httpx.AsyncClient(timeout=5) as http, http.stream("GET", url) as response:
        assert response.status_code == 200
        data = b""
        async for chunk in response.aiter_raw():
            data += chunk
            if b"\n\n" in data:
                frame = data.split(b"\n\n")[0] + b"\n\n"
                cursor = frame.split(b"id: ", 1)[1].split(b"\n", 1)[0]
                return frame.replace(cursor, b"C")
    raise AssertionError(f"no frame in {data!r}")


HELLO = b'retry: 2000\nid: C\nevent: hello\ndata: {"cursor":"C","heartbeat":15.0,"types":'


async def test_hello_lists_the_types_with_a_keyed_on_demand_poller() -> None:
    def eu(api: str) -> Any:
        return poller("compute", key="eu-1", url=f"{api}/state/eu", interval=60, on_demand=True)

    def always_keyed(api: str) -> Any:  # polls anyway: its keys are nobody's business
        return poller("images", key="x", url=f"{api}/state/x", interval=60)

    async with setup(eu, progress, always_keyed) as (_upstream, _worker, updates, _hub):
        every = await hello_bytes(f"{updates}?types=images,compute,progress")
        assert every == HELLO + b'["progress","compute","images"],"watch":["compute"]}\n\n'
        # only types the stream hears; none: the field is left out, the bytes as before
        assert await hello_bytes(f"{updates}?types=progress") == HELLO + b'["progress"]}\n\n'
    # no keyed on-demand poller at all: nothing either
    async with setup(progress) as (_upstream, _worker, updates, _hub):
        assert await hello_bytes(f"{updates}?types=compute") == HELLO + b'["compute"]}\n\n'
    # the worker gone, its keyed poller's watch goes with it
    async with setup(eu) as (_upstream, worker, updates, _hub):
        assert b'"watch":["compute"]' in await hello_bytes(f"{updates}?types=compute")
        await worker.aclose()
        assert await hello_bytes(f"{updates}?types=compute") == HELLO + b'["compute"]}\n\n'
