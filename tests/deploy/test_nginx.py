"""deploy/nginx/autobyteus.conf in front of the real server: nginx on loopback with a
self-signed certificate, TLS to nginx, plain HTTP to the server. Skips where nginx or openssl is
missing (Debian: nginx-light, openssl)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.web.server_support import Server

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy/nginx/autobyteus.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replace_once(text: str, old: str, new: str) -> str:
    # Each replaced line must be in the snippet: if the snippet changes, this test says so.
    assert text.count(old) >= 1, old
    return text.replace(old, new)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Server, int, int, ssl.SSLContext]]:
    nginx, openssl = shutil.which("nginx") or "/usr/sbin/nginx", shutil.which("openssl")
    if not os.path.exists(nginx) or openssl is None:
        pytest.skip("nginx or openssl is not installed (Debian: nginx-light, openssl)")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    server = Server(tmp_path / "data")
    server_port = int(server.url.rsplit(":", 1)[1])
    http_port, https_port = free_port(), free_port()
    site = SNIPPET.read_text()
    site = replace_once(site, "server 127.0.0.1:8000;", f"server 127.0.0.1:{server_port};")
    site = replace_once(site, "    listen [::]:80;\n", "")
    site = replace_once(site, "    listen [::]:443 ssl http2;\n", "")
    site = replace_once(site, "listen 80;", f"listen 127.0.0.1:{http_port};")
    site = replace_once(site, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    site = replace_once(site, "/etc/letsencrypt/live/persistence.example.org/fullchain.pem",
                        str(cert))
    site = replace_once(site, "/etc/letsencrypt/live/persistence.example.org/privkey.pem",
                        str(key))
    (tmp_path / "site.conf").write_text(site)
    # nginx.conf around the snippet, as Debian's includes conf.d/*.conf inside http {}.
    user = "user root root;\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(f"""{user}daemon off;
worker_processes 1;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path}/access.log;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    checked = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    proc = subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until nginx listens (not a timing assertion: a bounded wait)
            try:
                socket.create_connection(("127.0.0.1", https_port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        context = ssl.create_default_context(cafile=str(cert))
        yield server, http_port, https_port, context
    finally:
        proc.terminate()
        proc.wait(30)
        if server.proc.poll() is None:
            assert server.stop() == 0


def request(port: int, context: ssl.SSLContext | None, method: str, path: str,
            body: bytes | None = None, headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection = (
        http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=30)
        if context is not None else http.client.HTTPConnection("127.0.0.1", port, timeout=30))
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_tls_proxy_in_front_of_the_server(
        proxied: tuple[Server, int, int, ssl.SSLContext]) -> None:
    server, http_port, https_port, context = proxied
    status, headers, body = request(https_port, context, "GET", "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert "max-age" in headers["strict-transport-security"]

    prompt = json.dumps({"name": "via-proxy", "category": "c", "promptContent": "x"}).encode()
    status, headers, body = request(https_port, context, "POST", "/rest/api/prompts", prompt,
                                    {"Content-Type": "application/json",
                                     "X-Request-Id": "proxy-test-1"})
    assert status == 201, body
    assert headers["x-request-id"] == "proxy-test-1"
    # Without one, nginx makes the id and the server keeps it: one id in both logs.
    status, headers, _ = request(https_port, context, "GET", "/rest/api/prompts")
    assert status == 200
    made = headers["x-request-id"]
    assert len(made) == 32
    # The server's own error bodies pass through unchanged (413 from the server, not nginx).
    status, _, body = request(https_port, context, "POST", "/rest/api/prompts",
                              b"{" + b" " * (1 << 20) + b"}",
                              {"Content-Type": "application/json"})
    assert status == 413 and json.loads(body)["code"] == "PAYLOAD_TOO_LARGE"
    # Plain HTTP is sent to HTTPS.
    status, headers, _ = request(http_port, None, "GET", "/health", headers={"Host": "localhost"})
    assert status == 301 and headers["location"] == "https://localhost/health"
    assert server.stop() == 0  # then its log is read to the end
    server_log = "".join(server.log)
    assert "id=proxy-test-1" in server_log and f"id={made}" in server_log
