"""API latency during a login flood: `GET /api/flavors` p50 while clients hammer `POST /api/login`.

    python bench/login_flood.py [--clients 16] [--seconds 15] [--throttle on|off] [--code DIR]

Three processes on 127.0.0.1: the portal (uvicorn, a fresh SQLite file, no simulator), the
flood (`--clients` concurrent connections posting wrong passwords for bob, in turn with
other emails, for `--seconds`), and this one, which times sequential `GET /api/flavors` as
alice, first with no flood (idle), then during it. `--throttle off` lifts the login limits
(so every try is hashed, as before issue 20) to measure the hashing threads alone; `--code`
runs another checkout's `portal/` (e.g. main's, exported with `git archive`). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent


def serve(port: int, throttle: str) -> None:
    import uvicorn

    from portal.app import create_app
    from portal.config import Settings

    folder = Path(tempfile.mkdtemp(prefix="login-flood-"))
    options: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{folder / 'portal.db'}",
        "session_secret": "bench-secret",
        "simulator_url": "http://127.0.0.1:9",  # nothing listens: polls fail fast, back off
        "poll_max_backoff": 60.0,
        "ui_dist": folder / "no-ui",
    }
    fields = {f.name for f in dataclasses.fields(Settings)}
    if throttle == "off" and "login_account_tries" in fields:
        options.update(login_account_tries=10**9, login_address_tries=10**9)
    uvicorn.run(create_app(Settings(**options)), host="127.0.0.1", port=port, log_level="error")


async def flood(url: str, clients: int, seconds: float) -> None:
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            i = 0
            while time.monotonic() < deadline:
                email = "bob@acme.test" if i % 2 == 0 else f"spray{n}-{i}@flood.test"
                r = await http.post("/api/login", json={"email": email, "password": "wrong"})
                statuses[r.status_code] += 1
                i += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    print(json.dumps({str(k): v for k, v in sorted(statuses.items())}))


async def p50(http: httpx.AsyncClient, seconds: float) -> dict[str, float]:
    times = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        r = await http.get("/api/flavors")
        times.append(time.perf_counter() - started)
        assert r.status_code == 200, r.text
    return {
        "requests": len(times),
        "p50_ms": round(statistics.median(times) * 1000, 2),
        "p90_ms": round(statistics.quantiles(times, n=10)[-1] * 1000, 2),
    }


async def measure(args: argparse.Namespace, me: list[str], env: dict[str, str]) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = await asyncio.create_subprocess_exec(
        *me, "--serve", str(port), "--throttle", args.throttle, env=env
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            for _ in range(300):
                try:
                    r = await http.post(
                        "/api/login", json={"email": "alice@acme.test", "password": "demo"}
                    )
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            http.cookies.clear()
            http.headers["authorization"] = f"Bearer {r.json()['token']}"
            idle = await p50(http, 5)
            flooder = await asyncio.create_subprocess_exec(
                *me,
                "--flood",
                url,
                "--clients",
                str(args.clients),
                "--seconds",
                str(args.seconds),
                stdout=subprocess.PIPE,
            )
            await asyncio.sleep(1)  # let the flood build up
            during = await p50(http, args.seconds - 2)
            out, _ = await flooder.communicate()
        return {
            "code": args.code or "this checkout",
            "throttle": args.throttle,
            "clients": args.clients,
            "seconds": args.seconds,
            "idle": idle,
            "during_flood": during,
            "login_statuses": json.loads(out),
        }
    finally:
        server.terminate()
        await server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--throttle", choices=["on", "off"], default="on")
    parser.add_argument("--code", help="a folder holding another portal/ to measure")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--flood", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.throttle)
    elif args.flood:
        asyncio.run(flood(args.flood, args.clients, args.seconds))
    else:
        env = dict(os.environ)
        if args.code:
            env["PYTHONPATH"] = os.pathsep.join([str(Path(args.code).resolve()), str(HERE.parent)])
        me = [sys.executable, str(Path(__file__).resolve())]
        print(json.dumps(asyncio.run(measure(args, me, env)), indent=2))


if __name__ == "__main__":
    main()
