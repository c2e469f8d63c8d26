"""Pollers on demand (issue 24): the portal's upstream requests per hour, always-on against on
demand. (How soon the first listener is polled: ``bench/on_demand.py``.)

    python bench/poll_demand.py [--seconds 60] [--tenants 100] [--active 5] [--out DIR]

Real processes on 127.0.0.1: the simulator (``python -m portal.simulator``, which counts the
requests it gets per endpoint and per tenant), the portal (``python -m portal``, a fresh SQLite
file) and this process, which opens the browsers' streams. Four runs in one invocation, each
``--seconds`` long after a warm-up, with the portal's own intervals (progress 2 s, images 5 s,
clusters 3 s per tenant):

- the demo portal (2 tenants) with no browser open, always-on pollers (``POLL_ON_DEMAND=0``, the
  behaviour before issue 24) and on demand (``POLL_ON_DEMAND=1``, the portal's default);
- ``--tenants`` tenants (the demo two plus ``t003``... seeded into the database, a member each)
  with ``--active`` of them active: one stream open per active tenant's member for the whole run,
  always-on and on demand.

The counts over the run are extrapolated to an hour (x 3600 / seconds): a bounded measurement,
not an hour of running. The ratio is always-on / on demand (``inf`` when on demand made none).

Prints JSON and writes ``<out>/latest.json`` and ``<out>/latest.md`` (default
``bench/results/poll-demand``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def process(
    args: list[str], env: dict[str, str], ready: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, up once `ready` (a URL) answers; terminated and awaited on exit."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(timeout=2) as http, asyncio.timeout(60):
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"{' '.join(args)} exited with {proc.returncode}")
                with contextlib.suppress(httpx.TransportError):
                    await http.get(ready)
                    break
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class Streams:
    """Open update streams, each read by a task until closed."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, headers: dict[str, str] | None = None) -> None:
        hello = asyncio.get_running_loop().create_future()

        async def read() -> None:
            async with self.http.stream("GET", url, headers=headers) as response:
                if response.status_code != 200:
                    hello.set_exception(RuntimeError(f"{url}: {response.status_code}"))
                    return
                async for _chunk in response.aiter_bytes():
                    if not hello.done():
                        hello.set_result(None)

        task = asyncio.create_task(read())
        self.tasks.append(task)
        await asyncio.wait_for(hello, 10)

    async def aclose(self) -> None:
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.http.aclose()


# -- upstream requests per hour (the portal) ----------------------------------------------------


async def seed(database_url: str, tenants: int) -> None:
    """The demo data plus tenants t003... with one member each (password "demo")."""
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from portal.config import Settings
    from portal.db import create_engine, create_schema
    from portal.models import Membership, Role, Tenant, User
    from portal.passwords import hash_password
    from portal.seed import seed_demo

    engine = create_engine(Settings(database_url=database_url))
    try:
        await create_schema(engine)
        sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        await seed_demo(sessionmaker)
        password = hash_password("demo")
        async with sessionmaker() as db:
            for i in range(3, tenants + 1):
                slug = f"t{i:03d}"
                tenant = Tenant(slug=slug, name=f"Tenant {i}")
                user = User(email=f"member@{slug}.test", name=f"Member {i}", password_hash=password)
                db.add_all([tenant, user, Membership(user=user, tenant=tenant, role=Role.member)])
            await db.commit()
    finally:
        await engine.dispose()


def member_of(index: int) -> str:
    return {1: "bob@acme.test", 2: "carol@globex.test"}.get(index, f"member@t{index:03d}.test")


async def hourly_run(
    *, on_demand: bool, tenants: int, active: int, seconds: float, warmup: float
) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="poll-demand-"))
    database = f"sqlite:///{folder / 'portal.db'}"
    await seed(database, tenants)
    sim_port, portal_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    portal = f"http://127.0.0.1:{portal_port}"
    sim_env = {"SIM_PORT": str(sim_port), "SIM_TICK": "1.0"}
    portal_env = {
        "PORT": str(portal_port),
        "DATABASE_URL": database,
        "SIMULATOR_URL": sim,
        "SESSION_SECRET": "bench",
        "POLL_ON_DEMAND": "1" if on_demand else "0",
    }
    streams = Streams()
    async with (
        process([sys.executable, "-m", "portal.simulator"], sim_env, f"{sim}/control"),
        process([sys.executable, "-m", "portal"], portal_env, f"{portal}/api/me"),
        httpx.AsyncClient(base_url=portal, timeout=30) as http,
    ):
        try:
            for index in range(1, active + 1):
                r = await http.post(
                    "/api/login", json={"email": member_of(index), "password": "demo"}
                )
                r.raise_for_status()
                token = r.json()["token"]
                await streams.open(f"{portal}/api/updates", {"Authorization": f"Bearer {token}"})
            await asyncio.sleep(warmup)
            before = (await http.get(f"{sim}/control")).json()
            started = time.monotonic()
            await asyncio.sleep(seconds)
            after = (await http.get(f"{sim}/control")).json()
            elapsed = time.monotonic() - started
        finally:
            await streams.aclose()
    per_endpoint = {
        k: after["requests"][k] - before["requests"].get(k, 0) for k in after["requests"]
    }
    by_tenant = {
        t: n - before["shoots_by_tenant"].get(t, 0) for t, n in after["shoots_by_tenant"].items()
    }
    total = sum(per_endpoint.values())
    return {
        "on_demand": on_demand,
        "tenants": tenants,
        "active": active,
        "seconds": round(elapsed, 2),
        "requests": total,
        "per_hour": round(total * 3600 / elapsed),
        "per_endpoint": per_endpoint,
        "tenants_polled": sum(1 for n in by_tenant.values() if n > 0),
    }


# -- report -----------------------------------------------------------------------------------


def ratio(before: int, after: int) -> str:
    return "inf" if after == 0 else f"{before / after:.1f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Pollers on demand ({result['when']})", "", f"`{result['command']}`", ""]
    if "load_before" in result:
        lines += [f"Load average before {result['load_before']}, after {result['load_after']}.", ""]
    hourly = result["hourly"]
    lines += [
        f"Upstream requests per hour, from {hourly['seconds']:.0f} s runs x 3600 / s "
        "(a bounded run, extrapolated):",
        "",
        "| portal | always-on (before) | on demand (after) | ratio | tenants polled (after) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for row in hourly["rows"]:
        before, after = row["always"], row["on_demand"]
        lines.append(
            f"| {row['label']} | {before['per_hour']:,} | {after['per_hour']:,} | "
            f"{ratio(before['per_hour'], after['per_hour'])} | {after['tenants_polled']} |"
        )
    lines.append("")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--tenants", type=int, default=100)
    parser.add_argument("--active", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "poll-demand")
    args = parser.parse_args()
    result: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "python bench/poll_demand.py " + " ".join(sys.argv[1:]),
        "load_before": [round(x, 2) for x in os.getloadavg()],
    }
    rows = []
    for label, tenants, active in (
        ("demo (2 tenants), no browser open", 2, 0),
        (f"{args.tenants} tenants, {args.active} active", args.tenants, args.active),
    ):
        row: dict[str, Any] = {"label": label}
        for key, on_demand in (("always", False), ("on_demand", True)):
            row[key] = await hourly_run(
                on_demand=on_demand,
                tenants=tenants,
                active=active,
                seconds=args.seconds,
                warmup=args.warmup,
            )
            print(json.dumps({label: {key: row[key]}}), flush=True)
        rows.append(row)
    result["hourly"] = {"seconds": args.seconds, "rows": rows}
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(result))


if __name__ == "__main__":
    asyncio.run(main())
