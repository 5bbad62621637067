"""A PNG chart without matplotlib (the ``bench`` extra installs it; this is the fallback).

Two panels side by side, one row per workload: throughput on the left, p99 latency on the right,
each as a pair of bars normalised to the larger of the two (ours blue, baseline grey), with a thin
red mark where the baseline's bar ends. No text: the rows are in the order of the markdown table.
Written with zlib and struct only.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

BLUE = (43, 108, 176)
GREY = (176, 176, 176)
RED = (200, 40, 40)
WHITE = (255, 255, 255)
AXIS = (90, 90, 90)


def _png(width: int, height: int, pixels: list[bytearray]) -> bytes:
    raw = b"".join(b"\x00" + bytes(row) for row in pixels)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def draw(rows: list[dict[str, Any]], path: str) -> None:
    panel_w, row_h, bar_h, margin = 300, 22, 8, 10
    width = 2 * panel_w + 3 * margin
    height = max(1, len(rows)) * row_h + 2 * margin
    pixels = [bytearray(WHITE * width) for _ in range(height)]

    def rect(x0: int, y0: int, w: int, h: int, color: tuple[int, int, int]) -> None:
        for y in range(max(0, y0), min(height, y0 + h)):
            row = pixels[y]
            for x in range(max(0, x0), min(width, x0 + w)):
                row[3 * x: 3 * x + 3] = bytes(color)

    for p, metric in enumerate(("ops_per_s", "p99_ms")):
        x0 = margin + p * (panel_w + margin)
        rect(x0, margin, 1, height - 2 * margin, AXIS)
        for i, o in enumerate(rows):
            ours = (o.get("subject") or {}).get(metric)
            base = (o.get("baseline") or {}).get(metric)
            if not ours or not base or ours != ours or base != base:
                continue
            top = max(ours, base)
            y = margin + i * row_h + 2
            rect(x0 + 1, y, int((panel_w - 2) * ours / top), bar_h, BLUE)
            bw = int((panel_w - 2) * base / top)
            rect(x0 + 1, y + bar_h, bw, bar_h, GREY)
            rect(x0 + bw, y, 2, 2 * bar_h, RED)
    with open(path, "wb") as f:
        f.write(_png(width, height, pixels))
