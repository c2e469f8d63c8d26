"""An asyncpg connection whose ``search_path`` is a schema of its own (the updates tables
and a ``projects`` table in it), the app's ``updates``, and a check of what got committed."""

from __future__ import annotations

import json
import os
import uuid
from typing import Any


async def setup(ns: dict[str, Any]) -> None:
    import asyncpg

    from refetch import UpdateService
    from refetch.backends.postgres import schema_sql

    dsn = os.environ.get("REFETCH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    schema = f"snippet_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f"CREATE SCHEMA {schema}")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    await conn.execute(schema_sql())
    await conn.execute("CREATE TABLE projects (id int PRIMARY KEY, name text)")
    await conn.execute("INSERT INTO projects VALUES (42, 'before')")
    ns.update(conn=conn, _admin=admin, _schema=schema)
    ns["updates"] = UpdateService(["projects", "compute"], close_on_signals=False)


async def check(ns: dict[str, Any]) -> None:
    conn = ns["conn"]
    payloads = [json.loads(r["payload"]) for r in await conn.fetch("SELECT * FROM refetch_updates")]
    assert payloads == [{"t": "projects", "k": "42", "a": ["tenant:acme"]}], payloads
    assert await conn.fetchval("SELECT name FROM projects WHERE id = 42") == "renamed"


async def teardown(ns: dict[str, Any]) -> None:
    await ns["conn"].close()
    await ns["_admin"].execute(f"DROP SCHEMA {ns['_schema']} CASCADE")
    await ns["_admin"].close()
