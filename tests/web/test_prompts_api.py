"""Prompts over HTTP (api.md "Prompts", domains.md 1), against the lmdb store."""

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

BASE = "/rest/api/prompts"
FIELDS = {"id", "name", "category", "promptContent", "version", "parentId", "isActive",
          "description", "suitableForModels", "createdAt", "updatedAt"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def api(make_store: Any, clock: ManualClock) -> falcon.testing.TestClient:
    return make_api(make_store, clock)


def new(api: falcon.testing.TestClient, name: str = "greeter", category: str = "chat",
        content: str = "Hello", **extra: Any) -> dict[str, Any]:
    body = {"name": name, "category": category, "promptContent": content, **extra}
    return created(api.simulate_post(BASE, json=body), BASE + "/")


def get(api: falcon.testing.TestClient, prompt_id: str) -> dict[str, Any]:
    result = api.simulate_get(f"{BASE}/{prompt_id}")
    assert result.status_code == 200, result.text
    return result.json


# -- create -------------------------------------------------------------------------------------
def test_create_answers_201_location_and_the_whole_prompt(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    result = api.simulate_post(BASE, json={"name": "greeter", "category": "chat",
                                           "promptContent": "Hello"})
    assert result.status_code == 201
    assert result.headers["location"] == f"{BASE}/1"
    body = result.json
    assert set(body) == FIELDS
    assert body == {
        "id": "1", "name": "greeter", "category": "chat", "promptContent": "Hello",
        "version": 1, "parentId": None, "isActive": True, "description": None,
        "suitableForModels": "default", "createdAt": iso(clock.now), "updatedAt": iso(clock.now),
    }
    assert_timestamps(body)
    # what the Location names is what was answered
    fetched = api.simulate_get(result.headers["location"])
    assert fetched.status_code == 200 and fetched.json == body
    assert fetched.headers.get("etag")


def test_create_with_every_optional_field(api: falcon.testing.TestClient) -> None:
    body = new(api, description="says hi", suitableForModels=" gpt-4 , claude-3 ,")
    assert body["description"] == "says hi"
    assert body["suitableForModels"] == "gpt-4,claude-3"
    assert new(api, name="other", suitableForModels="   ")["suitableForModels"] == "default"
    assert new(api, name="third", suitableForModels=None)["suitableForModels"] == "default"


def test_versions_grow_per_family_and_only_a_family_s_first_prompt_is_active(
    api: falcon.testing.TestClient,
) -> None:
    first = new(api)
    second = new(api, content="Hello again")
    assert (first["version"], first["isActive"]) == (1, True)
    assert (second["version"], second["isActive"]) == (2, False)
    assert second["parentId"] is None
    # another model set is another family: version 1, active
    other_models = new(api, suitableForModels="gpt-4")
    assert (other_models["version"], other_models["isActive"]) == (1, True)
    # the canonical model list decides the family: spacing does not make a new one
    new(api, suitableForModels="gpt-4, claude")
    again = new(api, suitableForModels=" gpt-4,claude ")
    assert (again["version"], again["isActive"]) == (2, False)
    # another category or name is another family
    assert new(api, category="CHAT")["version"] == 1
    assert new(api, name="Greeter")["version"] == 1


@pytest.mark.parametrize("missing", ["name", "category", "promptContent"])
def test_create_requires_name_category_and_content(
    api: falcon.testing.TestClient, missing: str
) -> None:
    body = {"name": "n", "category": "c", "promptContent": "p"}
    del body[missing]
    assert_error(api.simulate_post(BASE, json=body), 400, field=missing)
    for blank in ("", "   ", None):
        assert_error(api.simulate_post(BASE, json=dict(body, **{missing: blank})), 400,
                     field=missing)
    assert first_page(api, BASE) == []


@pytest.mark.parametrize("path", [BASE, f"{BASE}/1", f"{BASE}/1/revisions"])
def test_unknown_fields_are_400_naming_the_field(
    api: falcon.testing.TestClient, path: str
) -> None:
    prompt = new(api)
    method = "PATCH" if path == f"{BASE}/1" else "POST"
    body = {"promptContent": "x", "promptContnet": "typo"}
    if path == BASE:
        body.update(name="n", category="c")
    result = api.simulate_request(method, path, json=body)
    assert_error(result, 400, field="promptContnet")
    assert first_page(api, BASE) == [prompt]


# -- get, etag ------------------------------------------------------------------------------------
def test_get_has_an_etag_and_missing_is_404(api: falcon.testing.TestClient) -> None:
    prompt = new(api)
    result = api.simulate_get(f"{BASE}/{prompt['id']}")
    assert result.status_code == 200 and result.json == prompt
    assert result.headers["etag"]
    for missing in ("2", "0", "abc", "01", "-1"):
        assert_error(api.simulate_get(f"{BASE}/{missing}"), 404, "NOT_FOUND")


# -- update ---------------------------------------------------------------------------------------
def test_patch_changes_given_fields_keeps_the_rest_and_moves_updated_at(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    prompt = new(api, description="first")
    clock.tick(seconds=5)
    result = api.simulate_patch(f"{BASE}/1", json={"promptContent": "Howdy"})
    assert result.status_code == 200, result.text
    body = result.json
    assert set(body) == FIELDS
    assert body["promptContent"] == "Howdy"
    assert body["description"] == "first"  # omitted: unchanged
    assert body["version"] == 1 and body["createdAt"] == prompt["createdAt"]
    assert body["updatedAt"] == iso(clock.now) and body["updatedAt"] != prompt["updatedAt"]
    assert result.headers["etag"]
    assert get(api, "1") == body


def test_patch_explicit_null_clears_description_and_resets_models(
    api: falcon.testing.TestClient,
) -> None:
    new(api, description="d", suitableForModels="gpt-4")
    body = api.simulate_patch(f"{BASE}/1", json={"description": None}).json
    assert body["description"] is None and body["suitableForModels"] == "gpt-4"
    body = api.simulate_patch(f"{BASE}/1", json={"suitableForModels": None}).json
    assert body["suitableForModels"] == "default"
    assert get(api, "1")["description"] is None


@pytest.mark.parametrize("field", ["name", "category", "promptContent"])
def test_patch_rejects_a_blank_name_category_or_content(
    api: falcon.testing.TestClient, field: str
) -> None:
    prompt = new(api)
    for bad in ("", "  ", None, 3):
        assert_error(api.simulate_patch(f"{BASE}/1", json={field: bad}), 400, field=field)
    assert get(api, "1") == prompt


@pytest.mark.parametrize("field", ["version", "id", "parentId", "createdAt", "updatedAt"])
def test_patch_cannot_change_version_or_other_server_fields(
    api: falcon.testing.TestClient, field: str
) -> None:
    prompt = new(api)
    value = 7 if field == "version" else "9"
    assert_error(api.simulate_patch(f"{BASE}/1", json={field: value}), 400, field=field)
    assert get(api, "1") == prompt


def test_patch_that_breaks_family_version_uniqueness_is_409(
    api: falcon.testing.TestClient,
) -> None:
    new(api, name="a")
    b = new(api, name="b")
    result = api.simulate_patch(f"{BASE}/{b['id']}", json={"name": "a"})
    assert_error(result, 409, "CONFLICT", field="name")
    assert get(api, b["id"]) == b
    result = api.simulate_patch(f"{BASE}/{b['id']}", json={"suitableForModels": "gpt-4"})
    assert result.status_code == 200  # a new family of its own
    new(api, name="b", suitableForModels="claude")
    assert_error(api.simulate_patch(f"{BASE}/{b['id']}", json={"suitableForModels": "claude"}),
                 409, "CONFLICT", field="suitableForModels")


def test_patch_isactive_true_activates_and_keeps_one_active_per_family(
    api: falcon.testing.TestClient,
) -> None:
    new(api)
    second = new(api, content="v2")
    body = api.simulate_patch(f"{BASE}/{second['id']}", json={"isActive": True}).json
    assert body["isActive"] is True
    assert [p["id"] for p in first_page(api, BASE, {"isActive": "true"})] == [second["id"]]
    body = api.simulate_patch(f"{BASE}/{second['id']}", json={"isActive": False}).json
    assert body["isActive"] is False
    assert first_page(api, BASE, {"isActive": "true"}) == []
    assert_error(api.simulate_patch(f"{BASE}/1", json={"isActive": "yes"}), 400,
                 field="isActive")


def test_an_active_prompt_moved_into_a_family_with_an_active_prompt_arrives_inactive(
    api: falcon.testing.TestClient,
) -> None:
    a1 = new(api, name="a")
    new(api, name="b")
    b2 = new(api, name="b", content="b2")
    assert api.simulate_post(f"{BASE}/{b2['id']}/activate").json["isActive"] is True
    moved = api.simulate_patch(f"{BASE}/{b2['id']}", json={"name": "a"})
    assert moved.status_code == 200, moved.text
    assert moved.json["version"] == 2
    active_a = [p for p in first_page(api, BASE, {"isActive": "true"}) if p["name"] == "a"]
    assert [p["id"] for p in active_a] == [a1["id"]]


def test_patch_of_a_missing_prompt_is_404(api: falcon.testing.TestClient) -> None:
    assert_error(api.simulate_patch(f"{BASE}/1", json={"description": "x"}), 404, "NOT_FOUND")


def test_stale_if_match_is_412_on_patch_delete_and_activate(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    new(api)
    old_etag = api.simulate_get(f"{BASE}/1").headers["etag"]
    clock.tick()
    fresh = api.simulate_patch(f"{BASE}/1", json={"description": "x"}, headers={
        "If-Match": old_etag})
    assert fresh.status_code == 200
    for method, body in (("PATCH", {"description": "y"}), ("DELETE", None), ("POST", None)):
        path = f"{BASE}/1/activate" if method == "POST" else f"{BASE}/1"
        result = api.simulate_request(method, path, json=body, headers={"If-Match": old_etag})
        assert_error(result, 412, "PRECONDITION_FAILED")
    assert get(api, "1")["description"] == "x"
    activated = api.simulate_post(f"{BASE}/1/activate",
                                  headers={"If-Match": fresh.headers["etag"]})
    assert activated.status_code == 200
    assert api.simulate_delete(f"{BASE}/1", headers={"If-Match": "*"}).status_code == 204


# -- delete, ids ----------------------------------------------------------------------------------
def test_delete_is_204_then_404_and_does_not_cascade(api: falcon.testing.TestClient) -> None:
    parent = new(api)
    child = created(api.simulate_post(f"{BASE}/{parent['id']}/revisions",
                                      json={"promptContent": "v2"}))
    result = api.simulate_delete(f"{BASE}/{parent['id']}")
    assert result.status_code == 204 and not result.content
    assert_error(api.simulate_get(f"{BASE}/{parent['id']}"), 404, "NOT_FOUND")
    assert_error(api.simulate_delete(f"{BASE}/{parent['id']}"), 404, "NOT_FOUND")
    assert get(api, child["id"])["parentId"] == parent["id"]  # dangling, allowed


def test_ids_are_decimal_strings_never_reused_after_deleting_the_highest(
    api: falcon.testing.TestClient,
) -> None:
    ids = [new(api, name=f"p{i}")["id"] for i in range(3)]
    assert ids == ["1", "2", "3"]
    assert api.simulate_delete(f"{BASE}/3").status_code == 204
    assert new(api, name="later")["id"] == "4"
    assert api.simulate_delete(f"{BASE}/4").status_code == 204
    assert api.simulate_delete(f"{BASE}/2").status_code == 204
    assert new(api, name="latest")["id"] == "5"


# -- revisions ------------------------------------------------------------------------------------
def test_revision_is_a_create_in_the_family_with_parent_id(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    first = new(api, description="d", suitableForModels="gpt-4")
    clock.tick()
    result = api.simulate_post(f"{BASE}/{first['id']}/revisions", json={"promptContent": "v2"})
    revision = created(result, BASE + "/")
    assert result.headers["location"] == f"{BASE}/{revision['id']}"
    assert set(revision) == FIELDS
    assert revision["parentId"] == first["id"]
    assert revision["version"] == 2 and revision["isActive"] is False
    assert (revision["name"], revision["category"], revision["suitableForModels"]) == (
        "greeter", "chat", "gpt-4")
    assert revision["promptContent"] == "v2"
    assert revision["createdAt"] == iso(clock.now)
    # a revision of the revision: the family's highest + 1, parent the revision
    third = created(api.simulate_post(f"{BASE}/{revision['id']}/revisions",
                                      json={"promptContent": "v3"}))
    assert (third["version"], third["parentId"], third["isActive"]) == (3, revision["id"], False)
    # of an older version: still the family's highest + 1
    fourth = created(api.simulate_post(f"{BASE}/{first['id']}/revisions",
                                       json={"promptContent": "v4"}))
    assert (fourth["version"], fourth["parentId"]) == (4, first["id"])


def test_revision_needs_content_and_an_existing_prompt(api: falcon.testing.TestClient) -> None:
    new(api)
    assert_error(api.simulate_post(f"{BASE}/1/revisions", json={}), 400, field="promptContent")
    assert_error(api.simulate_post(f"{BASE}/1/revisions", json={"promptContent": " "}), 400,
                 field="promptContent")
    assert_error(api.simulate_post(f"{BASE}/1/revisions", json={"promptContent": "x",
                                                                "name": "n"}), 400, field="name")
    assert_error(api.simulate_post(f"{BASE}/9/revisions", json={"promptContent": "x"}), 404,
                 "NOT_FOUND")
    assert len(first_page(api, BASE)) == 1


# -- activate -------------------------------------------------------------------------------------
def test_activate_makes_exactly_one_active_per_family(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    v1 = new(api)
    v2 = new(api, content="v2")
    v3 = new(api, content="v3")
    other = new(api, suitableForModels="gpt-4")
    clock.tick()
    result = api.simulate_post(f"{BASE}/{v3['id']}/activate")
    assert result.status_code == 200, result.text
    assert result.json["id"] == v3["id"] and result.json["isActive"] is True
    assert result.json["updatedAt"] == iso(clock.now)
    assert result.headers["etag"]
    assert get(api, v1["id"])["isActive"] is False
    assert get(api, v2["id"])["isActive"] is False
    assert get(api, other["id"])["isActive"] is True  # another family is untouched
    # activating the active one changes nothing
    again = api.simulate_post(f"{BASE}/{v3['id']}/activate")
    assert again.status_code == 200 and again.json["isActive"] is True
    active = first_page(api, BASE, {"isActive": "true"})
    assert sorted(p["id"] for p in active) == sorted([v3["id"], other["id"]])
    assert_error(api.simulate_post(f"{BASE}/99/activate"), 404, "NOT_FOUND")


# -- list -----------------------------------------------------------------------------------------
def test_list_order_filters_and_pages(api: falcon.testing.TestClient) -> None:
    new(api, name="beta", category="zeta")
    new(api, name="alpha", category="zeta")
    new(api, name="alpha", category="zeta", content="v2")
    new(api, name="alpha", category="zeta", content="v3")
    new(api, name="Gamma", category="Alpha")
    new(api, name="delta", category="alpha")
    expected = [("Alpha", "Gamma", 1), ("alpha", "delta", 1), ("zeta", "alpha", 3),
                ("zeta", "alpha", 2), ("zeta", "alpha", 1), ("zeta", "beta", 1)]
    everything = first_page(api, BASE)
    assert [(p["category"], p["name"], p["version"]) for p in everything] == expected
    assert all(set(p) == FIELDS for p in everything)
    for limit in (1, 2, 4, 6, 7):
        items, pages = walk(api, BASE, limit)
        assert items == everything
        assert pages == max(1, -(-len(expected) // limit))
    # case-insensitive substring filters, isActive exact
    assert [p["name"] for p in first_page(api, BASE, {"name": "AMM"})] == ["Gamma"]
    assert {p["category"] for p in first_page(api, BASE, {"category": "ALP"})} == {"Alpha",
                                                                                     "alpha"}
    assert [p["version"] for p in first_page(api, BASE, {"name": "alpha", "category": "et"})
            ] == [3, 2, 1]
    inactive = first_page(api, BASE, {"isActive": "false"})
    assert [(p["name"], p["version"]) for p in inactive] == [("alpha", 3), ("alpha", 2)]
    active, _ = walk(api, BASE, 1, {"isActive": "true"})
    assert [(p["category"], p["name"]) for p in active] == [
        ("Alpha", "Gamma"), ("alpha", "delta"), ("zeta", "alpha"), ("zeta", "beta")]
    filtered, pages = walk(api, BASE, 1, {"name": "ALPHA"})
    assert [p["version"] for p in filtered] == [3, 2, 1] and pages == 3
    assert first_page(api, BASE, {"name": "nothing"}) == []


@pytest.mark.parametrize("params,field", [
    ({"isActive": "maybe"}, "isActive"), ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"),
    ({"limit": "ten"}, "limit"), ({"limit": "9" * 60}, "limit"), ({"cursor": "!!bad"}, "cursor"),
    ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),
])
def test_bad_list_parameters_are_400(api: falcon.testing.TestClient, params: dict,
                                     field: str) -> None:
    new(api)
    assert_error(api.simulate_get(BASE, params=params), 400, field=field)


# -- categories and templates ---------------------------------------------------------------------
def test_categories_are_a_sorted_plain_array_of_active_prompts(
    api: falcon.testing.TestClient,
) -> None:
    result = api.simulate_get("/rest/api/prompt-categories")
    assert result.status_code == 200 and result.json == []
    new(api, name="zed", category="b")
    new(api, name="abe", category="b")
    new(api, name="abe", category="b", content="v2")  # same name twice: listed once
    new(api, name="abe", category="b", suitableForModels="gpt-4")
    new(api, name="only", category="a")
    hidden = new(api, name="hidden", category="c")
    api.simulate_patch(f"{BASE}/{hidden['id']}", json={"isActive": False})
    result = api.simulate_get("/rest/api/prompt-categories")
    assert result.status_code == 200
    assert result.json == [{"category": "a", "names": ["only"]},
                           {"category": "b", "names": ["abe", "zed"]}]


def test_template_resolution_by_model_then_default_else_404(
    api: falcon.testing.TestClient,
) -> None:
    path = "/rest/api/prompt-templates"
    default = new(api, name="sys", category="agent", content="generic")
    specific = new(api, name="sys", category="agent", content="for claude",
                   suitableForModels="gpt-4,claude-3")
    # a newer, inactive revision suitable for the model is not a candidate
    api.simulate_post(f"{BASE}/{specific['id']}/revisions", json={"promptContent": "draft"})

    def resolve(model: str) -> falcon.testing.Result:
        return api.simulate_get(path, params={"name": "sys", "category": "agent", "model": model})

    result = resolve("claude-3")
    assert result.status_code == 200 and result.json == specific
    assert result.headers.get("etag")
    assert resolve("gpt-4").json["id"] == specific["id"]
    assert resolve("gpt").json["id"] == default["id"]  # no substring match
    assert resolve("llama").json["id"] == default["id"]
    # without a default, an unsuitable model finds nothing
    new(api, name="only", category="agent", suitableForModels="gpt-4")
    assert_error(api.simulate_get(path, params={"name": "only", "category": "agent",
                                                "model": "llama"}), 404, "NOT_FOUND")
    assert_error(api.simulate_get(path, params={"name": "SYS", "category": "agent",
                                                "model": "gpt-4"}), 404, "NOT_FOUND")
    # deactivating the default leaves nothing for llama
    api.simulate_patch(f"{BASE}/{default['id']}", json={"isActive": False})
    assert_error(resolve("llama"), 404, "NOT_FOUND")
    for missing in ("name", "category", "model"):
        params = {"name": "sys", "category": "agent", "model": "gpt-4"}
        del params[missing]
        assert_error(api.simulate_get(path, params=params), 400, field=missing)


# -- the GET of one prompt: answered from the stored bytes, the same answer as everywhere --------
def test_get_answers_byte_for_byte_what_the_write_answered_and_follows_changes(
    api: falcon.testing.TestClient, clock: ManualClock
) -> None:
    made = api.simulate_post(BASE, json={"name": "g", "category": "c", "promptContent": "Hé \u2603",
                                         "suitableForModels": "gpt"})
    assert made.status_code == 201
    path = made.headers["location"]
    for _ in range(3):  # the first GET builds the answer, the later ones reuse it
        got = api.simulate_get(path)
        assert got.status_code == 200
        assert got.content == made.content
        assert got.headers["etag"] == made.headers["etag"]
        assert got.headers["content-type"] == made.headers["content-type"]
    clock.tick(seconds=5)
    patched = api.simulate_patch(path, json={"promptContent": "changed"},
                                 headers={"If-Match": made.headers["etag"]})
    assert patched.status_code == 200
    got = api.simulate_get(path)
    assert got.content == patched.content and got.json["promptContent"] == "changed"
    assert got.headers["etag"] == patched.headers["etag"] != made.headers["etag"]
    # The old ETag no longer matches: the answer was not kept past the change.
    stale = api.simulate_patch(path, json={"description": "x"},
                               headers={"If-Match": made.headers["etag"]})
    assert stale.status_code == 412
