"""A per-client rate limit for the public, anonymous routes (feedback).

:class:`RateLimiter` is a token bucket per client: a client may send
``per_hour`` posts at once, and one more every ``3600 / per_hour`` seconds after
that; a post over the limit is refused with **429** and ``Retry-After`` (whole
seconds until the next post is allowed).

**Nothing about the client is kept but a keyed hash, in memory.** The key of a
client is HMAC-SHA256 of its address under a random salt made when the
limiter is (once per process, never written anywhere): the table cannot be
turned back into addresses, not even by someone holding a memory dump and a
list of candidate addresses without the salt, and it is gone on restart.
Memory is bounded: at most ``max_keys`` clients (100,000 by default, about
15 MB) are tracked; clients idle long enough for their bucket to be full again
are forgotten first, and past the cap the least recently seen client is
forgotten (it loses nothing it was owed: it can only get a fuller bucket).

**Which address.** The direct peer of the connection, except when that peer
is a trusted proxy (``trusted``: loopback by default, ``127.0.0.0/8`` and
``::1``): then the client is the right-most address of ``X-Forwarded-For``
that is not itself a trusted proxy. A client that connects directly cannot
choose its key by sending the header, since its own address is not trusted;
and a client behind the proxy cannot either, because the proxy appends the
address it saw to whatever the client sent, and the scan stops at the first
untrusted address from the right. (uvicorn's ``--proxy-headers``, on by
default with ``127.0.0.1`` trusted, applies the same rule before the request
reaches here; the limiter applies it again so that it holds under any server.)
Put the API behind a proxy on another host by adding that host to ``trusted``.
An IPv6 client is keyed by its ``/64`` (a home or phone gets a whole /64 and
may pick any address in it), an IPv4-mapped IPv6 address as its IPv4 one.

Limits: each API process keeps its own table, so ``N`` worker processes let a
client post up to ``N`` times the limit; and clients sharing one address (a
dormitory's NAT) share one bucket.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from fastapi import HTTPException, Request, status

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_KEYS = 100_000


class RateLimiter:
    """A token bucket of ``per_hour`` posts per client, keyed by a salted hash of
    the client's address (see the module's docstring)."""

    def __init__(
        self,
        per_hour: int,
        *,
        trusted: Iterable[str] = LOOPBACK,
        max_keys: int = MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_hour < 1:
            raise ValueError("per_hour must be at least 1")
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.per_hour = per_hour
        self.capacity = float(per_hour)
        self.rate = per_hour / 3600.0  # tokens per second
        self.refill_s = 3600.0  # an idle bucket is full again after this long at most
        self.trusted: tuple[IpNetwork, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted
        )
        self.max_keys = max_keys
        self.clock = clock
        self._salt = secrets.token_bytes(32)
        # key -> [tokens, last update]; least recently seen first
        self._buckets: OrderedDict[bytes, list[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, request: Request) -> None:
        """Count one post of ``request``'s client, or refuse it with 429."""
        wait = self.take(self.client_of(request))
        if wait is not None:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                f"too many posts from your network; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )

    def take(self, address: str) -> int | None:
        """Spend one token of ``address``'s bucket: ``None`` when allowed, else the
        whole seconds until one is back."""
        key = hmac.new(self._salt, address.encode("utf-8", "replace"), hashlib.sha256).digest()
        now = self.clock()
        with self._lock:
            self._forget_idle(now)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = [self.capacity, now]
                self._buckets[key] = bucket
                while len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                elapsed = max(0.0, now - bucket[1])
                bucket[0] = min(self.capacity, bucket[0] + elapsed * self.rate)
                bucket[1] = now
            if bucket[0] >= 1.0:
                bucket[0] -= 1.0
                return None
            return max(1, math.ceil((1.0 - bucket[0]) / self.rate))

    def _forget_idle(self, now: float) -> None:
        """Drop the clients whose bucket is full again (they are owed nothing)."""
        while self._buckets:
            key, (_, last) = next(iter(self._buckets.items()))
            if now - last < self.refill_s:
                return
            del self._buckets[key]

    def client_of(self, request: Request) -> str:
        """The address the limit applies to (see the module's docstring)."""
        peer = request.client.host if request.client is not None else ""
        if not self._is_trusted(peer):
            return _canonical(peer) if peer else "unknown"
        forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._is_trusted(hop):
                return _canonical(hop)
        return peer

    def _is_trusted(self, host: str) -> bool:
        address = _ip(host)
        return address is not None and any(address in net for net in self.trusted)


def _ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _canonical(host: str) -> str:
    """One key per client: ``::ffff:1.2.3.4`` is ``1.2.3.4``, and an IPv6 client is
    its ``/64`` (one home or phone is given a whole /64 and may pick any address
    in it). A host that is not an address (the test client, a proxy's
    obfuscated name) is kept as sent, bounded."""
    address = _ip(host)
    if address is None:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)
