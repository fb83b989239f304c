"""Annotator accounts: created with generated passwords in the dataset's workspace, on the embedded or a hosted
server, and kept (mode 0600) beside the embedded server's credentials so they can be handed out later."""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from llm_feedback.annotation.connection import Target, reporting_errors
from llm_feedback.artifacts import atomic_path
from llm_feedback.errors import ConfigError, PipelineError

USERNAME_PATTERN = r"^(?!-|_)[a-z0-9_-]+$"  # Argilla's rule for usernames


@dataclass(frozen=True)
class Added:
    username: str
    password: str | None = field(repr=False)  # None: the user existed, its password is unchanged
    joined_workspace: bool


def annotators_file(data_dir: Path) -> Path:
    return Path(data_dir) / "annotators.json"


def add_annotators(target: Target, *, workspace: str, usernames: list[str], store: Path) -> list[Added]:
    """Accounts that exist keep their password (it is not ours to reset); new passwords are kept in `store`."""
    for name in usernames:
        if not re.match(USERNAME_PATTERN, name):
            raise ConfigError(f"annotator name {name!r}: use lower-case letters, digits, '-' and '_' (Argilla's rule)")
    import argilla as rg

    added = []
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = target.client()
        space = client.workspaces(workspace) or rg.Workspace(name=workspace, client=client).create()
        members = {user.username for user in space.users}
        for name in dict.fromkeys(usernames):
            user = client.users(username=name)
            password = None
            if user is None:
                password = secrets.token_urlsafe(12)
                user = rg.User(username=name, password=password, role="annotator", client=client).create()
            elif user.role != "annotator":
                raise PipelineError(f"user {name!r} exists with role {user.role}; pick another name for an annotator")
            joined = name not in members
            if joined:
                user.add_to_workspace(space)
            added.append(Added(name, password, joined))
    _remember(store, target.url, added)
    return added


def _remember(store: Path, url: str, added: list[Added]) -> None:
    """Merge new passwords into the 0600 file: {server url: {username: password}}."""
    new = {a.username: a.password for a in added if a.password is not None}
    if not new:
        return
    known: dict[str, dict[str, str]] = json.loads(store.read_text()) if store.exists() else {}
    known.setdefault(url, {}).update(new)
    with atomic_path(store) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
