"""A paho-mqtt client with a cheaper receive path, for the ingester.

Profiles of the ingester showed half of its CPU in paho-mqtt's per-packet
work, and most of that in system calls rather than in MQTT: paho reads every
packet with at least three ``recv`` calls (one byte of command, the remaining
length a byte at a time, then the body), and goes back to ``select`` after
each packet; every PUBACK is a ``send`` of its own plus a byte through paho's
wake-up socket pair. :class:`IngestClient` keeps paho's protocol handling and
changes only that:

* the socket is wrapped in :class:`BufferedSocket`, which reads up to 256 KiB
  per ``recv`` and serves paho's small reads from that buffer. It reports
  the buffered bytes through ``pending()``, the hook paho already uses for
  TLS sockets, so paho's loop never waits in ``select`` while data is
  buffered, and :meth:`IngestClient.loop_read` handles every whole packet
  already buffered before returning;
* the whole QoS 0 and 1 PUBLISH packets at the front of that buffer are
  parsed there, a run at a time, without paho's per-packet reads (which
  were still two thirds of the cost of a one-reading message); a packet that
  is anything else, not yet whole, or too large goes to paho as before;
* a QoS 0 or 1 PUBLISH goes straight to the ``receiver`` callable as
  (topic, payload, mid, qos): no ``MQTTMessage`` (each holds a
  ``threading.Condition``), no ``Properties`` object decoded for every
  message (a fifth of the network thread's time), no topic matching. The
  MQTT 5 properties of a PUBLISH are skipped unread: the ingester uses none.
  QoS 2 and everything that is not a PUBLISH go through paho unchanged;
* a PUBLISH larger than ``max_publish_bytes`` is never held whole: its first
  bytes (topic and packet id) are kept and the rest is read and dropped as it
  arrives; the receiver gets it with an empty payload and its size, so it
  can be refused, recorded and acknowledged;
* :meth:`IngestClient.ack_many` queues the PUBACKs of a whole batch as one
  write, in the order given.

What goes over the wire is unchanged: the same packets, in the same order.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

PUBACK = 0x40
_PUBACK = struct.Struct("!BBH")
READ_SIZE = 256 * 1024
DRAIN_PACKETS = 2000  # at most this many buffered packets per read, so writes are not starved


class BufferedSocket:
    """A socket whose small reads are served from one large read.

    Everything but ``recv`` and ``pending`` goes to the wrapped socket, so
    ``select``, ``send``, ``setblocking`` and ``close`` behave as before.
    """

    def __init__(self, sock: Any, read_size: int = READ_SIZE) -> None:
        self._sock = sock
        self._read_size = read_size
        self._buf = b""
        self._pos = 0
        self._scratch: bytearray | None = None

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes; one ``recv`` of the socket only when the buffer is empty."""
        buf, pos = self._buf, self._pos
        if pos >= len(buf):
            data = self._sock.recv(max(bufsize, self._read_size))
            if len(data) <= bufsize:
                self._buf, self._pos = b"", 0
                return data  # b"" is end of stream, as for a socket
            buf, pos = data, 0
            self._buf = buf
        end = min(pos + bufsize, len(buf))
        self._pos = end
        return buf[pos:end]

    def discard(self, size: int) -> int:
        """Consume up to ``size`` bytes without handing them out (the rest of a
        payload too large to keep): buffered bytes first, else one read into a
        scratch buffer kept for this. How many were consumed; 0 at end of stream."""
        left = len(self._buf) - self._pos
        if left > 0:
            n = min(size, left)
            self._pos += n
            return n
        if self._scratch is None:
            self._scratch = bytearray(self._read_size)
        return int(self._sock.recv_into(self._scratch, min(size, self._read_size)))

    def buffered(self) -> int:
        """Bytes read from the socket and not yet handed out."""
        return len(self._buf) - self._pos

    def view(self) -> tuple[bytes, int]:
        """The buffer and where its unread bytes start (see :meth:`advance`)."""
        return self._buf, self._pos

    def advance(self, pos: int) -> None:
        """Mark the buffer read up to ``pos``, as if ``recv`` had handed it out."""
        self._pos = pos

    def pending(self) -> int:
        """Bytes readable without waiting (paho's hook for TLS sockets)."""
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return self.buffered() + inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


HEAD_KEEP = 2 + 65_535 + 2  # the longest head a PUBLISH can have: the least max_publish_bytes is

Receiver = Callable[[str, bytes, int, int, int], None]
"""Called with (topic, payload, mid, qos, dropped) for each PUBLISH received;
``dropped`` is 0, or the packet's size when its payload was too large to keep."""


def publish_head(header: int, head: bytes | bytearray) -> tuple[str, int, int]:
    """(topic, mid, qos) from the first bytes of a PUBLISH (its payload not needed)."""
    qos = (header & 0x06) >> 1
    if len(head) < 2:
        raise ValueError("PUBLISH too short for its topic length")
    end = 2 + ((head[0] << 8) | head[1])
    if len(head) < end + (2 if qos else 0):
        raise ValueError("PUBLISH too short for its topic and packet id")
    mid = (head[end] << 8) | head[end + 1] if qos else 0
    return head[2:end].decode("utf-8", "replace"), mid, qos


def head_room(head: bytes | bytearray) -> int:
    """Bytes still to read of a PUBLISH's head, given its first bytes: the
    topic's length, the topic and a packet id (two bytes more than a QoS 0
    PUBLISH has, which only means two payload bytes are kept)."""
    if len(head) < 2:
        return 2 - len(head)
    return 4 + ((head[0] << 8) | head[1]) - len(head)


def varint(data: bytes | bytearray, pos: int) -> tuple[int, int] | None:
    """The MQTT variable byte integer at ``pos`` and where it ends, or None when
    ``data`` ends inside it or it runs past four bytes."""
    value = shift = 0
    size = len(data)
    while pos < size and shift <= 21:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    return None


def split_publish(header: int, packet: bytes | bytearray) -> tuple[str, bytes, int, int]:
    """(topic, payload, mid, qos) of an MQTT 5 PUBLISH; properties skipped.

    ``header`` is the fixed header's first byte, ``packet`` the rest after the
    remaining length. Raises ``ValueError`` for a packet too short for what it
    declares.
    """
    qos = (header & 0x06) >> 1
    size = len(packet)
    if size < 2:
        raise ValueError("PUBLISH too short for its topic length")
    end = 2 + ((packet[0] << 8) | packet[1])
    topic = packet[2:end].decode("utf-8", "replace")
    mid = 0
    if qos:
        if size < end + 2:
            raise ValueError("PUBLISH too short for its packet id")
        mid = (packet[end] << 8) | packet[end + 1]
        end += 2
    # properties: a variable byte integer length, then that many bytes
    read = varint(packet, end)
    if read is None:
        raise ValueError("PUBLISH with a malformed property length")
    length, end = read
    end += length
    if end > size:
        raise ValueError("PUBLISH shorter than its properties")
    return topic, bytes(packet[end:]), mid, qos


class IngestClient(mqtt.Client):
    """``paho.mqtt.client.Client`` with buffered reads, a direct receiver and batched PUBACKs.

    ``receiver`` takes QoS 0 and 1 messages instead of ``on_message``; a
    PUBLISH packet over ``max_publish_bytes`` reaches it without its payload.
    """

    def __init__(
        self, *args: Any, receiver: Receiver, max_publish_bytes: int = 1 << 28, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._receiver = receiver
        self.max_publish_bytes = max(max_publish_bytes, HEAD_KEEP)

    def _oversized(self) -> bool:
        """Whether the packet being read is a PUBLISH too large to keep."""
        inp = self._in_packet
        return bool(
            inp["have_remaining"]
            and inp["command"] & 0xF0 == mqtt.PUBLISH
            and inp["remaining_length"] > self.max_publish_bytes
            and inp["command"] & 0x06 != 0x04
        )

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._oversized():
            return super()._sock_recv(bufsize)
        # A PUBLISH too large to keep: read its head (topic, packet id), then
        # skip the rest without copying it, counting it as read. At least one
        # byte goes back each time: paho takes an empty read for a closed socket.
        inp = self._in_packet
        room = head_room(inp["packet"])
        if room > 0:
            return super()._sock_recv(min(bufsize, room))
        sock = self._sock
        if not isinstance(sock, BufferedSocket):
            data = super()._sock_recv(bufsize)
            inp["to_process"] -= max(0, len(data) - 1)
            return data[:1]
        try:
            n = sock.discard(bufsize)
        except ssl.SSLWantReadError as err:
            raise BlockingIOError() from err
        except ssl.SSLWantWriteError as err:
            self._call_socket_register_write()
            raise BlockingIOError() from err
        if n == 0:
            return b""
        inp["to_process"] -= n - 1
        return b"\0"

    def _handle_publish(self) -> MQTTErrorCode:
        header = self._in_packet["command"]
        if self._protocol != mqtt.MQTTv5 or header & 0x06 == 0x04:
            return super()._handle_publish()  # QoS 2 keeps paho's state machine
        packet = self._in_packet["packet"]
        dropped = 0
        try:
            if self._oversized():
                dropped = self._in_packet["remaining_length"]
                topic, mid, qos = publish_head(header, packet)
                payload = b""
            else:
                topic, payload, mid, qos = split_publish(header, packet)
        except ValueError as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "malformed PUBLISH: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        with self._in_callback_mutex:
            self._receiver(topic, payload, mid, qos, dropped)
        if qos == 1 and not self._manual_ack:
            return self._send_puback(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read as paho does, then handle every packet already buffered."""
        rc = super().loop_read(max_packets)
        budget = DRAIN_PACKETS
        while budget > 0:
            sock = self._sock
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, BufferedSocket):
                break
            if self._in_packet["command"] == 0 and self._protocol == mqtt.MQTTv5:
                budget -= self._take_publishes(sock, budget)
            if sock.buffered() == 0 or budget <= 0:
                break
            rc = super().loop_read(1)  # anything else, or a packet not yet whole
            budget -= 1
        return rc

    def _take_publishes(self, sock: BufferedSocket, limit: int) -> int:
        """Hand the whole QoS 0 and 1 PUBLISH packets at the front of the buffer
        straight to the receiver, without paho's per-packet reads; stop at the
        first packet that is anything else, not whole yet, or too large to
        keep, and leave it to paho. Returns how many were taken."""
        buf, pos = sock.view()
        size = len(buf)
        taken = 0
        while taken < limit and pos < size:
            header = buf[pos]
            if header & 0xF0 != mqtt.PUBLISH or header & 0x06 not in (0x00, 0x02):
                break
            read = varint(buf, pos + 1)
            if read is None:
                break  # the remaining length is not all here (or is malformed): paho's
            length, i = read
            if length > self.max_publish_bytes or i + length > size:
                break
            try:
                topic, payload, mid, qos = split_publish(header, buf[i : i + length])
            except ValueError:
                break  # paho reads it again and refuses it as a protocol error
            pos = i + length
            sock.advance(pos)
            taken += 1
            with self._in_callback_mutex:
                self._receiver(topic, payload, mid, qos, 0)
            if qos == 1 and not self._manual_ack:
                self._send_puback(mid)
        if taken:
            with self._msgtime_mutex:
                self._last_bytes_received = mqtt.time_func()
        return taken

    def ack_many(self, mids: Iterable[int]) -> MQTTErrorCode:
        """Acknowledge QoS 1 messages (manual acknowledgements) in one write."""
        packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
        if not packet:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._packet_queue(PUBACK, packet, 0, 1)
