"""BackgroundWorker against httpx.MockTransport; the test steps time (no real intervals)."""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from refetch import UpdateService
from refetch._exceptions import ConfigurationError, UnknownUpdateType
from refetch._polling.poller import Poller, poller
from refetch._polling.worker import BackgroundWorker, Cached

URL = "http://api.test/state"


class RecordingNotifier:
    """The hub's side of the contract: remembers every notify() call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, frozenset[str] | None]] = []

    def notify(
        self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
    ) -> None:
        self.calls.append((type, key, None if audience is None else frozenset(audience)))

    @property
    def types(self) -> list[str]:
        return [call[0] for call in self.calls]


class SteppedClock:
    """Fake time for the worker: each sleep is recorded and blocks until the test allows the
    next poll, then advances `now` by the delay. Poll N is the N-th poll of the (one) poller."""

    def __init__(self) -> None:
        self.now = 0.0
        self.delays: list[float] = []
        self._released = 0
        self._cond = asyncio.Condition()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        async with self._cond:
            self.delays.append(delay)
            index = len(self.delays)
            self._cond.notify_all()
            await self._cond.wait_for(lambda: self._released >= index)
        self.now += delay

    async def until_poll(self, polls: int) -> None:
        """Return once poll number `polls` has finished and the worker sleeps again."""
        async with asyncio.timeout(5), self._cond:
            self._released = max(self._released, polls - 1)
            self._cond.notify_all()
            await self._cond.wait_for(lambda: len(self.delays) >= polls)


class UpperBound(random.Random):
    """Every jitter draw at its maximum, so delays are exact numbers."""

    def uniform(self, a: float, b: float) -> float:
        return b


Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Script:
    """The external API as a list of answers; the last one repeats."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if len(self.steps) > 1 else self.steps[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)


def ok(value: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json={"value": value}, headers=headers)


def by_value(body: Any) -> Any:
    return body["value"]


@contextmanager
def harness(
    *steps: Step,
    rng: random.Random | None = None,
    **options: Any,
) -> Iterator[tuple[BackgroundWorker, RecordingNotifier, SteppedClock, Script, httpx.AsyncClient]]:
    script = Script(*steps)
    client = httpx.AsyncClient(transport=httpx.MockTransport(script))
    notifier = RecordingNotifier()
    clock = SteppedClock()
    options.setdefault("url", URL)
    options.setdefault("extract", by_value)
    spec = poller("progress", **options)
    worker = BackgroundWorker(
        notifier,
        [spec],
        client=client,
        rng=rng or random.Random(0),
        sleep=clock.sleep,
        monotonic=clock.monotonic,
    )
    yield worker, notifier, clock, script, client


async def test_first_success_sets_baseline_and_notifies() -> None:
    with harness(ok(1)) as (worker, notifier, clock, _, client):
        assert not worker.latest("progress").has_value
        async with client, worker:
            await clock.until_poll(1)
            cached = worker.latest("progress")
            assert cached.value == 1
            assert cached.has_value and not cached.stale and cached.error is None
            assert cached.fetched_at is not None and cached.changed_at == cached.fetched_at
            assert notifier.calls == [("progress", None, None)]


async def test_notifies_exactly_on_change() -> None:
    values = [1, 1, 2, 2, 2, 3, {"a": [1]}, {"a": [1]}]
    with harness(*[ok(v) for v in values]) as (worker, notifier, clock, _, client):
        async with client, worker:
            seen = []
            for n in range(1, len(values) + 1):
                await clock.until_poll(n)
                seen.append(len(notifier.calls))
            assert seen == [1, 1, 2, 2, 2, 3, 4, 4]
            assert worker.latest("progress").value == {"a": [1]}
            stats = worker.statistics()["progress"]
            assert (stats.polls, stats.changes, stats.failures) == (8, 4, 0)


async def test_unchanged_value_keeps_changed_at_and_moves_fetched_at() -> None:
    with harness(ok(1), ok(1)) as (worker, _, clock, _, client):
        async with client, worker:
            await clock.until_poll(1)
            first = worker.latest("progress")
            await clock.until_poll(2)
            second = worker.latest("progress")
            assert second.changed_at == first.changed_at
            assert first.fetched_at is not None and second.fetched_at is not None
            assert second.fetched_at >= first.fetched_at


async def test_conditional_request_answered_304_costs_no_notification() -> None:
    modified = "Wed, 21 Oct 2015 07:28:00 GMT"
    steps = (ok(1, ETag='"v1"', **{"Last-Modified": modified}), httpx.Response(304))
    with harness(*steps) as (worker, notifier, clock, script, client):
        async with client, worker:
            await clock.until_poll(3)
            first, second, third = script.requests
            assert "If-None-Match" not in first.headers
            assert second.headers["If-None-Match"] == '"v1"'
            assert second.headers["If-Modified-Since"] == modified
            assert third.headers["If-None-Match"] == '"v1"'
            assert worker.latest("progress").value == 1
            assert notifier.types == ["progress"]
            stats = worker.statistics()["progress"]
            assert (stats.not_modified, stats.changes, stats.failures) == (2, 1, 0)


async def test_304_without_a_cached_value_is_a_failure() -> None:
    steps = (httpx.Response(304), ok(5))
    with harness(*steps) as (worker, _, clock, _, client):
        async with client, worker:
            await clock.until_poll(1)
            cached = worker.latest("progress")
            assert cached.stale and not cached.has_value
            assert cached.error is not None and cached.error.startswith("HTTP 304")
            await clock.until_poll(2)
            assert worker.latest("progress").value == 5


async def test_validators_of_a_rejected_body_are_not_reused() -> None:
    # If the ETag of a body the extractor rejected were kept, the next poll would get a 304 and
    # "confirm" a value that was never accepted.
    steps = (
        ok(1, ETag='"v1"'),
        httpx.Response(200, json={"wrong": "shape"}, headers={"ETag": '"v2"'}),
        ok(2, ETag='"v3"'),
    )
    with harness(*steps) as (worker, _, clock, script, client):
        async with client, worker:
            await clock.until_poll(3)
            assert [r.headers.get("If-None-Match") for r in script.requests] == [
                None,
                '"v1"',
                '"v1"',
            ]
            assert worker.latest("progress").value == 2


def _garbage(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, content=b"<html>502 Bad Gateway</html>")


@pytest.mark.parametrize(
    ("failure", "error_prefix"),
    [
        (httpx.Response(500, text="boom"), "HTTP 500"),
        (httpx.Response(404), "HTTP 404"),
        (httpx.ReadTimeout("read timed out"), "timeout"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "connection failed"),
        (httpx.RemoteProtocolError("peer closed connection"), "transport error"),
        (_garbage, "invalid JSON"),
        (httpx.Response(200, json={"unexpected": 1}), "extract failed: KeyError('value')"),
        (httpx.Response(200, json=["a", "list"]), "extract failed: TypeError"),
    ],
)
async def test_failure_keeps_cache_marks_stale_and_recovers(
    failure: Step, error_prefix: str
) -> None:
    with harness(ok(1), failure, failure, failure, ok(1)) as (worker, notifier, clock, _, client):
        async with client, worker:
            await clock.until_poll(1)
            for n in (2, 3, 4):
                await clock.until_poll(n)
                cached = worker.latest("progress")
                assert cached.value == 1 and cached.stale
                assert cached.error is not None and cached.error.startswith(error_prefix)
            # first value, then stale once (not once per failed poll)
            assert notifier.types == ["progress", "progress"]
            stats = worker.statistics()["progress"]
            assert (stats.failures, stats.consecutive_failures) == (3, 3)
            assert stats.last_error is not None and stats.last_error.startswith(error_prefix)

            await clock.until_poll(5)
            cached = worker.latest("progress")
            assert cached.value == 1 and not cached.stale and cached.error is None
            # fresh again is news even though the value is the same
            assert notifier.types == ["progress"] * 3
            stats = worker.statistics()["progress"]
            assert stats.consecutive_failures == 0 and stats.failures == 3
            assert stats.last_error is not None  # history stays in the statistics


async def test_extractor_may_reject_a_value_by_raising() -> None:
    def percent(body: Any) -> int:
        value = body["value"]
        if not 0 <= value <= 100:
            raise ValueError(f"progress out of range: {value}")
        return int(value)

    with harness(ok(10), ok(250), ok(20), extract=percent) as (worker, notifier, clock, _, client):
        async with client, worker:
            await clock.until_poll(2)
            cached = worker.latest("progress")
            assert cached.value == 10 and cached.stale
            assert cached.error == "extract failed: ValueError('progress out of range: 250')"
            await clock.until_poll(3)
            assert worker.latest("progress").value == 20
            assert len(notifier.calls) == 3  # 10, stale, 20 (fresh and changed: one notify)


async def test_a_failure_before_any_value_is_stale_without_value() -> None:
    with harness(httpx.Response(503), ok(1)) as (worker, notifier, clock, _, client):
        async with client, worker:
            await clock.until_poll(1)
            cached = worker.latest("progress")
            assert cached == Cached(stale=True, error="HTTP 503: Service Unavailable")
            assert len(notifier.calls) == 1
            await clock.until_poll(2)
            assert worker.latest("progress").value == 1
            assert len(notifier.calls) == 2


async def test_backoff_doubles_up_to_the_cap_and_resets_on_success() -> None:
    steps = [ok(1)] + [httpx.Response(500)] * 6 + [ok(2), ok(2)]
    options = {"interval": 1.0, "max_backoff": 8.0, "jitter": 0.1}
    with harness(*steps, rng=UpperBound(), **options) as (worker, _, clock, _, client):
        async with client, worker:
            await clock.until_poll(len(steps))
            assert clock.delays == pytest.approx([1.1, 1, 2, 4, 8, 8, 8, 1.1, 1.1])
            assert worker.statistics()["progress"].next_delay == pytest.approx(1.1)


async def test_jittered_backoff_stays_within_bounds_and_never_shrinks() -> None:
    steps = [httpx.Response(500)] * 8
    options = {"interval": 2.0, "max_backoff": 30.0, "jitter": 0.2}
    for seed in range(20):
        with harness(*steps, rng=random.Random(seed), **options) as (worker, _, clock, _, client):
            async with client, worker:
                await clock.until_poll(len(steps))
        ceilings = [2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0, 30.0]
        for delay, ceiling in zip(clock.delays, ceilings, strict=True):
            assert ceiling / 2 <= delay <= ceiling
        uncapped = clock.delays[:4]
        assert uncapped == sorted(uncapped)


async def test_interval_jitter_spreads_pollers() -> None:
    steps = [ok(1)] * 30
    with harness(*steps, rng=random.Random(7), interval=2.0, jitter=0.1) as (
        worker,
        _,
        clock,
        _,
        client,
    ):
        async with client, worker:
            await clock.until_poll(len(steps))
    assert all(1.8 <= d <= 2.2 for d in clock.delays)
    assert len(set(clock.delays)) > 1


async def test_interval_is_measured_start_to_start() -> None:
    clock_ref: list[SteppedClock] = []

    def slow(seconds: float) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            clock_ref[0].now += seconds
            return ok(1)

        return answer

    steps = (slow(0.5), slow(3.0), slow(0.0))
    with harness(*steps, interval=2.0, jitter=0.0) as (worker, _, clock, _, client):
        clock_ref.append(clock)
        async with client, worker:
            await clock.until_poll(3)
    # a poll that overran the interval is followed by one poll at once, not by a catch-up burst
    assert clock.delays == [1.5, 0.0, 2.0]


async def test_a_slow_api_never_causes_overlapping_polls() -> None:
    in_flight = 0
    most = 0
    answered = 0
    enough = asyncio.Event()

    async def slow(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most, answered
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.02)  # longer than the interval below
        in_flight -= 1
        answered += 1
        if answered >= 4:
            enough.set()
        return ok(answered)

    async with httpx.AsyncClient(transport=httpx.MockTransport(slow)) as client:
        spec = poller("progress", url=URL, extract=by_value, interval=0.001, jitter=0.0)
        async with BackgroundWorker(RecordingNotifier(), [spec], client=client):
            async with asyncio.timeout(5):
                await enough.wait()
    assert most == 1


async def test_log_once_per_state_change(caplog: pytest.LogCaptureFixture) -> None:
    steps: tuple[Step, ...] = (
        ok(1),
        *[httpx.Response(500)] * 4,
        *[httpx.ReadTimeout("slow")] * 3,
        ok(1),
        ok(1),
    )
    caplog.set_level(logging.DEBUG, logger="refetch.worker")
    with harness(*steps) as (worker, _, clock, _, client):
        async with client, worker:
            await clock.until_poll(len(steps))
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelname for r in records] == ["WARNING", "WARNING", "INFO"]
    assert records[0].getMessage().startswith(f"poller progress ({URL}): HTTP 500")
    assert "serving the cached value" in records[0].getMessage()
    assert all(f"({URL})" in r.getMessage() for r in records)
    assert "timeout" in records[1].getMessage()
    assert "recovered after 7 failed polls" in records[2].getMessage()


async def test_a_failure_warning_names_the_url_but_never_its_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = "http://svc:hunter2@api.test/state?api_key=SECRET"
    caplog.set_level(logging.INFO, logger="refetch.worker")
    with harness(httpx.Response(503), url=url) as (worker, _, clock, _, client):
        async with client, worker:
            await clock.until_poll(1)
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.getMessage() == (
        "poller progress (http://svc:***@api.test/state?...): HTTP 503: Service Unavailable; "
        "no value cached yet"
    )
    assert record.source == "http://svc:***@api.test/state?..."  # type: ignore[attr-defined]
    assert "hunter2" not in caplog.text and "SECRET" not in caplog.text


async def test_fetch_function_poller() -> None:
    answers: list[Any] = [{"value": 1}, RuntimeError("sdk down"), {"value": 2}]

    async def fetch() -> Any:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    notifier = RecordingNotifier()
    clock = SteppedClock()
    spec = poller("compute", fetch=fetch, extract=by_value)
    worker = BackgroundWorker(notifier, [spec], sleep=clock.sleep, monotonic=clock.monotonic)
    async with worker:
        await clock.until_poll(2)
        assert worker.latest("compute").error == "fetch failed: RuntimeError('sdk down')"
        await clock.until_poll(3)
        assert worker.latest("compute").value == 2
    assert notifier.types == ["compute"] * 3


async def test_fetch_function_that_hangs_times_out() -> None:
    async def hang() -> Any:
        await asyncio.Event().wait()

    clock = SteppedClock()
    spec = poller("compute", fetch=hang, timeout=0.01)
    async with BackgroundWorker(
        RecordingNotifier(), [spec], sleep=clock.sleep, monotonic=clock.monotonic
    ) as worker:
        await clock.until_poll(1)
        assert worker.latest("compute").error == "timeout: no answer within 0.01s"


async def test_key_and_audience_reach_the_notifier() -> None:
    with harness(ok(1), key="42", audience={"tenant:acme"}) as (worker, notifier, clock, _, c):
        async with c, worker:
            await clock.until_poll(1)
            assert notifier.calls == [("progress", "42", frozenset({"tenant:acme"}))]
            assert worker.latest("progress:42").value == 1


async def test_a_raising_notifier_does_not_stop_the_poller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def notify(
            self, type: str, key: str | None = None, *, audience: Iterable[str] | None = None
        ) -> None:
            raise RuntimeError("hub bug")

    clock = SteppedClock()
    async with httpx.AsyncClient(transport=httpx.MockTransport(Script(ok(1), ok(2)))) as client:
        spec = poller("progress", url=URL, extract=by_value)
        worker = BackgroundWorker(
            Broken(), [spec], client=client, sleep=clock.sleep, monotonic=clock.monotonic
        )
        async with worker:
            await clock.until_poll(2)
            assert worker.latest("progress").value == 2
    assert "notify('progress') raised" in caplog.text


async def test_exit_cancels_and_awaits_every_task_and_keeps_a_given_client_open() -> None:
    entered: list[str] = []
    all_entered = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        entered.append(str(request.url))
        if len(entered) == 3:
            all_entered.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with httpx.AsyncClient(transport=httpx.MockTransport(hang)) as client:
        pollers = [poller(t, url=URL, timeout=30) for t in ("a", "b", "c")]
        async with BackgroundWorker(RecordingNotifier(), pollers, client=client):
            async with asyncio.timeout(5):
                await all_entered.wait()
            assert len(_poller_tasks()) == 3
        assert _poller_tasks() == []
        assert not client.is_closed


async def test_worker_closes_the_client_it_created() -> None:
    # port 9 (discard) is closed on loopback: the poll fails fast, which is all this needs
    worker = BackgroundWorker(RecordingNotifier(), [poller("a", url="http://127.0.0.1:9/")])
    async with worker:
        client = worker._client
        assert client is not None and not client.is_closed
    assert client.is_closed
    assert _poller_tasks() == []


def _poller_tasks() -> list[asyncio.Task[Any]]:
    return [
        t for t in asyncio.all_tasks() if t.get_name().startswith("refetch poller") and not t.done()
    ]


async def test_worker_runs_once() -> None:
    worker = BackgroundWorker(RecordingNotifier(), [poller("a", fetch=_none)])
    async with worker:
        with pytest.raises(RuntimeError, match="runs once"):
            await worker.start()
    await worker.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="runs once"):
        await worker.start()


async def _none() -> None:
    return None


def test_latest_of_an_unknown_poller_names_the_known_ones() -> None:
    worker = BackgroundWorker(RecordingNotifier(), [poller("a", fetch=_none)])
    with pytest.raises(KeyError, match="known: a"):
        worker.latest("b")


def test_statistics_before_start() -> None:
    worker = BackgroundWorker(RecordingNotifier(), [poller("a", fetch=_none)])
    stats = worker.statistics()["a"]
    assert (stats.polls, stats.changes, stats.not_modified, stats.failures) == (0, 0, 0, 0)
    assert stats.last_success is None and stats.last_error is None and stats.leader is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of url= .* or fetch="),
        ({"url": URL, "fetch": _none}, "exactly one of url="),
        ({"url": "ftp://x/state"}, "http:// or https://"),
        ({"url": URL, "interval": 0}, "interval must be > 0"),
        ({"url": URL, "timeout": -1}, "timeout must be > 0"),
        ({"url": URL, "interval": 10, "max_backoff": 5}, "max_backoff"),
        ({"url": URL, "jitter": 1.5}, "jitter"),
        ({"fetch": _none, "headers": {"A": "b"}}, "headers= only applies to url="),
        ({"url": URL, "extract": "value"}, "extract must be a function"),
    ],
)
def test_misconfigured_poller_raises_with_advice(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        poller("progress", **kwargs)


def test_an_audience_string_is_one_scope_as_in_notify() -> None:
    # One rule for every entry point (notify, publish, poller, notify_in_transaction).
    assert poller("progress", url=URL, audience="tenant:acme").audience == {"tenant:acme"}


def test_empty_update_type_is_rejected() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        poller("", url=URL)


def test_poller_is_a_frozen_spec_with_defaults() -> None:
    spec = poller("progress", url=URL, headers={"Authorization": "Bearer x"})
    assert isinstance(spec, Poller)
    assert (spec.name, spec.interval, spec.timeout, spec.max_backoff) == ("progress", 2, 5, 30)
    assert spec.headers == (("Authorization", "Bearer x"),)
    assert spec.extract({"x": 1}) == {"x": 1}
    with pytest.raises(AttributeError):
        spec.interval = 1  # type: ignore[misc]


def test_duplicate_poller_names_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="distinct name="):
        BackgroundWorker(RecordingNotifier(), [poller("a", url=URL), poller("a", url=URL)])
    BackgroundWorker(
        RecordingNotifier(),
        [poller("a", url=URL, key="1"), poller("a", url=URL, key="2")],
    )


def test_worker_rejects_things_that_are_not_pollers() -> None:
    with pytest.raises(ConfigurationError, match=r"refetch.poller\(\)"):
        BackgroundWorker(RecordingNotifier(), [{"url": URL}])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="notify"):
        BackgroundWorker(object(), [])  # type: ignore[arg-type]


class ScriptedLease:
    """The Lease hook's consumer side; the real leases are tested in tests/test_leases.py."""

    def __init__(self, answers: list[bool]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def _next(self) -> bool:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    async def acquire(self) -> bool:
        self.calls.append("acquire")
        return self._next()

    async def renew(self) -> bool:
        self.calls.append("renew")
        return self._next()

    async def release(self) -> None:
        self.calls.append("release")


async def test_lease_only_the_holder_polls() -> None:
    lease = ScriptedLease([False, True, True, False, True])
    with harness(ok(1), ok(2), ok(3), lease=lease) as (worker, notifier, clock, script, client):
        async with client, worker:
            await clock.until_poll(1)
            assert script.requests == [] and worker.statistics()["progress"].leader is False
            await clock.until_poll(3)
            assert len(script.requests) == 2 and worker.statistics()["progress"].leader
            await clock.until_poll(4)  # lost it: no poll
            assert len(script.requests) == 2 and worker.statistics()["progress"].leader is False
            await clock.until_poll(5)
            assert len(script.requests) == 3
        assert lease.calls == ["acquire", "acquire", "renew", "renew", "acquire", "release"]
        assert notifier.types == ["progress"] * 3


class UpdateType(enum.Enum):
    progress = "progress"


def test_update_type_may_be_an_enum_member() -> None:
    assert poller(UpdateType.progress, url=URL).update_type == "progress"


async def test_worker_notifies_the_real_hub() -> None:
    values = iter([1, 1, 2])

    async def fetch() -> int:
        return next(values, 2)

    clock = SteppedClock()
    async with UpdateService(["progress", "projects"], close_on_signals=False) as hub:
        spec = poller(UpdateType.progress, fetch=fetch)
        worker = BackgroundWorker(hub, [spec], sleep=clock.sleep, monotonic=clock.monotonic)
        async with worker:
            await clock.until_poll(3)
            assert hub.statistics().updates == 2  # the first value and the change to 2


def test_a_poller_for_a_type_the_hub_does_not_declare_fails_at_construction() -> None:
    hub = UpdateService(["projects"], close_on_signals=False)
    with pytest.raises(UnknownUpdateType, match="'progress'"):
        BackgroundWorker(hub, [poller("progress", fetch=_none)])
