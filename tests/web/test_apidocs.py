"""GET /docs in process: the page, Swagger UI's files from the package, nothing from elsewhere.
(tests/web/test_browser.py renders it in chromium.)"""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import falcon.testing
import pytest

from tests.web.server_support import ROOT


def test_the_page_and_its_files(client: falcon.testing.TestClient,
                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="web.access")  # the access line of a file too
    page = client.simulate_get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(s.startswith("/docs/assets/") for s in sources), sources
    assert '"/openapi.json"' in page.text
    assert "://" not in page.text  # no CDN, no other host
    for source in sources:
        asset = client.simulate_get(source)
        assert asset.status_code == 200, source
        assert len(asset.content) > 100
    assert client.simulate_get("/docs/assets/swagger-ui-bundle.js").headers[
        "content-type"] in ("application/javascript", "text/javascript")
    css = len(client.simulate_get("/docs/assets/swagger-ui.css").content)
    lines = [r.getMessage() for r in caplog.records if r.name == "web.access"]
    assert any(line.startswith(f"GET /docs/assets/{{file}} 200 {css}B ") for line in lines), lines


def test_assets_refuse_what_is_not_theirs(client: falcon.testing.TestClient) -> None:
    for path in ("/docs/assets/../../../../etc/passwd", "/docs/assets/%2e%2e/setup.cfg",
                 "/docs/assets/no-such.js"):
        answer = client.simulate_get(path)
        assert answer.status_code == 404 and answer.json["code"] == "NOT_FOUND", path
    refused = client.simulate_post("/docs/assets/swagger-ui.css")
    assert refused.status_code == 405 and refused.json["code"] == "METHOD_NOT_ALLOWED"


def test_the_package_is_read_only_when_asked_for() -> None:
    code = (
        "import sys, tempfile, falcon.testing\n"
        "from engine import open_store\n"
        "from web.app import create_app\n"
        "from web.settings import Settings\n"
        "c = falcon.testing.TestClient(create_app(open_store('lmdb', data_dir=tempfile.mkdtemp()),"
        " Settings(provider='lmdb')))\n"
        "assert c.simulate_get('/docs').status_code == 200\n"
        "print('swagger_ui_bundle' in sys.modules)\n"
        "assert c.simulate_get('/docs/assets/swagger-ui.css').status_code == 200\n"
        "print('swagger_ui_bundle' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
