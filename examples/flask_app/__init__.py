"""Flask (WSGI) publishing into the stream that ASGI servers serve (docs/frameworks.md).

The Flask process runs no streams: ``refetch.Publisher`` appends each update to the
shared Redis stream (or PostgreSQL table), and every ASGI server whose
``UpdateService(backend=...)`` reads that stream tells its clients.

    REFETCH_BACKEND_URL=redis://127.0.0.1:6379/0 flask --app examples.flask_app run
"""

from __future__ import annotations

import atexit
import os
import threading

from flask import Flask, abort, request

from refetch import Publisher

TYPES = ["projects", "compute"]


def create_app(backend_url: str | None = None) -> Flask:
    app = Flask(__name__)
    url = backend_url or os.environ.get("REFETCH_BACKEND_URL", "redis://127.0.0.1:6379/0")
    # One per process: thread-safe, connects on the first notify; types= catches typos.
    publisher = Publisher(url, types=TYPES)
    atexit.register(publisher.close)
    app.extensions["refetch"] = publisher
    projects: dict[str, str] = {}
    lock = threading.Lock()

    @app.post("/api/projects")
    def create_project() -> tuple[dict[str, str], int]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("name"), str):
            abort(400, description='send {"name": "..."}')
        with lock:  # the "transaction": commit first, then notify
            project_id = str(len(projects) + 1)
            projects[project_id] = body["name"]
        cursor = publisher.notify("projects", key=project_id)
        return {"id": project_id, "cursor": cursor}, 201

    @app.get("/api/projects")
    def list_projects() -> dict[str, dict[str, str]]:
        return {"projects": dict(projects)}

    return app
