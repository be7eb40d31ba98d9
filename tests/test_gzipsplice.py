"""Gzip bodies spliced from pieces compressed once: valid gzip, the right CRC, whatever the order."""

from __future__ import annotations

import gzip
import os
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.gzipsplice import EMPTY, GzipBuilder, crc32_combine, crc32_shift, piece


@given(st.binary(max_size=300), st.binary(max_size=3000))
def test_crc32_combine_is_the_crc_of_the_concatenation(first: bytes, second: bytes) -> None:
    combined = crc32_combine(zlib.crc32(first), zlib.crc32(second), crc32_shift(len(second)))
    assert combined == zlib.crc32(first + second)


def test_crc32_combine_over_large_lengths() -> None:
    big = os.urandom(1 << 20) * 5
    assert crc32_combine(zlib.crc32(b"head"), zlib.crc32(big), crc32_shift(len(big))) == zlib.crc32(b"head" + big)


_TEXT = st.one_of(st.binary(max_size=64), st.text(max_size=200).map(lambda t: (t * 20).encode()))
_PART = st.tuples(st.booleans(), st.lists(_TEXT, max_size=4))


@settings(max_examples=200, deadline=None)
@given(st.lists(_PART, max_size=8))
def test_any_mix_of_small_bytes_and_pieces_is_one_valid_gzip_member(parts: list[tuple[bool, list[bytes]]]) -> None:
    builder = GzipBuilder()
    plain = b""
    for is_piece, chunks in parts:
        if is_piece:
            builder.add_piece(piece(chunks))
        else:
            for chunk in chunks:
                builder.add_bytes(chunk)
        plain += b"".join(chunks)
    body = b"".join(builder.finish())
    assert gzip.decompress(body) == plain
    assert zlib.decompress(body, wbits=31) == plain  # exactly one member: nothing after it


def test_a_piece_keeps_its_text_and_the_same_piece_splices_twice() -> None:
    part = piece([b"a 1\n", "é 2\n".encode()])
    assert part.text == "a 1\né 2\n" and part.size == len("a 1\né 2\n".encode())
    assert piece([b"", b""]) is EMPTY
    builder = GzipBuilder()
    builder.add_piece(part)
    builder.add_bytes(b"# between\n")
    builder.add_piece(part)
    assert gzip.decompress(b"".join(builder.finish())) == "a 1\né 2\n# between\na 1\né 2\n".encode()


def _add(builder: GzipBuilder, parts: list[tuple[bool, list[bytes]]]) -> bytes:
    """`parts` given to `builder` as the body builder gives them; returns their plain text."""
    for is_piece, chunks in parts:
        if is_piece:
            builder.add_piece(piece(chunks))
        else:
            for chunk in chunks:
                builder.add_bytes(chunk)
    return b"".join(b"".join(chunks) for _, chunks in parts)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PART, max_size=6), st.lists(_PART, max_size=6))
def test_an_open_member_closes_or_continues_into_one_valid_gzip_member(
    first: list[tuple[bool, list[bytes]]], then: list[tuple[bool, list[bytes]]]
) -> None:
    builder = GzipBuilder()
    head = _add(builder, first)
    member = builder.open()
    assert zlib.decompress(b"".join(member.closed()), wbits=31) == head
    continued = GzipBuilder(member)
    tail = _add(continued, then)
    body = b"".join(continued.open().closed())
    assert gzip.decompress(body) == head + tail
    assert zlib.decompress(body, wbits=31) == head + tail  # exactly one member: nothing after it
    assert zlib.decompress(b"".join(member.closed()), wbits=31) == head  # the open member is unchanged


def test_continuing_a_member_neither_copies_nor_compresses_again_what_it_holds() -> None:
    big = piece([os.urandom(1 << 16)])
    builder = GzipBuilder()
    builder.add_piece(big)
    builder.add_bytes(b"# small text after it\n")
    member = builder.open()
    continued = GzipBuilder(member)
    continued.add_bytes(b"more 1\n")
    parts = continued.open().closed()
    assert parts[: len(member.parts)] == member.parts
    assert all(a is b for a, b in zip(parts, member.parts, strict=False))
