"""The browser's own EventSource, which nobody here wrote, against the refetch endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from .conftest import REPO, free_port, stop, wait_until_answers


@pytest.fixture
def example() -> Iterator[str]:
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "example.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "examples.timer"],
                cwd=REPO,
                env={**os.environ, "HOST": "127.0.0.1", "PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{url}/api/progress", process, log)
            yield url
        finally:
            stop(process)


def test_native_eventsource_gets_hello_and_invalidate_with_ids(
    browser: Browser, example: str
) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{example}/api/progress")  # same origin as the stream
        page.evaluate(
            """() => {
                window.frames_ = [];
                const source = new EventSource('/api/updates?types=projects');
                for (const name of ['hello', 'invalidate', 'resync']) {
                    source.addEventListener(name, (e) => window.frames_.push(
                        {type: e.type, data: JSON.parse(e.data), lastEventId: e.lastEventId}));
                }
                window.source_ = source;
            }"""
        )
        page.wait_for_function("() => window.frames_.length >= 1")
        created = httpx.post(f"{example}/api/projects").json()["id"]
        page.wait_for_function("() => window.frames_.some((f) => f.type === 'invalidate')")
        frames = page.evaluate("() => window.frames_")
        hello, invalidate = frames[0], frames[-1]
        assert hello["type"] == "hello"
        assert hello["data"]["types"] == ["projects"]
        assert hello["lastEventId"] == hello["data"]["cursor"]
        assert invalidate["data"] == {"updates": [{"type": "projects", "keys": [created]}]}
        assert invalidate["lastEventId"] != hello["lastEventId"]
        assert page.evaluate("() => window.source_.readyState") == 1  # OPEN
    finally:
        page.close()


@pytest.fixture
def compressed() -> Iterator[str]:
    """tests/stack_app.py behind a GZipMiddleware that would compress the stream."""
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "tests.stack_app:compressed",
                 "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{url}/health", process, log)
            yield url
        finally:
            stop(process)


def test_native_eventsource_behind_gzip_takes_the_identity_stream_frame_by_frame(
    browser: Browser, compressed: str
) -> None:
    # The stream says Content-Encoding: identity so that compressors leave it alone
    # (tests/test_stack.py checks the bytes); here Chromium must accept that header.
    page = browser.new_page()
    try:
        page.goto(f"{compressed}/health")  # same origin as the stream
        page.evaluate(
            """() => {
                window.frames_ = [];
                const source = new EventSource('/api/updates');
                for (const name of ['hello', 'invalidate']) {
                    source.addEventListener(name, (e) => window.frames_.push(
                        {type: e.type, data: JSON.parse(e.data), lastEventId: e.lastEventId}));
                }
            }"""
        )
        page.wait_for_function("() => window.frames_.length >= 1")
        for key in ("1", "2"):  # each one arrives before the next is sent: nothing buffers it
            r = httpx.post(f"{compressed}/notify", params={"type": "projects", "key": key})
            cursor = r.json()["cursor"]
            page.wait_for_function(
                "(c) => window.frames_.some((f) => f.lastEventId === c)", arg=cursor
            )
        frames = page.evaluate("() => window.frames_")
        assert [f["type"] for f in frames] == ["hello", "invalidate", "invalidate"]
        assert [f["data"] for f in frames[1:]] == [
            {"updates": [{"type": "projects", "keys": ["1"]}]},
            {"updates": [{"type": "projects", "keys": ["2"]}]},
        ]
    finally:
        page.close()


def test_native_eventsource_comes_back_after_a_restart_on_the_drain_delay(
    browser: Browser, tmp_path: Path
) -> None:
    # js/test/servers/deploy.py: retry: 30 s in hello, drain_spread 1 s. A plain EventSource
    # keeps the hello's retry time, so without the drain notice it would wait 30 s after the
    # restart; the notice's retry: sets it to the stream's delay (0.125-1 s), which it keeps
    # while the server is down (refused connections), so it is back about as soon as the
    # server answers. No refetch code in the page: the browser's own EventSource.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {**os.environ, "PORT": str(port), "REFETCH_DEPLOY_STATE": str(tmp_path / "s.json")}

    def start() -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "js/test/servers/deploy.py"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_until_answers(f"{url}/api/progress", process, log)
        return process

    server = start()
    page = browser.new_page()
    try:
        page.goto(f"{url}/api/progress")  # same origin as the stream
        page.evaluate(
            """() => {
                window.opens_ = 0;
                window.notices_ = [];
                const source = new EventSource('/api/updates');
                source.addEventListener('open', () => window.opens_++);
                source.addEventListener('reconnect', (e) => window.notices_.push(JSON.parse(e.data)));
                window.source_ = source;
            }"""
        )
        page.wait_for_function("() => window.opens_ === 1")
        stop(server)  # SIGTERM: the server drains
        page.wait_for_function("() => window.notices_.length === 1")
        assert 125 <= page.evaluate("() => window.notices_[0].delay") <= 1000
        server = start()
        page.wait_for_function("() => window.opens_ === 2", timeout=15_000)
        assert page.evaluate("() => window.source_.readyState") == 1  # OPEN
    finally:
        page.close()
        stop(server)
