"""Agent team definitions (domains.md section 3) on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domains import agent_teams
from domains.agent_teams import codec, repository
from domains.agent_teams.service import AgentTeamService
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from engine import Store
from engine.indexes import check
from tests.domains.json_commands import AGENT_TEAMS, JsonCommands
from tests.domains.test_prompts import TickingClock, race, walk


@pytest.fixture
def svc(store: Store) -> Any:
    return JsonCommands(AgentTeamService(store, clock=TickingClock()), AGENT_TEAMS)


def node(member: str, ref: str = "1", kind: str = "AGENT") -> dict[str, Any]:
    return {"memberName": member, "referenceId": ref, "referenceType": kind}


def body(**more: Any) -> dict[str, Any]:
    return {"name": "crew", "description": "a crew", "coordinatorMemberName": "lead",
            "nodes": [node("lead"), node("helper", "7", "AGENT_TEAM")], **more}


def test_create_and_json(svc: AgentTeamService) -> None:
    t = svc.create(body(role="  ", avatarUrl=" http://x/y.png "))
    doc = codec.to_json(t)
    assert doc["id"] == "1" and doc["name"] == "crew" and doc["description"] == "a crew"
    assert (doc["role"], doc["avatarUrl"]) == (None, "http://x/y.png")
    assert doc["coordinatorMemberName"] == "lead"
    assert doc["nodes"] == [node("lead"), node("helper", "7", "AGENT_TEAM")]
    assert doc["createdAt"] == doc["updatedAt"] and doc["createdAt"].endswith("Z")
    assert svc.get(t.id) == t
    assert svc.create(body(name="solo", role=" boss ")).role == "boss"


@pytest.mark.parametrize(
    "payload, field, code",
    [
        (body(name=" "), "name", "VALIDATION_ERROR"),
        ({k: v for k, v in body().items() if k != "description"}, "description",
         "VALIDATION_ERROR"),
        ({k: v for k, v in body().items() if k != "coordinatorMemberName"},
         "coordinatorMemberName", "VALIDATION_ERROR"),
        (body(coordinatorMemberName="ghost"), "coordinatorMemberName", "VALIDATION_ERROR"),
        (body(nodes=[]), "coordinatorMemberName", "VALIDATION_ERROR"),
        (body(nodes=[node("lead"), node("lead", "2")]), "nodes[1].memberName",
         "VALIDATION_ERROR"),
        (body(nodes=[node("lead", kind="agent")]), "nodes[0].referenceType", "VALIDATION_ERROR"),
        (body(nodes=[node("lead", kind="TEAM")]), "nodes[0].referenceType", "VALIDATION_ERROR"),
        (body(nodes=[{"memberName": "lead", "referenceType": "AGENT"}]),
         "nodes[0].referenceId", "VALIDATION_ERROR"),
        (body(nodes=[{**node("lead"), "extra": 1}]), "nodes[0].extra", "UNKNOWN_FIELD"),
        (body(nodes=["lead"]), "nodes[0]", "VALIDATION_ERROR"),
        (body(nodes={"lead": {}}), "nodes", "VALIDATION_ERROR"),
        (body(members=[]), "members", "UNKNOWN_FIELD"),
        (body(role=3), "role", "VALIDATION_ERROR"),
    ],
)
def test_create_rejects_bad_input(svc: AgentTeamService, payload, field, code) -> None:
    with pytest.raises(ValidationError) as err:
        svc.create(payload)
    assert (err.value.field, err.value.code) == (field, code)
    assert svc.list().items == []


def test_update_replaces_given_fields(svc: AgentTeamService) -> None:
    t = svc.create(body(role="r", avatarUrl="a"))
    u = svc.update(t.id, {"description": "new"})
    assert (u.description, u.role, u.nodes) == ("new", "r", t.nodes)
    assert u.updated_at > t.updated_at and u.created_at == t.created_at
    u = svc.update(t.id, {"nodes": [node("boss")], "coordinatorMemberName": "boss",
                          "role": None, "avatarUrl": ""})
    assert [n.member_name for n in u.nodes] == ["boss"]
    assert (u.coordinator_member_name, u.role, u.avatar_url) == ("boss", None, None)
    assert svc.get(t.id) == u


def test_update_checks_the_merged_team(svc: AgentTeamService) -> None:
    t = svc.create(body())
    with pytest.raises(ValidationError) as err:
        svc.update(t.id, {"nodes": [node("helper")]})  # the coordinator "lead" would vanish
    assert err.value.field == "coordinatorMemberName"
    with pytest.raises(ValidationError) as err:
        svc.update(t.id, {"coordinatorMemberName": "nobody"})
    assert err.value.field == "coordinatorMemberName"
    with pytest.raises(ValidationError) as err:
        svc.update(t.id, {"createdAt": "2020-01-01"})
    assert err.value.code == "READ_ONLY_FIELD"
    assert svc.get(t.id) == t
    with pytest.raises(NotFoundError):
        svc.update("404", {"description": "x"})


def test_unique_names_and_delete(svc: AgentTeamService, store: Store) -> None:
    a = svc.create(body())
    with pytest.raises(ConflictError) as err:
        svc.create(body())
    assert err.value.field == "name"
    b = svc.create(body(name="other"))
    with pytest.raises(ConflictError):
        svc.update(b.id, {"name": "crew"})
    svc.delete(a.id)
    with pytest.raises(NotFoundError):
        svc.get(a.id)
    with pytest.raises(NotFoundError):
        svc.delete(a.id)
    assert svc.update(b.id, {"name": "crew"}).name == "crew"
    assert svc.create(body(name="third")).id == "3"
    assert check(store, agent_teams.collections()).ok


def test_etag_preconditions(svc: AgentTeamService) -> None:
    t = svc.create(body())
    with pytest.raises(PreconditionFailedError):
        svc.update(t.id, {"description": "x"}, expected_etag="old")
    with pytest.raises(PreconditionFailedError):
        svc.delete(t.id, expected_etag="old")
    u = svc.update(t.id, {"description": "x"}, expected_etag=svc.etag(t))
    svc.delete(t.id, expected_etag=svc.etag(u))


def test_list_by_name_and_cursor_walk(svc: AgentTeamService) -> None:
    for name in ("delta", "alpha", "Charlie", "bravo", "echo"):
        svc.create(body(name=name))
    everything = svc.list().items
    assert [t.name for t in everything] == ["Charlie", "alpha", "bravo", "delta", "echo"]
    for limit in (1, 2, 4, 5):
        assert walk(svc.list, limit) == everything


def test_stored_records_are_versioned(svc: AgentTeamService, store: Store) -> None:
    t = svc.create(body())
    with store.begin() as txn:
        doc = json.loads(repository.TEAMS.get(txn, t.id))
    assert doc["v"] == 1 and doc["nodes"][0] == node("lead")
    assert codec.from_bytes(json.dumps(doc).encode()) == t


def test_race_16_threads_same_name(svc: AgentTeamService, store: Store) -> None:
    results = race(16, lambda i: svc.create(body(description=f"d{i}")))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if r is not winners[0]), results
    assert [t.id for t in svc.list().items] == [winners[0].id]
    assert check(store, agent_teams.collections()).ok
