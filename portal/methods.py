"""`405 Method Not Allowed` names every method of the path in `Allow`.

FastAPI registers one route per method, and Starlette answers a wrong method from the first
route whose path matched: `OPTIONS /api/projects/1` said `Allow: GET` although PATCH and DELETE
exist. With the UI mounted at `/`, its static files would answer the 405 instead. The methods
come from the OpenAPI document, so `Allow` and the schema cannot disagree (schemathesis'
`allow_header_conformance` in tests/portal/test_schemathesis.py holds them to it).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def documented_methods(request: Request) -> list[str]:
    path = request.url.path
    for template, item in request.app.openapi()["paths"].items():
        regex, _, _ = compile_path(template)
        if regex.match(path):
            return sorted(method.upper() for method in item if method in HTTP_METHODS)
    return []


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
    methods = documented_methods(request)
    if methods:  # else an undocumented route's own (e.g. /api/admin/*)
        headers["Allow"] = ", ".join(methods)
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405, headers=headers)
