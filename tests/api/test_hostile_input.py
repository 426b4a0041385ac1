"""Hostile and sloppy input: every case a clear 4xx in the one error schema, never a 500."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient

BAD_STRINGS = {"nul": "a\u0000b", "surrogate": "a\ud800b"}


def raw(api: TestClient, method: str, path: str, body: str | bytes, **headers: str) -> object:
    headers = {"Content-Type": "application/json", **headers}
    content = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    return api.request(method, path, content=content, headers=headers)


def error_of(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, (response.status_code, response.text)  # type: ignore[attr-defined]
    error = response.json()["error"]  # type: ignore[attr-defined]
    assert set(error) == {"type", "message", "details"}
    return error  # type: ignore[no-any-return]


def dumps(value: object) -> str:
    # ensure_ascii: NULs and lone surrogates travel as \\u escapes, as any client sends them.
    return json.dumps(value, ensure_ascii=True)


@pytest.mark.parametrize("kind", sorted(BAD_STRINGS))
@pytest.mark.parametrize(
    ("job", "field"),
    [
        ({"prompt": "{bad}"}, "prompt"),
        ({"document": "{bad}"}, "document"),
        ({"prompt": "x", "system": "{bad}"}, "system"),
        ({"prompt": "x", "idempotency_key": "{bad}"}, "idempotency_key"),
        ({"prompt": "x", "metadata": {"k": "{bad}"}}, "metadata.k"),
        ({"prompt": "x", "metadata": {"{bad}": 1}}, "metadata"),
        ({"prompt": "x", "metadata": {"a": [1, {"b": "{bad}"}]}}, "metadata.a[1].b"),
    ],
)
def test_unstorable_strings_are_422_naming_the_field(
    api: TestClient, job: dict[str, object], field: str, kind: str
) -> None:
    body = dumps(job).replace("{bad}", json.dumps(BAD_STRINGS[kind])[1:-1])
    for payload in (body, f"[{body}]"):
        error = error_of(raw(api, "POST", "/v1/jobs", payload), 422)
        assert field in str(error["message"]), error
    assert api.get("/v1/keys").status_code == 200  # nothing broke on the way


def test_unstorable_strings_in_other_endpoints(api: TestClient) -> None:
    body = dumps({"url": "https://example.com/h", "description": "x\u0000"})
    error = error_of(raw(api, "POST", "/v1/webhooks/endpoints", body), 422)
    assert "description" in str(error["message"])
    error = error_of(raw(api, "POST", "/v1/keys", dumps({"name": "k\ud800"})), 422)
    assert "name" in str(error["message"])


@pytest.mark.parametrize(
    "metadata",
    ["123456789012345678901234567890", "-9223372036854775809", "1e400", "-1e400", "1.5e300"],
)
def test_numbers_that_cannot_come_back_unchanged_are_refused(
    api: TestClient, metadata: str
) -> None:
    body = '{"prompt": "x", "metadata": {"n": ' + metadata + "}}"
    error = error_of(raw(api, "POST", "/v1/jobs", body), 422)
    assert "metadata.n" in str(error["message"])


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(api: TestClient, constant: str) -> None:
    body = '{"prompt": "x", "metadata": {"n": ' + constant + "}}"
    error_of(raw(api, "POST", "/v1/jobs", body), 400)


def test_a_64_bit_integer_round_trips(api: TestClient) -> None:
    body = '{"prompt": "x", "metadata": {"n": 9223372036854775807, "f": 0.25, "g": -1.5e-300}}'
    response = raw(api, "POST", "/v1/jobs", body)
    assert response.status_code == 202, response.text  # type: ignore[attr-defined]
    job_id = response.json()["jobs"][0]["id"]  # type: ignore[attr-defined]
    assert api.get(f"/v1/jobs/{job_id}").json()["metadata"] == {
        "n": 2**63 - 1,
        "f": 0.25,
        "g": -1.5e-300,
    }


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/cache/settings", "/v1/webhooks/endpoints", "/v1/keys"]
)
def test_deep_nesting_is_4xx(api: TestClient, path: str) -> None:
    method = "PUT" if path == "/v1/cache/settings" else "POST"
    deep = "[" * 5000 + "]" * 5000
    assert raw(api, method, path, deep).status_code == 422  # type: ignore[attr-defined]
    nested = '{"prompt": "x", "metadata": {"a": ' + "[" * 100 + "]" * 100 + "}}"
    assert raw(api, "POST", "/v1/jobs", nested).status_code == 422  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path", ["/v1/jobs", "/v1/cache/settings", "/v1/webhooks/endpoints", "/v1/keys"]
)
def test_malformed_json_is_400_everywhere(api: TestClient, path: str) -> None:
    method = "PUT" if path == "/v1/cache/settings" else "POST"
    for body in ('{"prompt": ', b"\xff\xfe{}", '{"a": 1,}'):
        error = error_of(raw(api, method, path, body), 400)
        assert error["type"] == "bad_request"


@pytest.mark.parametrize(
    ("path", "method"),
    [("/v1/jobs", "POST"), ("/v1/cache/settings", "PUT"), ("/v1/keys", "POST")],
)
def test_only_application_json_bodies(api: TestClient, path: str, method: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", ""):
        response = api.request(
            method, path, content=b'{"prompt": "x"}', headers={"Content-Type": content_type}
        )
        assert error_of(response, 415)["type"] == "unsupported_media_type"
    ok = api.post("/v1/jobs", content=b'{"prompt": "x"}',
                  headers={"Content-Type": "application/json; charset=utf-8"})  # fmt: skip
    assert ok.status_code == 202


@pytest.mark.parametrize(
    "job",
    [
        {"prompt": "   \n\t "},
        {"document": "  "},
        {"document": "text", "instruction": " "},
        {"prompt": "x", "max_output_tokens": "100"},
        {"prompt": "x", "max_output_tokens": 100.0},
        {"prompt": "x", "priority": "1"},
        {"prompt": "x", "priority": True},
        {"prompt": "x", "temperature": "0.5"},
        {"prompt": "x", "semantic_cache": "true"},
        {"prompt": "x", "deadline": 1893456000},
        {"prompt": "x", "deadline": "0001-01-01T00:00:00+14:00"},
        {"prompt": "x", "deadline": "9999-12-31T23:59:59-14:00"},
        {"prompt": "x", "deadline": "2030-01-01T00:00:00"},
        {"prompt": "x", "priority": 2**70},
    ],
)
def test_lax_input_is_refused(api: TestClient, job: dict[str, object]) -> None:
    error_of(api.post("/v1/jobs", json=job), 422)
    error_of(api.post("/v1/jobs", json=[job]), 422)


@pytest.mark.parametrize(
    "settings",
    [
        {"ttl_seconds": 2**31},
        {"max_entries": 2**31},
        {"max_entries": 2**63 - 1},
        {"ttl_seconds": "60"},
        {"semantic_enabled": "yes"},
        {"prompt_threshold": "0.9"},
    ],
)
def test_cache_settings_out_of_range(api: TestClient, settings: dict[str, object]) -> None:
    error_of(api.put("/v1/cache/settings", json=settings), 422)
    assert api.put("/v1/cache/settings", json={"ttl_seconds": 2**31 - 1}).status_code == 200


@pytest.mark.parametrize(
    "cursor",
    [f"99999999999999999999_{uuid.uuid4()}", "-99999999999999999999_x", "\u0000", "1_nope", "_"],
)
def test_deliveries_cursor_overflow_is_422(api: TestClient, cursor: str) -> None:
    response = api.get("/v1/webhooks/deliveries", params={"before": cursor})
    error_of(response, 422)


@pytest.mark.parametrize(
    ("path", "params"),
    [("/v1/batches", {"": "0.0"}), ("/v1/stats", {"group": "model"}), ("/v1/keys", {"x": "1"})],
)
def test_an_unknown_query_parameter_is_422_naming_it(
    api: TestClient, path: str, params: dict[str, str]
) -> None:
    error = error_of(api.get(path, params=params), 422)
    (name,) = params
    assert error["details"] == [
        {"loc": ["query", name], "message": "unknown parameter", "type": "extra_forbidden"}
    ]


def test_405_carries_allow(api: TestClient) -> None:
    response = api.patch("/v1/keys")
    error = error_of(response, 405)
    assert error["type"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}


def test_a_body_over_the_limit_is_413_before_it_is_read(api: TestClient) -> None:
    from app.config import get_settings

    limit = get_settings().max_body_bytes
    response = api.post(
        "/v1/jobs",
        content=b"[" + b" " * 16 + b"]",
        headers={"Content-Type": "application/json", "Content-Length": str(limit + 1)},
    )
    assert error_of(response, 413)["type"] == "payload_too_large"


def test_a_streamed_body_over_the_limit_is_413(api: TestClient) -> None:
    from app.config import get_settings

    limit = get_settings().max_body_bytes
    chunk = b" " * (1024 * 1024)

    def chunks() -> object:
        yield b"["
        for _ in range(limit // len(chunk) + 2):
            yield chunk

    response = api.post("/v1/jobs", content=chunks(), headers={"Content-Type": "application/json"})
    assert error_of(response, 413)["type"] == "payload_too_large"


def test_every_route_parses_json_strictly() -> None:
    from fastapi.routing import APIRoute

    from app.kit.json_input import StrictJSONRoute
    from app.main import app

    def routes(items: list[object]) -> list[APIRoute]:
        found: list[APIRoute] = []
        for route in items:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                found += routes(list(inner.routes))
            elif isinstance(route, APIRoute):
                found.append(route)
        return found

    api_routes = routes(list(app.routes))
    assert len(api_routes) > 20
    loose = [r.path for r in api_routes if not isinstance(r, StrictJSONRoute)]
    assert loose == [], "use APIRouter(route_class=StrictJSONRoute) for these"


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_key_expiry_postgres_cannot_store_is_422(api: TestClient, when: str) -> None:
    error_of(api.post("/v1/keys", json={"name": "k", "expires_at": when}), 422)
