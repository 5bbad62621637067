"""The text rules of the channel's recorded errors and log lines (domains/channel/logbook.py)."""

from __future__ import annotations

from domains.channel.logbook import clip_utf8, safe_text


def test_secrets_and_anything_shaped_like_a_signature_are_redacted() -> None:
    signature = "0123456789abcdef" * 4
    text = (f'401 {{"got":"{signature}","upper":"{signature.upper()}",'
            f'"longer":"{signature * 2}","secret":"s3cr3t-value"}}')
    safe = safe_text(text, ("s3cr3t-value", None, ""))
    assert safe == ('401 {"got":"[redacted]","upper":"[redacted]","longer":"[redacted]",'
                    '"secret":"[redacted]"}')
    # Shorter hex runs (ids, hashes of other kinds) are kept.
    assert safe_text("id deadbeef" * 2) == "id deadbeefid deadbeef"


def test_one_line_of_at_most_the_limit_in_whole_characters() -> None:
    assert safe_text("503 line one\nline two\r\n\x00end") == "503 line one line two end"
    text = "é" * 300  # 600 bytes
    clipped = clip_utf8(text)
    assert clipped == "é" * 250 and len(clipped.encode()) == 500
    assert clip_utf8("a" + "é" * 250) == "a" + "é" * 249  # 499 bytes: never half a character
    assert len(safe_text("x" * 10_000).encode()) == 500
    # Redaction comes before the cut: a secret straddling byte 500 leaves nothing of itself.
    secret = "SECRET-THAT-STRADDLES"
    out = safe_text("z" * 490 + secret, (secret,))
    assert "SECRET" not in out and out == "z" * 490 + "[redacted]"
