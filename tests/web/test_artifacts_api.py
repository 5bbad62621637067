"""Agent artifacts over HTTP (api.md "Artifacts", domains.md 6), lmdb store."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import parse_qs, urlsplit

import falcon.testing
import pytest

from tests.web.api_support import (
    START,
    ManualClock,
    assert_error,
    assert_timestamps,
    first_page,
    iso,
    make_api,
    walk,
)

ARTIFACTS = "/rest/api/agent-artifacts"
FIELDS = {"id", "agentId", "path", "type", "workspaceRoot", "url", "createdAt", "updatedAt"}
EXTENSIONS = {
    **dict.fromkeys(("png", "jpg", "jpeg", "gif", "webp", "svg"), "image"),
    **dict.fromkeys(("mp3", "wav", "ogg", "flac", "m4a"), "audio"),
    **dict.fromkeys(("mp4", "mov", "avi", "mkv", "webm"), "video"),
    "pdf": "pdf", "csv": "csv", "xlsx": "excel", "xls": "excel",
    "txt": "file", "py": "file", "docx": "file", "tiff": "file",
}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(make_store: Any, clock: ManualClock) -> falcon.testing.TestClient:
    return make_api(make_store, clock)


def new(api: falcon.testing.TestClient, path: str = "out/report.pdf", agent: str = "run-1",
        **extra: Any) -> dict[str, Any]:
    result = api.simulate_post(ARTIFACTS, json={"agentId": agent, "path": path, **extra})
    assert result.status_code == 201, result.text
    return result.json


def test_create_answers_201_location_and_the_artifact(api: falcon.testing.TestClient,
                                                      clock: ManualClock) -> None:
    result = api.simulate_post(ARTIFACTS, json={"agentId": "run-1", "path": "out/chart.PNG"})
    assert result.status_code == 201, result.text
    body = result.json
    assert set(body) == FIELDS
    assert body == {"id": "1", "agentId": "run-1", "path": "out/chart.PNG", "type": "image",
                    "workspaceRoot": None, "url": None, "createdAt": iso(clock.now),
                    "updatedAt": iso(clock.now)}
    assert_timestamps(body)
    location = result.headers["location"]
    assert urlsplit(location).path == ARTIFACTS
    assert parse_qs(urlsplit(location).query) == {"agentId": ["run-1"]}
    assert first_page(api, ARTIFACTS, {"agentId": "run-1"}) == [body]
    full = new(api, "/abs/x.bin", workspaceRoot="/ws", url="http://files/x.bin", type="VIDEO")
    assert (full["workspaceRoot"], full["url"], full["type"], full["id"]) == (
        "/ws", "http://files/x.bin", "video", "2")


def test_location_names_the_run_whatever_its_id(api: falcon.testing.TestClient) -> None:
    agent = "run?a=1&b#c é"
    result = api.simulate_post(ARTIFACTS, json={"agentId": agent, "path": "a.txt"})
    assert result.status_code == 201
    parts = urlsplit(result.headers["location"])
    assert parts.path == ARTIFACTS and not parts.fragment
    assert parse_qs(parts.query) == {"agentId": [agent]}


@pytest.mark.parametrize("extension,kind", sorted(EXTENSIONS.items()))
def test_type_is_inferred_from_the_extension(api: falcon.testing.TestClient, extension: str,
                                             kind: str) -> None:
    assert new(api, f"dir.d/file.{extension}")["type"] == kind
    assert new(api, f"C:\\work\\FILE.{extension.upper()}")["type"] == kind
    assert new(api, f"x.{extension}", type=None)["type"] == kind


@pytest.mark.parametrize("path", ["README", "archive.tar.gz", "png", "dir.png/notes", ".png.txt",
                                  "trailing.", "/etc/passwd", "../../secret.csv"])
def test_other_paths(api: falcon.testing.TestClient, path: str) -> None:
    expected = "csv" if path.endswith(".csv") else "file"
    body = new(api, path)
    assert body["type"] == expected and body["path"] == path  # data, never opened


def test_explicit_type_wins_and_must_be_known(api: falcon.testing.TestClient) -> None:
    assert new(api, "a.png", type="pdf")["type"] == "pdf"
    for bad in ("document", "", 3, ["image"]):
        assert_error(api.simulate_post(ARTIFACTS, json={"agentId": "r", "path": "a.png",
                                                        "type": bad}), 400, field="type")


@pytest.mark.parametrize("body,field", [
    ({"path": "a.png"}, "agentId"), ({"agentId": " ", "path": "a.png"}, "agentId"),
    ({"agentId": 5, "path": "a.png"}, "agentId"), ({"agentId": "r"}, "path"),
    ({"agentId": "r", "path": ""}, "path"), ({"agentId": "r", "path": ["a"]}, "path"),
    ({"agentId": "r", "path": "a", "url": 1}, "url"),
    ({"agentId": "r", "path": "a", "workspaceRoot": {}}, "workspaceRoot"),
    ({"agentId": "r", "path": "a", "size": 10}, "size"),
    ({"agentId": "r", "path": "a", "id": "1"}, "id"),
])
def test_invalid_creates_are_400_and_write_nothing(api: falcon.testing.TestClient, body: dict,
                                                   field: str) -> None:
    assert_error(api.simulate_post(ARTIFACTS, json=body), 400, field=field)
    assert first_page(api, ARTIFACTS, {"agentId": "r"}) == []


def test_an_unknown_run_has_an_empty_page_and_agent_id_is_required(
    api: falcon.testing.TestClient,
) -> None:
    new(api)
    result = api.simulate_get(ARTIFACTS, params={"agentId": "nobody"})
    assert result.status_code == 200
    assert result.json == {"items": [], "nextCursor": None}
    assert_error(api.simulate_get(ARTIFACTS), 400, field="agentId")
    assert_error(api.simulate_get(ARTIFACTS, params={"agentId": "run-1", "limit": "0"}), 400,
                 field="limit")
    assert_error(api.simulate_get(ARTIFACTS, params={"agentId": "run-1", "cursor": "zz"}), 400,
                 field="cursor")


def test_list_of_a_run_by_created_at_and_pages(api: falcon.testing.TestClient,
                                               clock: ManualClock) -> None:
    # created out of time order on purpose: the list follows createdAt, not the id
    plan = [("b.png", 5), ("a.pdf", 1), ("c.csv", 9), ("d.mp3", 1), ("e.txt", 0)]
    made = []
    for path, minutes in plan:
        clock.set(START + dt.timedelta(minutes=minutes))
        made.append(new(api, path))
        new(api, path, agent="run-other")
    expected = sorted(made, key=lambda a: (a["createdAt"], int(a["id"])))
    everything = first_page(api, ARTIFACTS, {"agentId": "run-1"})
    assert everything == expected
    assert [a["path"] for a in everything] == ["e.txt", "a.pdf", "d.mp3", "b.png", "c.csv"]
    for limit in (1, 2, 5):
        items, pages = walk(api, ARTIFACTS, limit, {"agentId": "run-1"})
        assert items == expected and pages == -(-len(plan) // limit)
    assert len(first_page(api, ARTIFACTS, {"agentId": "run-other"})) == len(plan)
