"""The simulator's HTTP API: the three polled endpoints and the knobs that break them.

Polled:  GET /state, GET /images (with ETag / 304), GET /shoots?tenant=acme
Knobs:   GET /control, PUT /control/modes/{endpoint} {"mode": ..., "delay": s},
         POST /control/step {"count": n}, PUT /control/progress {"value": n},
         POST /control/images {image}, PUT /control/shoots/{tenant}/{name} {"status": ...}

Modes per endpoint (`state`, `images`, `shoots`, or `all`):
ok, fail (HTTP 500), slow (answers after `delay` seconds), garbage (200 with a body that is
not JSON), invalid (200 with JSON of the wrong shape).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel, Field

from .state import World

ENDPOINTS = ("state", "images", "shoots")


class Mode(StrEnum):
    ok = "ok"
    fail = "fail"
    slow = "slow"
    garbage = "garbage"
    invalid = "invalid"


class Knob(BaseModel):
    mode: Mode
    delay: float = Field(default=10.0, ge=0, le=3600)


class Steps(BaseModel):
    count: int = Field(default=1, ge=1, le=10_000)


class ProgressValue(BaseModel):
    value: int = Field(ge=0, le=100)


class NewImage(BaseModel):
    id: str
    name: str
    os: str = "linux"
    version: str = "1.0"
    size_gb: float = 1.0
    status: str = "available"


class ShootStatus(BaseModel):
    status: str


class Simulator:
    def __init__(self) -> None:
        self.world = World()
        self.knobs: dict[str, Knob] = {name: Knob(mode=Mode.ok) for name in ENDPOINTS}
        self.requests: dict[str, int] = dict.fromkeys(ENDPOINTS, 0)
        #: GET /shoots per tenant asked for ("" for all): on-demand polling saves per tenant.
        self.shoots_by_tenant: dict[str, int] = {}
        self.knobs_changed = asyncio.Event()

    def set_knob(self, endpoint: str, knob: Knob) -> None:
        for name in ENDPOINTS if endpoint == "all" else (endpoint,):
            self.knobs[name] = knob
        # release requests that are being slow under the old knob
        self.knobs_changed.set()
        self.knobs_changed = asyncio.Event()

    async def answer(self, endpoint: str, body: Any, request: Request | None = None) -> Response:
        self.requests[endpoint] += 1
        knob = self.knobs[endpoint]
        if knob.mode is Mode.fail:
            return Response("simulated failure", status_code=500, media_type="text/plain")
        if knob.mode is Mode.garbage:
            return Response("<html>upstream proxy error", media_type="application/json")
        if knob.mode is Mode.invalid:
            return Response(json.dumps({"unexpected": [1, 2, 3]}), media_type="application/json")
        if knob.mode is Mode.slow:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.knobs_changed.wait(), knob.delay)
        payload = json.dumps(body, separators=(",", ":"))
        headers: dict[str, str] = {}
        if request is not None:
            etag = '"' + hashlib.sha256(payload.encode()).hexdigest()[:20] + '"'
            headers["ETag"] = etag
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers=headers)
        return Response(payload, media_type="application/json", headers=headers)


def create_app(*, tick: float | None = 1.0) -> FastAPI:
    """`tick`: seconds between steps of the world; `None` stops time (tests step it)."""
    sim = Simulator()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tick is None:
            yield
            return

        async def autoplay() -> None:
            while True:
                await asyncio.sleep(tick)
                sim.world.step()

        async with asyncio.TaskGroup() as tasks:
            player = tasks.create_task(autoplay(), name="simulator autoplay")
            yield
            player.cancel()

    app = FastAPI(title="portal simulator", lifespan=lifespan)
    app.state.simulator = sim

    @app.get("/state")
    async def get_state() -> Response:
        return await sim.answer("state", sim.world.state())

    @app.get("/images")
    async def get_images(request: Request) -> Response:
        return await sim.answer("images", {"images": sim.world.images}, request)

    @app.get("/shoots")
    async def get_shoots(tenant: str | None = None) -> Response:
        sim.shoots_by_tenant[tenant or ""] = sim.shoots_by_tenant.get(tenant or "", 0) + 1
        return await sim.answer("shoots", {"shoots": sim.world.shoots_of(tenant)})

    @app.get("/control")
    async def get_control() -> dict[str, Any]:
        return {
            "knobs": {name: knob.model_dump() for name, knob in sim.knobs.items()},
            "requests": sim.requests,
            "shoots_by_tenant": sim.shoots_by_tenant,
            "ticks": sim.world.ticks,
        }

    @app.put("/control/modes/{endpoint}")
    async def set_knob(endpoint: str, knob: Knob) -> dict[str, Any]:
        if endpoint != "all" and endpoint not in ENDPOINTS:
            raise HTTPException(404, f"no endpoint {endpoint!r}; use one of {ENDPOINTS} or all")
        sim.set_knob(endpoint, knob)
        return {name: k.model_dump() for name, k in sim.knobs.items()}

    @app.post("/control/step")
    async def step(steps: Steps | None = None) -> dict[str, Any]:
        for _ in range((steps or Steps()).count):
            sim.world.step()
        return sim.world.state()

    @app.put("/control/progress")
    async def set_progress(value: ProgressValue) -> dict[str, Any]:
        sim.world.progress = value.value
        return sim.world.state()

    @app.post("/control/images")
    async def add_image(image: NewImage) -> dict[str, Any]:
        sim.world.add_image(image.model_dump())
        return {"images": sim.world.images}

    @app.put("/control/shoots/{tenant}/{name}")
    async def set_shoot(tenant: str, name: str, body: ShootStatus) -> dict[str, Any]:
        sim.world.set_shoot(tenant, name, body.status)
        return {"shoots": sim.world.shoots_of(tenant)}

    return app
