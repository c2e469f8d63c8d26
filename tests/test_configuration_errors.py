"""Misuse gets a message that names the fix: missing extras, SQLAlchemy URLs, typos, TLS."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
import ssl
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refetch import (
    BackendUnavailable,
    ConfigurationError,
    Publisher,
    UnknownUpdateType,
    UpdatesEndpoint,
    UpdateService,
)
from refetch.backends import PostgresBackend
from refetch.backends.postgres import notify_in_sqlalchemy, notify_in_transaction

from .conftest import POSTGRES_DSN, TYPES, SharedStream, Stream, serve, unique_name, wait_for

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter in which one driver is not installed: a meta-path finder refuses it
# exactly as Python does for a missing package (ModuleNotFoundError), whatever is in .venv.
BLOCKED = """
import sys
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
"""


def without(module: str, code: str) -> subprocess.CompletedProcess[str]:
    script = BLOCKED.format(module=module) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("module", "extra", "url"),
    [
        ("redis", "redis", "redis://127.0.0.1:6379/0"),
        ("asyncpg", "postgres", "postgresql://postgres@127.0.0.1/test"),
        ("asyncpg", "postgres", "postgresql+asyncpg://postgres@127.0.0.1/test"),
        ("nats", "nats", "nats://127.0.0.1:4222"),
    ],
)
def test_a_missing_extra_is_a_configuration_error_at_construction(
    module: str, extra: str, url: str
) -> None:
    result = without(
        module,
        f"""
        from refetch import ConfigurationError, UpdateService
        try:
            UpdateService(["projects"], backend={url!r})
        except ConfigurationError as exc:
            print(type(exc.__cause__).__name__, "|", exc)
        else:
            print("constructed")
        """,
    )
    assert result.returncode == 0, result.stderr
    cause, _, message = result.stdout.strip().partition(" | ")
    assert cause == "ModuleNotFoundError"
    assert f"needs the {module!r} package, which is not installed" in message
    assert message.endswith(f"pip install 'refetch[{extra}]'")


@pytest.mark.parametrize(
    ("module", "extra", "url"),
    [("redis", "redis", "redis://127.0.0.1:6379/0"), ("asyncpg", "postgres", POSTGRES_DSN)],
)
def test_a_missing_extra_is_named_for_leases_too(module: str, extra: str, url: str) -> None:
    result = without(
        module,
        f"""
        from refetch import ConfigurationError
        from refetch.leases import lease_from_url
        try:
            lease_from_url({url!r}, "weather")
        except ConfigurationError as exc:
            print(exc)
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"pip install 'refetch[{extra}]'")


def test_importing_refetch_needs_no_driver() -> None:
    for module in ("redis", "asyncpg", "nats"):
        result = without(module, "import refetch, refetch.backends, refetch.client; print('ok')")
        assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


async def test_a_sqlalchemy_url_works_as_the_postgres_backend_url(postgres_dsn: str) -> None:
    # Copied from the app's DATABASE_URL: driver in the scheme, SQLAlchemy's ssl= spelling.
    stream = SharedStream("postgres", unique_name("refetch_sa_url"))
    url = stream.url().replace("postgresql://", "postgresql+asyncpg://") + "&ssl=disable"
    backend = PostgresBackend(url)
    assert backend.url.startswith("postgresql://") and "sslmode=disable" in backend.url
    try:
        async with UpdateService(TYPES, backend=url, close_on_signals=False) as hub:
            cursor = await hub.publish("projects", key="1")
            assert cursor.endswith(f".{await backend_head(url)}")
    finally:
        await stream.cleanup()


async def backend_head(url: str) -> int:
    backend = PostgresBackend(url)
    await backend.connect()
    try:
        return await backend.head()
    finally:
        await backend.aclose()


class Kind(enum.StrEnum):
    projects = "projects"
    compute = "compute"


@pytest.fixture
async def updates_table(postgres_dsn: str) -> AsyncIterator[str]:
    stream = SharedStream("postgres", unique_name("refetch_tx"))
    backend = PostgresBackend(stream.url())
    await backend.connect()  # creates the tables
    await backend.aclose()
    try:
        yield stream.name
    finally:
        await stream.cleanup()


async def test_notify_in_transaction_refuses_a_typo_and_a_type_it_cannot_check(
    updates_table: str,
) -> None:
    import asyncpg

    service = UpdateService(Kind, close_on_signals=False)
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        async with conn.transaction():
            with pytest.raises(UnknownUpdateType) as typo:
                await notify_in_transaction(
                    conn, "projets", "1", types=service, table=updates_table
                )
            assert (
                str(typo.value)
                == "unknown update type(s) 'projets'; known types: compute, projects"
            )
            with pytest.raises(ConfigurationError, match=r"pass types= \(your UpdateService"):
                await notify_in_transaction(conn, "projects", "1", table=updates_table)
            with pytest.raises(UnknownUpdateType):
                await notify_in_transaction(conn, "image", types=["projects"], table=updates_table)
            with pytest.raises(ConfigurationError, match="one string"):
                await notify_in_transaction(conn, "projects", types="projects", table=updates_table)
            with pytest.raises(ConfigurationError, match="a str or an enum member, not 42"):
                await notify_in_transaction(conn, 42, table=updates_table)  # type: ignore[arg-type]
            # What is declared goes through: an enum member alone, or a str with types=.
            await notify_in_transaction(conn, Kind.compute, 7, table=updates_table)
            await notify_in_transaction(conn, "projects", types=Kind, table=updates_table)
            await notify_in_transaction(conn, "projects", "2", types=service, table=updates_table)
        rows = await conn.fetch(f'SELECT payload FROM "{updates_table}" ORDER BY id')
    finally:
        await conn.close()
    assert [json.loads(r["payload"]) for r in rows] == [
        {"t": "compute", "k": "7"},
        {"t": "projects"},
        {"t": "projects", "k": "2"},
    ]


async def test_notify_in_sqlalchemy_refuses_a_typo(updates_table: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://"))
    try:
        async with engine.begin() as conn:
            with pytest.raises(UnknownUpdateType):
                await notify_in_sqlalchemy(conn, "computer", types=Kind, table=updates_table)
            await notify_in_sqlalchemy(conn, Kind.projects, "9", table=updates_table)
            rows = (await conn.execute(text(f'SELECT payload FROM "{updates_table}"'))).all()
    finally:
        await engine.dispose()
    assert [json.loads(r[0]) for r in rows] == [{"t": "projects", "k": "9"}]


# NATS: what failed, naming the URL, within the connect timeout.


@pytest.fixture
def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A server-side TLS context with a certificate no one signed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@contextlib.asynccontextmanager
async def nats_requiring_tls(context: ssl.SSLContext) -> AsyncIterator[int]:
    """A server that speaks NATS's INFO, requires TLS, and handshakes with ``context``."""
    info = {"server_id": "fake", "version": "2.10.0", "max_payload": 1048576}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"INFO " + json.dumps({**info, "tls_required": True}).encode() + b"\r\n")
            await writer.drain()
            await writer.start_tls(context)
            await reader.read()
        except (ssl.SSLError, ConnectionError):
            pass  # the client refused the certificate: what the test is about
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_a_failed_tls_handshake_is_named_with_the_url(self_signed: ssl.SSLContext) -> None:
    from refetch.backends import NatsBackend

    async with nats_requiring_tls(self_signed) as port:
        backend = NatsBackend(f"tls://127.0.0.1:{port}", stream=unique_name("refetch_tls"))
        with pytest.raises(BackendUnavailable) as info:
            async with asyncio.timeout(30):
                await backend.connect()
        await backend.aclose()
    message = str(info.value)
    assert message.startswith(f"cannot reach NATS JetStream at tls://127.0.0.1:{port}: ")
    assert "TLS handshake failed: CERTIFICATE_VERIFY_FAILED" in message


async def test_tls_to_a_nats_without_tls_is_refused_not_downgraded(nats_url: str) -> None:
    from refetch.backends import NatsBackend

    url = nats_url.replace("nats://", "tls://")
    backend = NatsBackend(url, stream=unique_name("refetch_tls"))
    with pytest.raises(BackendUnavailable, match="does not offer TLS"):
        await backend.connect()
    await backend.aclose()


async def test_an_unreachable_nats_names_the_url_and_the_refused_connection() -> None:
    from refetch.backends import NatsBackend

    backend = NatsBackend("nats://127.0.0.1:1", stream="unused")
    with pytest.raises(BackendUnavailable) as info:
        async with asyncio.timeout(30):
            await backend.connect()
    await backend.aclose()
    assert str(info.value).startswith("cannot reach NATS JetStream at nats://127.0.0.1:1: ")
    assert "ConnectionRefusedError" in str(info.value)


# PostgreSQL for apps whose migrations own the schema: the SQL of docs/scaling.md, run for a
# role that may not CREATE.


def doc_sql(marker: str) -> str:
    """The ```sql block right after ``<!-- marker -->`` in docs/scaling.md."""
    lines = (ROOT / "docs" / "scaling.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"<!-- {marker} -->")
    assert lines[start + 1].strip() == "```sql", f"docs/scaling.md:{start + 2}: no ```sql block"
    end = next(i for i in range(start + 2, len(lines)) if lines[i].strip() == "```")
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    return "\n".join(line[indent:] for line in lines[start + 2 : end]) + "\n"


def test_the_documented_schema_is_what_the_backend_creates() -> None:
    from refetch.backends.postgres import schema_sql
    from refetch.leases import lease_schema_sql

    assert doc_sql("schema_sql()") == schema_sql()
    assert doc_sql("lease_schema_sql()") == lease_schema_sql()


async def test_a_role_without_create_streams_through_tables_made_by_a_migration(
    postgres_dsn: str,
) -> None:
    import asyncpg

    from refetch.backends.postgres import schema_sql
    from refetch.leases import lease_from_url, lease_schema_sql

    schema, role, table = unique_name("pyc_schema"), unique_name("pyc_app"), unique_name("upd")
    grants = (
        doc_sql("grants")
        .replace("refetch_updates", table)
        .replace("refetch_pollers", f"{table}_pollers")
        .replace(" TO app;", f" TO {role};")
    )
    admin = await asyncpg.connect(postgres_dsn)
    await admin.execute(f"CREATE SCHEMA {schema}; CREATE ROLE {role} LOGIN")
    await admin.execute(f"GRANT USAGE ON SCHEMA {schema} TO {role}")  # no CREATE
    # asyncpg sends unknown URL parameters as settings: this role's tables are in `schema`.
    url = postgres_dsn.replace("postgres@", f"{role}@", 1) + f"?search_path={schema}&table={table}"
    try:
        missing = UpdateService(TYPES, backend=url + "&create_tables=false", close_on_signals=False)
        with pytest.raises(BackendUnavailable) as info:
            await missing.start()
        assert f"the tables {table} and {table}_meta are missing" in str(info.value)
        assert "schema_sql()" in str(info.value)

        denied = UpdateService(TYPES, backend=url, close_on_signals=False)
        with pytest.raises(BackendUnavailable, match="permission denied for schema"):
            await denied.start()

        await admin.execute(f"SET search_path TO {schema}")
        await admin.execute(schema_sql(table))
        await admin.execute(lease_schema_sql(f"{table}_pollers"))
        await admin.execute(grants)
        async with (
            UpdateService(
                TYPES, backend=url + "&create_tables=false", close_on_signals=False
            ) as hub,
            serve(UpdatesEndpoint(hub)) as endpoint,
            Stream(endpoint) as client,
        ):
            await hub.publish("projects", key="1")
            await hub.publish("compute")
            await wait_for(lambda: client.saw("compute"), 10)
            assert client.saw("projects", "1")
            rows = await admin.fetch(f'SELECT payload FROM "{table}" ORDER BY id')
        assert [json.loads(r["payload"]) for r in rows] == [
            {"t": "projects", "k": "1"},
            {"t": "compute"},
        ]
        lease = lease_from_url(url + "&create_tables=false", "weather")
        try:
            assert await lease.acquire()
            assert await lease.publish('{"value": 1}', changed=True)
            assert await lease.snapshot() == '{"value": 1}'
        finally:
            await lease.aclose()
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE; DROP ROLE {role}")
        await admin.close()


async def test_rediss_to_a_plain_redis_says_the_tls_handshake_got_no_answer(
    redis_url: str,
) -> None:
    url = redis_url.replace("redis://", "rediss://") + f"?stream={unique_name('refetch_tls')}"
    hub = UpdateService(TYPES, backend=url, close_on_signals=False)
    with pytest.raises(BackendUnavailable) as info:
        async with asyncio.timeout(30):
            await hub.start()
    assert str(info.value).startswith(f"cannot reach Redis at {url.partition('?')[0]}")
    assert "no answer to the TLS handshake: does this port speak TLS?" in str(info.value)


class _Recording:
    """An asyncpg connection stand-in: what notify_in_transaction would write."""

    def __init__(self) -> None:
        self.payloads: list[str] = []

    async def execute(self, sql: str, payload: str, channel: str) -> None:
        self.payloads.append(payload)


_type_names = st.lists(
    st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8),
    min_size=1,
    max_size=4,
    unique=True,
)


@settings(max_examples=60, deadline=None)
@given(names=_type_names, form=st.sampled_from(["list", "tuple", "enum", "members"]))
def test_every_types_argument_reads_the_same_declaration(names: list[str], form: str) -> None:
    # UpdateService, Publisher and notify_in_transaction take types= one way: names, their
    # enum or its members give the same declared names, in order.
    kind = enum.Enum("Kind", {f"m{i}": name for i, name in enumerate(names)})  # type: ignore[misc]
    spec: Any = {
        "list": list(names),
        "tuple": tuple(names),
        "enum": kind,
        "members": list(kind),
    }[form]
    service = UpdateService(spec, close_on_signals=False)
    assert service.types == tuple(names)
    assert Publisher("redis://127.0.0.1:6379/0", types=spec).types == tuple(names)
    for declared in (spec, service):
        conn = _Recording()
        asyncio.run(notify_in_transaction(conn, names[-1], types=declared))
        assert json.loads(conn.payloads[0]) == {"t": names[-1]}
        with pytest.raises(UnknownUpdateType):
            asyncio.run(notify_in_transaction(conn, names[0] + "x", types=declared))


@given(name=_type_names.map(lambda names: names[0]))
def test_one_string_of_types_is_refused_everywhere_naming_the_list(name: str) -> None:
    # "projects" is an iterable of eight letters: each entry point refuses it, and the
    # message shows the list to write. (The Publisher used to declare the letters.)
    with pytest.raises(ConfigurationError, match=re.escape(f'UpdateService(["{name}"])')):
        UpdateService(name, close_on_signals=False)
    with pytest.raises(ConfigurationError, match=re.escape(f'types=["{name}"]')):
        Publisher("redis://127.0.0.1:6379/0", types=name)
    with pytest.raises(ConfigurationError, match=re.escape(f'types=["{name}"]')):
        asyncio.run(notify_in_transaction(_Recording(), name, types=name))
