"""Django and refetch in one ASGI application.

Django's ASGI handler serves HTTP only and refuses the ``lifespan`` scope, so this small
dispatcher answers the lifespan itself (starting and stopping the hub), sends
``/api/updates`` to refetch's endpoint and everything else to Django.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "examples.django_app.settings")
django_app = get_asgi_application()  # sets Django up: import models and signals after it

from refetch import UpdatesEndpoint  # noqa: E402

from .updates import updates  # noqa: E402

endpoint = UpdatesEndpoint(updates)


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "http" and scope["path"] == "/api/updates":
        await endpoint(scope, receive, send)
    else:
        await django_app(scope, receive, send)


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await updates.start()
            except Exception as exc:  # e.g. the backend is unreachable: say so, do not serve
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await updates.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
