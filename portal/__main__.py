"""`python -m portal`: serve the portal on HOST:PORT (127.0.0.1:8000)."""

from __future__ import annotations

import logging

import uvicorn

from .app import create_app
from .config import Settings
from .http_limits import HttpLimits, default_max_connections, limited_protocol
from .seed import DEMO_PASSWORD, DEMO_USERS


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll is noise
    settings = Settings.from_env()
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"portal: {url}  (API docs: {url}/docs, updates: {url}/api/updates)")
    print(f"simulator expected at {settings.simulator_url} (python -m portal.simulator)")
    print(f"demo logins (password {DEMO_PASSWORD!r}):")
    for email, _, tenant, role in DEMO_USERS:
        print(f"  {email:<20} {role} of {tenant}")
    limits = HttpLimits(
        max_header_bytes=settings.max_header_bytes,
        max_headers=settings.max_headers,
        header_timeout=settings.header_timeout,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections or default_max_connections(),
    )
    print(
        f"http limits: {limits.max_connections} connections, request head "
        f"{limits.max_header_bytes} bytes / {limits.max_headers} lines / {limits.header_timeout} s"
        f", body {limits.max_body_bytes} bytes / {limits.body_timeout} s"
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        http=limited_protocol(limits),
        ws="none",  # no WebSocket routes: an Upgrade must not hand the socket to another parser
    )


if __name__ == "__main__":
    main()
