"""One fetch per change in the tab that made it, counted in Chromium against a real server.

Two tabs of one browser show the projects (tests/e2e/acting_app.py, a FastAPI app with declared
routes; the page is js/test/browser/acting-page.tsx, React + TanStack Query as docs/js.md shows
it). The acting tab renames a project with a mutation; with ``onSuccess=1`` the mutation also
invalidates ``["projects"]`` itself, the TanStack idiom. Each tab must fetch the list once per
change: the stream's frame for the change is skipped where the data was already read after it.

Settling is an ordering, not a delay: after a change is shown in both tabs, the test notifies a
``sentinel`` type and waits until both tabs have refetched it; that frame comes after the
change's on the same stream, so any fetch the change's frame caused has been started by then.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from .conftest import REPO, free_port, stop, wait_until_answers

JS = REPO / "js"
ESBUILD = JS / "node_modules" / ".bin" / "esbuild"
CHANGES = 3


@dataclass
class Server:
    url: str

    def bump_sentinel(self) -> int:
        r = httpx.post(f"{self.url}/api/sentinel", timeout=10)
        r.raise_for_status()
        return int(r.json())


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    if not ESBUILD.exists():
        if os.environ.get("CI"):
            pytest.fail("js/node_modules is missing: cd js && npm ci")
        pytest.skip("js/node_modules is missing: cd js && npm ci")
    with tempfile.TemporaryDirectory() as folder:
        bundle = Path(folder) / "app.js"
        subprocess.run(
            [
                str(ESBUILD),
                "test/browser/acting-page.tsx",
                "--bundle",
                "--format=esm",
                "--jsx=automatic",
                "--minify",
                "--define:process.env.NODE_ENV='production'",
                f"--outfile={bundle}",
                "--log-level=warning",
            ],
            cwd=JS,
            check=True,
        )
        port = free_port()
        log = Path(folder) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tests.e2e.acting_app"],
                cwd=REPO,
                env={**os.environ, "PORT": str(port), "ACTING_BUNDLE": str(bundle)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answers(f"{url}/api/projects", process, log)
            yield Server(url)
        finally:
            stop(process)


class Requests:
    def __init__(self, page: Page) -> None:
        self.seen: list[Request] = []
        page.on("request", lambda request: self.seen.append(request))

    def count(self, method: str, path: str) -> int:
        return sum(
            1 for r in self.seen if r.method == method and r.url.split("?")[0].endswith(path)
        )

    def clear(self) -> None:
        self.seen.clear()


@dataclass
class Counts:
    load: tuple[int, int]  # GET /api/projects per tab while loading
    acting_patch: list[int]
    acting_get: list[int]
    other_get: list[int]


def settle(server: Server, pages: list[Page]) -> None:
    """Every frame sent so far has been handled by both tabs (see the module's docstring)."""
    value = server.bump_sentinel()
    for page in pages:
        expect(page.get_by_test_id("sentinel")).to_have_text(str(value))


def measure(browser: Browser, server: Server, query: str) -> Counts:
    context = browser.new_context()
    try:
        acting, other = context.new_page(), context.new_page()
        logs = [Requests(acting), Requests(other)]
        for page in (acting, other):
            page.goto(f"{server.url}/?{query}")
            expect(page.get_by_test_id("status")).to_have_attribute("data-status", "open")
            expect(page.get_by_test_id("projects")).not_to_be_empty()
        settle(server, [acting, other])
        load = (logs[0].count("GET", "/api/projects"), logs[1].count("GET", "/api/projects"))
        counts = Counts(load, [], [], [])
        for n in range(CHANGES):
            for log in logs:
                log.clear()
            name = f"renamed {n} {query}"
            acting.evaluate("(name) => window.rename(name)", name)
            for page in (acting, other):
                expect(page.get_by_test_id("projects").locator("li").first).to_have_text(name)
            settle(server, [acting, other])
            counts.acting_patch.append(logs[0].count("PATCH", "/api/projects/1"))
            counts.acting_get.append(logs[0].count("GET", "/api/projects"))
            counts.other_get.append(logs[1].count("GET", "/api/projects"))
        print(f"\n{query}: {counts}")
        return counts
    finally:
        context.close()


@pytest.mark.parametrize(
    "query",
    ["onSuccess=1", "onSuccess=0", "onSuccess=1&slow=1", "onSuccess=0&slow=1"],
)
def test_one_fetch_per_change_in_the_acting_tab_and_the_other(
    browser: Browser, server: Server, query: str
) -> None:
    counts = measure(browser, server, query)
    assert counts.load == (1, 1)
    assert counts.acting_patch == [1] * CHANGES
    assert counts.acting_get == [1] * CHANGES, "the acting tab fetched twice for its own change"
    assert counts.other_get == [1] * CHANGES


@pytest.mark.parametrize("share", ["1", "0"])
def test_the_notes_layout_refetches_only_the_changed_type_on_page_load(
    browser: Browser, server: Server, share: str
) -> None:
    """useSSEUpdates() first in the page component, its queries after it in the same render; a
    change lands between the page's first read and the stream's hello. The first connect waits
    for those queries' answers and resumes from their cursor: the server replays the change, and
    only the projects are fetched again, not the sentinel."""
    armed = httpx.post(f"{server.url}/api/arm", timeout=10)
    armed.raise_for_status()
    changed = armed.json()
    context = browser.new_context()
    try:
        page = context.new_page()
        log = Requests(page)
        page.goto(f"{server.url}/?layout=note&share={share}")
        expect(page.get_by_test_id("status")).to_have_attribute("data-status", "open")
        expect(page.get_by_test_id("projects").locator("li").nth(1)).to_have_text(changed)
        settle(server, [page])  # one more sentinel fetch, for the settling bump
        counts = (log.count("GET", "/api/projects"), log.count("GET", "/api/sentinel"))
        print(
            f"\nlayout=note share={share}, a change before the hello: GET projects, sentinel = {counts}"
        )
        assert counts == (2, 2), "every tagged query was refetched, not just the changed type's"
    finally:
        context.close()
