"""``refetch tags``: the schema tags module (docs/js.md, "Tags from the schema"), from a file, a
URL and ``module:app``, byte for byte the same; ``--check`` catching a stale file; bad input
named. The app is js/test/servers/declared.py, whose committed module js/test/orval.test.ts uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.services import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ROOT / "js/test/servers"
COMMITTED = ROOT / "js/test/orval/refetch-tags.ts"


def refetch(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "refetch.cli", "tags", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_module_app_gives_the_committed_module_one_line_per_read_operation() -> None:
    result = refetch("declared:app", cwd=SERVERS)
    assert result.returncode == 0, result.stderr
    # The committed module of the orval test is what the command writes today.
    assert result.stdout == COMMITTED.read_text()
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("{ id")]
    # GET operations only (the mutations declare no reads), ordered by path, keys from the path.
    assert lines == [
        '{ id: "listImages", method: "get", path: "/api/images", reads: [{ type: "images" }] },',
        '{ id: "getProgress", method: "get", path: "/api/progress", reads: [] },',
        '{ id: "listProjects", method: "get", path: "/api/projects", reads: [{ type: "projects" }] },',
        '{ id: "getProject", method: "get", path: "/api/projects/{project_id}", '
        'reads: [{ type: "projects", key: "project_id" }] },',
        '{ id: "listTasks", method: "get", path: "/api/projects/{project_id}/tasks", '
        'reads: [{ type: "tasks", key: "project_id" }] },',
    ]


def test_a_file_and_a_url_give_the_same_bytes(tmp_path: Path) -> None:
    schema = tmp_path / "openapi.json"
    dumped = subprocess.run(
        [sys.executable, str(SERVERS / "declared.py"), "--openapi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    # Keys in another order: the module does not depend on the document's layout.
    schema.write_text(json.dumps(json.loads(dumped)))
    out = tmp_path / "tags.ts"
    assert refetch(str(schema), "-o", str(out)).returncode == 0
    assert out.read_text() == COMMITTED.read_text()

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(SERVERS / "declared.py")],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/progress").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        result = refetch(f"http://127.0.0.1:{port}/openapi.json")
        assert result.returncode == 0, result.stderr
        assert result.stdout == COMMITTED.read_text()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_check_fails_on_a_stale_module_naming_the_command(tmp_path: Path) -> None:
    out = tmp_path / "tags.ts"
    assert refetch("declared:app", "-o", str(out), cwd=SERVERS).returncode == 0
    assert refetch("declared:app", "-o", str(out), "--check", cwd=SERVERS).returncode == 0
    out.write_text(out.read_text().replace('key: "project_id"', 'key: "id"', 1))
    stale = refetch("declared:app", "-o", str(out), "--check", cwd=SERVERS)
    assert stale.returncode == 1
    assert "out of date" in stale.stderr and f"refetch tags declared:app -o {out}" in stale.stderr


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("no-such-file.json", "no file, no http(s) URL and no module:app"),
        ("json:dumps", "has no openapi() method"),
        ("pyproject.toml", "Expecting value"),
    ],
)
def test_bad_input_is_named(source: str, message: str) -> None:
    result = refetch(source)
    assert result.returncode == 2
    assert source in result.stderr and message in result.stderr


def test_a_document_without_paths_is_refused(tmp_path: Path) -> None:
    schema = tmp_path / "openapi.json"
    schema.write_text(json.dumps({"swagger": "2.0"}))
    result = refetch(str(schema))
    assert result.returncode == 2 and "not an OpenAPI 3 document" in result.stderr
