"""Short-lived signed links to one ticket for one technician: what a
technician's alert carries, so the ticket opens on their phone without a login.

A link is ``{public_url}/t/{ticket}?k={token}``. The token is the ticket id,
the technician id and the expiry time, signed (HMAC-SHA1 with the key of
``settings.link_secret()``, by :mod:`itsdangerous`). It opens that one ticket
until it expires (``CAMPUS_API_LINK_TTL_S``, one day by default), and it acts in
the ticket's history as that technician. A changed token, one signed with
another key, one for another ticket or one past its time is refused.

The token also travels in the body of every form the technician page posts,
which is what protects those forms from cross-site request forgery: another
site cannot know it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadData, URLSafeSerializer

from campus.errors import CampusError
from campus.settings import Settings

SALT = "campus.ticket-link.v1"


class LinkRefused(CampusError):
    """A ticket link that opens nothing; ``reason`` is ``bad``, ``expired`` or ``other``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Grant:
    """What a valid link lets its holder do: work ``ticket`` as ``technician``."""

    ticket: int
    technician: str
    expires: float  # epoch seconds


class Links:
    """Makes and checks ticket links with one key."""

    def __init__(
        self,
        secret: bytes,
        ttl_s: float,
        public_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._signer = URLSafeSerializer(secret, salt=SALT)
        self.ttl_s = ttl_s
        self.public_url = public_url.rstrip("/")
        self.clock = clock

    def token(self, ticket: int, technician: str, *, ttl_s: float | None = None) -> str:
        """A token for ``technician`` on ``ticket``, valid ``ttl_s`` (default: the ttl)."""
        expires = int(self.clock() + (self.ttl_s if ttl_s is None else ttl_s))
        return str(self._signer.dumps([ticket, technician, expires]))

    def url(self, ticket: int, technician: str) -> str:
        """The whole link a technician's alert carries."""
        return f"{self.public_url}/t/{ticket}?k={self.token(ticket, technician)}"

    def check(self, token: str, ticket: int) -> Grant:
        """The grant of ``token`` for ``ticket``; :class:`LinkRefused` otherwise."""
        try:
            data = self._signer.loads(token)
            t, technician, expires = data
            if not (isinstance(t, int) and isinstance(technician, str)):
                raise ValueError("bad fields")
            expires = float(expires)
        except (BadData, ValueError, TypeError):
            raise LinkRefused("bad", "the link is not valid") from None
        if t != ticket:
            raise LinkRefused("other", "the link is for another ticket")
        if expires <= self.clock():
            raise LinkRefused("expired", "the link has expired")
        return Grant(t, technician, expires)


def links_for(settings: Settings) -> Links:
    """The links of ``settings``: its key, ttl and public address."""
    return Links(settings.link_secret(), settings.api_link_ttl_s, settings.public_url)


def ticket_link(settings: Settings) -> Callable[[int, str], str]:
    """``(ticket id, technician id) -> link``, for the notices of the outbox."""
    return links_for(settings).url
