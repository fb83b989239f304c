"""Database set-up before serving: migrate with alembic, switch SQLite to WAL, create the owner.

Argilla's own CLI (`python -m argilla_server database migrate`, `users create`) is not used: it is built on typer 0.9,
which breaks under click >= 8.2.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from argilla_server.contexts import accounts
from argilla_server.database import ALEMBIC_CONFIG_FILE, AsyncSessionLocal, async_engine
from argilla_server.enums import UserRole
from argilla_server.models import User

from annotation_server import indexes
from annotation_server.credentials import Credentials

SQLITE_HEADER = b"SQLite format 3\x00"


class SetupError(Exception):
    """The database could not be prepared (the message is one line and holds no secret)."""


def migrate(database_file: Path) -> None:
    """Bring the schema to Argilla 2.8.0's head revision; switch the file to WAL (readers never block the writer)."""
    _check_is_sqlite(database_file)
    config = Config(ALEMBIC_CONFIG_FILE)
    config.get_main_option("script_location")  # parse the file now (alembic memoizes it) ...
    config.config_file_name = None  # ... so env.py skips logging.fileConfig, which disables every existing logger
    command.upgrade(config, "head")
    with sqlite3.connect(database_file) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    indexes.ensure_global_indexes(database_file)


def _check_is_sqlite(database_file: Path) -> None:
    """A damaged or foreign file is named as such, before SQLAlchemy's multi-line error about a PRAGMA."""
    try:
        with database_file.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return
    if header and header != SQLITE_HEADER:
        raise SetupError(
            f"{database_file} is not an SQLite database: restore it from a backup, or move it away to start empty"
        )


async def ensure_owner(credentials: Credentials) -> str:
    """Create the owner from the credentials file if missing, else keep it; its API key and password follow the file.

    Returns what was done ("created", "kept", "updated"), for a log line that names no secret.
    """
    try:
        async with AsyncSessionLocal() as db:
            user = await accounts.get_user_by_username(db, credentials.username)
            holder = await accounts.get_user_by_api_key(db, credentials.api_key)
            if holder is not None and (user is None or holder.id != user.id):
                raise SetupError(f"the API key in credentials.json belongs to another user ({holder.username!r})")
            if user is None:
                user = await accounts.create_user(
                    db,
                    {
                        "first_name": credentials.username,
                        "last_name": None,
                        "username": credentials.username,
                        "role": UserRole.owner,
                        "password": credentials.password,
                    },
                )
                await user.update(db, api_key=credentials.api_key)
                return "created"
            if user.role != UserRole.owner:
                raise SetupError(f"user {credentials.username!r} exists with role {user.role.value!r}, not owner")
            return await _follow_file(db, user, credentials)
    finally:
        # The server runs on another event loop: connections opened on this one must not be reused there.
        await async_engine.dispose()


async def _follow_file(db, user: User, credentials: Credentials) -> str:
    """The manager's file is the source of truth: a key or password changed there is applied to the kept owner."""
    changes = {}
    if user.api_key != credentials.api_key:
        changes["api_key"] = credentials.api_key
    if not accounts.verify_password(credentials.password, user.password_hash):
        changes["password_hash"] = accounts.hash_password(credentials.password)
    if not changes:
        return "kept"
    await user.update(db, **changes)
    return "updated"
