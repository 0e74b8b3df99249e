"""A migrated ticket store with the shipped on-call people and API accounts,
made once per test module and copied for each test (migrating takes a second;
copying a file takes a millisecond)."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from api.accounts import add_user, create_token
from campus.settings import Settings
from tests.conftest import CONFIG
from tickets.cli import open_tickets
from tickets.db import Store, open_store
from tickets.models import Role
from tickets.oncall import OnCall
from tickets.service import Tickets

# account -> (role, the technician's on-call entry)
Users = Mapping[str, tuple[Role, str | None]]


@dataclass(frozen=True)
class StoreTemplate:
    """The store file to copy, its on-call file and a token per account."""

    db: Path
    oncall: OnCall
    tokens: dict[str, str]

    def copy(self, folder: Path) -> Tickets:
        """A store of its own for one test, in ``folder``."""
        shutil.copy(self.db, folder / "campus.db")
        tickets = Tickets(open_store(f"sqlite:///{folder / 'campus.db'}", upgrade=False))
        tickets.oncall = self.oncall
        return tickets


def add_accounts(store: Store, users: Users) -> dict[str, str]:
    """Add ``users`` to ``store``; a token for each."""
    for user, (role, tech) in users.items():
        add_user(store, user, "", role, technician=tech)
    return {user: create_token(store, user) for user in users}


def store_with_accounts(var: Path, users: Users) -> StoreTemplate:
    """Migrate a store in ``var``, load ``config/oncall.yaml`` and add ``users``."""
    tickets = open_tickets(Settings(var_dir=var, config_dir=CONFIG))
    tokens = add_accounts(tickets.store, users)
    tickets.store.close()
    assert tickets.oncall is not None
    return StoreTemplate(var / "campus.db", tickets.oncall, tokens)
