"""Prompts (domains.md section 1) on every backend: families, versions, activation, lists,
categories, template resolution, ETags, atomicity and races."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from domains.common import etag_of
from domains.errors import ConflictError, NotFoundError, PreconditionFailedError, ValidationError
from domains.prompts import codec, collections, repository
from domains.prompts.service import PromptService
from engine import Store
from engine.indexes import check
from tests.domains.json_commands import PROMPTS, JsonCommands


class TickingClock:
    """A clock that moves on by one millisecond at every reading."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 2, 22, 10, 15, 30, 123000, tzinfo=dt.UTC)
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            self.now += dt.timedelta(milliseconds=1)
            return self.now


def race(n: int, fn) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except Exception as exc:  # kept for the assertions, not lost in the thread
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    return results


@pytest.fixture
def svc(store: Store) -> Any:
    return JsonCommands(PromptService(store, clock=TickingClock()), PROMPTS)


def new(svc: PromptService, name: str = "greet", category: str = "chat", **more: Any):
    return svc.create({"name": name, "category": category, "promptContent": "hi", **more})


def walk(fetch, limit: int) -> list[Any]:
    """Every item of a cursor walk, asserting no page but the last is short."""
    items, cursor, pages = [], None, 0
    while True:
        page = fetch(limit=limit, cursor=cursor)
        pages += 1
        items += page.items
        if page.next_cursor is None:
            return items
        assert len(page.items) == limit
        cursor = page.next_cursor
        assert pages < 1000


def active_ids(svc: PromptService, name: str, category: str) -> list[str]:
    return [p.id for p in svc.family_of(name, category) if p.is_active]


# -- create, versions, families -----------------------------------------------------------------
def test_create_json_shape_and_first_version_active(svc: PromptService) -> None:
    p = svc.create({"name": "greet", "category": "chat", "promptContent": "Hello",
                    "description": "d"})
    doc = codec.to_json(p)
    assert doc == {
        "id": "1", "name": "greet", "category": "chat", "promptContent": "Hello", "version": 1,
        "parentId": None, "isActive": True, "description": "d", "suitableForModels": "default",
        "createdAt": "2026-02-22T10:15:30.124Z", "updatedAt": "2026-02-22T10:15:30.124Z",
    }
    assert svc.get("1") == p
    with pytest.raises(NotFoundError):
        svc.get("999")


def test_versions_and_activity_per_family(svc: PromptService) -> None:
    a = new(svc)
    b = new(svc)
    c = new(svc, suitableForModels="gpt-4")
    d = new(svc, suitableForModels="  ")  # blank -> default: a's family
    e = new(svc, suitableForModels=None)
    f = new(svc, suitableForModels=" gpt-4 , ")  # canonical: c's family
    assert [(x.version, x.is_active) for x in (a, b, c, d, e, f)] == [
        (1, True), (2, False), (1, True), (3, False), (4, False), (2, False)]
    assert d.suitable_for_models == "default" and f.suitable_for_models == "gpt-4"
    assert (new(svc, category="other").version, new(svc, name="bye").version) == (1, 1)
    ids = [x.id for x in (a, b, c, d, e, f)]
    assert ids == ["1", "2", "3", "4", "5", "6"]


@pytest.mark.parametrize(
    "payload, field, code",
    [
        ({"category": "c", "promptContent": "x"}, "name", "VALIDATION_ERROR"),
        ({"name": " ", "category": "c", "promptContent": "x"}, "name", "VALIDATION_ERROR"),
        ({"name": "n", "promptContent": "x"}, "category", "VALIDATION_ERROR"),
        ({"name": "n", "category": "c", "promptContent": ""}, "promptContent", "VALIDATION_ERROR"),
        ({"name": 3, "category": "c", "promptContent": "x"}, "name", "VALIDATION_ERROR"),
        ({"name": "n", "category": "c", "promptContent": "x", "description": 1},
         "description", "VALIDATION_ERROR"),
        ({"name": "n", "category": "c", "promptContent": "x", "promtContent": "typo"},
         "promtContent", "UNKNOWN_FIELD"),
        ({"name": "n", "category": "c", "promptContent": "x", "version": 4},
         "version", "UNKNOWN_FIELD"),
    ],
)
def test_create_rejects_bad_input(svc: PromptService, payload, field, code) -> None:
    with pytest.raises(ValidationError) as err:
        svc.create(payload)
    assert (err.value.field, err.value.code) == (field, code)


def test_create_rejects_non_object_and_writes_nothing(svc: PromptService, store: Store) -> None:
    with pytest.raises(ValidationError):
        svc.create(["name"])
    assert svc.list().items == []


def test_revision_joins_parent_family(svc: PromptService) -> None:
    a = new(svc, suitableForModels="gpt-4", description="first")
    r = svc.create_revision(a.id, {"promptContent": "better"})
    assert (r.version, r.parent_id, r.is_active, r.family) == (2, a.id, False, a.family)
    assert (r.prompt_content, r.description) == ("better", "first")
    with pytest.raises(NotFoundError):
        svc.create_revision("77", {"promptContent": "x"})
    with pytest.raises(ValidationError) as err:
        svc.create_revision(a.id, {"promptContent": "x", "name": "other"})
    assert err.value.code == "UNKNOWN_FIELD"
    with pytest.raises(ValidationError) as err:
        svc.create_revision(a.id, {})
    assert err.value.field == "promptContent"


def test_revision_of_an_emptied_family_is_active(svc: PromptService) -> None:
    # The family had no prompt left when the revision arrived (its only prompt was deleted
    # after the revision's parent was read): the revision's family is that of the parent.
    a = new(svc)
    b = svc.create_revision(a.id, {"promptContent": "v2"})
    svc.delete(a.id)
    c = svc.create_revision(b.id, {"promptContent": "v3"})
    assert (c.version, c.is_active, c.parent_id) == (3, False, b.id)
    svc.delete(b.id)
    svc.delete(c.id)
    d = new(svc)
    assert (d.version, d.is_active) == (1, True)


# -- activation ---------------------------------------------------------------------------------
def test_activate_leaves_one_active_per_family(svc: PromptService) -> None:
    a = new(svc)
    b = svc.create_revision(a.id, {"promptContent": "2"})
    c = svc.create_revision(a.id, {"promptContent": "3"})
    other = new(svc, suitableForModels="gpt-4")
    got = svc.activate(c.id)
    assert got.is_active and got.updated_at > c.updated_at
    assert sorted(active_ids(svc, "greet", "chat")) == sorted([other.id, c.id])
    assert svc.get(a.id).is_active is False and svc.get(b.id).is_active is False
    again = svc.activate(c.id)  # already active: nothing to change
    assert again == svc.get(c.id)
    with pytest.raises(NotFoundError):
        svc.activate("404")


def test_activate_is_atomic(svc: PromptService, monkeypatch) -> None:
    a = new(svc)
    b = svc.create_revision(a.id, {"promptContent": "2"})
    real = repository.update
    calls = []

    def failing(txn, prompt):
        calls.append(prompt.id)
        if len(calls) == 2:  # a was deactivated; b's activation fails
            raise RuntimeError("disk on fire")
        real(txn, prompt)

    monkeypatch.setattr(repository, "update", failing)
    with pytest.raises(RuntimeError):
        svc.activate(b.id)
    monkeypatch.undo()
    assert calls == [a.id, b.id]
    assert svc.get(a.id).is_active and not svc.get(b.id).is_active
    assert check(svc.store, collections()).ok


# -- update and delete --------------------------------------------------------------------------
def test_update_partial_null_and_timestamps(svc: PromptService) -> None:
    a = new(svc, description="d", suitableForModels="gpt-4")
    u = svc.update(a.id, {"promptContent": "new"})
    assert (u.prompt_content, u.description, u.name, u.version) == ("new", "d", "greet", 1)
    assert u.updated_at > a.updated_at and u.created_at == a.created_at
    u2 = svc.update(a.id, {"description": None})
    assert u2.description is None and u2.updated_at > u.updated_at
    u3 = svc.update(a.id, {"suitableForModels": ""})
    assert u3.suitable_for_models == "default"
    u4 = svc.update(a.id, {})
    assert u4.updated_at > u3.updated_at
    assert svc.get(a.id) == u4


@pytest.mark.parametrize(
    "patch, field, code",
    [
        ({"name": " "}, "name", "VALIDATION_ERROR"),
        ({"category": None}, "category", "VALIDATION_ERROR"),
        ({"promptContent": ""}, "promptContent", "VALIDATION_ERROR"),
        ({"isActive": "yes"}, "isActive", "VALIDATION_ERROR"),
        ({"version": 9}, "version", "READ_ONLY_FIELD"),
        ({"colour": "red"}, "colour", "UNKNOWN_FIELD"),
    ],
)
def test_update_rejects_bad_input(svc: PromptService, patch, field, code) -> None:
    a = new(svc)
    with pytest.raises(ValidationError) as err:
        svc.update(a.id, patch)
    assert (err.value.field, err.value.code) == (field, code)
    assert svc.get(a.id) == a


def test_update_cannot_break_uniqueness(svc: PromptService) -> None:
    a = new(svc, name="x")
    b = new(svc, name="y")
    with pytest.raises(ConflictError) as err:
        svc.update(b.id, {"name": "x"})  # x already has version 1
    assert err.value.field == "name"
    assert svc.get(b.id) == b and svc.get(a.id) == a
    with pytest.raises(NotFoundError):
        svc.update("99", {"name": "z"})
    assert check(svc.store, collections()).ok


def test_update_keeps_one_active_per_family(svc: PromptService) -> None:
    x1 = new(svc, name="x")  # x: v1 active
    new(svc, name="y")  # y: v1 active
    y2 = svc.activate(new(svc, name="y").id)  # y: v2 active, v1 inactive
    # An active prompt moving into a family with an active prompt arrives inactive there.
    moved = svc.update(y2.id, {"name": "x"})
    assert (moved.name, moved.version, moved.is_active) == ("x", 2, False)
    assert active_ids(svc, "x", "chat") == [x1.id]
    assert active_ids(svc, "y", "chat") == []
    # An explicit isActive=true is an activation: the family's other active prompt steps down.
    on = svc.update(y2.id, {"isActive": True})
    assert on.is_active and active_ids(svc, "x", "chat") == [y2.id]
    off = svc.update(y2.id, {"isActive": False})
    assert not off.is_active and active_ids(svc, "x", "chat") == []
    assert check(svc.store, collections()).ok


def test_delete_is_hard_without_cascade_and_ids_are_never_reused(svc: PromptService) -> None:
    a = new(svc)
    b = svc.create_revision(a.id, {"promptContent": "2"})
    svc.delete(a.id)
    with pytest.raises(NotFoundError):
        svc.get(a.id)
    with pytest.raises(NotFoundError):
        svc.delete(a.id)
    assert svc.get(b.id).parent_id == a.id  # dangling parent allowed
    svc.delete(b.id)  # the highest id
    c = new(svc)
    assert c.id == "3"
    assert check(svc.store, collections()).ok


# -- ETags ----------------------------------------------------------------------------------------
def test_etag_preconditions_on_update_delete_activate(svc: PromptService) -> None:
    a = new(svc)
    tag = etag_of(codec.to_json(a))
    assert svc.etag(a) == tag
    with pytest.raises(PreconditionFailedError):
        svc.update(a.id, {"promptContent": "x"}, expected_etag="stale")
    assert svc.get(a.id) == a
    u = svc.update(a.id, {"promptContent": "x"}, expected_etag=tag)
    assert svc.etag(u) != tag
    with pytest.raises(PreconditionFailedError):
        svc.delete(a.id, expected_etag=tag)
    with pytest.raises(PreconditionFailedError):
        svc.activate(a.id, expected_etag=tag)
    svc.delete(a.id, expected_etag=svc.etag(u))
    with pytest.raises(NotFoundError):
        svc.get(a.id)


# -- lists ----------------------------------------------------------------------------------------
def _seed(svc: PromptService) -> None:
    for name, category in [("beta", "Tools"), ("alpha", "tools"), ("Alpha", "chat"),
                           ("gamma", "chat"), ("alpha", "tools"), ("alpha", "tools")]:
        new(svc, name=name, category=category)
    new(svc, name="alpha", category="tools", suitableForModels="gpt-4")


def _order(p) -> tuple:
    return (p.category, p.name, -p.version)


def test_list_order_filters_and_cursor_walks(svc: PromptService) -> None:
    _seed(svc)
    everything = svc.list(limit=1000).items
    assert len(everything) == 7
    assert [_order(p) for p in everything] == sorted(_order(p) for p in everything)
    assert [(p.category, p.name, p.version) for p in everything][:3] == [
        ("Tools", "beta", 1), ("chat", "Alpha", 1), ("chat", "gamma", 1)]
    for limit in (1, 2, 3, 7, 8):
        assert walk(svc.list, limit) == everything
    alphas = walk(lambda **kw: svc.list(name="ALPH", **kw), 2)
    assert [p.id for p in alphas] == [p.id for p in everything if "alph" in p.name.lower()]
    tools = walk(lambda **kw: svc.list(category="ool", is_active="false", **kw), 1)
    assert [p.id for p in tools] == [
        p.id for p in everything if "ool" in p.category.lower() and not p.is_active]
    active = walk(lambda **kw: svc.list(is_active=True, **kw), 2)
    assert [p.id for p in active] == [p.id for p in everything if p.is_active]
    assert len(active) == 5


def test_list_rejects_bad_arguments(svc: PromptService) -> None:
    new(svc)
    for bad in (0, 1001, "x"):
        with pytest.raises(ValidationError) as err:
            svc.list(limit=bad)
        assert err.value.field == "limit"
    for bad in ("%%%", "bm90IGpzb24", "eyJhIjoxfQ"):  # garbage, "not json", {"a":1}
        with pytest.raises(ValidationError) as err:
            svc.list(cursor=bad)
        assert err.value.field == "cursor"
    with pytest.raises(ValidationError):
        svc.list(is_active="maybe")


def test_cursor_walk_survives_concurrent_changes(svc: PromptService) -> None:
    for i in range(6):
        new(svc, name=f"n{i}")
    first = svc.list(limit=3)
    svc.delete(first.items[-1].id)  # the cursor's own record disappears
    new(svc, name="a-before")  # sorts before the cursor: not seen by this walk
    new(svc, name="z-after")  # sorts after it: seen
    rest = walk(lambda **kw: svc.list(**kw) if kw["cursor"] else first, 3)
    names = [p.name for p in rest]
    assert names == ["n0", "n1", "n2", "n3", "n4", "n5", "z-after"]


# -- categories and templates ---------------------------------------------------------------------
def test_categories_from_active_prompts(svc: PromptService) -> None:
    assert svc.categories() == []
    _seed(svc)
    b = new(svc, name="zeta", category="chat")
    svc.update(b.id, {"isActive": False})
    got = codec.categories_to_json(svc.categories())
    assert got == [
        {"category": "Tools", "names": ["beta"]},
        {"category": "chat", "names": ["Alpha", "gamma"]},
        {"category": "tools", "names": ["alpha"]},
    ]


def test_resolve_template(svc: PromptService) -> None:
    generic = new(svc, name="sys", category="agent")
    new(svc, name="sys", category="agent")  # inactive revision of generic's family
    gpt = new(svc, name="sys", category="agent", suitableForModels="gpt-4, gpt-4o")
    new(svc, name="sys", category="agent", suitableForModels="claude,default")
    assert svc.resolve_template("sys", "agent", "gpt-4o").id == gpt.id
    assert svc.resolve_template("sys", "agent", "llama").id == generic.id  # first default
    svc.update(generic.id, {"isActive": False})
    assert svc.resolve_template("sys", "agent", "llama").suitable_for_models == "claude,default"
    with pytest.raises(NotFoundError):
        svc.resolve_template("sys", "other", "gpt-4")
    with pytest.raises(NotFoundError):
        svc.resolve_template("SYS", "agent", "gpt-4")  # exact name, not a substring
    with pytest.raises(ValidationError) as err:
        svc.resolve_template("sys", "agent", " ")
    assert err.value.field == "model"


# -- storage format -------------------------------------------------------------------------------
def test_records_are_versioned_envelopes(svc: PromptService, store: Store) -> None:
    a = new(svc)
    with store.begin() as txn:
        raw = repository.PROMPTS.get(txn, a.id)
    doc = json.loads(raw)
    assert doc["v"] == 1 and doc["promptContent"] == "hi"
    assert codec.from_bytes(raw) == a
    doc["v"] = 99
    with pytest.raises(codec.RecordFormatError):
        codec.from_bytes(json.dumps(doc).encode())
    assert check(store, collections()).ok


# -- races ----------------------------------------------------------------------------------------
def test_race_16_creates_in_one_family(svc: PromptService) -> None:
    results = race(16, lambda i: new(svc, name="hot"))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sorted(r.version for r in results) == list(range(1, 17))
    assert len({r.id for r in results}) == 16
    assert [r.version for r in results if r.is_active] == [1]
    assert check(svc.store, collections()).ok


def test_race_16_activations_leave_exactly_one_active(svc: PromptService) -> None:
    first = new(svc, name="hot")
    revs = [first] + [svc.create_revision(first.id, {"promptContent": str(i)})
                      for i in range(15)]
    results = race(16, lambda i: svc.activate(revs[i].id))
    assert not [r for r in results if isinstance(r, Exception)], results
    active = active_ids(svc, "hot", "chat")
    assert len(active) == 1
    assert check(svc.store, collections()).ok


def test_long_names_stay_distinct_families(svc: PromptService) -> None:
    # Index keys clip long elements (prefix + digest): values sharing a long prefix must still
    # be separate families, found exactly.
    base = "n" * 300
    a = new(svc, name=base + "a", category="c" * 300)
    b = new(svc, name=base + "b", category="c" * 300)
    a2 = svc.create_revision(a.id, {"promptContent": "2"})
    assert (a.version, b.version, a2.version) == (1, 1, 2)
    assert a.is_active and b.is_active and not a2.is_active
    assert svc.resolve_template(base + "b", "c" * 300, "m").id == b.id
    assert [p.id for p in svc.family_of(base + "a", "c" * 300)] == [a.id, a2.id]
    assert len(walk(svc.list, 1)) == 3
    assert check(svc.store, collections()).ok


# -- invariants under random histories ---------------------------------------------------------
_op = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(["a", "B", "ab"]), st.sampled_from(["x", "Y"]),
              st.sampled_from([None, "", "m1", "m1,m2", "default"])),
    st.tuples(st.just("revise"), st.integers(0, 30)),
    st.tuples(st.just("activate"), st.integers(0, 30)),
    st.tuples(st.just("deactivate"), st.integers(0, 30)),
    st.tuples(st.just("rename"), st.integers(0, 30), st.sampled_from(["a", "B", "ab"])),
    st.tuples(st.just("delete"), st.integers(0, 30)),
)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=st.lists(_op, max_size=14))
def test_property_invariants_hold_after_any_history(svc: PromptService, history) -> None:
    for op, *args in history:
        ids = [p.id for p in svc.list(limit=1000).items]
        try:
            if op == "create":
                name, category, models = args
                new(svc, name=name, category=category, suitableForModels=models)
            elif ids:
                target = ids[args[0] % len(ids)]
                if op == "revise":
                    svc.create_revision(target, {"promptContent": "r"})
                elif op == "activate":
                    svc.activate(target)
                elif op == "deactivate":
                    svc.update(target, {"isActive": False})
                elif op == "rename":
                    svc.update(target, {"name": args[1]})
                else:
                    svc.delete(target)
        except ConflictError:
            assert op == "rename"
    everything = svc.list(limit=1000).items
    assert walk(svc.list, 3) == everything
    assert [_order(p) for p in everything] == sorted(_order(p) for p in everything)
    families: dict[tuple, list] = {}
    for p in everything:
        families.setdefault(p.family, []).append(p)
    for members in families.values():
        assert sum(p.is_active for p in members) <= 1
        assert len({p.version for p in members}) == len(members)
    expected: dict[str, set[str]] = {}
    for p in everything:
        if p.is_active:
            expected.setdefault(p.category, set()).add(p.name)
    assert [(c.category, c.names) for c in svc.categories()] == [
        (c, sorted(expected[c])) for c in sorted(expected)]
    assert check(svc.store, collections()).ok
