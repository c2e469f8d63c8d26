"""The names an excerpt about configuration takes for granted: refetch's public API, a list of
update types, a poller list, the backend URL and an app's own Redis client."""

from __future__ import annotations

import os
from typing import Any


def setup(ns: dict[str, Any]) -> None:
    import redis.asyncio

    import refetch

    ns.update({name: getattr(refetch, name) for name in refetch.__all__})
    ns["types"] = ["progress", "projects", "compute"]
    ns["pollers"] = [refetch.poller("progress", url="http://127.0.0.1:9/state")]
    url = os.environ.get("REFETCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    ns["BACKEND_URL"] = ns["BACKEND"] = url
    ns["app_redis"] = redis.asyncio.Redis.from_url(url)


async def teardown(ns: dict[str, Any]) -> None:
    await ns["app_redis"].aclose()
