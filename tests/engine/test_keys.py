"""The order-preserving tuple encoding: bytewise order of keys is tuple order."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import keys
from engine.keys import clip, id_element, id_string, pack, pack_slow, range_of, unpack

# One type per position keeps Python's tuple comparison defined; mixed types are tested apart.
ints = st.integers(min_value=-(2**200), max_value=2**200)
texts = st.text(max_size=8)
blobs = st.binary(max_size=8)
shape = st.lists(st.sampled_from(["i", "s", "b", "n"]), min_size=0, max_size=4)
_STRATEGY = {"i": ints, "s": texts, "b": blobs, "n": st.none()}


@st.composite
def tuple_pairs(draw):
    kinds = draw(shape)
    a = tuple(draw(_STRATEGY[k]) for k in kinds)
    b = tuple(draw(_STRATEGY[k]) for k in kinds[: draw(st.integers(0, len(kinds)))])
    return a, b


def _cmp(x, y) -> int:
    # None == None; for None positions tuple comparison would fail on <, so compare by hand.
    for p, q in zip(x, y, strict=False):
        if p == q:
            continue
        return -1 if p < q else 1
    return (len(x) > len(y)) - (len(x) < len(y))


@settings(max_examples=300, deadline=None)
@given(tuple_pairs())
def test_order_and_prefix(pair) -> None:
    a, b = pair
    ka, kb = pack(a), pack(b)
    assert unpack(ka) == a
    assert _cmp(a, b) == (ka > kb) - (ka < kb)
    lo, hi = range_of(b)
    if a[: len(b)] == b:  # b is a prefix of a
        assert ka.startswith(kb)
        assert lo <= ka < hi
    else:
        assert not lo <= ka < hi


_ELEMENT = st.one_of(
    st.none(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.sampled_from([0, 1, 255, 256, 2**63, 2**64 - 1, 2**64, -1, -(2**64)]),
    st.text(max_size=80),
    st.binary(max_size=12),
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_ELEMENT, max_size=6))
def test_fast_paths_encode_exactly_as_the_reference(values) -> None:
    # pack() inlines str (with a cache of encoded strings) and small non-negative ints; the
    # store's keys must be byte-identical to the plain element encoder's, cached or not.
    expected = pack_slow(values)
    assert pack(values) == expected
    assert pack(values) == expected  # again, now with the strings cached
    assert pack(tuple(values)) == expected


def test_the_string_cache_is_bounded_and_keeps_encoding_right(monkeypatch) -> None:
    monkeypatch.setattr(keys, "_encoded_str", {})
    monkeypatch.setattr(keys, "_ENCODED_STR_MAX", 8)
    for i in range(50):
        text = f"name-{i}\x00"
        assert pack(("c", text, i)) == pack_slow(("c", text, i))
        assert len(keys._encoded_str) <= 8
    long_text = "x" * (keys._ENCODED_STR_LEN + 1)
    assert pack((long_text,)) == pack_slow((long_text,))
    assert long_text not in keys._encoded_str
    with pytest.raises(TypeError):
        pack((True,))
    with pytest.raises(TypeError):
        pack((1.5,))


def test_type_order_and_edges() -> None:
    values = [None, -(2**70), -256, -255, -1, 0, 1, 255, 256, 2**64, 2**70, b"", b"\x00",
              b"\x00\x00", b"a", "", "\x00", "a", "a\x00", "ab", "\U0010ffff"]
    keys = [pack((v,)) for v in values]
    assert keys == sorted(keys)
    for v in values:
        assert unpack(pack((v, 7, "z"))) == (v, 7, "z")
    with pytest.raises(TypeError):
        pack((True,))
    with pytest.raises(TypeError):
        pack((1.5,))


def test_ids_sort_numerically_and_round_trip() -> None:
    ids = ["1", "2", "9", "10", "11", "100", "007", "abc"]
    assert sorted(ids, key=lambda i: pack((id_element(i),))) == ids
    for i in ids + ["0", ""]:
        assert id_string(id_element(i)) == i


def test_clip_is_bounded_distinct_and_stable() -> None:
    a, b = "x" * 500 + "a", "x" * 500 + "b"
    assert clip("short") == "short"
    assert clip(a) != clip(b) and clip(a) == clip(a)
    assert len(pack((clip(a),))) < 200
    assert clip(b"y" * 300) != clip(b"y" * 301)
