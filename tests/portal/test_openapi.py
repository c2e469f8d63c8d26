"""The OpenAPI schema is fit for a generated TypeScript client."""

from __future__ import annotations

from typing import Any

import pytest

from portal.app import create_app
from portal.config import Settings
from portal.updates import UpdateType


@pytest.fixture
def schema(tmp_path: Any) -> dict[str, Any]:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'p.db'}", session_secret="s"))
    return app.openapi()


def operations(schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op) for path, item in schema["paths"].items() for method, op in item.items()
    ]


def test_update_types_are_one_enum_in_the_schema(schema: dict[str, Any]) -> None:
    enum = schema["components"]["schemas"]["UpdateType"]
    assert enum["enum"] == [t.value for t in UpdateType]


def test_the_stream_is_listed_with_its_events(schema: dict[str, Any]) -> None:
    stream = schema["paths"]["/api/updates"]["get"]
    assert stream["operationId"] == "streamUpdates"
    events = stream["responses"]["200"]["content"]["text/event-stream"]["itemSchema"]
    assert events["properties"]["event"]["enum"] == [
        "hello",
        "invalidate",
        "resync",
        "ping",
        "reconnect",
    ]
    invalidate = next(
        e for e in events["oneOf"] if e["properties"]["event"]["const"] == "invalidate"
    )
    entry = invalidate["properties"]["data"]["contentSchema"]["properties"]["updates"]["items"]
    assert entry["properties"]["type"]["enum"] == [t.value for t in UpdateType]
    # Refetch's own refusals; the 401 is the portal's, as on every route.
    assert stream["responses"]["403"]["content"]["application/json"]["schema"]["properties"][
        "error"
    ]["enum"] == ["forbidden_type"]
    assert stream["responses"]["401"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }


def test_every_operation_has_a_unique_id_and_an_update_type_tag(schema: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(schema)]
    assert len(ids) == len(set(ids))
    assert "listProjects" in ids and "createInstance" in ids and "streamUpdates" in ids
    tags = {t.value for t in UpdateType} | {"updates"}
    for path, method, op in operations(schema):
        assert op["tags"] and set(op["tags"]) <= tags, (path, method)


def test_every_success_response_has_a_model(schema: dict[str, Any]) -> None:
    for path, method, op in operations(schema):
        if path == "/api/updates":
            continue
        success = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        assert success, (path, method)
        for code, response in success.items():
            if code == "204":
                continue
            ref = response["content"]["application/json"]["schema"]
            assert ref != {}, (path, method)


def test_the_rest_shapes_of_the_issue(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    assert set(paths["/api/projects"]) == {"get", "post"}
    assert set(paths["/api/projects/{project_id}"]) == {"get", "patch", "delete"}
    assert set(paths["/api/login"]) == {"post"}
    assert set(paths["/api/me"]) == {"get"}
    assert set(paths["/api/progress"]) == {"get"}
    progress = schema["components"]["schemas"]["Progress"]["properties"]
    assert {"value", "fetched_at", "stale"} <= set(progress)


def test_every_error_status_the_server_answers_is_declared_with_a_body(
    schema: dict[str, Any],
) -> None:
    ops = {op["operationId"]: op for _, _, op in operations(schema)}
    conflicts = {
        "createProject",
        "renameProject",
        "addMember",
        "changeMemberRole",
        "removeMember",
        "createInstance",
        "startInstance",
        "stopInstance",
        "deleteInstance",
    }
    for name in conflicts:
        assert "409" in ops[name]["responses"], name
    for path, method, op in operations(schema):
        if "requestBody" in op:  # FastAPI's own answer to a body that is not UTF-8
            assert "400" in op["responses"], (path, method)
        for code in ("400", "401", "403", "404", "409", "429"):
            if path == "/api/updates" and code in ("400", "403"):
                continue  # the stream's own refusals (refetch's body, checked above)
            if code in op["responses"]:
                content = op["responses"][code]["content"]["application/json"]
                # 429 also says how long to wait (TooManyRequests: detail + retry_after).
                body = "TooManyRequests" if code == "429" else "Error"
                assert content["schema"] == {"$ref": f"#/components/schemas/{body}"}, (path, code)
    login = ops["login"]["responses"]
    assert set(login) >= {"401", "429"} and "Retry-After" in login["429"]["headers"]


def test_fixed_sets_are_enums(schema: dict[str, Any]) -> None:
    schemas = schema["components"]["schemas"]
    assert schemas["InstanceCreate"]["properties"]["flavor"] == {
        "$ref": "#/components/schemas/FlavorName"
    }
    assert schemas["FlavorName"]["enum"] == ["s1.small", "s1.medium", "m1.large", "c1.xlarge"]


def test_every_operation_says_how_it_authenticates(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The token from POST /api/login",
    }
    assert (schemes["sessionCookie"]["in"], schemes["sessionCookie"]["name"]) == (
        "cookie",
        "portal_session",
    )
    assert (schemes["csrfToken"]["in"], schemes["csrfToken"]["name"]) == ("header", "X-CSRF-Token")
    for path, method, op in operations(schema):
        if op["operationId"] == "login":
            assert op["security"] == [], path
        elif method == "get":
            assert op["security"] == [{"bearer": []}, {"sessionCookie": []}], path
        else:  # the cookie alone is not enough for a mutation
            assert op["security"] == [{"bearer": []}, {"sessionCookie": [], "csrfToken": []}], path
