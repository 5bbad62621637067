"""From a page in a real browser (chromium): cross-origin calls to the real server process succeed
when the page's origin is allowed (AUTOBYTEUS_CORS_ORIGINS), errors included, and fail when it is
not; and /docs renders every operation of /openapi.json from the server's own files."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.browser_support import PageServer, browser  # noqa: F401 (fixture)
from tests.web.server_support import Server

TOKEN = "browser-token"

# The page calls the API with fetch() and reports each outcome; a CORS refusal is a TypeError.
CALLS = """
async (args) => {
  const [api, token] = args;
  const auth = {"Authorization": "Bearer " + token};
  async function call(method, path, headers, body) {
    try {
      const r = await fetch(api + path, {method, headers, body});
      const text = await r.text();
      return {ok: true, status: r.status, body: text ? JSON.parse(text) : null,
              etag: r.headers.get("ETag"), requestId: r.headers.get("X-Request-Id")};
    } catch (e) {
      return {ok: false, error: e.name + ": " + e.message};
    }
  }
  return {
    created: await call("POST", "/rest/api/prompts",
                        {...auth, "Content-Type": "application/json"},
                        JSON.stringify({name: "from-browser", category: "c", promptContent: "x"})),
    list: await call("GET", "/rest/api/prompts", auth),
    unauthorized: await call("GET", "/rest/api/prompts", {}),
    notFound: await call("GET", "/rest/api/prompts/424242", auth),
    invalid: await call("POST", "/rest/api/prompts",
                        {...auth, "Content-Type": "application/json"}, JSON.stringify({x: 1})),
  };
}
"""


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer("<!DOCTYPE html><html><body><p>a client page</p></body></html>")
    yield server
    server.close()


def run_calls(browser: Any, page_origin: str, api: str) -> dict[str, Any]:  # noqa: F811
    page = browser.new_page()
    try:
        page.goto(page_origin + "/")
        return page.evaluate(CALLS, [api, TOKEN])
    finally:
        page.close()


def test_allowed_origin_can_call_the_api(browser: Any, page_server: PageServer,  # noqa: F811
                                         tmp_path: Path) -> None:
    server = Server(tmp_path, AUTOBYTEUS_API_TOKEN=TOKEN,
                    AUTOBYTEUS_CORS_ORIGINS=f"https://other.example,{page_server.origin}")
    try:
        out = run_calls(browser, page_server.origin, server.url)
    finally:
        assert server.stop() == 0
    assert all(r["ok"] for r in out.values()), out
    assert out["created"]["status"] == 201 and out["created"]["body"]["name"] == "from-browser"
    assert out["created"]["etag"]  # exposed: a page can send it back in If-Match
    assert out["created"]["requestId"]
    assert [p["name"] for p in out["list"]["body"]["items"]] == ["from-browser"]
    # Errors are readable by the page too, with the API's error body.
    assert (out["unauthorized"]["status"], out["unauthorized"]["body"]["code"]) == \
        (401, "UNAUTHORIZED")
    assert out["notFound"]["status"] == 404
    assert out["invalid"]["status"] == 400 and set(out["invalid"]["body"]) == {
        "code", "detail", "field"}


@pytest.mark.parametrize("cors", [None, "https://other.example"])
def test_other_origins_are_refused_by_the_browser(
        browser: Any, page_server: PageServer, tmp_path: Path,  # noqa: F811
        cors: str | None) -> None:
    env = {"AUTOBYTEUS_API_TOKEN": TOKEN}
    if cors is not None:
        env["AUTOBYTEUS_CORS_ORIGINS"] = cors
    server = Server(tmp_path, **env)
    try:
        out = run_calls(browser, page_server.origin, server.url)
        # The refusal is the browser's: the server did not write what the page sent.
        assert server.call("GET", "/health")[0] == 200
        request = urllib.request.Request(server.url + "/rest/api/prompts",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            stored = json.loads(resp.read())["items"]
    finally:
        assert server.stop() == 0
    for name, result in out.items():
        assert not result["ok"] and result["error"].startswith("TypeError"), (name, result)
    assert stored == []  # the create's preflight failed, so the POST itself was never sent


def test_docs_render_every_operation(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    server = Server(tmp_path, AUTOBYTEUS_API_TOKEN=TOKEN)
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        with urllib.request.urlopen(server.url + "/openapi.json", timeout=30) as resp:
            document = json.loads(resp.read())
        operations = {(method.upper(), path) for path, ops in document["paths"].items()
                      for method in ops if method in ("get", "put", "post", "delete", "patch")}
        page.goto(server.url + "/docs")
        page.wait_for_selector(".opblock", timeout=60_000)
        shown = page.eval_on_selector_all(
            ".opblock .opblock-summary",
            """els => els.map(e => [
                   e.querySelector('.opblock-summary-method').textContent.trim(),
                   e.querySelector('.opblock-summary-path').getAttribute('data-path')])""")
        title = page.text_content(".info .title")
    finally:
        page.close()
        assert server.stop() == 0
    assert {(m, p) for m, p in shown} == operations
    assert "autobyteus persistence server" in title
    # Everything the page loaded came from the server itself (no CDN).
    assert requested and all(url.startswith(server.url) for url in requested), requested
