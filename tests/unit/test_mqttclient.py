"""The ingester's lean MQTT receive path: PUBLISH parsing and buffered reads."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest
from paho.mqtt.client import MQTTv5
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.mqttclient import HEAD_KEEP, BufferedSocket, IngestClient, head_room, split_publish


def publish_body(topic: str, payload: bytes, mid: int | None, props: bytes = b"\x00") -> bytes:
    """A PUBLISH packet after its fixed header, as a broker sends it (MQTT 5)."""
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t
    if mid is not None:
        body += struct.pack("!H", mid)
    return body + props + payload


def test_qos1_without_properties() -> None:
    body = publish_body("campus/lib/power/m1", b'{"metrics":{}}', 513)
    assert split_publish(0x32, body) == ("campus/lib/power/m1", b'{"metrics":{}}', 513, 1)


def test_qos0_has_no_packet_id() -> None:
    body = publish_body("campus/a/water/w", b"x", None)
    assert split_publish(0x30, body) == ("campus/a/water/w", b"x", 0, 0)


def test_properties_are_skipped_whatever_their_length() -> None:
    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k" * 100, "v" * 100)]  # over 127 bytes: a 2-byte length
    packed = props.pack()
    assert packed[0] & 0x80, "the test needs a multi-byte property length"
    body = publish_body("campus/b/hvac/h", b"payload", 7, packed)
    assert split_publish(0x32, body) == ("campus/b/hvac/h", b"payload", 7, 1)


def test_empty_payload() -> None:
    assert split_publish(0x32, publish_body("t", b"", 1)) == ("t", b"", 1, 1)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00",  # no room for the topic length
        b"\x00\x05ab",  # topic shorter than declared: then no packet id
        b"\x00\x01t\x00",  # packet id cut short
        b"\x00\x01t\x00\x01",  # no property length
        b"\x00\x01t\x00\x01\x05ab",  # properties shorter than declared
        b"\x00\x01t\x00\x01\xff\xff\xff\xff\xff",  # property length over 4 bytes
    ],
)
def test_malformed_publish_is_an_error_not_a_crash(body: bytes) -> None:
    with pytest.raises(ValueError):
        split_publish(0x32, body)


def test_invalid_utf8_topic_is_replaced_so_the_decoder_can_refuse_it() -> None:
    topic, _, _, _ = split_publish(0x32, b"\x00\x02\xff\xfe\x00\x01\x00")
    assert "\ufffd" in topic


@pytest.fixture
def hundred_bytes() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A socket pair whose reading end holds ``b"0123456789" * 10``."""
    a, b = socket.socketpair()
    try:
        a.sendall(b"0123456789" * 10)
        yield a, b
    finally:
        a.close()
        b.close()


def test_buffered_socket_serves_small_reads_from_one_recv(
    hundred_bytes: tuple[socket.socket, socket.socket],
) -> None:
    a, b = hundred_bytes
    buffered = BufferedSocket(b, read_size=64)
    assert buffered.recv(1) == b"0"
    assert buffered.pending() == 63  # one recv of 64 bytes, one handed out
    assert buffered.recv(10) == b"1234567890"
    assert buffered.recv(100) == b"1234567890" * 5 + b"123"  # never past what was read
    assert buffered.pending() == 0
    assert buffered.recv(100) == b"456789" + b"0123456789" * 3  # the rest, from the socket
    b.setblocking(False)
    with pytest.raises(BlockingIOError):
        buffered.recv(1)
    a.close()
    assert buffered.recv(1) == b""  # end of stream, as a socket reports it


def test_buffered_socket_discards_without_handing_out(
    hundred_bytes: tuple[socket.socket, socket.socket],
) -> None:
    a, b = hundred_bytes
    buffered = BufferedSocket(b, read_size=64)
    assert buffered.recv(4) == b"0123"
    assert buffered.discard(100) == 60  # what is buffered first, never past it
    assert buffered.discard(30) == 30  # then from the socket, at most what was asked
    assert buffered.recv(3) == b"456"  # the next bytes are where the discard ended (94)
    b.setblocking(False)
    assert buffered.discard(100) == 3
    with pytest.raises(BlockingIOError):
        buffered.discard(1)
    a.close()
    assert buffered.discard(1) == 0  # end of stream


def test_head_room_is_the_topic_and_packet_id_still_to_read() -> None:
    body = publish_body("campus/a/power/m1", b"x" * 1000, 7)
    assert head_room(b"") == 2 and head_room(body[:1]) == 1  # the topic's length first
    head = 2 + len("campus/a/power/m1") + 2
    assert head_room(body[:2]) == head - 2
    assert head_room(body[:head]) == 0


def test_buffered_socket_passes_everything_else_through() -> None:
    a, b = socket.socketpair()
    try:
        buffered = BufferedSocket(b)
        assert buffered.fileno() == b.fileno()
        buffered.send(b"hi")
        assert a.recv(2) == b"hi"
    finally:
        a.close()
        b.close()


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """A whole QoS 1 PUBLISH packet: fixed header, remaining length, body."""
    body = publish_body(topic, payload, mid)
    length, rest = bytearray(), len(body)
    while True:
        byte, rest = rest & 0x7F, rest >> 7
        length.append(byte | (0x80 if rest else 0))
        if not rest:
            return bytes([0x32]) + bytes(length) + body


def test_whole_publishes_at_the_front_of_the_buffer_go_straight_to_the_receiver() -> None:
    got: list[tuple[str, bytes, int, int, int]] = []
    client = IngestClient(
        CallbackAPIVersion.VERSION2,
        protocol=MQTTv5,
        manual_ack=True,
        receiver=lambda *args: got.append(args),
        max_publish_bytes=1000,
    )
    big = b"y" * 300  # a remaining length of two bytes
    stream = (
        publish_packet("campus/a/power/m1", b"one", 1)
        + publish_packet("campus/a/power/m2", big, 2)
        + publish_packet("campus/a/power/m3", b"three", 3)
        + b"\xd0\x00"  # PINGRESP: paho's
        + publish_packet("campus/a/power/m4", b"four", 4)
    )
    a, b = socket.socketpair()
    try:
        a.sendall(b"\x00" + stream)
        buffered = BufferedSocket(b)
        assert buffered.recv(1) == b"\x00"  # the rest is now buffered
        assert client._take_publishes(buffered, limit=2) == 2  # the limit holds
        assert client._take_publishes(buffered, limit=100) == 1  # stops at the PINGRESP
        assert [(t, p, mid, qos, dropped) for t, p, mid, qos, dropped in got] == [
            ("campus/a/power/m1", b"one", 1, 1, 0),
            ("campus/a/power/m2", big, 2, 1, 0),
            ("campus/a/power/m3", b"three", 3, 1, 0),
        ]
        assert buffered.recv(2) == b"\xd0\x00"  # left for paho, unread
        assert client._take_publishes(buffered, limit=100) == 1
        assert got[-1][0] == "campus/a/power/m4"
    finally:
        a.close()
        b.close()


def test_a_publish_not_yet_whole_or_too_large_is_left_for_paho() -> None:
    got: list[object] = []
    client = IngestClient(
        CallbackAPIVersion.VERSION2,
        protocol=MQTTv5,
        manual_ack=True,
        receiver=lambda *args: got.append(args),
        max_publish_bytes=HEAD_KEEP,  # the least it takes
    )
    whole = publish_packet("campus/a/power/m1", b"x" * 50, 1)
    large = publish_packet("campus/a/power/m2", b"x" * HEAD_KEEP, 2)  # over max_publish_bytes
    for stream in (whole[:-1], whole[:1], whole[:2], large):
        a, b = socket.socketpair()
        try:
            a.sendall(b"\x00" + stream)
            buffered = BufferedSocket(b)
            buffered.recv(1)
            held = buffered.buffered()
            assert client._take_publishes(buffered, limit=100) == 0
            assert buffered.buffered() == held  # nothing consumed: paho reads it all
        finally:
            a.close()
            b.close()
    assert got == []
