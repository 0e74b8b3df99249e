"""What routes depend on: the ticket service and the calling account."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.accounts import Principal, authenticate, sso_principal
from tickets.models import Role
from tickets.service import Tickets

_bearer = HTTPBearer(auto_error=False, description="A token from `campus tokens create`.")


def tickets(request: Request) -> Tickets:
    """The ticket service the app was built with."""
    svc: Tickets = request.app.state.tickets
    return svc


TicketsDep = Annotated[Tickets, Depends(tickets)]


def principal(
    request: Request,
    svc: TicketsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The account behind the request's bearer token, or the one a trusted single
    sign-on proxy names (``CAMPUS_API_SSO_HEADER``); 401 without either."""
    if credentials is None:
        who = _signed_on(request, svc)
        if who is not None:
            return who
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


def _signed_on(request: Request, svc: Tickets) -> Principal | None:
    """The account named by the single sign-on header, if the request came
    straight from a trusted proxy (anyone else could set the header)."""
    settings = request.app.state.settings
    header = settings.api_sso_header
    if not header or request.client is None or not _within(request.client.host, settings):
        return None
    user = request.headers.get(header)
    if not user:
        return None
    return sso_principal(svc.store, user)


def role(*allowed: Role) -> Callable[[Principal], Principal]:
    """A dependency that lets only these roles through (403 for the others)."""

    def check(who: PrincipalDep) -> Principal:
        if who.role not in allowed:
            names = ", ".join(r.value for r in allowed)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the role {names}")
        return who

    return check


def _within(host: str, settings: Any) -> bool:
    """Whether ``host`` is one of the trusted proxies' addresses."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(n, strict=False) for n in settings.trusted_proxies)
