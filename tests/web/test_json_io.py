"""JSON in and out of the app, byte for byte: the encoder and decoder built once (web/http.py)
write and read exactly what json.dumps / json.loads would."""

from __future__ import annotations

import json

import falcon.testing


def test_answers_are_json_dumps_with_ensure_ascii_off(client: falcon.testing.TestClient) -> None:
    created = client.simulate_post("/rest/api/prompts", json={
        "name": "n é", "category": "c", "promptContent": "text \u2028 \U0001f600 \"q\""})
    assert created.status_code == 201
    got = client.simulate_get(f"/rest/api/prompts/{created.json['id']}")
    assert got.headers["content-type"] == "application/json"
    assert got.content == json.dumps(got.json, ensure_ascii=False).encode()
    assert b'"name": "n \xc3\xa9"' in got.content
    missing = client.simulate_get("/rest/api/prompts/999999")
    assert missing.content == json.dumps(missing.json, ensure_ascii=False).encode()


def test_request_bodies_are_read_as_json_loads_reads_them(
    client: falcon.testing.TestClient,
) -> None:
    def post(body: bytes) -> falcon.testing.Result:
        return client.simulate_post("/rest/api/prompts", body=body,
                                    headers={"Content-Type": "application/json"})

    bom = post(b"\xef\xbb\xbf" + json.dumps({"name": "n"}).encode())
    assert bom.status_code == 400
    assert bom.json["code"] == "MALFORMED_JSON"
    assert bom.json["detail"] == (
        "malformed JSON: Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)")
    for constant in (b"NaN", b"Infinity", b"-Infinity"):
        answer = post(b'{"name": ' + constant + b"}")
        assert answer.status_code == 400
        assert answer.json["detail"] == f"malformed JSON: {constant.decode()} is not valid JSON"
    trailing = post(b'{"name": "n"} x')
    assert trailing.json["detail"] == "malformed JSON: Extra data: line 1 column 15 (char 14)"
    ok = post(json.dumps({"name": "n", "category": "c", "promptContent": "p"}).encode())
    assert ok.status_code == 201
