"""Agent definitions and their prompt mapping (domains.md section 2) on every backend."""

from __future__ import annotations

import json
from typing import Any

import pytest

from domains import agent_definitions
from domains.agent_definitions import codec, repository
from domains.agent_definitions.service import AgentDefinitionService
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from domains.prompts.service import PromptService
from engine import Store
from engine.indexes import check
from tests.domains.json_commands import AGENT_DEFINITIONS, PROMPTS, JsonCommands
from tests.domains.test_prompts import TickingClock, race, walk

LISTS = ("toolNames", "inputProcessorNames", "llmResponseProcessorNames",
         "systemPromptProcessorNames", "toolExecutionResultProcessorNames",
         "toolInvocationPreprocessorNames", "lifecycleProcessorNames", "skillNames")


@pytest.fixture
def clock() -> TickingClock:
    return TickingClock()


@pytest.fixture
def prompts(store: Store, clock: TickingClock) -> Any:
    svc = JsonCommands(PromptService(store, clock=clock), PROMPTS)
    svc.create({"name": "sys", "category": "agent", "promptContent": "You are..."})
    svc.create({"name": "sys", "category": "agent", "promptContent": "v2",
                "suitableForModels": "gpt-4"})
    svc.create({"name": "other", "category": "agent", "promptContent": "x"})
    return svc


@pytest.fixture
def svc(store: Store, clock: TickingClock, prompts: Any) -> Any:
    return JsonCommands(AgentDefinitionService(store, clock=clock), AGENT_DEFINITIONS)


def body(**more: Any) -> dict[str, Any]:
    return {"name": "writer", "role": "writes", "description": "a writer",
            "systemPromptCategory": "agent", "systemPromptName": "sys", **more}


def all_ok(store: Store) -> bool:
    from domains import prompts

    report = check(store, agent_definitions.collections() + prompts.collections())
    return report.ok


def test_create_defaults_and_json(svc: AgentDefinitionService) -> None:
    d = svc.create(body(avatarUrl="  http://a/b.png ", toolNames=["search"]))
    doc = codec.to_json(d)
    assert doc["id"] == "1" and doc["avatarUrl"] == "http://a/b.png"
    assert doc["toolNames"] == ["search"]
    assert all(doc[name] == [] for name in LISTS if name != "toolNames")
    assert (doc["systemPromptCategory"], doc["systemPromptName"]) == ("agent", "sys")
    assert doc["createdAt"].endswith("Z") and doc["createdAt"] == doc["updatedAt"]
    assert svc.get(d.id) == d
    assert svc.create(body(name="w2", avatarUrl="   ")).avatar_url is None


@pytest.mark.parametrize(
    "payload, field, code",
    [
        (body(name=""), "name", "VALIDATION_ERROR"),
        ({k: v for k, v in body().items() if k != "role"}, "role", "VALIDATION_ERROR"),
        (body(description=None), "description", "VALIDATION_ERROR"),
        ({k: v for k, v in body().items() if k != "systemPromptCategory"},
         "systemPromptCategory", "VALIDATION_ERROR"),
        (body(systemPromptName=" "), "systemPromptName", "VALIDATION_ERROR"),
        (body(toolNames="search"), "toolNames", "VALIDATION_ERROR"),
        (body(skillNames=[1]), "skillNames", "VALIDATION_ERROR"),
        (body(avatarUrl=5), "avatarUrl", "VALIDATION_ERROR"),
        (body(toolNamez=[]), "toolNamez", "UNKNOWN_FIELD"),
    ],
)
def test_create_rejects_bad_input(svc: AgentDefinitionService, payload, field, code) -> None:
    with pytest.raises(ValidationError) as err:
        svc.create(payload)
    assert (err.value.field, err.value.code) == (field, code)
    assert svc.list().items == []


def test_create_requires_an_existing_prompt_family(svc: AgentDefinitionService,
                                                   store: Store) -> None:
    for category, name in (("agent", "nope"), ("chat", "sys"), ("Agent", "sys")):
        with pytest.raises(ValidationError) as err:
            svc.create(body(systemPromptCategory=category, systemPromptName=name))
        assert err.value.field == "systemPromptName"
        assert repr(name) in err.value.detail and repr(category) in err.value.detail
    assert svc.list().items == []
    with store.begin() as txn:  # nothing half-written: no record, no claim, no mapping
        assert list(txn.scan(prefix=repository.DEFINITIONS.prefix)) == []
        assert list(txn.scan(prefix=repository.MAPPINGS.prefix)) == []


def test_detail_embeds_the_family_prompts(svc: AgentDefinitionService,
                                          prompts: PromptService) -> None:
    d = svc.create(body())
    detail = svc.get_with_prompts(d.id)
    assert detail.definition == d
    assert [(p.name, p.suitable_for_models) for p in detail.prompts] == [
        ("sys", "default"), ("sys", "gpt-4")]
    doc = codec.detail_to_json(detail)
    assert [p["promptContent"] for p in doc["prompts"]] == ["You are...", "v2"]
    assert {k: v for k, v in doc.items() if k != "prompts"} == codec.to_json(d)


def test_update_fields_lists_and_mapping(svc: AgentDefinitionService) -> None:
    d = svc.create(body(toolNames=["a", "b"], avatarUrl="x"))
    u = svc.update(d.id, {"toolNames": ["c"], "role": "edits"})
    assert (u.tool_names, u.role, u.description, u.avatar_url) == (["c"], "edits", "a writer", "x")
    assert u.updated_at > d.updated_at and u.created_at == d.created_at
    u = svc.update(d.id, {"avatarUrl": None, "skillNames": None})
    assert (u.avatar_url, u.skill_names) == (None, [])
    # Only one mapping field: the mapping is left as it was (domains.md 2).
    u = svc.update(d.id, {"systemPromptName": "other"})
    assert (u.system_prompt_category, u.system_prompt_name) == ("agent", "sys")
    u = svc.update(d.id, {"systemPromptName": "other", "systemPromptCategory": "agent"})
    assert (u.system_prompt_category, u.system_prompt_name) == ("agent", "other")
    assert svc.get(d.id) == u
    assert [p.name for p in svc.get_with_prompts(d.id).prompts] == ["other"]


def test_update_mapping_family_check_writes_nothing(svc: AgentDefinitionService) -> None:
    d = svc.create(body())
    with pytest.raises(ValidationError) as err:
        svc.update(d.id, {"role": "changed", "systemPromptName": "missing",
                          "systemPromptCategory": "agent"})
    assert err.value.field == "systemPromptName"
    assert svc.get(d.id) == d


@pytest.mark.parametrize(
    "patch, field, code",
    [({"name": " "}, "name", "VALIDATION_ERROR"), ({"role": None}, "role", "VALIDATION_ERROR"),
     ({"systemPromptName": ""}, "systemPromptName", "VALIDATION_ERROR"),
     ({"id": "9"}, "id", "READ_ONLY_FIELD"), ({"nmae": "x"}, "nmae", "UNKNOWN_FIELD")],
)
def test_update_rejects_bad_input(svc: AgentDefinitionService, patch, field, code) -> None:
    d = svc.create(body())
    with pytest.raises(ValidationError) as err:
        svc.update(d.id, patch)
    assert (err.value.field, err.value.code) == (field, code)
    assert svc.get(d.id) == d


def test_unique_names(svc: AgentDefinitionService, store: Store) -> None:
    a = svc.create(body())
    with pytest.raises(ConflictError) as err:
        svc.create(body(role="r2"))
    assert err.value.field == "name"
    b = svc.create(body(name="editor"))
    with pytest.raises(ConflictError) as err:
        svc.update(b.id, {"name": "writer"})
    assert err.value.field == "name"
    assert svc.get(b.id) == b
    svc.update(a.id, {"name": "renamed"})
    assert svc.update(b.id, {"name": "writer"}).name == "writer"  # the old name was freed
    with pytest.raises(NotFoundError):
        svc.update("42", {"name": "x"})
    assert all_ok(store)


def test_delete_removes_definition_and_mapping(svc: AgentDefinitionService,
                                               store: Store) -> None:
    d = svc.create(body())
    with store.begin() as txn:
        assert repository.MAPPINGS.get(txn, d.id) is not None
    svc.delete(d.id)
    with store.begin() as txn:
        assert repository.MAPPINGS.get(txn, d.id) is None
        assert repository.DEFINITIONS.get(txn, d.id) is None
    with pytest.raises(NotFoundError):
        svc.get(d.id)
    with pytest.raises(NotFoundError):
        svc.delete(d.id)
    again = svc.create(body())  # the name is free again; the id is new
    assert again.id == "2"
    assert all_ok(store)


def test_create_is_atomic(svc: AgentDefinitionService, store: Store, monkeypatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("mapping write failed")

    monkeypatch.setattr(repository.MAPPINGS, "insert", broken)
    with pytest.raises(RuntimeError):
        svc.create(body())
    monkeypatch.undo()
    assert svc.list().items == []
    assert svc.create(body()).name == "writer"  # the name claim was not left behind
    assert all_ok(store)


def test_delete_is_atomic(svc: AgentDefinitionService, store: Store, monkeypatch) -> None:
    d = svc.create(body())

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("definition delete failed")

    monkeypatch.setattr(repository.DEFINITIONS, "delete", broken)
    with pytest.raises(RuntimeError):
        svc.delete(d.id)  # the mapping was deleted first, in the same transaction
    monkeypatch.undo()
    assert svc.get(d.id) == d
    assert all_ok(store)


def test_etag_preconditions(svc: AgentDefinitionService) -> None:
    d = svc.create(body())
    with pytest.raises(PreconditionFailedError):
        svc.update(d.id, {"role": "x"}, expected_etag="nope")
    u = svc.update(d.id, {"role": "x"}, expected_etag=svc.etag(d))
    with pytest.raises(PreconditionFailedError):
        svc.delete(d.id, expected_etag=svc.etag(d))
    svc.delete(d.id, expected_etag=svc.etag(u))


def test_list_by_name_and_cursor_walk(svc: AgentDefinitionService) -> None:
    for name in ("m", "b", "Z", "a", "k", "c2", "c1"):
        svc.create(body(name=name))
    everything = svc.list(limit=1000).items
    assert [d.name for d in everything] == ["Z", "a", "b", "c1", "c2", "k", "m"]
    assert all(d.system_prompt_name == "sys" for d in everything)
    for limit in (1, 2, 3, 7):
        assert walk(svc.list, limit) == everything
    with pytest.raises(ValidationError):
        svc.list(cursor="garbage!")


def test_stored_records_are_versioned(svc: AgentDefinitionService, store: Store) -> None:
    d = svc.create(body())
    with store.begin() as txn:
        raw = repository.DEFINITIONS.get(txn, d.id)
        mapping = json.loads(repository.MAPPINGS.get(txn, d.id))
    doc = json.loads(raw)
    assert doc["v"] == 1 and "systemPromptName" not in doc  # the mapping is its own record
    assert mapping == {"v": 1, "agentDefinitionId": d.id, "promptName": "sys",
                       "promptCategory": "agent"}
    doc["v"] = 2
    with pytest.raises(codec.RecordFormatError):
        codec.from_bytes(json.dumps(doc).encode())


def test_race_16_threads_same_name(svc: AgentDefinitionService, store: Store) -> None:
    results = race(16, lambda i: svc.create(body(role=f"r{i}")))
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    assert all(isinstance(r, ConflictError) for r in results if r is not winners[0]), results
    assert [d.id for d in svc.list().items] == [winners[0].id]
    assert all_ok(store)
