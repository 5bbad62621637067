"""CORS in process: off by default, preflights answered (also with a token configured), the
Access-Control-* headers on successes and on every kind of error, nothing for other origins.
(tests/web/test_browser.py proves the same from a page in a real browser.)"""

from __future__ import annotations

from collections.abc import Callable

import falcon.testing
import pytest

from tests.web.api_support import assert_error
from web.settings import Settings, SettingsError, parse_origins

APP = "https://app.example.org"
OTHER = "https://evil.example.com"
TOKEN = "cors-token"


def preflight(client: falcon.testing.TestClient, path: str, origin: str = APP,
              method: str = "POST") -> falcon.testing.Result:
    return client.simulate_options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type, if-match"})


def test_off_by_default(client: falcon.testing.TestClient) -> None:
    answer = client.simulate_get("/health", headers={"Origin": APP})
    assert answer.status_code == 200
    assert not any(h.startswith("access-control-") for h in answer.headers)
    assert "access-control-allow-origin" not in preflight(client, "/rest/api/prompts").headers


def test_preflight_is_answered_without_the_token(
        make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(api_token=TOKEN, cors_origins=APP)
    answer = preflight(client, "/rest/api/prompts")
    assert answer.status_code == 200, answer.text
    h = answer.headers
    assert h["access-control-allow-origin"] == APP
    assert set(h["access-control-allow-methods"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert "authorization" in h["access-control-allow-headers"].lower()
    assert h["access-control-max-age"] == "600"
    assert "Origin" in h["vary"]
    # Without the preflight header an OPTIONS is an ordinary request: the token is needed.
    assert_error(client.simulate_options("/rest/api/prompts", headers={"Origin": APP}), 401)


def test_headers_on_successes_and_errors(
        make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(api_token=TOKEN, cors_origins=f"{APP},http://localhost:5173")
    auth = {"Origin": APP, "Authorization": f"Bearer {TOKEN}"}
    answers = {
        "created": client.simulate_post("/rest/api/prompts", headers=auth, json={
            "name": "p", "category": "c", "promptContent": "x"}),
        "unauthorized": client.simulate_get("/rest/api/prompts", headers={"Origin": APP}),
        "not found": client.simulate_get("/rest/api/prompts/424242", headers=auth),
        "no route": client.simulate_get("/nowhere", headers=auth),
        "bad body": client.simulate_post("/rest/api/prompts", headers=auth, json={"x": 1}),
        "bad method": client.simulate_delete("/rest/api/prompts", headers=auth),
    }
    statuses = {name: a.status_code for name, a in answers.items()}
    assert statuses == {"created": 201, "unauthorized": 401, "not found": 404, "no route": 404,
                        "bad body": 400, "bad method": 405}
    for name, answer in answers.items():
        assert answer.headers.get("access-control-allow-origin") == APP, name
        exposed = answer.headers["access-control-expose-headers"]
        assert "ETag" in exposed and "X-Request-Id" in exposed, name
        assert "Origin" in answer.headers["vary"], name
    # Another origin gets no CORS header, so its page cannot read the answer.
    other = client.simulate_get("/rest/api/prompts", headers={
        "Origin": OTHER, "Authorization": f"Bearer {TOKEN}"})
    assert other.status_code == 200
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in preflight(client, "/rest/api/prompts",
                                                          origin=OTHER).headers


def test_any_origin(make_client: Callable[..., falcon.testing.TestClient]) -> None:
    client = make_client(cors_origins="*")
    answer = client.simulate_get("/nowhere", headers={"Origin": OTHER})
    assert answer.status_code == 404
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "vary" not in answer.headers


def test_origins_setting() -> None:
    assert parse_origins(None) == () and parse_origins(" ") == ()
    assert parse_origins("*") == ("*",)
    assert parse_origins("https://a.example, http://localhost:5173/ ,https://a.example") == (
        "https://a.example", "http://localhost:5173")
    env = {"AUTOBYTEUS_CORS_ORIGINS": "https://a.example,http://127.0.0.1:8080"}
    assert Settings.from_env(env).cors_origin_list == ("https://a.example", "http://127.0.0.1:8080")
    for bad in ("*,https://a.example", "a.example", "https://a.example/path", "ftp://x"):
        with pytest.raises(SettingsError, match="AUTOBYTEUS_CORS_ORIGINS"):
            Settings.from_env({"AUTOBYTEUS_CORS_ORIGINS": bad})
