"""The OpenAPI document says what the server answers: schemathesis against `python -m portal`.

As each demo user (alice: acme admin, bob: acme member, carol: globex admin), schemathesis'
CLI generates requests from the schema (its explicit examples, its coverage cases, including
the wrong-method probes, and a few fuzzed ones per operation) and checks every answer: a
status the schema declares, an `Allow` that lists the path's methods, schema-valid data
accepted, no 5xx, bodies that match their schema. Fixed seed and example count: about 500
cases a user, a few seconds each. The update stream (endless) and logout (it would end the
run's session) are left out.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import httpx
import pytest

from .conftest import portal_process

USERS = ["alice@acme.test", "bob@acme.test", "carol@globex.test"]
CHECKS = [
    "status_code_conformance",
    "allow_header_conformance",
    "positive_data_acceptance",
    "not_a_server_error",
    "response_schema_conformance",
]


async def schemathesis_run(url: str, email: str, folder: Path) -> str | None:
    """One run as `email`: None when it passed, else its report."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        r = await http.post("/api/login", json={"email": email, "password": "demo"})
        token = r.raise_for_status().json()["token"]
    run = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        f"{url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        ",".join(CHECKS),
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "5",
        "--seed",
        "20",
        "--exclude-path",
        "/api/updates",
        "--exclude-operation-id",
        "logout",
        "--exclude-operation-id",
        "deleteAllSessions",  # signs the run's own session out, as logout does
        "--request-timeout",
        "10",
        cwd=folder,  # its cache folder
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await run.communicate()
    return None if run.returncode == 0 else f"--- as {email}:\n{output.decode(errors='replace')}"


@pytest.mark.timeout(240)
async def test_the_api_answers_only_what_its_openapi_document_says(tmp_path: Path) -> None:
    for email in USERS:
        (tmp_path / email).mkdir()
    async with portal_process(tmp_path) as port:
        url = f"http://127.0.0.1:{port}"
        reports = await asyncio.gather(
            *(schemathesis_run(url, email, tmp_path / email) for email in USERS)
        )
    failures = [report for report in reports if report is not None]
    assert not failures, "\n".join(failures)
