# The names the typed recipes of docs/ assume (tests/test_docs.py, "typed"), with their types.
from starlette.middleware.sessions import SessionMiddleware

import refetch
from refetch import UpdatesEndpoint, UpdateService

updates = UpdateService(["projects"])
endpoint = UpdatesEndpoint(updates)
__all__ = ["SessionMiddleware", "endpoint", "refetch", "updates"]
