"""The Python client and the CLI against real servers."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from refetch import StreamRejected, UpdatesEndpoint, UpdateService
from refetch.client import Frame, listen

from .conftest import TYPES, free_port, serve, wait_for

ROOT = Path(__file__).resolve().parents[1]


async def collect(frames: list[Frame], url: str, **kwargs: object) -> None:
    async for frame in listen(url, backoff=0.05, **kwargs):  # type: ignore[arg-type]
        frames.append(frame)


async def test_client_resumes_with_its_cursor_after_the_stream_drops() -> None:
    async with UpdateService(TYPES, close_on_signals=False) as service:
        port = free_port()
        frames: list[Frame] = []
        async with serve(UpdatesEndpoint(service), port=port) as url:
            reader = asyncio.create_task(collect(frames, url))
            try:
                await wait_for(lambda: frames)
                first = await service.publish("projects", key="1")
                await wait_for(lambda: any(f.id == first for f in frames))
                service.close_streams("dropped")  # every stream drops; "shutdown" would drain
                missed = await service.publish("compute", key="while-away")
                await wait_for(lambda: any(f.id == missed for f in frames))
            finally:
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        hellos = [f for f in frames if f.event == "hello"]
        assert len(hellos) == 2
        assert hellos[1].reconnected and hellos[1].id is None
        replay = frames[frames.index(hellos[1]) + 1]
        assert replay.event == "invalidate"
        assert replay.data == {"updates": [{"type": "compute", "keys": ["while-away"]}]}
        assert not [f for f in frames if f.event == "resync"]


async def test_client_gets_resync_when_the_server_restarted() -> None:
    port = free_port()
    frames: list[Frame] = []
    reader: asyncio.Task[None] | None = None
    try:
        async with UpdateService(TYPES, close_on_signals=False) as first:
            async with serve(UpdatesEndpoint(first), port=port) as url:
                reader = asyncio.create_task(collect(frames, url))
                cursor = await first.publish("images")
                await wait_for(lambda: any(f.id == cursor for f in frames))
                # Streams end before the server stops, as on SIGTERM.
                await first.aclose()
        # A new process would have a new hub: the old cursor means nothing to it.
        async with UpdateService(TYPES, close_on_signals=False) as second:
            async with serve(UpdatesEndpoint(second), port=port):
                await wait_for(lambda: any(f.event == "resync" for f in frames), 10)
                resync = next(f for f in frames if f.event == "resync")
                assert resync.data == {"reason": "unknown cursor"}
                assert resync.id == second.cursor
                await second.aclose()
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_client_comes_back_on_the_drain_schedule_then_retries_quickly_while_down(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # retry: 30 s, so the error backoff would wait up to 30 s, then 60 s, ...
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    frames: list[Frame] = []

    async def read() -> None:
        async for frame in listen(url, max_backoff=60.0):
            frames.append(frame)

    def waits() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "refetch.client"]

    caplog.set_level(logging.INFO, logger="refetch.client")
    reader: asyncio.Task[None] | None = None
    try:
        async with UpdateService(TYPES, retry=30.0, drain_spread=0.4) as first:
            async with serve(UpdatesEndpoint(first), port=port):
                reader = asyncio.create_task(read())
                await wait_for(lambda: frames)
                await first.aclose()  # drains: every stream is told when to come back
                await wait_for(lambda: waits())
        # Down: nothing listens on the port.
        await wait_for(lambda: len(waits()) >= 4, 10)
        notice = next(f for f in frames if f.event == "reconnect")
        drained, *down = waits()[:4]
        assert drained.delay == notice.data["delay"] / 1000  # type: ignore[attr-defined]
        assert 0.05 <= drained.delay <= 0.4  # type: ignore[attr-defined]
        assert drained.levelno == logging.INFO  # routine, not an outage warning
        for record in down:
            assert record.status is None  # type: ignore[attr-defined]
            assert 0.25 <= record.delay <= 0.5  # type: ignore[attr-defined]
        async with UpdateService(TYPES) as second, serve(UpdatesEndpoint(second), port=port):
            await wait_for(lambda: any(f.event == "resync" for f in frames), 10)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def test_client_raises_on_a_final_rejection(base_url: str) -> None:
    with pytest.raises(StreamRejected) as info:
        async for _ in listen(f"{base_url}?types=bogus"):
            pass
    assert info.value.status_code == 400
    assert isinstance(info.value.body, dict)
    assert info.value.body["error"] == "unknown_type"


async def start_example(port: int) -> asyncio.subprocess.Process:
    env = {**os.environ, "PORT": str(port), "HOST": "127.0.0.1"}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "examples.timer",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_until_up(url: str) -> None:
    async with httpx.AsyncClient() as http:
        async with asyncio.timeout(15):
            while True:
                try:
                    await http.get(url)
                    return
                except httpx.TransportError:
                    await asyncio.sleep(0.05)


async def test_sigterm_shuts_the_server_down_with_streams_open() -> None:
    port = free_port()
    process = await start_example(port)
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/api/progress")
        async with (
            httpx.AsyncClient(timeout=None) as http,
            http.stream("GET", f"http://127.0.0.1:{port}/api/updates") as stream,
        ):
            chunks = stream.aiter_raw()
            assert b"event: hello" in await anext(chunks)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(10):
                async for _ in chunks:  # ends when the server ends the stream
                    pass
                code = await process.wait()
        # uvicorn re-raises the signal it handled once it has shut down cleanly.
        assert code in (0, -signal.SIGTERM)
        assert process.stderr is not None
        log = (await process.stderr.read()).decode()
        assert "Waiting for connections to close" not in log
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_cli_listen_prints_frames_readably() -> None:
    port = free_port()
    server = await start_example(port)
    cli = None
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/api/progress")
        cli = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "refetch.cli",
            "listen",
            f"http://127.0.0.1:{port}/api/updates",
            "--types",
            "projects",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        assert cli.stdout is not None
        async with asyncio.timeout(10):
            hello = await cli.stdout.readline()
            assert hello.startswith(b"hello cursor=") and b"types=projects" in hello
            async with httpx.AsyncClient() as http:
                created = await http.post(f"http://127.0.0.1:{port}/api/projects")
            project = created.json()["id"]
            line = await cli.stdout.readline()
        assert line.decode().startswith(f"invalidate projects[{project}]")
    finally:
        for process in (cli, server):
            if process is not None and process.returncode is None:
                process.kill()
                await process.wait()
