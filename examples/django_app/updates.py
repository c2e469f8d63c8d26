"""The hub: one per process. With several uvicorn workers give it a backend
(REFETCH_BACKEND_URL=redis://...), so a notify in one worker reaches every worker's streams."""

from __future__ import annotations

import os

from refetch import UpdateService

updates = UpdateService(
    types=["projects", "progress"],
    backend=os.environ.get("REFETCH_BACKEND_URL") or None,
)
