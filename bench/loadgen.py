"""Load generator: N raw HTTP/1.1 SSE connections, per-delivery latency, its own CPU use.

Runs in its own process (``bench/run.py`` pins it to its own core). It speaks just
enough HTTP/1.1 (chunked bodies) and SSE (``id:``, ``event:``, the ``keys`` of an
``invalidate``) to time every delivery: latency = receive time - the ``time.time_ns()``
the server put in the update key when it notified. Both ends are on one machine.

    python bench/loadgen.py --url http://127.0.0.1:8000/updates --scenario fanout -n 1000

``--url`` may be repeated (several instances of one app): the streams are spread over
the URLs in turn, the trigger goes to the first one, server statistics are summed over
all of them and latencies are also reported per URL. Prints one JSON object on stdout.
Only loopback URLs are accepted.

An application's own API as the trigger (``--trigger 'PATCH /api/projects/1'`` with
``--trigger-body``): its keys are not timestamps, so a delivery's latency is then counted
from the moment the trigger request was sent. ``--group HEADER`` (repeatable) gives the
streams different credentials in turn; streams of a ``--quiet-groups`` group must hear
nothing (an audience filter), and anything they do hear is counted as ``leaked``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from array import array
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

time_ns = time.time_ns
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: Any, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[index])


def latency_summary(latencies_ns: Any) -> dict[str, Any]:
    ms = [v / 1e6 for v in latencies_ns]
    return {
        "count": len(ms),
        "p50_ms": percentile(ms, 50),
        "p99_ms": percentile(ms, 99),
        "max_ms": max(ms) if ms else None,
    }


class Stats:
    """Counters shared by every stream of this process."""

    def __init__(self) -> None:
        self.latencies = array("q")
        self.deliveries = 0
        self.frames = 0
        self.pings = 0
        self.hellos = 0
        self.by_target: list[array[int]] = []  # the same latencies, per --url
        self.errors: list[str] = []
        self.lost = 0  # streams the server ended that we did not close
        self.leaked = 0  # deliveries to streams of a quiet group
        self.trigger_ns = 0  # with --trigger: when the current trigger was sent
        self.on_invalidate: Callable[[Stream], None] | None = None


class Stream(asyncio.Protocol):
    """One SSE response over HTTP/1.1 with chunked transfer encoding."""

    def __init__(self, stats: Stats, request: bytes, slot: int = 0, quiet: bool = False) -> None:
        self.stats = stats
        self.own = stats.by_target[slot]
        self.quiet = quiet
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head = b""
        self.headers_done = False
        self.raw = b""  # undecoded bytes (a partial chunk header)
        self.chunk_left = 0  # body bytes left in the current chunk, plus its CRLF
        self.text = b""  # decoded body that does not yet end a frame
        self.frames = 0
        self.last_seq = -1
        self.last_recv = 0
        self.hello = asyncio.get_running_loop().create_future()
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:
            self.stats.lost += 1
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"closed before hello: {exc!r}"))

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = time_ns()
        if not self.headers_done:
            data = self.head + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.head = data
                return
            status = data[: data.find(b"\r\n")]
            if b" 200 " not in status + b" ":
                self.stats.errors.append(status.decode("latin-1"))
                self.hello.set_exception(ConnectionError(status.decode("latin-1")))
                self.close()
                return
            self.headers_done = True
            self.head = b""
            data = data[end + 4 :]
        if self.raw:
            data = self.raw + data
            self.raw = b""
        # De-chunk.
        body: list[bytes] = []
        pos, size = 0, len(data)
        while pos < size:
            if self.chunk_left == 0:
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    self.raw = data[pos:]
                    break
                length = int(data[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if length == 0:
                    self.close()
                    break
                self.chunk_left = length + 2
            take = min(self.chunk_left, size - pos)
            payload = take - max(0, 2 - (self.chunk_left - take))
            if payload > 0:
                body.append(data[pos : pos + payload])
            self.chunk_left -= take
            pos += take
        if not body:
            return
        text = self.text + b"".join(body) if self.text else b"".join(body)
        start = 0
        while True:
            end = text.find(b"\n\n", start)
            if end < 0:
                break
            self.frame(text, start, end, now)
            start = end + 2
        self.text = text[start:]

    def frame(self, text: bytes, start: int, end: int, now: int) -> None:
        stats = self.stats
        event = text.find(b"event: ", start, end)
        if text.startswith(b"invalidate", event + 7):
            stats.frames += 1
            self.frames += 1
            if text.startswith(b"id: ", start):
                eol = text.find(b"\n", start)
                self.last_seq = int(text[text.rfind(b".", start, eol) + 1 : eol])
            self.last_recv = now
            found = text.find(b'"keys":[', start, end)
            while found >= 0:
                close = text.find(b"]", found)
                for key in text[found + 9 : close - 1].split(b'","'):
                    if self.quiet:
                        stats.leaked += 1
                        continue
                    latency = now - (stats.trigger_ns or int(key))
                    stats.latencies.append(latency)
                    self.own.append(latency)
                    stats.deliveries += 1
                found = text.find(b'"keys":[', close, end)
            if stats.on_invalidate is not None:
                stats.on_invalidate(self)
        elif text.startswith(b"ping", event + 7) or text.startswith(b":", start):
            stats.pings += 1
        elif text.startswith(b"hello", event + 7):
            stats.hellos += 1
            if not self.hello.done():
                self.hello.set_result(None)


class Target:
    def __init__(self, url: str, headers: list[str]) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK:
            raise SystemExit(f"refusing {url!r}: the load generator targets http://127.0.0.1 only")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.headers = "".join(f"{h}\r\n" for h in headers)

    def request(
        self,
        method: str,
        path: str,
        extra: str = "",
        close: bool = False,
        headers: str | None = None,
    ) -> bytes:
        own = self.headers if headers is None else headers
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{own}{extra}"
        if close:
            head += "Connection: close\r\n"
        return (head + "\r\n").encode()


async def http(
    target: Target,
    method: str,
    path: str,
    timeout: float = 120.0,
    body: bytes = b"",
    headers: str | None = None,
) -> Any:
    """One request on its own connection; returns the decoded JSON body."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(target.host, target.port)
        try:
            extra = f"Content-Length: {len(body)}\r\n"
            if body:
                extra += "Content-Type: application/json\r\n"
            writer.write(target.request(method, path, extra, close=True, headers=headers) + body)
            raw = await reader.read(-1)
        finally:
            writer.close()
    head, _, answer = raw.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
        raise RuntimeError(f"{method} {path}: {head[:80]!r} {answer[:200]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        answer = dechunk(answer)
    return json.loads(answer)


def dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        eol = data.index(b"\r\n", pos)
        length = int(data[pos:eol].split(b";", 1)[0], 16)
        if length == 0:
            return b"".join(out)
        out.append(data[eol + 2 : eol + 2 + length])
        pos = eol + 4 + length


class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.targets = [Target(url, args.header) for url in args.url]
        self.target = self.targets[0]  # the trigger, /data and /change go here
        self.stats = Stats()
        self.stats.by_target = [array("q") for _ in self.targets]
        self.streams: list[Stream] = []
        self.groups = [f"{header}\r\n" for header in args.group] or [None]
        self.quiet = {int(g) for g in args.quiet_groups.split(",") if g}
        self.rounds_sent = 0

    def hearing(self) -> int:
        """Streams that should hear a trigger (those not in a quiet group)."""
        return sum(1 for s in self.streams if not s.quiet)

    async def trigger(self) -> None:
        """One update to all: the bench route, or the application's API (``--trigger``)."""
        self.rounds_sent += 1
        if not self.args.trigger:
            await http(self.target, "POST", "/trigger?count=1")
            return
        method, _, path = self.args.trigger.partition(" ")
        body = self.args.trigger_body.replace("{n}", str(self.rounds_sent)).encode()
        headers = "".join(f"{h}\r\n" for h in self.args.trigger_header)
        self.stats.trigger_ns = time_ns()
        await http(self.target, method, path, body=body, headers=headers or None)

    async def server_stats(self) -> dict[str, Any]:
        """The first server's statistics; with several URLs, counters summed over all."""
        each: list[dict[str, Any]] = [
            await http(target, "GET", "/stats") for target in self.targets
        ]
        result = dict(each[0])
        if len(each) > 1:
            for key in ("cpu_s", "user_s", "sys_s", "rss", "connections", "requests", "gc_s"):
                result[key] = sum(s.get(key, 0) for s in each)
            result["gc_max_ms"] = max(s.get("gc_max_ms", 0) for s in each)
            result["gc_pauses"] = [p for s in each for p in s.get("gc_pauses", [])]
            result["per_server"] = each
        return result

    async def open_stream(self, i: int) -> Stream | None:
        """Stream number ``i``: its URL and credentials by turns; None if it failed."""
        slot = i % len(self.targets)
        group = (i // len(self.targets)) % len(self.groups)
        target = self.targets[slot]
        extra = "Accept: text/event-stream\r\n" + (self.groups[group] or "")
        request = target.request("GET", target.path, extra)
        quiet = group in self.quiet
        try:
            async with asyncio.timeout(self.args.connect_timeout):
                _, stream = await asyncio.get_running_loop().create_connection(
                    lambda: Stream(self.stats, request, slot, quiet), target.host, target.port
                )
                await stream.hello
                return stream
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.stats.errors.append(repr(exc)[:200])
            return None

    async def connect(self, n: int) -> dict[str, Any]:
        """Open ``n`` streams at once; return how long until every hello arrived."""
        t0 = time.perf_counter()
        opened = await asyncio.gather(*(self.open_stream(i) for i in range(n)))
        elapsed = time.perf_counter() - t0
        self.streams = [s for s in opened if s is not None]
        return {"connected": len(self.streams), "connect_s": elapsed}

    async def disconnect(self) -> dict[str, Any]:
        for stream in self.streams:
            stream.close()
        self.streams = []
        # The server should forget every stream: poll its count (bounded).
        deadline = time.monotonic() + 15
        stats = await self.server_stats()
        while stats["connections"] and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            stats = await self.server_stats()
        return {"connections_after_close": stats["connections"]}

    async def wait_deliveries(self, expected: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.stats.deliveries < expected:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    # -- scenarios -----------------------------------------------------------------

    async def idle(self) -> dict[str, Any]:
        a = self.args
        before = await self.server_stats()
        result = await self.connect(a.n)
        await asyncio.sleep(a.settle)
        connected = await self.server_stats()
        await asyncio.sleep(a.idle)
        after = await self.server_stats()
        cpu = after["cpu_s"] - connected["cpu_s"]
        wall = after["time"] - connected["time"]
        result.update(
            server_connections=connected["connections"],
            rss_before_mb=before["rss"] / 2**20,
            rss_connected_mb=connected["rss"] / 2**20,
            rss_per_connection_kb=(connected["rss"] - before["rss"]) / 1024 / max(1, a.n),
            idle_window_s=wall,
            idle_cpu_pct=100 * cpu / wall,
            pings=self.stats.pings,
        )
        result.update(await self.disconnect())
        return result

    async def fanout(self) -> dict[str, Any]:
        a = self.args
        result = await self.connect(a.n)
        n = self.hearing()
        await asyncio.sleep(a.settle)
        before = await self.server_stats()
        expected = 0
        incomplete = 0
        round_max = []
        for _ in range(a.rounds):
            expected += n
            start_index = len(self.stats.latencies)
            await self.trigger()
            if not await self.wait_deliveries(expected, a.round_timeout):
                incomplete += 1
                expected = self.stats.deliveries
            round_max.append(max(self.stats.latencies[start_index:], default=0) / 1e6)
            await asyncio.sleep(a.gap)
        after = await self.server_stats()
        delivered = len(self.stats.latencies)
        result.update(latency_summary(self.stats.latencies))
        if len(self.targets) > 1:
            result["per_url"] = [
                {
                    "url": f"{t.base}{t.path}",
                    "connected": sum(1 for s in self.streams if s.own is own),
                    "delivered": len(own),
                    **latency_summary(own),
                }
                for t, own in zip(self.targets, self.stats.by_target, strict=True)
            ]
        pauses = [
            ms for at, ms, _ in after.get("gc_pauses", []) if before["time"] <= at <= after["time"]
        ]
        result.update(
            hearing=n,
            quiet_streams=len(self.streams) - n,
            leaked=self.stats.leaked,
            server_gc_rounds_max_ms=max(pauses, default=0.0),
            # The longest pauses since the server started: [seconds before the rounds, ms, gen].
            server_gc_worst=[
                [round(before["time"] - at, 2), round(ms, 1), gen]
                for at, ms, gen in sorted(after.get("gc_pauses", []), key=lambda p: p[1])[-5:]
            ],
            server_gc_rounds_pauses=len(pauses),
            rounds=a.rounds,
            expected=a.rounds * n,
            delivered=delivered,
            missing=a.rounds * n - delivered,
            incomplete_rounds=incomplete,
            round_max_ms=round_max,
            server_cpu_us_per_delivery=1e6 * (after["cpu_s"] - before["cpu_s"]) / max(1, delivered),
            server_user_us_per_delivery=1e6
            * (after["user_s"] - before["user_s"])
            / max(1, delivered),
            server_sys_us_per_delivery=1e6 * (after["sys_s"] - before["sys_s"]) / max(1, delivered),
            server_gc_s=after.get("gc_s", 0) - before.get("gc_s", 0),
            server_gc_max_ms=after.get("gc_max_ms"),
        )
        result.update(await self.disconnect())
        result["lost"] = self.stats.lost
        return result

    async def saturation(self) -> dict[str, Any]:
        a = self.args
        result = await self.connect(a.n)
        n = len(self.streams)
        await asyncio.sleep(a.settle)
        steps = []
        best = None
        for rate in a.rates:
            count = max(1, round(rate * a.step))
            start_index = len(self.stats.latencies)
            frames0 = self.stats.frames
            expected = self.stats.deliveries + count * n
            s0 = await self.server_stats()
            c0, t0 = cpu_seconds(), time.perf_counter()
            await http(self.target, "POST", f"/trigger?count={count}&rate={rate}")
            complete = await self.wait_deliveries(expected, a.round_timeout)
            wall = time.perf_counter() - t0
            c1 = cpu_seconds()
            s1 = await self.server_stats()
            got = self.stats.latencies[start_index:]
            step = {
                "notifies_per_s": rate,
                "target_deliveries_per_s": rate * n,
                "delivered": len(got),
                "missing": count * n - len(got),
                "deliveries_per_s": len(got) / max(wall, a.step),
                # An invalidate frame may carry several updates (coalesced).
                "frames_per_s": (self.stats.frames - frames0) / max(wall, a.step),
                "loadgen_cpu_pct": 100 * (c1 - c0) / wall,
                "server_cpu_pct": 100 * (s1["cpu_s"] - s0["cpu_s"]) / (s1["time"] - s0["time"]),
                **latency_summary(got),
            }
            steps.append(step)
            ok = complete and step["p99_ms"] is not None and step["p99_ms"] < a.p99_limit
            if not ok:
                break
            best = step
            await asyncio.sleep(a.gap)
        result.update(steps=steps, best=best)
        result.update(await self.disconnect())
        return result

    async def storm(self) -> dict[str, Any]:
        a = self.args
        result = await self.connect(a.n)
        n = len(self.streams)
        await asyncio.sleep(a.settle)
        before = await self.server_stats()
        frames0 = [s.frames for s in self.streams]
        t0 = time.perf_counter()
        done = await http(
            self.target,
            "POST",
            f"/trigger?count={a.count}&rate={a.rate}&deadline={a.duration}",
            timeout=a.duration + 120,
        )
        storm_s = time.perf_counter() - t0
        during = await self.server_stats()
        last_seq, last_ns = done["last_seq"], done["last_ns"]
        deadline = time.monotonic() + a.round_timeout
        while time.monotonic() < deadline:
            if all(s.last_seq >= last_seq for s in self.streams):
                break
            await asyncio.sleep(0.01)
        after = await self.server_stats()
        fresh = [s.last_recv - last_ns for s in self.streams if s.last_seq >= last_seq]
        frames = [s.frames - f for s, f in zip(self.streams, frames0, strict=True)]
        result.update(
            notifies_sent=done["sent"],
            storm_s=storm_s,
            frames_per_client_per_s=sum(frames) / n / storm_s,
            max_frames_per_client_per_s=max(frames) / storm_s,
            last_update_delivered=len(fresh),
            last_update_missing=n - len(fresh),
            freshness=latency_summary(fresh),
            rss_before_mb=before["rss"] / 2**20,
            rss_end_of_storm_mb=during["rss"] / 2**20,
            rss_after_mb=after["rss"] / 2**20,
            server_cpu_s=after["cpu_s"] - before["cpu_s"],
        )
        result.update(await self.disconnect())
        result["lost"] = self.stats.lost
        return result

    async def churn(self) -> dict[str, Any]:
        """N streams for ``duration`` s while ``churn_rate`` per second are replaced
        (the oldest closed, a new one opened) and one update to all goes out every
        second; the server's RSS is sampled throughout (a leak shows as a slope)."""
        a = self.args
        result = await self.connect(a.n)
        await asyncio.sleep(a.settle)
        first = await self.server_stats()
        samples = [(0.0, first["rss"] / 2**20)]
        started = time.monotonic()
        next_sample = next_trigger = started
        opened = len(self.streams)
        replaced = 0
        tick = 0.1
        while time.monotonic() - started < a.duration:
            batch = max(1, round(a.churn_rate * tick))
            for stream in self.streams[:batch]:
                stream.close()
            del self.streams[:batch]
            fresh = await asyncio.gather(*(self.open_stream(opened + j) for j in range(batch)))
            opened += batch
            self.streams.extend(s for s in fresh if s is not None)
            replaced += batch
            now = time.monotonic()
            if now >= next_trigger:
                await self.trigger()
                next_trigger += 1.0
            if now >= next_sample:
                stats = await self.server_stats()
                samples.append((now - started, stats["rss"] / 2**20))
                next_sample += a.sample
            await asyncio.sleep(max(0.0, tick - (time.monotonic() - now)))
        await asyncio.sleep(a.settle)
        last = await self.server_stats()
        samples.append((time.monotonic() - started, last["rss"] / 2**20))
        pauses = [ms for at, ms, _ in last.get("gc_pauses", []) if at >= first["time"]]
        result.update(
            duration_s=time.monotonic() - started,
            replaced=replaced,
            streams_at_end=last["connections"],
            rss_start_mb=first["rss"] / 2**20,
            rss_end_mb=last["rss"] / 2**20,
            rss_samples_mb=samples,
            triggers=self.rounds_sent,
            deliveries=self.stats.deliveries,
            server_cpu_pct=100 * (last["cpu_s"] - first["cpu_s"]) / (last["time"] - first["time"]),
            server_gc_max_ms=max(pauses, default=0.0),
        )
        result.update(await self.disconnect())
        return result

    async def poll(self) -> dict[str, Any]:
        """A dashboard of ``queries`` queries polling every ``interval`` s, per client."""
        a = self.args
        loop = asyncio.get_running_loop()
        request = self.target.request("GET", "/data")
        seen: dict[int, int] = {}
        staleness: list[int] = []
        responses = 0

        async def client(i: int, stop: float) -> None:
            nonlocal responses
            reader, writer = await asyncio.open_connection(self.target.host, self.target.port)
            next_at = loop.time() + (i % 20) * a.interval / 20
            try:
                while True:
                    await asyncio.sleep(max(0, next_at - loop.time()))
                    if loop.time() >= stop:
                        return
                    for _ in range(a.queries):
                        writer.write(request)
                        await reader.readuntil(b"\r\n\r\n")
                        body = json.loads(await reader.readuntil(b"}"))
                        now = time_ns()
                        responses += 1
                        if body["changed"] != seen.get(i, body["changed"]):
                            staleness.append(now - body["changed"])
                        seen[i] = body["changed"]
                    next_at += a.interval
            finally:
                writer.close()

        before = await self.server_stats()
        stop = loop.time() + a.idle
        async with asyncio.TaskGroup() as tasks:
            for i in range(a.n):
                tasks.create_task(client(i, stop))
            for _ in range(a.changes):
                await asyncio.sleep(a.idle / (a.changes + 1))
                await http(self.target, "POST", "/change")
        after = await self.server_stats()
        wall = after["time"] - before["time"]
        return {
            "clients": a.n,
            "queries": a.queries,
            "interval_s": a.interval,
            "window_s": wall,
            "changes": a.changes,
            "requests": after["requests"] - before["requests"],
            "requests_per_client_per_s": (after["requests"] - before["requests"]) / a.n / wall,
            "server_cpu_pct": 100 * (after["cpu_s"] - before["cpu_s"]) / wall,
            "staleness": latency_summary(staleness),
        }

    async def push(self) -> dict[str, Any]:
        """The same dashboard on refetch: idle, then ``changes`` changes, one refetch each."""
        a = self.args
        request = self.target.request("GET", "/data")
        conns = []
        staleness: list[int] = []
        for _ in range(a.n):
            conns.append(await asyncio.open_connection(self.target.host, self.target.port))
        refetches: asyncio.Queue[int] = asyncio.Queue()
        self.stats.on_invalidate = lambda stream: refetches.put_nowait(self.streams.index(stream))

        async def refetcher() -> None:
            while True:
                i = await refetches.get()
                reader, writer = conns[i]
                writer.write(request)
                await reader.readuntil(b"\r\n\r\n")
                body = json.loads(await reader.readuntil(b"}"))
                staleness.append(time_ns() - body["changed"])

        result = await self.connect(a.n)
        async with asyncio.TaskGroup() as tasks:
            workers = [tasks.create_task(refetcher()) for _ in range(8)]
            s0 = await self.server_stats()
            await asyncio.sleep(a.idle)
            s1 = await self.server_stats()
            for _ in range(a.changes):
                await http(self.target, "POST", "/change")
                await asyncio.sleep(0.5)
            s2 = await self.server_stats()
            for worker in workers:
                worker.cancel()
        for _, writer in conns:
            writer.close()
        idle_wall = s1["time"] - s0["time"]
        result.update(
            clients=a.n,
            window_s=idle_wall,
            idle_requests_per_client_per_s=(s1["requests"] - s0["requests"]) / a.n / idle_wall,
            idle_server_cpu_pct=100 * (s1["cpu_s"] - s0["cpu_s"]) / idle_wall,
            changes=a.changes,
            requests_per_client_per_change=(s2["requests"] - s1["requests"])
            / a.n
            / max(1, a.changes),
            staleness=latency_summary(staleness),
        )
        result.update(await self.disconnect())
        return result


async def main(args: argparse.Namespace) -> dict[str, Any]:
    run = Run(args)
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = await getattr(run, args.scenario)()
    wall = time.perf_counter() - t0
    result.update(
        scenario=args.scenario,
        n=args.n,
        errors=len(run.stats.errors),
        error_samples=sorted(set(run.stats.errors))[:5],
        loadgen_cpu_s=cpu_seconds() - c0,
        loadgen_wall_s=wall,
        loadgen_cpu_pct=100 * (cpu_seconds() - c0) / wall,
        loadgen_max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--url",
        action="append",
        required=True,
        help="the SSE stream, e.g. http://127.0.0.1:8000/updates; repeat for several instances",
    )
    p.add_argument("--header", action="append", default=[], help="'Name: value', repeatable")
    p.add_argument(
        "--group",
        action="append",
        default=[],
        help="a header for every k-th stream ('Name: value'), repeatable: streams take turns",
    )
    p.add_argument(
        "--quiet-groups", default="", help="comma-separated group indices that must hear nothing"
    )
    p.add_argument(
        "--trigger", default=None, help="'METHOD /path' of the app's own API (default: /trigger)"
    )
    p.add_argument("--trigger-body", default="", help="JSON body; {n} is the round number")
    p.add_argument("--trigger-header", action="append", default=[], help="for the trigger only")
    p.add_argument(
        "--scenario",
        choices=["idle", "fanout", "saturation", "storm", "churn", "poll", "push"],
        required=True,
    )
    p.add_argument("-n", type=int, default=100, help="connections (clients)")
    p.add_argument("--connect-timeout", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=1.0, help="seconds after connecting")
    p.add_argument("--idle", type=float, default=20.0, help="idle window, seconds")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--gap", type=float, default=0.3, help="seconds between rounds/steps")
    p.add_argument("--round-timeout", type=float, default=15.0)
    p.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[10])
    p.add_argument("--step", type=float, default=3.0, help="seconds per saturation step")
    p.add_argument("--p99-limit", type=float, default=100.0, help="ms")
    p.add_argument("--count", type=int, default=10_000, help="storm notifies")
    p.add_argument("--rate", type=float, default=1000.0, help="storm notifies per second")
    p.add_argument("--duration", type=float, default=10.0, help="storm deadline, seconds")
    p.add_argument("--churn-rate", type=float, default=50.0, help="streams replaced per second")
    p.add_argument("--sample", type=float, default=30.0, help="churn: seconds between RSS samples")
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--interval", type=float, default=2.0)
    p.add_argument("--changes", type=int, default=5)
    p.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    raise_nofile()
    if arguments.uvloop:
        import uvloop

        runner: Any = uvloop.run
    else:
        runner = asyncio.run
    with contextlib.redirect_stdout(sys.stderr):
        report = runner(main(arguments))
    print(json.dumps(report))
