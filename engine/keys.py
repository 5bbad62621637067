"""An order-preserving encoding of tuples into engine keys.

``pack(t1) < pack(t2)`` bytewise exactly when ``t1 < t2`` as tuples, and ``pack(t[:n])`` is a
prefix of ``pack(t)``, so a key range over packed tuples is a range over the tuples themselves.
Elements are ``None``, ``int`` (any sign and size), ``bytes`` and ``str``; when two tuples hold
different types at the same position the order is None < int < bytes < str.

The layout follows the FoundationDB tuple layer: every element starts with a type tag; integers
carry their length in the tag (so a longer positive number sorts after a shorter one, and the
magnitude of a negative one is stored complemented); bytes and str are NUL-terminated with every
NUL inside escaped as ``00 FF``. No tag is 0x00 or 0xFF, which is what makes the encoding
self-delimiting and lets ``pack(t) + b"\\xff"`` bound every extension of ``t``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

Element = None | int | bytes | str

NONE = 0x01
INT_NEG_BIG = 0x0B  # negative, more than 8 bytes: complemented length byte follows
INT_ZERO = 0x14  # 0x0C..0x13: negative of 8..1 bytes; 0x15..0x1C: positive of 1..8 bytes
INT_POS_BIG = 0x1D  # positive, more than 8 bytes: length byte follows
BYTES = 0x20
STR = 0x21

#: Appended to a packed tuple, bounds every tuple that extends it (no tag is 0xFF).
END = b"\xff"

_MAX_BIG_INT_BYTES = 255


def _encode_int(n: int, out: bytearray) -> None:
    if n == 0:
        out.append(INT_ZERO)
        return
    magnitude = -n if n < 0 else n
    length = (magnitude.bit_length() + 7) // 8
    if length > _MAX_BIG_INT_BYTES:
        raise ValueError(f"integer too large for a key: {length} bytes")
    if n > 0:
        if length <= 8:
            out.append(INT_ZERO + length)
        else:
            out.append(INT_POS_BIG)
            out.append(length)
        out += magnitude.to_bytes(length, "big")
        return
    # A negative number is stored as the one's complement of its magnitude, so that a larger
    # magnitude (a smaller number) gives smaller bytes; its length tag counts down likewise.
    complemented = ((1 << (8 * length)) - 1 - magnitude).to_bytes(length, "big")
    if length <= 8:
        out.append(INT_ZERO - length)
    else:
        out.append(INT_NEG_BIG)
        out.append(0xFF - length)
    out += complemented


def _encode_bytes(tag: int, data: bytes, out: bytearray) -> None:
    out.append(tag)
    out += data.replace(b"\x00", b"\x00\xff")
    out.append(0x00)


def encode_element(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(NONE)
    elif isinstance(value, bool):
        # bool is an int subclass: True would silently become 1 and come back as 1.
        raise TypeError("bool is not a key element; store it as 0/1 explicitly")
    elif isinstance(value, int):
        _encode_int(value, out)
    elif isinstance(value, str):
        # UTF-8 preserves code-point order; surrogatepass keeps lone surrogates (which Python
        # strings may hold) encodable, and their 3-byte forms sort between their neighbours.
        _encode_bytes(STR, value.encode("utf-8", "surrogatepass"), out)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        _encode_bytes(BYTES, bytes(value), out)
    else:
        raise TypeError(f"{type(value).__name__} is not a key element (None, int, bytes, str)")


#: Encoded short strings, by value: keys repeat the same few (collection, index and field
#: names, ids of agents and models), and most of the cost of a key is encoding them again.
_encoded_str: dict[str, bytes] = {}
_ENCODED_STR_MAX = 4096  # entries kept; the cache starts over when full
_ENCODED_STR_LEN = 64  # longer strings are encoded each time


def _encode_str(value: str) -> bytes:
    out = bytearray()
    _encode_bytes(STR, value.encode("utf-8", "surrogatepass"), out)
    encoded = bytes(out)
    if len(value) <= _ENCODED_STR_LEN:
        if len(_encoded_str) >= _ENCODED_STR_MAX:
            _encoded_str.clear()
        _encoded_str[value] = encoded
    return encoded


def pack(values: Iterable[Any]) -> bytes:
    """Encode a tuple of elements into an order-preserving key."""
    # The common elements (exactly str, non-negative int up to 8 bytes) inline, the rest through
    # encode_element; the bytes are the same either way (tests/engine/test_keys.py checks).
    out = bytearray()
    for value in values:
        kind = type(value)
        if kind is str:
            encoded = _encoded_str.get(value)
            out += encoded if encoded is not None else _encode_str(value)
        elif kind is int and 0 < value < 0x1_0000_0000_0000_0000:
            length = (value.bit_length() + 7) >> 3
            out.append(INT_ZERO + length)
            out += value.to_bytes(length, "big")
        else:
            encode_element(value, out)
    return bytes(out)


def pack_slow(values: Iterable[Any]) -> bytes:
    """:func:`pack` without its fast paths: the reference the tests compare it with."""
    out = bytearray()
    for value in values:
        encode_element(value, out)
    return bytes(out)


def _decode_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    parts = []
    while True:
        nul = data.find(b"\x00", pos)
        if nul < 0:
            raise ValueError("unterminated bytes/str element")
        if nul + 1 < len(data) and data[nul + 1] == 0xFF:
            parts.append(data[pos : nul + 1])
            pos = nul + 2
            continue
        parts.append(data[pos:nul])
        return b"".join(parts), nul + 1


def unpack(data: bytes) -> tuple[Element, ...]:
    """Decode a key made by :func:`pack` back into its tuple."""
    result: list[Element] = []
    pos = 0
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        if tag == NONE:
            result.append(None)
        elif tag == BYTES:
            raw, pos = _decode_bytes(data, pos)
            result.append(raw)
        elif tag == STR:
            raw, pos = _decode_bytes(data, pos)
            result.append(raw.decode("utf-8", "surrogatepass"))
        elif INT_NEG_BIG <= tag <= INT_POS_BIG:
            if tag == INT_ZERO:
                result.append(0)
                continue
            if tag == INT_POS_BIG:
                length = data[pos]
                pos += 1
            elif tag == INT_NEG_BIG:
                length = 0xFF - data[pos]
                pos += 1
            else:
                length = abs(tag - INT_ZERO)
            if pos + length > n:
                raise ValueError("truncated integer element")
            raw_int = int.from_bytes(data[pos : pos + length], "big")
            pos += length
            if tag > INT_ZERO:
                result.append(raw_int)
            else:
                result.append(raw_int - ((1 << (8 * length)) - 1))
        else:
            raise ValueError(f"unknown key element tag 0x{tag:02x} at offset {pos - 1}")
    return tuple(result)


def range_of(prefix: tuple[Any, ...] | bytes) -> tuple[bytes, bytes]:
    """The half-open key range of ``prefix`` itself and every tuple extending it."""
    lo = prefix if isinstance(prefix, bytes) else pack(prefix)
    return lo, lo + END


# -- record ids ---------------------------------------------------------------------------------
def id_element(record_id: str) -> int | str:
    """The key element of a record id: canonical decimal ids become ints, so "10" sorts after "9".

    A string that is not a canonical decimal ("007", "abc", "") stays a string and sorts after
    every numeric id; ``id_string`` turns either back into the same text.
    """
    if not isinstance(record_id, str):
        raise TypeError(f"record ids are str, not {type(record_id).__name__}")
    if record_id.isascii() and record_id.isdigit() and (record_id == "0" or record_id[0] != "0"):
        return int(record_id)
    return record_id


def id_string(element: Element) -> str:
    if isinstance(element, int):
        return str(element)
    if isinstance(element, str):
        return element
    raise ValueError(f"not a record id element: {element!r}")


# -- bounding long elements -----------------------------------------------------------------------
#: Above this many bytes a str/bytes element of an ordered index is clipped (see ``clip``).
CLIP_LIMIT = 128
_CLIP_KEEP = 96


def clip(value: Element, limit: int = CLIP_LIMIT) -> Element:
    """A bounded stand-in for a long str/bytes element, deterministic and still distinct.

    Keeps the first bytes (so order by prefix survives) and appends a digest of the whole value
    (so two long values that share the prefix stay distinct, and an equality lookup that clips
    its argument the same way finds exactly its own entries). Among long values sharing the kept
    prefix, order is by digest: the price of fitting under the engine's key limit.
    """
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogatepass")
        if len(raw) <= limit:
            return value
        kept = raw[:_CLIP_KEEP].decode("utf-8", "ignore")  # drop a split trailing character
        # U+10FFFF is the highest code point: the clipped form sorts after shorter strings that
        # share the kept prefix and continue with any ordinary character.
        return kept + "\U0010ffff" + hashlib.sha256(raw).hexdigest()[:32]
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        if len(raw) <= limit:
            return raw
        return raw[:_CLIP_KEEP] + b"\xff" + hashlib.sha256(raw).digest()[:16]
    return value
