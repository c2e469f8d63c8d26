"""Shutdown: draining, and a real uvicorn process that exits while clients reconnect."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn

from refetch import ANONYMOUS, Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send

from .conftest import TYPES, Stream, free_port, serve, wait_for

ROOT = Path(__file__).resolve().parent.parent
RUNS = 20
PARALLEL = 4
CLIENTS = 4
EXIT_WITHIN = 10.0


class Launcher:
    """tests/shutdown_launcher.py: forks ready-imported uvicorn processes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self._spawned: asyncio.Queue[int] = asyncio.Queue()
        self._exits: dict[int, asyncio.Future[str]] = {}
        self._lock = asyncio.Lock()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            kind, pid, *outcome = raw.decode().split()
            if kind == "pid":
                self._spawned.put_nowait(int(pid))
            else:
                self.exit_of(int(pid)).set_result(" ".join(outcome))

    def exit_of(self, pid: int) -> asyncio.Future[str]:
        """How ``pid`` ends: ``signal 15``, ``code 0``, ..."""
        if pid not in self._exits:
            self._exits[pid] = asyncio.get_running_loop().create_future()
        return self._exits[pid]

    async def spawn(self, port: int) -> int:
        assert self.process.stdin is not None
        async with self._lock:
            self.process.stdin.write(f"spawn {port}\n".encode())
            await self.process.stdin.drain()
            return await asyncio.wait_for(self._spawned.get(), 10)

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


@pytest.fixture
async def launcher() -> AsyncIterator[Launcher]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.shutdown_launcher",
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    launcher = Launcher(process)
    try:
        yield launcher
    finally:
        await launcher.close()


DRAINING = (
    b'{"error": "draining", "detail": "the server is shutting down; reconnect in a moment '
    b'(another instance may answer)"}'
)
NOT_STARTED = (
    b'{"error": "not_started", "detail": "the UpdateService was never started: pass '
    b'lifespan=updates.lifespan to your app, or `async with updates:` in your own lifespan"}'
)


RECONNECT = re.compile(
    rb'retry: (\d+)\nevent: reconnect\ndata: \{"delay":(\d+),"reason":"shutdown"\}\n\n'
)


def reconnect_delay(tail: bytes) -> int:
    """The delay of the ``reconnect`` frame that must be all of ``tail``; its retry: agrees."""
    match = RECONNECT.fullmatch(tail)
    assert match is not None, tail
    assert match[1] == match[2]
    return int(match[1])


@dataclass
class Run:
    """What the reconnecting clients of one run got after the signal."""

    streams: int = 0
    signalled: bool = False
    answers: Counter[str] = field(default_factory=Counter)


async def reconnect_forever(
    http: httpx.AsyncClient, url: str, run: Run, opened: asyncio.Event
) -> None:
    """A client that reconnects the moment its stream ends, as browsers do (minus the jitter)."""
    while True:
        before_signal = not run.signalled
        try:
            async with http.stream("GET", url) as r:
                if r.status_code != 200:
                    body = await r.aread()
                    run.answers[f"{r.status_code} {r.headers.get('retry-after')} {body!r}"] += 1
                    continue
                chunks = r.aiter_raw()
                async for _ in chunks:
                    if before_signal and not run.signalled:
                        run.streams += 1
                        if run.streams == CLIENTS:
                            opened.set()
                    break  # the hello: the stream is open
                async for _ in chunks:
                    pass
            if run.signalled:
                # Ended cleanly (by the hub): open before the signal, or in the race.
                run.answers["stream ended" if before_signal else "race stream ended"] += 1
        except httpx.TransportError:
            if run.signalled:
                run.answers["refused or cut"] += 1
            await asyncio.sleep(0.001 if run.signalled else 0.01)


async def one_run(launcher: Launcher, http: httpx.AsyncClient) -> tuple[bool, Counter[str]]:
    """Start a server, open CLIENTS streams, SIGTERM it: did it hang, and what was seen."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/updates"
    pid = await launcher.spawn(port)
    run, opened = Run(), asyncio.Event()
    clients = [
        asyncio.create_task(reconnect_forever(http, url, run, opened)) for _ in range(CLIENTS)
    ]
    hung = False
    try:
        await asyncio.wait_for(opened.wait(), 20)
        run.signalled = True
        os.kill(pid, signal.SIGTERM)
        exited = launcher.exit_of(pid)
        try:
            await asyncio.wait_for(asyncio.shield(exited), EXIT_WITHIN)
        except TimeoutError:
            hung = True
            os.kill(pid, signal.SIGKILL)
        run.answers[await asyncio.wait_for(exited, 10)] += 1
    finally:
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    return hung, run.answers


@pytest.mark.timeout(300)  # if every run hung, the count still gets reported
async def test_sigterm_exits_while_clients_reconnect_in_a_tight_loop(launcher: Launcher) -> None:
    hangs = 0
    seen: Counter[str] = Counter()
    # A few servers at a time: most of a run is uvicorn's own shutdown pauses, not CPU.
    limits = httpx.Limits(max_connections=CLIENTS * PARALLEL)
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None), limits=limits) as http:
        for _ in range(RUNS // PARALLEL):
            for hung, answers in await asyncio.gather(
                *(one_run(launcher, http) for _ in range(PARALLEL))
            ):
                hangs += hung
                seen.update(answers)
    print(f"\nshutdown: {RUNS} runs, {hangs} hangs; exits and client answers: {dict(seen)}")
    assert hangs == 0, f"{hangs} of {RUNS} runs hung: {dict(seen)}"
    # uvicorn exits by re-raising the signal it handled: a graceful exit, every time.
    assert seen[f"signal {signal.SIGTERM.value}"] == RUNS
    # Every stream open at the signal was ended by the hub, not cut by the process exit.
    assert seen["stream ended"] == RUNS * CLIENTS
    # The clients did reconnect into the shutdown (else this test proves nothing) and were
    # told to come back later, in JSON, with Retry-After (the hub's retry hint: 2 s).
    assert seen[f"503 2 {DRAINING!r}"] > 0
    assert set(seen) <= {
        f"signal {signal.SIGTERM.value}",
        "stream ended",
        "race stream ended",
        f"503 2 {DRAINING!r}",
        "refused or cut",
    }


@contextlib.contextmanager
def previous_sigterm_handler() -> Iterator[list[int]]:
    """A SIGTERM handler standing in for the server's, which the hub must chain to."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


async def test_after_sigterm_open_streams_end_and_new_ones_get_503_draining() -> None:
    hub = UpdateService(TYPES)
    # In this order the hub's handler is on top and chains to the stand-in, not to the
    # test server's own (which would stop the server this test still talks to).
    async with serve(UpdatesEndpoint(hub)) as url:
        with previous_sigterm_handler() as server_heard:
            await hub.start()
            try:
                async with httpx.AsyncClient() as http, http.stream("GET", url) as stream:
                    chunks = stream.aiter_raw()
                    assert b"event: hello" in await anext(chunks)
                    signal.raise_signal(signal.SIGTERM)
                    # Told when to come back, then ended (not left open).
                    rest = b"".join([chunk async for chunk in chunks])
                    assert 250 <= reconnect_delay(rest) <= 2000
                    assert server_heard == [signal.SIGTERM]
                    assert hub.draining and hub.statistics().state == "draining"

                    r = await http.get(url, headers={"last-event-id": hub.cursor})
                    assert r.status_code == 503
                    assert r.headers["content-type"] == "application/json"
                    assert r.headers["retry-after"] == "2"
                    assert r.headers["connection"] == "close"
                    assert r.content == DRAINING

                    hub.notify("projects")  # still accepted while draining
                    assert (await hub.publish("projects")).endswith(".2")
                    await hub.aclose()
                    assert hub.statistics().state == "closed"
                    r = await http.get(url)
                    assert (r.status_code, r.content) == (503, DRAINING)

            finally:
                await hub.aclose()


class CloseStreamsOnHeaders:
    """Starts draining just as the endpoint's 200 headers pass: the race with a signal."""

    def __init__(self, app: ASGIApp, hub: UpdateService) -> None:
        self.app = app
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.hub.close_streams()
            await send(message)

        await self.app(scope, receive, send_wrapper)


async def test_a_stream_whose_headers_were_on_their_way_ends_at_once() -> None:
    async with UpdateService(TYPES, close_on_signals=False) as hub:
        app = CloseStreamsOnHeaders(UpdatesEndpoint(hub), hub)
        async with serve(app) as url, httpx.AsyncClient() as http:
            r = await http.get(url)
            assert r.status_code == 200
            assert r.headers["content-type"] == "text/event-stream"
            # No hello (it never joined the hub), but told when to come back like the others.
            assert 250 <= reconnect_delay(r.content) <= 2000
            assert hub.statistics().connections == 0
            r = await http.get(url)
            assert (r.status_code, r.content) == (503, DRAINING)


async def test_a_stream_authenticating_when_draining_starts_gets_503() -> None:
    looked_up, proceed = asyncio.Event(), asyncio.Event()

    async def slow_authenticate(scope: Scope) -> Principal:
        looked_up.set()
        await proceed.wait()
        return ANONYMOUS

    async with UpdateService(TYPES, close_on_signals=False) as hub:
        async with serve(UpdatesEndpoint(hub, authenticate=slow_authenticate)) as url:
            async with httpx.AsyncClient() as http:
                request = asyncio.create_task(http.get(url))
                await looked_up.wait()
                hub.close_streams()
                proceed.set()
                r = await request
            assert (r.status_code, r.content) == (503, DRAINING)


async def test_other_reasons_end_every_stream_without_draining() -> None:
    async with (
        UpdateService(TYPES, close_on_signals=False) as hub,
        serve(UpdatesEndpoint(hub)) as url,
    ):
        async with Stream(url):
            await wait_for(lambda: hub.statistics().connections == 1)
            assert hub.close_streams("rebalance") == 1
        assert hub.running and hub.statistics().state == "running"
        async with Stream(url) as again:
            assert again.frames[0].event == "hello"


# -- the endpoint mounted without the lifespan ------------------------------------------


async def test_an_endpoint_whose_hub_was_never_started_answers_503_naming_the_fix() -> None:
    hub = UpdateService(TYPES)
    async with serve(UpdatesEndpoint(hub)) as url, httpx.AsyncClient() as http:
        r = await http.get(url)
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/json"
    assert "retry-after" not in r.headers  # waiting does not help: the app must be fixed
    assert r.content == NOT_STARTED
    assert hub.statistics().state == "new"


async def test_notify_before_start_warns_once_and_is_delivered_after_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hub = UpdateService(TYPES, close_on_signals=False)
    before = hub.cursor
    with caplog.at_level(logging.WARNING, logger="refetch"):
        hub.notify("projects", "1")
        hub.notify("projects", "2")
        hub.notify("compute")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage() == (
        "notify('projects') before the UpdateService was started: it and later ones wait "
        "for start(). the UpdateService was never started: pass lifespan=updates.lifespan "
        "to your app, or `async with updates:` in your own lifespan"
    )
    async with hub, serve(UpdatesEndpoint(hub)) as url, Stream(url, last_event_id=before) as s:
        await wait_for(lambda: len(s.frames) >= 2)
        assert s.frames[1].data == {
            "updates": [{"type": "projects", "keys": ["1", "2"]}, {"type": "compute"}]
        }


async def test_shutdown_is_not_held_by_a_client_that_stopped_reading() -> None:
    async with UpdateService(TYPES, min_interval=0, close_on_signals=False) as hub:
        port = free_port()
        # No graceful-shutdown timeout, as uvicorn runs by default: nothing bounds the wait
        # for open connections but the hub.
        config = uvicorn.Config(
            UpdatesEndpoint(hub), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        serving = asyncio.create_task(server.serve())
        stuck = socket.socket()
        try:
            await wait_for(lambda: server.started)
            stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stuck.connect(("127.0.0.1", port))
            stuck.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await wait_for(lambda: hub.statistics().connections == 1)
            batch = 0
            while not any(c.busy for c in hub.connections()):  # its socket is full
                for i in range(60):
                    hub.notify("projects", key=f"{batch}-{i}-{'x' * 500}")
                batch += 1
                await asyncio.sleep(0.001)
            hub.close_streams()
            server.should_exit = True
            await wait_for(serving.done, 10)
        finally:
            server.force_exit = True
            await serving
            stuck.close()


async def hellos_forever(http: httpx.AsyncClient, url: str, epochs: list[set[str]]) -> None:
    """Reconnects at once, whatever the answer; records the epoch of every hello."""
    mine: set[str] = set()
    epochs.append(mine)
    while True:
        try:
            async with http.stream("GET", url) as r:
                async for chunk in r.aiter_raw():
                    if r.status_code == 200 and b"event: hello" in chunk:
                        mine.add(chunk.split(b"id: ", 1)[1].split(b".", 1)[0].decode())
        except httpx.TransportError:
            await asyncio.sleep(0.01)


async def test_reload_completes_while_clients_reconnect(tmp_path: Path) -> None:
    watched = tmp_path / "watched.py"
    watched.write_text("")
    port = free_port()
    url = f"http://127.0.0.1:{port}/updates"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "tests.shutdown_app:app", "--port", str(port),
        "--log-level", "warning", "--reload", "--reload-dir", str(tmp_path),
        cwd=ROOT,
    )  # fmt: skip
    epochs: list[set[str]] = []
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as http:
            clients = [
                asyncio.create_task(hellos_forever(http, url, epochs)) for _ in range(CLIENTS)
            ]
            try:
                await wait_for(lambda: len(epochs) == CLIENTS and all(epochs), 30)
                watched.write_text("# changed\n")  # the reloader SIGTERMs the server process
                # Every client reaches the new process: the old one did exit.
                await wait_for(lambda: all(len(e) == 2 for e in epochs), 30)
            finally:
                for client in clients:
                    client.cancel()
                await asyncio.gather(*clients, return_exceptions=True)
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), EXIT_WITHIN)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


BARE_HUB = """
import asyncio
from refetch import UpdateService

async def main():
    async with UpdateService(["projects"]):
        print("ready", flush=True)
        await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_sigterm_ends_a_process_where_no_server_handles_it() -> None:
    # A hub in a plain script (or under a server that leaves SIGTERM at its default): the
    # hub's handler must not swallow the signal.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BARE_HUB, cwd=ROOT, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 20) == b"ready\n"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), EXIT_WITHIN) == -signal.SIGTERM
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
