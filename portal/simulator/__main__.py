"""`python -m portal.simulator`: the simulated external APIs on 127.0.0.1:3000.

SIM_HOST, SIM_PORT and SIM_TICK (seconds per step of the world) override the defaults.
"""

from __future__ import annotations

import os

import uvicorn

from .app import create_app


def main() -> None:
    host = os.environ.get("SIM_HOST", "127.0.0.1")
    port = int(os.environ.get("SIM_PORT", "3000"))
    tick = float(os.environ.get("SIM_TICK", "1.0"))
    print(f"simulator: http://{host}:{port}  (knobs: GET/PUT http://{host}:{port}/control)")
    uvicorn.run(create_app(tick=tick), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    main()
