"""web.http's answer memo: the answer of stored bytes, kept within its bounds."""

from __future__ import annotations

from typing import Any

from domains.common import etag_of
from web.http import AnswerMemo, encode_json


def _doc(raw: bytes) -> dict[str, Any]:
    return {"text": raw.decode(), "n": len(raw)}


def test_an_answer_is_the_encoded_document_and_its_etag_and_is_built_once() -> None:
    calls: list[bytes] = []

    def to_document(raw: bytes) -> dict[str, Any]:
        calls.append(raw)
        return _doc(raw)

    memo = AnswerMemo()
    first = memo.answer(b"caf\xc3\xa9", to_document)
    assert first == (encode_json(_doc(b"caf\xc3\xa9")).encode(), etag_of(_doc(b"caf\xc3\xa9")))
    assert memo.answer(b"caf\xc3" + b"\xa9", to_document) == first  # equal bytes, another object
    assert calls == [b"caf\xc3\xa9"]
    assert memo.answer(b"other", to_document) != first
    assert len(calls) == 2


def test_the_memo_stays_within_its_bounds() -> None:
    memo = AnswerMemo(max_bytes=1000, max_item=200)
    big = b"x" * 300
    assert memo.answer(big, _doc)[1] == etag_of(_doc(big))
    assert len(memo) == 0  # over max_item: answered, not kept
    for i in range(50):
        memo.answer(b"record %02d" % i, _doc)
        assert len(memo) <= 1000 // len(b"record 00")
    sizes = [len(k) + len(v[0]) for k, v in memo._entries.items()]
    assert 0 < sum(sizes) <= 1000
