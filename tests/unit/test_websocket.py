"""RFC 6455 handshake and framing of the attach/ws endpoint, checked against websocket-client's
own frame encoder (an independent implementation)."""

from __future__ import annotations

import asyncio

import pytest
from websocket import ABNF

from berth.api.http.websocket import (
    OP_BINARY,
    OP_CLOSE,
    ProtocolError,
    _ReadExactly,
    encode_frame,
    handshake,
    read_frame,
)
from berth.common.errors import InvalidParameter

HEADERS = {"upgrade": "websocket", "connection": "keep-alive, Upgrade", "sec-websocket-version": "13",
           "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}


def test_handshake_accept_is_rfc_6455s_example() -> None:
    assert handshake("GET", HEADERS).accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("change", [
    {"upgrade": "tcp"}, {"connection": "keep-alive"}, {"sec-websocket-version": "8"},
    {"sec-websocket-key": "c2hvcnQ="}, {"sec-websocket-key": "not base64!"},
])
def test_handshake_refuses_what_is_not_one(change: dict[str, str]) -> None:
    with pytest.raises(InvalidParameter):
        handshake("GET", {**HEADERS, **change})
    with pytest.raises(InvalidParameter):
        handshake("POST", HEADERS)


def _parse(data: bytes, split: int = 0) -> tuple[bool, int, bytes]:
    async def go() -> tuple[bool, int, bytes]:
        reader = asyncio.StreamReader()
        reader.feed_data(data[split:])
        reader.feed_eof()
        return await read_frame(_ReadExactly(reader, data[:split]))
    return asyncio.run(go())


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70001])
def test_masked_client_frames_of_every_length_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    wire = ABNF.create_frame(payload, ABNF.OPCODE_BINARY).format()  # masked, as clients send
    assert _parse(wire) == (True, OP_BINARY, payload)
    assert _parse(wire, split=3) == (True, OP_BINARY, payload)  # part of it came with the 101


def test_unmasked_client_frames_are_a_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        _parse(encode_frame(OP_BINARY, b"x"))


@pytest.mark.parametrize("size", [0, 125, 126, 65536])
def test_server_frames_are_final_unmasked_and_sized(size: int) -> None:
    payload = b"a" * size
    want = ABNF(1, 0, 0, 0, ABNF.OPCODE_BINARY, 0, payload).format()
    assert encode_frame(OP_BINARY, payload) == want
    assert encode_frame(OP_CLOSE, b"\x03\xe8")[:2] == b"\x88\x02"
