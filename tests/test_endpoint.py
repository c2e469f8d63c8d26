"""Protocol v1 end to end: a real uvicorn server on a loopback port, real HTTP clients."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from httpx_sse import aconnect_sse

from refetch import Principal, UpdatesEndpoint, UpdateService
from refetch._types import ASGIApp, Message, Receive, Scope, Send

from .conftest import TYPES, Stream, serve, token_auth, wait_for


async def test_stream_headers_and_hello(base_url: str, service: UpdateService) -> None:
    async with httpx.AsyncClient() as http, http.stream("GET", base_url) as r:
        assert r.status_code == 200
        assert r.headers["content-type"] == "text/event-stream"
        assert r.headers["cache-control"] == "no-store, no-transform"
        assert r.headers["content-encoding"] == "identity"
        assert r.headers["x-accel-buffering"] == "no"
        first = await anext(r.aiter_raw())
    cursor = service.cursor
    assert (
        first
        == (
            f"retry: 2000\nid: {cursor}\nevent: hello\n"
            f'data: {{"cursor":"{cursor}","heartbeat":15.0,"types":{json.dumps(TYPES, separators=(",", ":"))}}}\n\n'
        ).encode()
    )


def numbering_middleware(app: ASGIApp) -> ASGIApp:
    """Raw ASGI middleware that appends ``x-request-id: <n>`` to the response's own list."""
    numbers = iter(range(1, 1_000_000))

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        number = str(next(numbers)).encode()

        async def numbered(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"].append((b"x-request-id", number))
            await send(message)

        await app(scope, receive, numbered)

    return wrapped


async def test_headers_added_by_middleware_do_not_leak_into_the_next_stream(
    service: UpdateService,
) -> None:
    async with serve(numbering_middleware(UpdatesEndpoint(service))) as url:
        async with httpx.AsyncClient() as http:
            for number in range(1, 5):
                async with http.stream("GET", url) as r:
                    assert r.status_code == 200
                    assert r.headers.get_list("x-request-id") == [str(number)]
                    assert r.headers.get_list("content-type") == ["text/event-stream"]
                    assert b"event: hello" in await anext(r.aiter_raw())


async def test_headers_added_by_middleware_do_not_leak_into_the_next_error_response() -> None:
    tokens = {"viewer": Principal.of("u1", types=["progress"])}
    requests = [
        ("GET", "?types=nope", {}, 400),
        ("POST", "", {}, 405),
        ("GET", "", {"authorization": "Bearer nobody"}, 401),
        ("GET", "?types=projects", {"authorization": "Bearer viewer"}, 403),
    ]
    async with UpdateService(TYPES, close_on_signals=False) as hub:
        endpoint = UpdatesEndpoint(hub, authenticate=token_auth(tokens))
        async with serve(numbering_middleware(endpoint)) as url, httpx.AsyncClient() as http:
            number = 0

            async def check(method: str, target: str, headers: dict[str, str], status: int) -> None:
                nonlocal number
                number += 1
                r = await http.request(method, target, headers=headers)
                assert r.status_code == status
                assert r.headers.get_list("x-request-id") == [str(number)]
                assert r.headers["content-length"] == str(len(r.content))
                assert r.json()["error"]

            for _ in range(2):
                for method, query, headers, status in requests:
                    await check(method, url + query, headers, status)
            hub.close_streams("shutdown")  # draining: 503 from now on
            for _ in range(2):
                await check("GET", url, {"authorization": "Bearer viewer"}, 503)


async def test_notify_reaches_the_stream_with_type_and_key(
    base_url: str, service: UpdateService
) -> None:
    async with Stream(base_url) as stream:
        service.notify("projects", key="42")
        await wait_for(lambda: stream.of("invalidate"))
        frame = stream.of("invalidate")[0]
        assert frame.data == {"updates": [{"type": "projects", "keys": ["42"]}]}
        assert frame.id == service.cursor


async def test_types_filter_only_delivers_requested_types(
    base_url: str, service: UpdateService
) -> None:
    async with Stream(base_url, types=["compute"]) as stream:
        assert stream.frames[0].data["types"] == ["compute"]
        service.notify("projects")
        service.notify("compute", key="vm-1")
        await wait_for(lambda: stream.of("invalidate"))
        await service.publish("progress")
        await service.publish("compute", key="vm-2")
        await wait_for(lambda: ("compute", "vm-2") in stream.invalidated())
        assert {t for t, _ in stream.invalidated()} == {"compute"}


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("types=nope", "unknown_type"),
        ("types=projects,", "malformed_types"),
        ("types=", "malformed_types"),
    ],
)
async def test_bad_types_parameter_is_a_400_listing_known_types(
    base_url: str, query: str, error: str
) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{base_url}?{query}")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == error
    assert body["known"] == TYPES


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
async def test_methods_other_than_get_are_405(base_url: str, method: str) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.request(method, base_url)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    if method != "HEAD":
        assert r.json()["error"] == "method_not_allowed"


async def test_unauthenticated_is_401_json_before_any_stream(service: UpdateService) -> None:
    endpoint = UpdatesEndpoint(service, authenticate=token_auth({}))
    async with serve(endpoint) as url, httpx.AsyncClient() as http:
        r = await http.get(url, headers={"authorization": "Bearer nobody"})
    assert r.status_code == 401
    assert r.json()["error"] == "unauthorized"
    assert service.statistics().connections == 0


async def test_type_outside_the_principals_types_is_403(service: UpdateService) -> None:
    tokens = {"viewer": Principal.of("u1", types=["progress"])}
    endpoint = UpdatesEndpoint(service, authenticate=token_auth(tokens))
    async with serve(endpoint) as url, httpx.AsyncClient() as http:
        r = await http.get(f"{url}?types=projects", headers={"authorization": "Bearer viewer"})
    assert r.status_code == 403
    assert r.json()["forbidden"] == ["projects"]


async def test_resume_with_known_cursor_replays_one_merged_invalidate(
    base_url: str, service: UpdateService
) -> None:
    cursor = service.cursor
    await service.publish("projects", key="1")
    await service.publish("projects", key="2")
    await service.publish("compute")
    await service.publish("projects", key="1")
    async with Stream(base_url, last_event_id=cursor) as stream:
        await wait_for(lambda: len(stream.frames) >= 2)
        hello, replay = stream.frames[:2]
        assert hello.event == "hello"
        assert hello.id is None  # the client keeps its cursor until the replay moves it
        assert replay.event == "invalidate"
        assert replay.id == service.cursor
        assert replay.data == {
            "updates": [{"type": "projects", "keys": ["1", "2"]}, {"type": "compute"}]
        }


async def test_resume_via_query_parameter_for_recreated_eventsources(
    base_url: str, service: UpdateService
) -> None:
    cursor = service.cursor
    await service.publish("images")
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", f"{base_url}?lastEventId={cursor}") as r,
    ):
        text = ""
        async for chunk in r.aiter_text():
            text += chunk
            if "event: invalidate" in text and text.endswith("\n\n"):
                break
    assert '{"updates":[{"type":"images"}]}' in text


async def test_resume_with_current_cursor_replays_nothing(
    base_url: str, service: UpdateService
) -> None:
    await service.publish("images")
    async with Stream(base_url, last_event_id=service.cursor) as stream:
        await service.publish("compute")
        await wait_for(lambda: stream.of("invalidate"))
        assert stream.invalidated() == {("compute", None)}
        assert not stream.of("resync")


@pytest.mark.parametrize(
    "cursor", ["garbage", "deadbeef.1", "", "0.0.0", "%%%", "{epoch}.999999", "{epoch}.-1"]
)
async def test_unknown_or_foreign_cursor_gets_resync_not_an_error(
    base_url: str, service: UpdateService, cursor: str
) -> None:
    cursor = cursor.format(epoch=service.cursor.split(".")[0])
    async with (
        httpx.AsyncClient() as http,
        http.stream("GET", base_url, headers={"last-event-id": cursor}) as r,
    ):
        assert r.status_code == 200
        text = ""
        async for chunk in r.aiter_text():
            text += chunk
            if text.count("\n\n") >= (2 if cursor else 1):
                break
    if cursor:
        assert "event: resync" in text
        assert f"id: {service.cursor}\n" in text
    else:  # an empty Last-Event-ID means a fresh connection
        assert text.startswith("retry: 2000\nid: ")


async def test_cursor_older_than_the_replay_log_gets_resync() -> None:
    async with UpdateService(TYPES, replay_size=2, close_on_signals=False) as hub:
        old = hub.cursor
        for _ in range(3):
            await hub.publish("projects")
        async with serve(UpdatesEndpoint(hub)) as url, Stream(url, last_event_id=old) as stream:
            await wait_for(lambda: stream.of("resync"))
            assert stream.of("resync")[0].data == {"reason": "cursor too old"}
            assert hub.statistics().resyncs == 1


async def test_audience_isolation_live_and_on_replay(service: UpdateService) -> None:
    tokens = {
        "alice": Principal.of("alice", ["tenant:acme", "user:alice"]),
        "carol": Principal.of("carol", ["tenant:globex", "user:carol"]),
    }
    endpoint = UpdatesEndpoint(service, authenticate=token_auth(tokens))
    start = service.cursor
    async with serve(endpoint) as url:
        async with (
            Stream(url, headers={"authorization": "Bearer alice"}) as alice,
            Stream(url, headers={"authorization": "Bearer carol"}) as carol,
        ):
            service.notify("projects", key="acme-1", audience={"tenant:acme"})
            service.notify("projects", key="globex-1", audience={"tenant:globex"})
            service.notify("progress")  # everyone
            await wait_for(lambda: ("progress", None) in carol.invalidated())
            await wait_for(lambda: ("progress", None) in alice.invalidated())
            assert ("projects", "acme-1") in alice.invalidated()
            assert ("projects", "globex-1") not in alice.invalidated()
            assert ("projects", "acme-1") not in carol.invalidated()
        async with Stream(
            url, headers={"authorization": "Bearer carol"}, last_event_id=start
        ) as replay:
            await wait_for(lambda: replay.of("invalidate"))
            assert replay.invalidated() == {("projects", "globex-1"), ("progress", None)}


async def test_reauthorize_stops_a_revoked_tenant_at_once(service: UpdateService) -> None:
    tokens = {"bob": Principal.of("bob", ["tenant:acme", "user:bob"])}
    endpoint = UpdatesEndpoint(service, authenticate=token_auth(tokens))
    async with serve(endpoint) as url, Stream(url, headers={"authorization": "Bearer bob"}) as bob:
        assert service.reauthorize("bob", Principal.of("bob", ["user:bob"])) == 1
        service.notify("projects", key="secret", audience={"tenant:acme"})
        service.notify("authentication", audience={"user:bob"})
        await wait_for(lambda: ("authentication", None) in bob.invalidated())
        assert ("projects", "secret") not in bob.invalidated()


async def test_burst_is_coalesced_with_leading_and_trailing_edge(service: UpdateService) -> None:
    async with serve(UpdatesEndpoint(service)) as url, Stream(url) as stream:
        service.notify("projects", key="first")
        await wait_for(lambda: stream.of("invalidate"))
        # Leading edge: the first update of a quiet connection went out alone, at once.
        assert stream.of("invalidate")[0].data == {
            "updates": [{"type": "projects", "keys": ["first"]}]
        }
        for i in range(200):
            service.notify("compute", key=str(i))
            if i % 20 == 0:
                await asyncio.sleep(0)
        last = await service.publish("compute", key="last")
        await wait_for(lambda: any(f.id == last for f in stream.frames))
        # 201 updates in a burst: a few merged frames, not 201, and the newest one
        # (trailing edge) is delivered. Past max_keys the keys collapse to the type.
        invalidates = stream.of("invalidate")
        assert 2 <= len(invalidates) <= 4
        assert invalidates[-1].id == last
        assert ("compute", None) in stream.invalidated()
        assert service.statistics().frames == len(invalidates)


async def test_keys_below_the_cap_are_kept_and_merged(service: UpdateService) -> None:
    async with serve(UpdatesEndpoint(service)) as url, Stream(url) as stream:
        service.notify("projects", key="0")
        await wait_for(lambda: stream.of("invalidate"))
        for key in ["3", "1", "2", "1"]:
            service.notify("projects", key=key)
        last = await service.publish("progress")
        await wait_for(lambda: any(f.id == last for f in stream.frames))
        # One frame, in the order the types were declared; four of the five updates
        # joined one already on its way.
        assert stream.of("invalidate")[-1].data == {
            "updates": [{"type": "progress"}, {"type": "projects", "keys": ["1", "2", "3"]}]
        }
        assert service.statistics().coalesced == 4


async def test_works_with_httpx_sse(base_url: str, service: UpdateService) -> None:
    async with httpx.AsyncClient() as http, aconnect_sse(http, "GET", base_url) as source:
        events = source.aiter_sse()
        hello = await anext(events)
        assert hello.event == "hello"
        assert hello.retry == 2000
        service.notify("gardener", key="shoot-1")
        frame = await anext(events)
        assert (frame.event, frame.json()) == (
            "invalidate",
            {"updates": [{"type": "gardener", "keys": ["shoot-1"]}]},
        )


async def test_works_with_curl(base_url: str, service: UpdateService) -> None:
    process = await asyncio.create_subprocess_exec(
        "curl", "-sN", "--max-time", "10", base_url, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        output = b""
        while b"event: hello" not in output:
            output += await asyncio.wait_for(process.stdout.read(4096), 5)
        service.notify("images")
        while b"event: invalidate" not in output:
            output += await asyncio.wait_for(process.stdout.read(4096), 5)
        assert b'data: {"updates":[{"type":"images"}]}' in output
    finally:
        process.kill()
        await process.wait()


async def test_disconnect_frees_the_connection_at_once(
    base_url: str, service: UpdateService
) -> None:
    async with Stream(base_url):
        await wait_for(lambda: service.statistics().connections == 1)
    await wait_for(lambda: service.statistics().connections == 0)
    # Nothing is left that an update could reach.
    frames = service.statistics().frames
    await service.publish("projects")
    assert service.statistics().frames == frames


async def test_heartbeat_pings_a_silent_stream() -> None:
    async with UpdateService(TYPES, heartbeat=0.1, close_on_signals=False) as hub:
        async with serve(UpdatesEndpoint(hub)) as url, Stream(url, include_pings=True) as stream:
            assert stream.frames[0].data["heartbeat"] == 0.1
            await wait_for(lambda: len(stream.of("ping")) >= 2)
            assert stream.of("ping")[0].data == {}
            assert stream.of("ping")[0].id == stream.frames[0].id  # pings carry no id of their own


async def test_closing_the_service_ends_open_streams_promptly(service: UpdateService) -> None:
    async with serve(UpdatesEndpoint(service)) as url, httpx.AsyncClient() as http:
        async with http.stream("GET", url) as r:
            chunks = r.aiter_raw()
            await anext(chunks)
            await service.aclose()
            rest = [chunk async for chunk in chunks]  # the response ends: no hang
        # Only the frame saying when to come back (tests/test_drain_notice.py).
        assert len(rest) == 1 and rest[0].startswith(b"retry: ")
        assert b"event: reconnect" in rest[0]
        assert service.statistics().connections == 0
        r2 = await http.get(url)
        assert r2.status_code == 503


async def test_a_client_that_never_reads_is_bounded_and_slows_nobody() -> None:
    async with (
        UpdateService(TYPES, min_interval=0, send_timeout=1.0, close_on_signals=False) as hub,
        serve(UpdatesEndpoint(hub)) as url,
    ):
        port = int(url.rsplit(":", 1)[1])
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stuck.connect(("127.0.0.1", port))
        stuck.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
        try:
            await wait_for(lambda: hub.statistics().connections == 1)
            async with Stream(url) as healthy:
                # Frames of ~30 KB each until the stuck socket's buffers are full.
                pad = "x" * 500
                batch = 0
                while not any(c.busy for c in hub.connections()):
                    for i in range(60):
                        hub.notify("projects", key=f"{batch}-{i}-{pad}")
                    batch += 1
                    await asyncio.sleep(0.001)
                for i in range(1000):
                    hub.notify("projects", key=f"more-{i}")
                last = await hub.publish("projects", key="last")
                await wait_for(lambda: any(f.id == last for f in healthy.frames), 10)
                # The stuck client holds a bounded pending set, never a queue.
                stuck_conn = next(c for c in hub._fanout._streams if c.inflight is not None)
                assert len(stuck_conn.pending.get("projects") or ()) <= hub.max_keys
                await wait_for(lambda: hub.statistics().slow_disconnects == 1, 10)
                await wait_for(lambda: hub.statistics().connections == 1)
        finally:
            stuck.close()


async def test_notify_from_another_thread_is_delivered(
    base_url: str, service: UpdateService
) -> None:
    async with Stream(base_url) as stream:
        await asyncio.to_thread(service.notify, "compute", "from-thread")
        await wait_for(lambda: ("compute", "from-thread") in stream.invalidated())


async def stream_lines(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        yield line


async def test_reauthorize_during_authentication_wins(service: UpdateService) -> None:
    looked_up = asyncio.Event()
    proceed = asyncio.Event()

    async def slow_authenticate(scope: object) -> Principal:
        # The app read the old memberships, then the permissions change before attach.
        principal = Principal.of("bob", ["tenant:acme", "user:bob"])
        looked_up.set()
        await proceed.wait()
        return principal

    endpoint = UpdatesEndpoint(service, authenticate=slow_authenticate)
    async with serve(endpoint) as url:
        reader = asyncio.create_task(Stream(url).__aenter__())
        await looked_up.wait()
        assert service.reauthorize("bob", Principal.of("bob", ["user:bob"])) == 0
        proceed.set()
        bob = await reader
        try:
            service.notify("projects", key="secret", audience={"tenant:acme"})
            service.notify("authentication", audience={"user:bob"})
            await wait_for(lambda: ("authentication", None) in bob.invalidated())
            assert ("projects", "secret") not in bob.invalidated()
        finally:
            await bob.__aexit__(None, None, None)
