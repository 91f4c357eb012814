"""Read and write a sentencepiece ModelProto by hand (no protobuf package at run time).

    pieces, rest = read_model(proto_bytes)        # [Piece(piece, score, type)], other fields as bytes
    proto = write_model(pieces + new, rest)        # appended pieces get the next spm ids

Only the fields needed to edit the vocabulary are decoded: ModelProto.pieces (field 1, repeated
SentencePiece {1 piece: string, 2 score: float, 3 type: enum}). Every other field (trainer and
normalizer specs, field 2, 3, 5) is copied through byte for byte; self-test samples (field 4)
are dropped, since a grown vocabulary may segment them differently and spm checks them at load.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6  # SentencePiece.Type
SELF_TEST_FIELD = 4


@dataclass(frozen=True)
class Piece:
    piece: str
    score: float
    type: int = NORMAL


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos


def fields(buf: bytes):
    """(field number, wire type, value, raw bytes of the whole field) of a serialized message."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value, buf[start:pos]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _piece_bytes(p: Piece) -> bytes:
    text = p.piece.encode("utf-8")
    body = b"\x0a" + _varint(len(text)) + text + b"\x15" + struct.pack("<f", p.score)
    if p.type != NORMAL:  # NORMAL is the proto default
        body += b"\x18" + _varint(p.type)
    return b"\x0a" + _varint(len(body)) + body


def read_model(proto: bytes) -> tuple[list[Piece], bytes]:
    """(pieces in spm-id order, the other fields re-serialized in their order)."""
    pieces, rest = [], bytearray()
    for field, wire, value, raw in fields(proto):
        if field == 1 and wire == 2:
            text, score, kind = "", 0.0, NORMAL
            for f2, w2, v2, _ in fields(value):
                if f2 == 1:
                    text = bytes(v2).decode("utf-8")
                elif f2 == 2 and w2 == 5:
                    score = struct.unpack("<f", v2)[0]
                elif f2 == 3 and w2 == 0:
                    kind = v2
            pieces.append(Piece(text, score, kind))
        elif field != SELF_TEST_FIELD:
            rest += raw
    return pieces, bytes(rest)


def write_model(pieces: list[Piece], rest: bytes) -> bytes:
    """A ModelProto with ``pieces`` (in this order: spm id = position) and the other fields."""
    return b"".join(_piece_bytes(p) for p in pieces) + rest


def precompiled_charsmap(proto: bytes) -> bytes:
    """ModelProto.normalizer_spec (field 3) . precompiled_charsmap (field 2)."""
    for field, wire, value, _ in fields(proto):
        if field == 3 and wire == 2:
            for f2, w2, v2, _ in fields(value):
                if f2 == 2 and w2 == 2:
                    return bytes(v2)
    return b""
