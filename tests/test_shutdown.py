"""Shutdown: draining, and a real uvicorn process that exits while clients reconnect."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from .conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("RUNS", 20))
CLIENTS = 4
EXIT_WITHIN = 10.0


class Launcher:
    """tests/shutdown_launcher.py: forks ready-imported uvicorn processes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def _ask(self, line: str, timeout: float) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line.encode() + b"\n")
        await self.process.stdin.drain()
        answer = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        return answer.decode().strip()

    async def spawn(self, port: int) -> int:
        return int((await self._ask(f"spawn {port}", 10)).split()[1])

    async def wait(self, pid: int, timeout: float) -> str:
        """How ``pid`` ended (``signal 15``, ``code 0``, ...); TimeoutError if it did not."""
        return (await self._ask(f"wait {pid}", timeout)).split(maxsplit=2)[2]

    async def reap(self) -> str:
        assert self.process.stdout is not None
        return (await self.process.stdout.readline()).decode().strip().split(maxsplit=2)[2]


@pytest.fixture
async def launcher() -> AsyncIterator[Launcher]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.shutdown_launcher",
        cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        yield Launcher(process)
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


@dataclass
class Run:
    """What the reconnecting clients saw during one run."""

    streams: int = 0
    after_signal: Counter[str] = field(default_factory=Counter)
    signalled: bool = False


async def reconnect_forever(
    url: str, run: Run, opened: asyncio.Event, exited: asyncio.Event
) -> None:
    """A client that reconnects the moment its stream ends, as browsers do (minus the jitter)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0, read=None)) as http:
        while not exited.is_set():
            try:
                async with http.stream("GET", url) as r:
                    body = b""
                    if r.status_code == 200:
                        async for chunk in r.aiter_raw():
                            if not body:
                                run.streams += 1
                                if run.streams >= CLIENTS:
                                    opened.set()
                            body += chunk
                    else:
                        body = await r.aread()
                    if run.signalled:
                        answer = f"{r.status_code} {r.headers.get('retry-after')} {body!r}"
                        run.after_signal[answer if r.status_code != 200 else "200"] += 1
            except httpx.TransportError:
                if not run.signalled:
                    await asyncio.sleep(0.01)  # still starting up
                else:
                    run.after_signal["refused"] += 1
                    await asyncio.sleep(0.001)  # the server stopped accepting


async def test_sigterm_exits_while_clients_reconnect_in_a_tight_loop(launcher: Launcher) -> None:
    hangs = 0
    seen: Counter[str] = Counter()
    for _ in range(RUNS):
        port = free_port()
        url = f"http://127.0.0.1:{port}/updates"
        pid = await launcher.spawn(port)
        run, opened, exited = Run(), asyncio.Event(), asyncio.Event()
        clients = [
            asyncio.create_task(reconnect_forever(url, run, opened, exited)) for _ in range(CLIENTS)
        ]
        try:
            await asyncio.wait_for(opened.wait(), 20)
            run.signalled = True
            os.kill(pid, signal.SIGTERM)
            try:
                outcome = await launcher.wait(pid, EXIT_WITHIN)
            except TimeoutError:
                hangs += 1
                os.kill(pid, signal.SIGKILL)
                outcome = await asyncio.wait_for(launcher.reap(), 10)
            seen[outcome] += 1
        finally:
            exited.set()
            for client in clients:
                client.cancel()
            await asyncio.gather(*clients, return_exceptions=True)
        seen.update(run.after_signal)
    print(
        f"\nshutdown runs: {RUNS}, hangs: {hangs}, outcomes and answers after SIGTERM: {dict(seen)}"
    )
    assert hangs == 0, f"{hangs} of {RUNS} runs hung: {dict(seen)}"
    # uvicorn exits by re-raising the signal it handled: a clean, graceful exit.
    assert seen[f"signal {signal.SIGTERM.value}"] == RUNS
    # The clients did reconnect into the shutdown (else this test proves nothing), and what
    # they got was a stream that ends at once, the draining 503, or a refused connection.
    assert sum(n for answer, n in seen.items() if answer.startswith(("200", "503"))) > 0
    draining = (
        b'{"error": "draining", "detail": "the server is shutting down; reconnect in a moment '
        b'(another instance may answer)"}'
    )
    for answer in seen:
        if answer.startswith("503"):
            assert answer == f"503 2 {draining!r}"
