"""Gzip bodies spliced together from pieces compressed once, when they were rendered.

A target's families are rendered once per poll, but a scrape's body joins every target's families
with HELP/TYPE headers and health lines that change on every poll. Compressing that whole body on
each change would cost a scrape (or a poll) tens of milliseconds per 20 MB. Instead each rendered
piece is compressed once, as raw deflate ending in a sync flush: byte-aligned blocks, none marked
final, which decode the same wherever they are placed in a deflate stream, because they refer
to nothing before them. A body is then a gzip header, the pieces' deflate blocks in order (small
text compressed on the spot between them), a final empty block, and the trailer: the CRC-32 of
the whole text, combined from the pieces' CRCs in constant time per piece (zlib's
`crc32_combine`, which Python's zlib module does not expose), and its length. The result is one
ordinary gzip member.

A member can also be left open (`GzipBuilder.open`): its blocks end byte-aligned and none is
final, so a builder can continue it later with more bytes and pieces (the exporter's own metrics,
which change on every scrape, after a cached body) before it is closed (`OpenMember.closed`).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = 1  # most of the size win for a fraction of the time of the default level
_POLY = 0xEDB88320  # CRC-32, reflected
# gzip member header: deflate, no name, mtime 0, "fastest" extra flags, unknown OS.
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x04\xff"
# An empty deflate block with fixed codes, marked final: what closes a member left byte-aligned.
FINAL_EMPTY_BLOCK = b"\x03\x00"


def _multmodp(a: int, b: int) -> int:
    """a * b modulo the CRC-32 polynomial (reflected bit order), as zlib's multmodp."""
    m = 1 << 31
    product = 0
    while True:
        if a & m:
            product ^= b
            if a & (m - 1) == 0:
                break
        m >>= 1
        b = (b >> 1) ^ _POLY if b & 1 else b >> 1
    return product


def _powers() -> tuple[int, ...]:
    """x^(2^k) modulo the polynomial for k = 0..31."""
    table = [1 << 30]  # x^1
    for _ in range(31):
        table.append(_multmodp(table[-1], table[-1]))
    return tuple(table)


_X2N = _powers()


def crc32_shift(length: int) -> int:
    """The operator that moves a CRC past `length` more bytes: x^(8 * length) modulo the polynomial."""
    operator = 1 << 31  # x^0
    k = 3
    while length:
        if length & 1:
            operator = _multmodp(_X2N[k & 31], operator)
        length >>= 1
        k += 1
    return operator


def crc32_combine(crc1: int, crc2: int, shift2: int) -> int:
    """The CRC-32 of A + B from crc(A), crc(B) and `crc32_shift(len(B))`."""
    return _multmodp(shift2, crc1) ^ crc2


@dataclass(frozen=True, slots=True)
class Piece:
    """Text rendered once: its UTF-8 pieces, and the same as splice-ready deflate blocks."""

    chunks: tuple[bytes, ...]
    size: int
    crc: int
    deflated: bytes
    shift: int  # crc32_shift(size)

    @property
    def text(self) -> str:
        return b"".join(self.chunks).decode("utf-8")


EMPTY = Piece((), 0, 0, b"", 1 << 31)


def piece(chunks: Iterable[bytes]) -> Piece:
    """Compress `chunks` (one text, in parts) into a `Piece`."""
    kept = tuple(chunk for chunk in chunks if chunk)
    if not kept:
        return EMPTY
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    deflated = [compressor.compress(chunk) for chunk in kept]
    deflated.append(compressor.flush(zlib.Z_SYNC_FLUSH))
    crc = 0
    for chunk in kept:
        crc = zlib.crc32(chunk, crc)
    size = sum(map(len, kept))
    return Piece(kept, size, crc, b"".join(deflated), crc32_shift(size))


class GzipBuilder:
    """One gzip member from small bytes (compressed here) and `Piece`s (spliced in as they are):
    a new one, or `member` continued."""

    def __init__(self, member: OpenMember | None = None) -> None:
        self.parts: list[bytes] = list(member.parts) if member else [HEADER]
        # A fresh compressor even when continuing: it refers to nothing before it, as a piece does.
        self._compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
        self._pending = False  # small text given since the last flush
        self._crc = member.crc if member else 0
        self._size = member.size if member else 0

    def add_bytes(self, data: bytes) -> None:
        if data:
            self.parts.append(self._compressor.compress(data))
            self._crc = zlib.crc32(data, self._crc)
            self._size += len(data)
            self._pending = True

    def add_piece(self, item: Piece) -> None:
        if not item.size:
            return
        if self._pending:
            # A full flush also forgets the history: what follows must not refer back across
            # the piece about to be put in between.
            self.parts.append(self._compressor.flush(zlib.Z_FULL_FLUSH))
            self._pending = False
        self.parts.append(item.deflated)
        self._crc = crc32_combine(self._crc, item.crc, item.shift)
        self._size += item.size

    def finish(self) -> list[bytes]:
        self.parts.append(self._compressor.flush(zlib.Z_FINISH))
        self.parts.append(_trailer(self._crc, self._size))
        return [part for part in self.parts if part]

    def open(self) -> OpenMember:
        """What was given so far, as a member that a builder can continue; this one is done after it."""
        if self._pending:
            self.parts.append(self._compressor.flush(zlib.Z_SYNC_FLUSH))
            self._pending = False
        return OpenMember(tuple(part for part in self.parts if part), self._crc, self._size)


@dataclass(frozen=True, slots=True)
class OpenMember:
    """A gzip member not closed yet: the header and deflate blocks that end byte-aligned, none of
    them final, and the CRC-32 and length of the text they hold."""

    parts: tuple[bytes, ...]
    crc: int
    size: int

    def closed(self) -> tuple[bytes, ...]:
        """The whole member: these blocks, a final empty one and the trailer."""
        return (*self.parts, FINAL_EMPTY_BLOCK, _trailer(self.crc, self.size))


def _trailer(crc: int, size: int) -> bytes:
    return struct.pack("<II", crc, size & 0xFFFFFFFF)
