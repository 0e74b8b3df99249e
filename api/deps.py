"""What routes depend on: the ticket service and the calling account."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.accounts import Principal, authenticate
from tickets.models import Role
from tickets.service import Tickets

_bearer = HTTPBearer(auto_error=False, description="A token from `campus tokens create`.")


def tickets(request: Request) -> Tickets:
    """The ticket service the app was built with."""
    svc: Tickets = request.app.state.tickets
    return svc


TicketsDep = Annotated[Tickets, Depends(tickets)]


def principal(
    svc: TicketsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The account behind the request's bearer token; 401 without a valid one."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "a bearer token is needed (campus tokens create)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    who = authenticate(svc.store, credentials.credentials)
    if who is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "the token is unknown, revoked or expired",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return who


PrincipalDep = Annotated[Principal, Depends(principal)]


def role(*allowed: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only these roles through (403 for the others)."""

    def check(who: PrincipalDep) -> Principal:
        if who.role not in allowed:
            names = ", ".join(r.value for r in allowed)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {names}")
        return who

    return check
