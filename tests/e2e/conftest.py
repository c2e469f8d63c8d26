"""Browser end-to-end tests: real portal and simulator processes, Debian's Chromium via Playwright.

Each test gets its own simulator and portal on free loopback ports with a fresh SQLite database
in a temporary folder. The simulator's clock is stopped (SIM_TICK very large): tests move the
world through its /control API, so nothing changes unless a test says so.

Needs /usr/bin/chromium (`apt-get install -y chromium`; never a downloaded browser) and the built
UI in portal/ui/dist (`cd js && npm ci && npm run build; cd portal/ui && npm ci && npm run build`).
Without them these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Request, expect, sync_playwright

REPO = Path(__file__).resolve().parents[2]
UI_DIST = REPO / "portal" / "ui" / "dist"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("E2E_SCREENSHOTS", REPO / "docs" / "screenshots"))
STARTUP_TIMEOUT = 60.0
DEMO = {"alice": "alice@acme.test", "bob": "bob@acme.test", "carol": "carol@globex.test"}

expect.set_options(timeout=10_000)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: browser end-to-end tests (Chromium, real servers)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_browser = [] if Path(CHROMIUM).exists() else [f"{CHROMIUM} (apt-get install -y chromium)"]
    no_ui = (
        []
        if (UI_DIST / "index.html").exists()
        else ["portal/ui/dist (cd portal/ui && npm ci && npm run build)"]
    )
    for item in items:
        if "tests/e2e/" not in str(item.path).replace(os.sep, "/"):
            continue
        item.add_marker(pytest.mark.e2e)
        # real processes start and a browser runs: more than the suite's default
        item.add_marker(pytest.mark.timeout(240))
        # only the portal's tests (the `stack` fixture) need its built UI
        missing = no_browser + (no_ui if "stack" in getattr(item, "fixturenames", ()) else [])
        if missing and not os.environ.get("CI"):  # in CI they run, and fail saying what is missing
            item.add_marker(pytest.mark.skip(reason="browser tests need " + " and ".join(missing)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_answers(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}:\n{tail(log)}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)  # polling a condition with a deadline, not waiting for time to pass
    raise RuntimeError(f"{url} did not answer within {STARTUP_TIMEOUT} s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@dataclass
class Stack:
    """A simulator and a portal, with their logs, and helpers to drive both over HTTP."""

    folder: Path
    sim_url: str
    url: str
    portal_port: int
    portal_log: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    portal: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)

    def start_portal(self) -> None:
        env = {
            **os.environ,
            "HOST": "127.0.0.1",
            "PORT": str(self.portal_port),
            "DATABASE_URL": f"sqlite:///{self.folder / 'portal.db'}",
            "SIMULATOR_URL": self.sim_url,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("REFETCH_BACKEND_URL", None)
        log = self.portal_log.open("ab")
        self.portal = subprocess.Popen(
            [sys.executable, "-m", "portal"], cwd=self.folder, env=env, stdout=log, stderr=log
        )
        self.processes.append(self.portal)
        wait_until_answers(f"{self.url}/api/me", self.portal, self.portal_log)

    def kill_portal(self) -> None:
        """SIGKILL: the portal vanishes mid-stream, telling no one (a crash)."""
        assert self.portal is not None
        stop(self.portal, signal.SIGKILL)

    def stop_portal(self) -> None:
        """SIGTERM: the portal drains (each stream gets a last `reconnect` frame), then exits."""
        assert self.portal is not None
        stop(self.portal, signal.SIGTERM)

    def streams_opened(self) -> int:
        """Update streams the portal has answered, read from its access log (one line per
        response start, so a stream counts when it opens)."""
        return len(re.findall(r'"GET /api/updates[^"]*" 200', self.portal_log.read_text()))

    # -- the portal's API, as a non-browser client with a bearer token --

    def token(self, user: str) -> str:
        if user not in self.tokens:
            r = httpx.post(
                f"{self.url}/api/login", json={"email": DEMO[user], "password": "demo"}, timeout=10
            )
            r.raise_for_status()
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token(user)}"}, timeout=10
        )

    # -- the simulator's knobs --

    def set_progress(self, value: int) -> None:
        httpx.put(
            f"{self.sim_url}/control/progress", json={"value": value}, timeout=5
        ).raise_for_status()

    def set_mode(self, endpoint: str, mode: str) -> None:
        httpx.put(
            f"{self.sim_url}/control/modes/{endpoint}", json={"mode": mode}, timeout=5
        ).raise_for_status()


@pytest.fixture
def stack() -> Iterator[Stack]:
    folder = Path(tempfile.mkdtemp(prefix="refetch-e2e-"))
    sim_port, portal_port = free_port(), free_port()
    s = Stack(
        folder=folder,
        sim_url=f"http://127.0.0.1:{sim_port}",
        url=f"http://127.0.0.1:{portal_port}",
        portal_port=portal_port,
        portal_log=folder / "portal.log",
    )
    sim_log = folder / "simulator.log"
    with sim_log.open("ab") as log:
        sim = subprocess.Popen(
            [sys.executable, "-m", "portal.simulator"],
            cwd=REPO,
            env={
                **os.environ,
                "SIM_HOST": "127.0.0.1",
                "SIM_PORT": str(sim_port),
                "SIM_TICK": "100000",
            },
            stdout=log,
            stderr=log,
        )
    s.processes.append(sim)
    try:
        wait_until_answers(f"{s.sim_url}/control", sim, sim_log)
        s.start_portal()
        yield s
    finally:
        for process in reversed(s.processes):
            stop(process)
        if os.environ.get("E2E_KEEP_LOGS"):
            print(f"e2e logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def new_context(browser: Browser) -> Iterator:
    contexts: list[BrowserContext] = []

    def make() -> BrowserContext:
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def sign_in(context: BrowserContext, stack: Stack, user: str) -> Page:
    """A new tab that signs in as a demo user from the login page and waits for the stream."""
    page = context.new_page()
    page.goto(stack.url + "/")
    page.get_by_role("button", name=re.compile(rf"^{user.capitalize()}\b")).click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()
    wait_live(page)
    return page


def wait_live(page: Page, timeout: float = 10_000) -> None:
    expect(page.get_by_test_id("connection")).to_have_attribute(
        "data-status", "open", timeout=timeout
    )


class NetworkLog:
    """The requests a page makes, and the ones that failed (aborted included)."""

    def __init__(self, page: Page) -> None:
        self.requests: list[Request] = []
        self.failed: list[tuple[str, str | None]] = []
        page.on("request", lambda r: self.requests.append(r))
        page.on("requestfailed", lambda r: self.failed.append((r.url, r.failure)))

    def gets(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == "GET" and httpx.URL(r.url).path == path]

    def clear(self) -> None:
        self.requests.clear()
        self.failed.clear()


def screenshot(page: Page, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=full_page, animations="disabled")
