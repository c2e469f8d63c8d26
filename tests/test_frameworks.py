"""The framework recipes of docs/frameworks.md, run as a user runs them: the real server CLI
(uvicorn, gunicorn) in a process of its own, a stream client, and HTTP requests that write."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from refetch.client import listen

from .conftest import SharedStream, Stream, free_port, unique_name, wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@asynccontextmanager
async def server_process(
    command: list[str], env: dict[str, str], probe: str, log: Path
) -> AsyncIterator[subprocess.Popen[bytes]]:
    """Start ``command``, wait until ``probe`` answers, stop it with SIGTERM at the end."""
    with log.open("wb") as out:
        proc = await asyncio.to_thread(
            subprocess.Popen,
            command,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            async with asyncio.timeout(60):
                while True:
                    if proc.poll() is not None:
                        output = await asyncio.to_thread(log.read_text)
                        raise AssertionError(f"{command[0]} exited: {output}")
                    try:
                        if (await http.get(probe)).status_code < 500:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# uvicorn re-raises the SIGTERM it handled once it has shut down; gunicorn exits with 0.
STOPPED = (0, -signal.SIGTERM)


class ReconnectingStream(Stream):
    """A stream client that reconnects (with its cursor) as a browser would."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._iterator = listen(url, backoff=0.05, max_backoff=0.2)


def uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


# -- Django ---------------------------------------------------------------------------------


async def test_django_views_and_on_commit_receivers_notify(tmp_path: Path) -> None:
    env = {
        "DJANGO_SETTINGS_MODULE": "examples.django_app.settings",
        "DJANGO_DB": str(tmp_path / "db.sqlite3"),
    }
    migrate = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "django", "migrate", "--noinput"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrate.returncode == 0, migrate.stderr
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = uvicorn("examples.django_app.asgi:application", port)
    async with server_process(command, env, f"{url}/api/projects", tmp_path / "log") as proc:
        async with Stream(f"{url}/api/updates") as stream, httpx.AsyncClient(base_url=url) as http:
            assert stream.frames[0].data["types"] == ["projects", "progress"]
            # A sync view; the post_save receiver notifies on commit.
            created = await http.post("/api/projects", json={"name": "web"})
            assert created.status_code == 201, created.text
            key = str(created.json()["id"])
            await wait_for(lambda: stream.saw("projects", key))
            # Rolled back: neither the row nor the notify survives.
            failed = await http.post("/api/projects", json={"name": "x", "fail": True})
            assert failed.status_code == 409
            # A sync view that notifies directly; it comes after the rolled-back one.
            assert (await http.post("/api/progress")).json() == {"progress": 10}
            await wait_for(lambda: stream.saw("progress"))
            assert {k for t, k in stream.invalidated() if t == "projects"} == {key}
            listed = (await http.get("/api/projects")).json()["projects"]
            assert [str(p["id"]) for p in listed] == [key]
            bad = await http.post("/api/projects", content=b"not json")
            assert bad.status_code == 400 and "name" in bad.json()["detail"]
            # SIGTERM with the stream open: the hub ends it, the lifespan shuts down cleanly.
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) in STOPPED
    log = (tmp_path / "log").read_text()
    assert "lifespan" not in log.lower()  # no "unsupported" warning: the dispatcher speaks it
    assert "Traceback" not in log, log


# -- Litestar -------------------------------------------------------------------------------


async def test_litestar_one_liner_under_uvicorn(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = uvicorn("examples.litestar_app:app", port)
    async with server_process(command, {}, f"{url}/api/projects", tmp_path / "log") as proc:
        async with Stream(f"{url}/api/updates") as stream, httpx.AsyncClient(base_url=url) as http:
            created = await http.post("/api/projects", json={"name": "web"})
            assert created.status_code == 201, created.text
            await wait_for(lambda: stream.saw("projects", created.json()["id"]))
            refused = await http.post("/api/updates")
            assert refused.status_code == 405  # refetch's own answer, through Litestar
            assert refused.json()["error"] == "method_not_allowed"
            rejected = await http.get("/api/updates", params={"types": "nope"})
            assert rejected.status_code == 400 and rejected.json()["error"] == "unknown_type"
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) in STOPPED
    log = (tmp_path / "log").read_text()
    assert "Traceback" not in log, log


# -- gunicorn with uvicorn workers ----------------------------------------------------------


async def test_gunicorn_workers_share_the_stream_and_hup_loses_nothing(
    tmp_path: Path, redis_url: str
) -> None:
    name = unique_name("refetch_gunicorn")
    env = {"REFETCH_BACKEND_URL": f"{redis_url}?stream={name}"}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(BIN / "gunicorn"),
        "examples.litestar_app:app",
        "--worker-class",
        "uvicorn_worker.UvicornWorker",
        "--workers",
        "2",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "10",
    ]
    try:
        async with server_process(command, env, f"{url}/api/projects", tmp_path / "log") as proc:
            async with httpx.AsyncClient(base_url=url) as http:
                streams = [ReconnectingStream(f"{url}/api/updates") for _ in range(4)]
                for s in streams:
                    await s.__aenter__()
                try:
                    # Whichever worker takes the POST, every stream hears it (via Redis).
                    first = (await http.post("/api/projects", json={"name": "a"})).json()["id"]
                    await wait_for(lambda: all(s.saw("projects", first) for s in streams))
                    # SIGHUP: new workers, the old ones end their streams; the clients
                    # reconnect with their cursor and miss nothing notified meanwhile.
                    proc.send_signal(signal.SIGHUP)
                    await wait_for(lambda: all(s.of("hello")[1:] for s in streams), timeout=30)
                    second = (await http.post("/api/projects", json={"name": "b"})).json()["id"]
                    await wait_for(lambda: all(s.saw("projects", second) for s in streams))
                    assert all(not s.of("resync") for s in streams)
                    assert all(s.of("hello")[-1].reconnected for s in streams)
                finally:
                    for s in streams:
                        await s.__aexit__(None, None, None)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(proc.wait, 30) == 0
        log = (tmp_path / "log").read_text()
        assert "Traceback" not in log, log
    finally:
        await SharedStream("redis", name).cleanup()
