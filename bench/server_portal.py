"""The reference portal itself as the server under test (``portal.create_app``, unchanged).

    python bench/server_portal.py --port 8000 [--heartbeat 15]

Streams are the portal's own ``GET /api/updates``, authenticated by its bearer tokens
(``POST /api/login``; every stream looks its session up in the database), and a fan-out is
a real API call: ``PATCH /api/projects/{id}`` renames a project, which notifies
``projects`` with ``audience={"tenant:<slug>"}`` after the commit, so only that tenant's
streams hear it. The only addition is ``GET /stats`` (the bench statistics), answered by a
wrapper in front of the app before the portal sees the request; everything else is the
portal's app with its middleware (ETag), lifespan, pollers and compute provider. The
database is a fresh SQLite file in a temporary folder; the pollers point at a closed port
on 127.0.0.1 (no simulator runs), so they fail fast and back off.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from _serving import Counters, Receive, Scope, Send, arguments, send_json, serve, stats

from portal.app import create_app
from portal.config import Settings


def build(args: Any, folder: Path) -> Any:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{folder / 'portal.db'}",
        session_secret="bench-secret",
        simulator_url="http://127.0.0.1:9",  # discard port: nothing listens, polls fail fast
        poll_max_backoff=60.0,
        min_interval=args.min_interval,
        heartbeat=args.heartbeat,
        ui_dist=folder / "no-ui",
    )
    portal = create_app(settings)
    updates = portal.state.updates
    counters = Counters()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/stats":
            s = updates.statistics()
            await send_json(
                send,
                stats(
                    counters,
                    s.connections,
                    server="portal",
                    frames=s.frames,
                    deliveries=s.deliveries,
                ),
            )
            return
        await portal(scope, receive, send)

    return app


if __name__ == "__main__":
    parser = arguments(__doc__ or "")
    parser.add_argument("--min-interval", type=float, default=0.1)
    parser.set_defaults(gc_freeze=False)
    arguments_ = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="refetch-bench-portal-") as tmp:
        serve(build(arguments_, Path(tmp)), arguments_.port)
