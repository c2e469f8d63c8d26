"""Revocation while the broker is stalled: two portals on a private Redis that is frozen
(SIGSTOP) while an admin removes bob from acme through A.

The admin's request answers promptly and truthfully (the removal is committed and in force on
A; it reaches the other instances when the broker is back), and bob's stream on B, which cannot
hear the removal, hears nothing of acme once B fails closed; after the broker is back his
reconnect on B replays nothing of what acme did meanwhile.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from refetch.client import Frame, listen

from .. import brokers
from ..conftest import wait_for
from .conftest import PortalHandle, SimulatorHandle, portal_settings
from .test_poller_leases import portal_instance

ALICE, BOB = "alice@acme.test", "bob@acme.test"

#: What the portal waits for the broker before answering a revoking request
#: (portal/routers/authentication.py).
FLUSH_TIMEOUT = 2.0
#: What the docs promise (docs/scaling.md, "Revocation across instances"): an instance ends its
#: authenticated streams at most 1.5 s after it last heard from the broker, whatever the
#: broker does (a stalled one is lost after 1.5 s of silence).
FAIL_CLOSED_BOUND = 1.5
#: Generous: a loaded CI machine, the client's read loop, uvicorn's write.
MARGIN = 2.0


@pytest.fixture
async def redis() -> AsyncIterator[brokers.PrivateBroker]:
    why = brokers.missing("redis")
    if why is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"redis: {why}: CI must run the broker stall tests")
        pytest.skip(f"SKIPPED, NOT TESTED: redis: {why}")
    broker = brokers.start("redis")
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture
async def two(
    simulator: SimulatorHandle, redis: brokers.PrivateBroker, tmp_path: Path
) -> AsyncIterator[tuple[PortalHandle, PortalHandle]]:
    settings = portal_settings(
        {"database_url": f"sqlite:///{tmp_path / 'portal.db'}"}, simulator.url
    )
    stream = f"portal_stall_{uuid.uuid4().hex[:12]}"
    settings = replace(settings, backend_url=f"{redis.url}?stream={stream}")
    async with portal_instance(settings) as a, portal_instance(settings) as b:
        yield a, b
        redis.thaw()  # before the instances close: their last publishes go out


class Recorded:
    """Bob's stream, reconnecting as a browser does; every frame with when it arrived."""

    def __init__(self, url: str, token: str) -> None:
        self.frames: list[tuple[float, Frame]] = []
        self.refused: list[tuple[float, int]] = []  # reconnects answered other than 200

        async def on_response(response: httpx.Response) -> None:
            if response.status_code != 200:
                self.refused.append((time.monotonic(), response.status_code))

        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, read=None), event_hooks={"response": [on_response]}
        )
        self._iterator = listen(
            f"{url}/api/updates",
            headers={"authorization": token},
            client=self._http,
            backoff=0.1,
            max_backoff=0.3,
        )
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self._iterator:
            self.frames.append((time.monotonic(), frame))

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._iterator.aclose()
        await self._http.aclose()

    def keys(self, type_: str, since: float = 0.0) -> dict[str, float]:
        """Keys of ``type_`` heard, with when they were first heard."""
        heard: dict[str, float] = {}
        for at, frame in self.frames:
            if at >= since and frame.event == "invalidate":
                for update in frame.updates:
                    if update.type == type_:
                        for key in update.keys or ("*",):
                            heard.setdefault(key, at)
        return heard

    @property
    def hellos(self) -> int:
        return sum(1 for _, f in self.frames if f.event == "hello")


async def test_removing_a_member_while_the_broker_is_stalled_answers_at_once_and_fails_closed(
    two: tuple[PortalHandle, PortalHandle], redis: brokers.PrivateBroker
) -> None:
    a, b = two
    alice_a, alice_b, bob_b = await a.client(ALICE), await b.client(ALICE), await b.client(BOB)
    bob_id = (await bob_b.get("/api/me")).json()["id"]
    bob = Recorded(b.url, bob_b.headers["authorization"])
    created: dict[str, float] = {}  # acme project id -> when its creation was answered

    async def create(http: httpx.AsyncClient, name: str) -> str:
        r = await http.post("/api/projects", json={"name": name})
        assert r.status_code == 201, r.text
        pid = str(r.json()["id"])
        created[pid] = time.monotonic()
        return pid

    try:
        healthy = await create(alice_a, "before")
        await wait_for(lambda: healthy in bob.keys("projects"), 10)

        # Alice keeps working in acme through B, whose streams cannot hear A's removal.
        async def keep_creating() -> None:
            for i in range(1000):
                await create(alice_b, f"during-{i}")
                await asyncio.sleep(0.2)

        redis.freeze()
        frozen = time.monotonic()
        writer = asyncio.create_task(keep_creating())
        try:
            await asyncio.sleep(0.5)
            asked = time.monotonic()
            removed = await alice_a.delete(f"/api/tenants/acme/members/{bob_id}", timeout=30)
            answered = time.monotonic()
            # Until B fails closed, bob's stream there may hear acme (B cannot know); after
            # it, nothing: B refuses his reconnects (503 unconfirmed) while the broker is away.
            await wait_for(lambda: bob.refused, FAIL_CLOSED_BOUND + 10)
            await asyncio.sleep(1.0)  # acme goes on through B meanwhile
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            redis.thaw()
        thawed = time.monotonic()

        # Truthful and prompt: committed, in force, and not yet heard by the other instances.
        assert removed.status_code == 204, removed.text
        assert removed.headers["refetch-propagation"] == "pending"
        assert answered - asked <= FLUSH_TIMEOUT + MARGIN
        assert (await bob_b.get("/api/projects")).json() == []

        # Bob's stream on B: nothing of acme once B failed closed (its first refusal)...
        refused_at, status = bob.refused[0]
        assert status == 503
        assert refused_at - frozen <= FAIL_CLOSED_BOUND + MARGIN
        heard = bob.keys("projects")
        late = {pid: at for pid, at in heard.items() if at >= refused_at}
        assert late == {}, f"acme projects heard after B failed closed: {late}"
        assert all(at <= frozen + FAIL_CLOSED_BOUND + MARGIN for at in heard.values())
        # The broker was stalled before the request, and the portal waits longer for it
        # (FLUSH_TIMEOUT) than B takes to fail closed: by the time the admin has the answer,
        # bob's stream on B has heard the last of acme.
        assert all(at < answered for at in heard.values())

        # ...and once the broker is back, bob's reconnect on B (with his cursor, authenticated
        # afresh) replays none of what acme did meanwhile, and the removal reaches B.
        await wait_for(lambda: bob.hellos >= 2, 15)
        for i, http in enumerate((alice_a, alice_b)):
            await create(http, f"after-{i}")
        await b.app.state.updates.publish("images")  # later in the stream than all of them
        await wait_for(lambda: "*" in bob.keys("images", since=thawed), 10)
        assert bob.keys("projects", since=thawed) == {}, "bob heard acme after his removal"
        assert str(bob_id) in bob.keys("authentication", since=thawed)

        # With the broker back, a revoking request says its change reached the broker.
        signed_out = await alice_a.post("/api/logout")
        assert signed_out.status_code == 204
        assert signed_out.headers["refetch-propagation"] == "published"
    finally:
        await bob.aclose()
