"""API accounts and bearer tokens, kept in the ticket store.

A token is ``cmp_`` and 43 URL-safe characters (32 random bytes); the store
keeps only its SHA-256 digest, so a copy of the database opens nothing. It is
shown once, when it is made (``campus tokens create``).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from campus.errors import CampusError
from tickets.db import Store
from tickets.models import ApiToken, Role, Technician, User
from tickets.service import utcnow

PREFIX = "cmp_"
USER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class AccountError(CampusError):
    """A user or token request that cannot be carried out (the message says why)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: an account, its role and, for a technician, whose work is theirs."""

    user: str
    role: Role
    technician: str | None = None  # their on-call entry
    team: str | None = None  # their team: its trade's tickets in its buildings are theirs

    @property
    def actor(self) -> str:
        """The name ticket histories record for this caller."""
        return self.technician or self.user


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(
    store: Store, user_id: str, name: str, role: Role, technician: str | None = None
) -> User:
    """Create an account; a technician's account must name their on-call entry."""
    if not USER_ID.match(user_id):
        raise AccountError(f"user id {user_id!r} is not allowed (use [A-Za-z0-9_.-], 1-64)")
    if role is Role.technician and technician is None:
        raise AccountError("a technician account needs --technician (their id in oncall.yaml)")
    with store.session() as s:
        if s.get(User, user_id) is not None:
            raise AccountError(f"user {user_id!r} exists already")
        if technician is not None and s.get(Technician, technician) is None:
            known = ", ".join(s.scalars(select(Technician.id).order_by(Technician.id)))
            raise AccountError(f"unknown technician {technician!r} (known: {known or 'none'})")
        user = User(
            id=user_id,
            name=name or user_id,
            role=role.value,
            technician_id=technician,
            created_at=utcnow(),
            disabled=False,
        )
        s.add(user)
        return user


def list_users(store: Store) -> list[User]:
    """Every account, by id."""
    with store.session() as s:
        return list(s.scalars(select(User).order_by(User.id)))


def create_token(
    store: Store, user_id: str, label: str = "", valid_for: timedelta | None = None
) -> str:
    """A new token for ``user_id``; the only time it is seen in clear."""
    token = PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    with store.session() as s:
        if s.get(User, user_id) is None:
            raise AccountError(f"no user {user_id!r} (add one with campus users add)")
        s.add(
            ApiToken(
                user_id=user_id,
                digest=digest(token),
                label=label[:100],
                created_at=now,
                expires_at=now + valid_for if valid_for else None,
            )
        )
    return token


def revoke_tokens(store: Store, user_id: str) -> int:
    """Revoke every live token of ``user_id``; how many."""
    now = utcnow()
    with store.session() as s:
        live = s.scalars(
            select(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
        ).all()
        for t in live:
            t.revoked_at = now
        return len(live)


def authenticate(store: Store, token: str, now: datetime | None = None) -> Principal | None:
    """The caller a token belongs to, or None for an unknown, revoked or expired
    token or a disabled account."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    now = now or utcnow()
    with store.session() as s:
        row = s.execute(
            select(User, ApiToken)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(ApiToken.digest == digest(token))
        ).first()
        if row is None:
            return None
        user, tok = row
        if user.disabled or tok.revoked_at is not None:
            return None
        if tok.expires_at is not None and tok.expires_at <= now:
            return None
        return _principal(s, user)


def sso_principal(store: Store, user_id: str) -> Principal | None:
    """The account a single sign-on proxy vouched for (docs/security.md), or None
    when there is no such enabled account: signing on does not make an account."""
    if not USER_ID.match(user_id):
        return None
    with store.session() as s:
        user = s.get(User, user_id)
        if user is None or user.disabled:
            return None
        return _principal(s, user)


def _principal(s: Session, user: User) -> Principal:
    team = None
    if user.technician_id is not None:
        team = s.scalar(select(Technician.team_id).where(Technician.id == user.technician_id))
    return Principal(user.id, Role(user.role), user.technician_id, team)
