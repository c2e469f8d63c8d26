"""Declared freshness (refetch.routes) and its contract check (refetch.testing), on a real
FastAPI app over SQLite on real uvicorn, read by a real SSE client."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from refetch import CursorHeaderMiddleware, Principal, UpdatesEndpoint, UpdateService
from refetch.routes import DeclaredRoute, changes, changes_nothing, from_result, reads, use_service
from refetch.testing import StrictMutations, UndeclaredMutation, undeclared_routes

from .conftest import Stream, serve, token_auth, wait_for

ANN = {"authorization": "Bearer ann"}
PRINCIPALS = {name: Principal.of(name, [f"owner:{name}"]) for name in ("ann", "bob")}

pytestmark = pytest.mark.timeout(30)


class Item(BaseModel):
    id: int
    name: str
    owner: str


class Rename(BaseModel):
    name: str


def transaction(request: Request) -> Iterator[sqlite3.Connection]:
    # Commits once the route returned (scope="function": before the response is sent);
    # a deferred foreign key makes that commit fail for an unknown owner.
    db = sqlite3.connect(request.app.state.path, check_same_thread=False)
    db.execute("PRAGMA foreign_keys=ON")
    try:
        yield db
        db.commit()
        request.app.state.log.append("commit")
    finally:
        db.rollback()
        db.close()


Db = Annotated[sqlite3.Connection, Depends(transaction, scope="function")]


def build_app(
    path: Path, service: UpdateService, log: list[str], *, stripped: bool = False
) -> FastAPI:
    """``stripped``: GET and PATCH /items/{item_id} declare nothing."""
    setup = sqlite3.connect(path)
    setup.executescript(
        "CREATE TABLE owners (name TEXT PRIMARY KEY);"
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL"
        " REFERENCES owners (name) DEFERRABLE INITIALLY DEFERRED);"
        "INSERT INTO owners VALUES ('ann');"
        "INSERT INTO items VALUES (1, 'one', 'ann'), (2, 'two', 'ann');"
    )
    setup.commit()
    setup.close()

    def audience(context: Any) -> set[str]:
        log.append("notify")
        return {f"owner:{context.result['owner']}"}

    router = APIRouter(route_class=DeclaredRoute, prefix="/items", tags=["items"])

    read = [] if stripped else [reads("items", key="item_id")]
    change = [] if stripped else [changes("items", key="item_id", audience=audience)]

    @router.get("/{item_id}", dependencies=read)
    def get_item(item_id: int, db: Db) -> Item:
        row = db.execute("SELECT id, name, owner FROM items WHERE id = ?", (item_id,)).fetchone()
        if row is None:
            raise HTTPException(404, "no such item")
        return Item(id=row[0], name=row[1], owner=row[2])

    @router.patch(
        "/{item_id}",
        dependencies=[*read, *change],
        response_model=Item,
    )
    def rename_item(item_id: int, body: Rename, db: Db) -> Item | JSONResponse:
        if body.name == "":  # an error answered, not raised
            return JSONResponse({"detail": "a name is needed"}, status_code=422)
        db.execute("UPDATE items SET name = ? WHERE id = ?", (body.name, item_id))
        if body.name == "taken":  # an error answer after a write: rolled back, no notify
            raise HTTPException(409, "that name is taken")
        return get_item(item_id, db)

    @router.put("/{item_id}/owner", dependencies=[changes("items", key=from_result("id"))])
    def give_item(item_id: int, body: Rename, db: Db) -> Item:
        db.execute("UPDATE items SET owner = ? WHERE id = ?", (body.name, item_id))
        return Item(id=item_id, name="?", owner=body.name)  # commit fails for a stranger

    @router.post("/login", dependencies=[changes_nothing()])
    def login() -> dict[str, str]:
        return {"token": "t"}

    app = FastAPI(lifespan=lambda app: service.lifespan(app))
    app.state.path, app.state.log = path, log
    use_service(app, service)
    app.include_router(router)
    app.add_route("/updates", UpdatesEndpoint(service, authenticate=token_auth(PRINCIPALS)))  # type: ignore[arg-type]
    return app


def stamp_cursor(app: Any, service: UpdateService) -> Any:
    """The hub's cursor at the moment the response starts, as a header."""

    async def stamped(scope: Any, receive: Any, send: Any) -> None:
        async def start(message: Any) -> None:
            if message["type"] == "http.response.start":
                cursor = service.cursor.encode()
                message["headers"] = [*message.get("headers", []), (b"x-cursor-at-start", cursor)]
            await send(message)

        await app(scope, receive, start)

    return stamped


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[tuple[str, list[str]]]:
    service = UpdateService(["items"], min_interval=0, close_on_signals=False)
    log: list[str] = []
    app = build_app(tmp_path / "items.db", service, log)
    async with serve(stamp_cursor(app, service), lifespan="on") as url:
        yield url, log
        await service.aclose()


async def test_a_declared_mutation_notifies_after_its_commit_before_its_response(
    tmp_path: Path,
) -> None:
    async with (
        running(tmp_path) as (url, log),
        Stream(f"{url}/updates", headers=ANN) as stream,
        Stream(f"{url}/updates", headers={"authorization": "Bearer bob"}) as bob,
    ):
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.patch("/items/1", json={"name": "uno"})
        assert answer.status_code == 200
        assert log == ["commit", "notify"]
        await wait_for(lambda: stream.saw("items", "1"))
        # The update was numbered before the response started: the frame's cursor is the
        # one the hub had when the answer went out.
        (frame,) = stream.of("invalidate")
        assert frame.id == answer.headers["x-cursor-at-start"]
        assert not bob.of("invalidate")  # the audience: the row's owner


async def test_an_error_answer_or_a_failed_commit_notifies_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as (url, log), Stream(f"{url}/updates", headers=ANN) as stream:
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.patch("/items/1", json={"name": "taken"})
            assert refused.status_code == 409
            answered = await http.patch("/items/1", json={"name": ""})
            assert answered.status_code == 422
            failed = await http.put("/items/1/owner", json={"name": "stranger"})
            assert failed.status_code == 500  # the commit failed: rolled back
            assert (await http.get("/items/1")).json()["owner"] == "ann"
            done = await http.patch("/items/2", json={"name": "deux"})
        assert done.status_code == 200
        await wait_for(lambda: stream.saw("items", "2"))
        # Only the mutation that committed was heard, and it was the first update.
        assert stream.invalidated() == {("items", "2")}
        assert log.count("notify") == 1


async def test_a_key_from_the_result(tmp_path: Path) -> None:
    async with running(tmp_path) as (url, _log), Stream(f"{url}/updates", headers=ANN) as stream:
        async with httpx.AsyncClient(base_url=url) as http:
            given = await http.put("/items/2/owner", json={"name": "ann"})
        assert given.status_code == 200
        await wait_for(lambda: stream.saw("items", "2"))


def test_declarations_are_in_openapi_as_x_refetch(tmp_path: Path) -> None:
    app = build_app(tmp_path / "items.db", UpdateService(["items"]), [])
    paths = app.openapi()["paths"]
    assert paths["/items/{item_id}"]["get"]["x-refetch"] == {
        "reads": [{"type": "items", "key": {"path": "item_id"}}]
    }
    assert paths["/items/{item_id}"]["patch"]["x-refetch"] == {
        "reads": [{"type": "items", "key": {"path": "item_id"}}],
        "changes": [{"type": "items", "key": {"path": "item_id"}}],
    }
    assert paths["/items/{item_id}/owner"]["put"]["x-refetch"] == {
        "changes": [{"type": "items", "key": {"result": "id"}}]
    }
    assert paths["/items/login"]["post"]["x-refetch"] == {"changes": []}


def test_the_contract_check_passes_a_declared_app_and_names_a_stripped_route(
    tmp_path: Path,
) -> None:
    app = build_app(tmp_path / "items.db", UpdateService(["items"]), [])
    assert undeclared_routes(app, ["items"]) == []
    stripped = build_app(tmp_path / "other.db", UpdateService(["items"]), [], stripped=True)
    problems = undeclared_routes(stripped, ["items"])
    assert len(problems) == 2
    assert problems[0].startswith("GET /items/{item_id}: tagged ['items'] but declares no reads")
    assert problems[1].startswith("PATCH /items/{item_id}: a mutation that declares nothing")


async def test_strict_mode_fails_a_2xx_mutation_that_notified_nothing(tmp_path: Path) -> None:
    service = UpdateService(["items"], min_interval=0, close_on_signals=False)
    app = build_app(tmp_path / "items.db", service, [])

    @app.post("/items/{item_id}/touch")
    def touch(item_id: int) -> dict[str, int]:
        return {"id": item_id}  # writes somewhere, declares nothing

    async with service:
        strict = httpx.ASGITransport(StrictMutations(app, service))
        async with httpx.AsyncClient(transport=strict, base_url="http://test") as http:
            assert (await http.patch("/items/1", json={"name": "uno"})).status_code == 200
            assert (await http.post("/items/login")).status_code == 200
            assert (await http.patch("/items/1", json={"name": "taken"})).status_code == 409
            with pytest.raises(UndeclaredMutation, match=r"POST /items/\{item_id\}/touch"):
                await http.post("/items/1/touch")


def test_a_key_that_is_not_a_path_parameter_is_refused_at_construction() -> None:
    router = APIRouter(route_class=DeclaredRoute)
    with pytest.raises(ValueError, match=r"one of the path's parameters \(item_id\)"):

        @router.patch("/items/{item_id}", dependencies=[changes("items", key="id")])
        def patch(item_id: int) -> None: ...


def test_the_contract_check_names_an_unknown_type(tmp_path: Path) -> None:
    app = build_app(tmp_path / "items.db", UpdateService(["items"]), [])
    assert undeclared_routes(app, ["items", "other"]) == []
    problems = undeclared_routes(app, ["other"])
    assert "PATCH /items/{item_id}: declares ['items'], which are not update types" in problems


async def test_a_declaration_on_a_plain_route_names_the_fix() -> None:
    app = FastAPI()

    @app.post("/x", dependencies=[changes("items")])
    def plain() -> None: ...

    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        with pytest.raises(RuntimeError, match=r"route_class=refetch\.routes\.DeclaredRoute"):
            await http.post("/x")


# -- any sequence of mutations, in process (hypothesis) ---------------------------------

ACTIONS = st.one_of(
    st.tuples(st.just("renamed"), st.sampled_from([1, 2]), st.text("abc", min_size=1, max_size=3)),
    st.tuples(st.just("refused"), st.sampled_from([1, 2]), st.just("taken")),  # raises 409
    st.tuples(st.just("answered"), st.sampled_from([1, 2]), st.just("")),  # returns 422
    st.tuples(st.just("commit fails"), st.sampled_from([1, 2]), st.just("stranger")),
    st.tuples(st.just("login"), st.just(0), st.just("")),  # changes nothing
)


def test_exactly_the_committed_mutations_notify(tmp_path: Path) -> None:
    """Model: a mutation moves the hub's cursor by one iff it answered 2xx and committed, and
    what it committed is what the next read returns."""
    service = UpdateService(["items"], min_interval=0, close_on_signals=False)
    app = build_app(tmp_path / "items.db", service, [])
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    names = {1: "one", 2: "two"}
    with asyncio.Runner() as runner:
        runner.run(service.start())
        http = httpx.AsyncClient(transport=transport, base_url="http://test")

        async def apply(action: str, item: int, name: str) -> None:
            before = int(service.cursor.rpartition(".")[2])
            if action == "login":
                answer = await http.post("/items/login")
            elif action == "commit fails":
                answer = await http.put(f"/items/{item}/owner", json={"name": name})
            else:
                answer = await http.patch(f"/items/{item}", json={"name": name})
            committed = answer.is_success and action != "login"
            if committed:
                names[item] = name
            await service.flush()
            assert int(service.cursor.rpartition(".")[2]) == before + committed, (action, answer)
            for key, expected in names.items():
                assert (await http.get(f"/items/{key}")).json()["name"] == expected

        @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.lists(ACTIONS, max_size=6))
        def check(actions: list[tuple[str, int, str]]) -> None:
            for action in actions:
                runner.run(apply(*action))

        try:
            check()
        finally:
            runner.run(http.aclose())
            runner.run(service.aclose())


async def test_under_the_cursor_middleware_a_declared_mutation_answers_with_refetch_notified(
    tmp_path: Path,
) -> None:
    """The answer names the cursor of its own update (the frame's id); an answer that notified
    nothing (a read, an error, a login) has no such header."""
    service = UpdateService(["items"], min_interval=0, close_on_signals=False)
    app = CursorHeaderMiddleware(build_app(tmp_path / "items.db", service, []), service)
    async with (
        serve(app, lifespan="on") as url,
        Stream(f"{url}/updates", headers=ANN) as stream,
        httpx.AsyncClient(base_url=url) as http,
    ):
        read = await http.get("/items/1")
        refused = await http.patch("/items/1", json={"name": "taken"})
        login = await http.post("/items/login")
        renamed = await http.patch("/items/1", json={"name": "uno"})
        await wait_for(lambda: stream.saw("items", "1"))
        await service.aclose()
    assert read.status_code == 200 and refused.status_code == 409 and login.status_code == 200
    assert [r.headers.get("refetch-notified") for r in (read, refused, login)] == [None] * 3
    (frame,) = stream.of("invalidate")
    assert renamed.headers["refetch-notified"] == frame.id
    assert renamed.headers["refetch-cursor"] != frame.id  # read when the request arrived
