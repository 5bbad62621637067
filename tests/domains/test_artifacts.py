"""Agent artifacts (domains.md section 6) on every backend: append-only create, type inference
and checking, the list of a run by createdAt with pages, and unknown runs."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from domains import artifacts
from domains.artifacts import codec
from domains.artifacts.models import infer_type
from domains.artifacts.service import ArtifactService
from domains.errors import NotFoundError, ValidationError
from engine import Store
from engine.indexes import check
from tests.domains.json_commands import ARTIFACTS, JsonCommands

T0 = dt.datetime(2026, 4, 1, 8, 0, tzinfo=dt.UTC)


class ScriptedClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def clock() -> ScriptedClock:
    return ScriptedClock()


@pytest.fixture
def svc(store: Store, clock: ScriptedClock) -> Any:
    return JsonCommands(ArtifactService(store, clock=clock), ARTIFACTS)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        *[(f"out/pic.{e}", "image") for e in ("png", "jpg", "jpeg", "gif", "webp", "svg")],
        *[(f"a.{e}", "audio") for e in ("mp3", "wav", "ogg", "flac", "m4a")],
        *[(f"v.{e}", "video") for e in ("mp4", "mov", "avi", "mkv", "webm")],
        ("report.PDF", "pdf"), ("data.csv", "csv"), ("book.xlsx", "excel"), ("old.xls", "excel"),
        ("notes.txt", "file"), ("Makefile", "file"), ("archive.tar.gz", "file"),
        ("dir.png/readme", "file"), (r"C:\shots\screen.PNG", "image"), ("trailing.", "file"),
    ],
)
def test_type_inferred_from_extension(path: str, kind: str) -> None:
    assert infer_type(path) == kind


def test_create_and_json(svc: ArtifactService, clock: ScriptedClock) -> None:
    clock.now = T0 + dt.timedelta(microseconds=7_999)
    a = svc.create({"agentId": "run-1", "path": "/ws/out/chart.png", "workspaceRoot": "/ws"})
    assert codec.to_json(a) == {
        "id": "1", "agentId": "run-1", "path": "/ws/out/chart.png", "type": "image",
        "workspaceRoot": "/ws", "url": None, "createdAt": "2026-04-01T08:00:00.007Z",
        "updatedAt": "2026-04-01T08:00:00.007Z",
    }
    b = svc.create({"agentId": "run-1", "path": "x.png", "type": "PDF", "url": "http://u"})
    assert (b.id, b.type, b.url) == ("2", "pdf", "http://u")  # a given type wins
    c = svc.create({"agentId": "run-1", "path": "x.png", "type": None})
    assert c.type == "image"
    assert svc.get("2") == b
    assert codec.from_bytes(codec.to_bytes(b)) == b
    assert json.loads(codec.to_bytes(b))["v"] == codec.FORMAT_VERSION
    with pytest.raises(NotFoundError):
        svc.get("99")


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"type": "document"}, "type", "VALIDATION_ERROR"),
        ({"type": 3}, "type", "VALIDATION_ERROR"),
        ({"path": ""}, "path", "VALIDATION_ERROR"),
        ({"path": None}, "path", "VALIDATION_ERROR"),
        ({"agentId": " "}, "agentId", "VALIDATION_ERROR"),
        ({"agentId": 5}, "agentId", "VALIDATION_ERROR"),
        ({"workspaceRoot": 1}, "workspaceRoot", "VALIDATION_ERROR"),
        ({"url": []}, "url", "VALIDATION_ERROR"),
        ({"id": "7"}, "id", "UNKNOWN_FIELD"),
        ({"pathh": "x"}, "pathh", "UNKNOWN_FIELD"),
    ],
)
def test_create_rejects(svc: ArtifactService, change: dict, field: str, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        svc.create({"agentId": "r", "path": "p.txt", **change})
    assert (exc.value.field, exc.value.code) == (field, code)
    assert svc.list("r").items == []


def test_list_by_run_in_created_order_with_pages(
    svc: ArtifactService, clock: ScriptedClock, store: Store
) -> None:
    # The clock is not monotonic (several server processes): the list follows createdAt.
    offsets = [5, 1, 9, 1, 0, 7, 3, 3, 8, 2, 6, 4]
    made = []
    for i, off in enumerate(offsets):
        clock.now = T0 + dt.timedelta(seconds=off)
        made.append(svc.create({"agentId": "run-a" if i % 4 else "run-b", "path": f"f{i}.csv"}))
    expected = sorted((a for a in made if a.agent_id == "run-a"),
                      key=lambda a: (a.created_at, int(a.id)))
    for limit in (1, 2, 5, 100):
        seen, cursor = [], None
        while True:
            page = svc.list("run-a", limit=limit, cursor=cursor)
            seen += page.items
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected
    assert [a.agent_id for a in svc.list("run-b").items] == ["run-b"] * 3
    assert svc.list("no-such-run").items == [] and svc.list("no-such-run").next_cursor is None
    assert svc.list("run").items == []  # a prefix of a run id is another run
    with pytest.raises(ValidationError):
        svc.list("")
    with pytest.raises(ValidationError):
        svc.list("run-a", cursor="bogus")
    with pytest.raises(ValidationError):
        svc.list("run-a", limit=1001)
    assert check(store, artifacts.collections()).ok


def test_long_run_ids_stay_distinct(svc: ArtifactService) -> None:
    a, b = "r" * 200 + "1", "r" * 200 + "2"  # clipped alike in the index, told apart by digest
    svc.create({"agentId": a, "path": "x"})
    svc.create({"agentId": b, "path": "y"})
    assert [x.path for x in svc.list(a).items] == ["x"]
    assert [x.path for x in svc.list(b).items] == ["y"]
