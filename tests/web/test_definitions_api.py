"""Agent definitions and agent team definitions over HTTP (domains.md 2 and 3), lmdb store."""

from __future__ import annotations

from typing import Any

import falcon.testing
import pytest

from tests.web.api_support import (
    ManualClock,
    assert_error,
    assert_timestamps,
    created,
    first_page,
    iso,
    make_api,
    walk,
)

AGENTS = "/rest/api/agent-definitions"
TEAMS = "/rest/api/agent-team-definitions"
LISTS = ("toolNames", "inputProcessorNames", "llmResponseProcessorNames",
         "systemPromptProcessorNames", "toolExecutionResultProcessorNames",
         "toolInvocationPreprocessorNames", "lifecycleProcessorNames", "skillNames")
AGENT_FIELDS = {"id", "name", "role", "description", "avatarUrl", *LISTS,
                "systemPromptCategory", "systemPromptName", "createdAt", "updatedAt"}
TEAM_FIELDS = {"id", "name", "description", "role", "avatarUrl", "coordinatorMemberName",
               "nodes", "createdAt", "updatedAt"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(make_store: Any, clock: ManualClock) -> falcon.testing.TestClient:
    client = make_api(make_store, clock)
    for name, category, models in (("sys", "agents", None), ("sys", "agents", "gpt-4"),
                                   ("other", "agents", "claude")):
        body = {"name": name, "category": category, "promptContent": "You are an agent",
                "suitableForModels": models}
        assert client.simulate_post("/rest/api/prompts", json=body).status_code == 201
    return client


def agent_body(name: str = "writer", **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": "writes", "description": "a writer",
            "systemPromptCategory": "agents", "systemPromptName": "sys", **extra}


def new_agent(api: falcon.testing.TestClient, name: str = "writer", **extra: Any) -> dict:
    return created(api.simulate_post(AGENTS, json=agent_body(name, **extra)), AGENTS + "/")


def team_body(name: str = "crew", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": "a crew", "coordinatorMemberName": "lead",
            "nodes": [{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT"},
                      {"memberName": "sub", "referenceId": "77", "referenceType": "AGENT_TEAM"}],
            **extra}


def new_team(api: falcon.testing.TestClient, name: str = "crew", **extra: Any) -> dict:
    return created(api.simulate_post(TEAMS, json=team_body(name, **extra)), TEAMS + "/")


# == agent definitions ==========================================================================
def test_create_agent_answers_201_location_and_the_definition(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    result = api.simulate_post(AGENTS, json=agent_body())
    assert result.status_code == 201, result.text
    assert result.headers["location"] == f"{AGENTS}/1"
    body = result.json
    assert set(body) == AGENT_FIELDS
    assert body == {
        "id": "1", "name": "writer", "role": "writes", "description": "a writer",
        "avatarUrl": None, **{name: [] for name in LISTS},
        "systemPromptCategory": "agents", "systemPromptName": "sys",
        "createdAt": iso(clock.now), "updatedAt": iso(clock.now),
    }
    fetched = api.simulate_get(result.headers["location"])
    assert fetched.status_code == 200 and fetched.json == body
    assert fetched.headers["etag"]


def test_create_agent_with_lists_and_avatar(api: falcon.testing.TestClient) -> None:
    lists = {name: [f"{name}-a", f"{name}-b"] for name in LISTS}
    body = new_agent(api, avatarUrl="  https://x/a.png  ", **lists)
    assert body["avatarUrl"] == "https://x/a.png"
    for name in LISTS:
        assert body[name] == lists[name]
    assert new_agent(api, "blank-avatar", avatarUrl="   ")["avatarUrl"] is None
    assert new_agent(api, "null-avatar", avatarUrl=None, toolNames=None)["toolNames"] == []


@pytest.mark.parametrize("missing", ["name", "role", "description", "systemPromptCategory",
                                     "systemPromptName"])
def test_create_agent_requires_its_fields(api: falcon.testing.TestClient, missing: str) -> None:
    body = agent_body()
    del body[missing]
    assert_error(api.simulate_post(AGENTS, json=body), 400, field=missing)
    assert_error(api.simulate_post(AGENTS, json=dict(body, **{missing: " "})), 400,
                 field=missing)
    assert first_page(api, AGENTS) == []


def test_create_agent_needs_an_existing_prompt_family(api: falcon.testing.TestClient) -> None:
    for category, name in (("agents", "missing"), ("nope", "sys"), ("AGENTS", "sys")):
        body = agent_body(systemPromptCategory=category, systemPromptName=name)
        error = assert_error(api.simulate_post(AGENTS, json=body), 400)
        assert error["field"] in ("systemPromptName", "systemPromptCategory")
        assert name in error["detail"] and category in error["detail"]
    assert first_page(api, AGENTS) == []
    # any model and version of the family will do
    assert new_agent(api, systemPromptName="other")["systemPromptName"] == "other"


def test_agent_name_is_unique(api: falcon.testing.TestClient) -> None:
    first = new_agent(api)
    assert_error(api.simulate_post(AGENTS, json=agent_body()), 409, "CONFLICT", field="name")
    assert first_page(api, AGENTS) == [first]
    second = new_agent(api, "Writer")  # code-point exact: another name
    assert_error(api.simulate_patch(f"{AGENTS}/{second['id']}", json={"name": "writer"}),
                 409, "CONFLICT", field="name")
    assert api.simulate_get(f"{AGENTS}/{second['id']}").json == second


@pytest.mark.parametrize("field,value", [
    ("toolNames", "tool"), ("toolNames", [1]), ("skillNames", {"a": "b"}),
    ("lifecycleProcessorNames", [["x"]]), ("avatarUrl", 5), ("name", 5), ("role", []),
])
def test_agent_field_types(api: falcon.testing.TestClient, field: str, value: Any) -> None:
    assert_error(api.simulate_post(AGENTS, json=agent_body(**{field: value})), 400, field=field)


def test_get_agent_with_prompts_embeds_the_family(api: falcon.testing.TestClient) -> None:
    agent = new_agent(api)
    result = api.simulate_get(f"{AGENTS}/1", params={"includePrompts": "true"})
    assert result.status_code == 200
    body = result.json
    assert {k: v for k, v in body.items() if k != "prompts"} == agent
    assert sorted((p["name"], p["suitableForModels"]) for p in body["prompts"]) == [
        ("sys", "default"), ("sys", "gpt-4")]
    # the ETag is the definition's: it works for If-Match
    etag = result.headers["etag"]
    assert etag == api.simulate_get(f"{AGENTS}/1").headers["etag"]
    assert api.simulate_patch(f"{AGENTS}/1", json={"role": "r"},
                              headers={"If-Match": etag}).status_code == 200
    assert_error(api.simulate_get(f"{AGENTS}/1", params={"includePrompts": "perhaps"}), 400,
                 field="includePrompts")
    assert_error(api.simulate_get(f"{AGENTS}/2", params={"includePrompts": "true"}), 404,
                 "NOT_FOUND")
    assert_error(api.simulate_get(f"{AGENTS}/2"), 404, "NOT_FOUND")


def test_patch_agent_replaces_given_fields(api: falcon.testing.TestClient,
                                           clock: ManualClock) -> None:
    agent = new_agent(api, toolNames=["a", "b"], skillNames=["s"], avatarUrl="http://a")
    clock.tick(minutes=1)
    result = api.simulate_patch(f"{AGENTS}/1", json={"toolNames": ["c"], "avatarUrl": None,
                                                     "description": "new"})
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == AGENT_FIELDS
    assert body["toolNames"] == ["c"]  # wholesale
    assert body["skillNames"] == ["s"]  # omitted: unchanged
    assert body["avatarUrl"] is None  # explicit null clears
    assert body["description"] == "new" and body["name"] == "writer"
    assert body["createdAt"] == agent["createdAt"]
    assert body["updatedAt"] == iso(clock.now) != agent["updatedAt"]
    assert_timestamps(body)
    assert result.headers["etag"]
    assert api.simulate_get(f"{AGENTS}/1").json == body
    assert api.simulate_patch(f"{AGENTS}/1", json={"skillNames": []}).json["skillNames"] == []
    assert api.simulate_patch(f"{AGENTS}/1", json={"toolNames": None}).json["toolNames"] == []


def test_patch_agent_mapping_changes_only_when_both_fields_are_given(
    api: falcon.testing.TestClient,
) -> None:
    new_agent(api)
    body = api.simulate_patch(f"{AGENTS}/1", json={"systemPromptName": "other"}).json
    assert (body["systemPromptCategory"], body["systemPromptName"]) == ("agents", "sys")
    body = api.simulate_patch(f"{AGENTS}/1", json={"systemPromptName": "other",
                                                   "systemPromptCategory": "agents"}).json
    assert body["systemPromptName"] == "other"
    assert api.simulate_get(f"{AGENTS}/1").json["systemPromptName"] == "other"
    before = api.simulate_get(f"{AGENTS}/1").json
    result = api.simulate_patch(f"{AGENTS}/1", json={
        "systemPromptName": "ghost", "systemPromptCategory": "agents", "role": "changed"})
    assert_error(result, 400)
    assert api.simulate_get(f"{AGENTS}/1").json == before  # nothing half-written
    embedded = api.simulate_get(f"{AGENTS}/1", params={"includePrompts": "true"}).json
    assert [p["name"] for p in embedded["prompts"]] == ["other"]


@pytest.mark.parametrize("body,field", [
    ({"name": " "}, "name"), ({"role": None}, "role"), ({"description": ""}, "description"),
    ({"id": "5"}, "id"), ({"createdAt": "2020-01-01"}, "createdAt"), ({"tools": []}, "tools"),
    ({"toolNames": "x"}, "toolNames"),
])
def test_patch_agent_rejections(api: falcon.testing.TestClient, body: dict, field: str) -> None:
    agent = new_agent(api)
    assert_error(api.simulate_patch(f"{AGENTS}/1", json=body), 400, field=field)
    assert api.simulate_get(f"{AGENTS}/1").json == agent


def test_agent_404_412_and_delete(api: falcon.testing.TestClient, clock: ManualClock) -> None:
    assert_error(api.simulate_patch(f"{AGENTS}/1", json={"role": "x"}), 404, "NOT_FOUND")
    assert_error(api.simulate_delete(f"{AGENTS}/1"), 404, "NOT_FOUND")
    new_agent(api)
    stale = api.simulate_get(f"{AGENTS}/1").headers["etag"]
    clock.tick()
    assert api.simulate_patch(f"{AGENTS}/1", json={"role": "x"}).status_code == 200
    assert_error(api.simulate_patch(f"{AGENTS}/1", json={"role": "y"},
                                    headers={"If-Match": stale}), 412, "PRECONDITION_FAILED")
    assert_error(api.simulate_delete(f"{AGENTS}/1", headers={"If-Match": stale}), 412,
                 "PRECONDITION_FAILED")
    result = api.simulate_delete(f"{AGENTS}/1")
    assert result.status_code == 204 and not result.content
    assert_error(api.simulate_get(f"{AGENTS}/1"), 404, "NOT_FOUND")
    assert_error(api.simulate_get(f"{AGENTS}/1", params={"includePrompts": "true"}), 404)
    # the name is free again, the id is not reused
    assert new_agent(api)["id"] == "2"


def test_agent_ids_are_never_reused(api: falcon.testing.TestClient) -> None:
    assert [new_agent(api, f"a{i}")["id"] for i in range(3)] == ["1", "2", "3"]
    assert api.simulate_delete(f"{AGENTS}/3").status_code == 204
    assert new_agent(api, "a9")["id"] == "4"


def test_agent_list_by_name_and_pages(api: falcon.testing.TestClient) -> None:
    names = ["delta", "Alpha", "charlie", "bravo", "alpha", "echo"]
    for name in names:
        new_agent(api, name)
    everything = first_page(api, AGENTS)
    assert [a["name"] for a in everything] == sorted(names)
    assert all(set(a) == AGENT_FIELDS for a in everything)
    for limit in (1, 4, 6):
        items, pages = walk(api, AGENTS, limit)
        assert items == everything and pages == -(-len(names) // limit)
    assert_error(api.simulate_get(AGENTS, params={"limit": "0"}), 400, field="limit")
    assert_error(api.simulate_get(AGENTS, params={"cursor": "%%%"}), 400, field="cursor")


# == agent team definitions =====================================================================
def test_create_team_answers_201_location_and_the_team(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    result = api.simulate_post(TEAMS, json=team_body(role="  leads  ", avatarUrl=" "))
    assert result.status_code == 201, result.text
    assert result.headers["location"] == f"{TEAMS}/1"
    body = result.json
    assert set(body) == TEAM_FIELDS
    assert body == {
        "id": "1", "name": "crew", "description": "a crew", "role": "leads", "avatarUrl": None,
        "coordinatorMemberName": "lead", "nodes": team_body()["nodes"],
        "createdAt": iso(clock.now), "updatedAt": iso(clock.now),
    }
    fetched = api.simulate_get(result.headers["location"])
    assert fetched.status_code == 200 and fetched.json == body and fetched.headers["etag"]
    assert_error(api.simulate_get(f"{TEAMS}/2"), 404, "NOT_FOUND")


@pytest.mark.parametrize("missing", ["name", "description", "coordinatorMemberName"])
def test_create_team_requires_its_fields(api: falcon.testing.TestClient, missing: str) -> None:
    body = team_body()
    del body[missing]
    assert_error(api.simulate_post(TEAMS, json=body), 400, field=missing)
    assert first_page(api, TEAMS) == []


@pytest.mark.parametrize("nodes,field", [
    ([{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT"},
      {"memberName": "lead", "referenceId": "2", "referenceType": "AGENT"}],
     "nodes[1].memberName"),
    ([{"memberName": "lead", "referenceId": "1", "referenceType": "agent"}],
     "nodes[0].referenceType"),
    ([{"memberName": "lead", "referenceId": "1", "referenceType": "TEAM"}],
     "nodes[0].referenceType"),
    ([{"memberName": "lead", "referenceId": "1"}], "nodes[0].referenceType"),
    ([{"memberName": " ", "referenceId": "1", "referenceType": "AGENT"}], "nodes[0].memberName"),
    ([{"memberName": "lead", "referenceId": "1", "referenceType": "AGENT", "extra": 1}],
     "nodes[0].extra"),
    ([{"memberName": "other", "referenceId": "1", "referenceType": "AGENT"}],
     "coordinatorMemberName"),
    ([], "coordinatorMemberName"),
    (["lead"], "nodes[0]"),
    ("lead", "nodes"),
])
def test_team_rules_are_400(api: falcon.testing.TestClient, nodes: Any, field: str) -> None:
    assert_error(api.simulate_post(TEAMS, json=team_body(nodes=nodes)), 400, field=field)
    assert first_page(api, TEAMS) == []


def test_team_references_are_not_checked_and_names_are_unique(
    api: falcon.testing.TestClient,
) -> None:
    team = new_team(api)  # references 1 and 77 exist nowhere
    assert team["nodes"][1]["referenceId"] == "77"
    assert_error(api.simulate_post(TEAMS, json=team_body()), 409, "CONFLICT", field="name")
    other = new_team(api, "crew2")
    assert_error(api.simulate_patch(f"{TEAMS}/{other['id']}", json={"name": "crew"}), 409,
                 "CONFLICT", field="name")
    assert first_page(api, TEAMS) == [team, other]


def test_patch_team(api: falcon.testing.TestClient, clock: ManualClock) -> None:
    team = new_team(api, role="r", avatarUrl="http://a")
    clock.tick(hours=1)
    nodes = [{"memberName": "boss", "referenceId": "3", "referenceType": "AGENT_TEAM"}]
    result = api.simulate_patch(f"{TEAMS}/1", json={"nodes": nodes,
                                                    "coordinatorMemberName": "boss",
                                                    "role": None})
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == TEAM_FIELDS
    assert body["nodes"] == nodes and body["coordinatorMemberName"] == "boss"
    assert body["role"] is None and body["avatarUrl"] == "http://a"
    assert body["createdAt"] == team["createdAt"] and body["updatedAt"] == iso(clock.now)
    assert result.headers["etag"]
    # new nodes that leave the coordinator out are rejected, nothing changes
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"nodes": team["nodes"]}), 400,
                 field="coordinatorMemberName")
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"coordinatorMemberName": "lead"}), 400,
                 field="coordinatorMemberName")
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"createdAt": "x"}), 400,
                 field="createdAt")
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"members": []}), 400, field="members")
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"description": " "}), 400,
                 field="description")
    assert api.simulate_get(f"{TEAMS}/1").json == body
    assert api.simulate_patch(f"{TEAMS}/1", json={"avatarUrl": "  "}).json["avatarUrl"] is None


def test_team_404_412_delete_and_ids(api: falcon.testing.TestClient,
                                     clock: ManualClock) -> None:
    assert_error(api.simulate_patch(f"{TEAMS}/1", json={"role": "x"}), 404, "NOT_FOUND")
    assert_error(api.simulate_delete(f"{TEAMS}/1"), 404, "NOT_FOUND")
    assert [new_team(api, f"t{i}")["id"] for i in range(3)] == ["1", "2", "3"]
    stale = api.simulate_get(f"{TEAMS}/3").headers["etag"]
    clock.tick()
    assert api.simulate_patch(f"{TEAMS}/3", json={"role": "x"}).status_code == 200
    assert_error(api.simulate_patch(f"{TEAMS}/3", json={"role": "y"},
                                    headers={"If-Match": stale}), 412, "PRECONDITION_FAILED")
    assert_error(api.simulate_delete(f"{TEAMS}/3", headers={"If-Match": stale}), 412)
    fresh = api.simulate_get(f"{TEAMS}/3").headers["etag"]
    assert api.simulate_delete(f"{TEAMS}/3", headers={"If-Match": fresh}).status_code == 204
    assert_error(api.simulate_get(f"{TEAMS}/3"), 404, "NOT_FOUND")
    assert new_team(api, "t3")["id"] == "4"


def test_team_list_by_name_and_pages(api: falcon.testing.TestClient) -> None:
    names = ["b", "a", "D", "c", "e"]
    for name in names:
        new_team(api, name)
    everything = first_page(api, TEAMS)
    assert [t["name"] for t in everything] == sorted(names)
    for limit in (1, 2, 5):
        items, pages = walk(api, TEAMS, limit)
        assert items == everything and pages == -(-len(names) // limit)
