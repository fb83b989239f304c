"""Annotator accounts: created with generated passwords in the dataset's workspace, on the embedded or a hosted
server, and kept (mode 0600) beside the embedded server's credentials so they can be handed out later; listed,
removed and given new passwords the same way, over Argilla's REST API (an owner's API key)."""

from __future__ import annotations

import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from llm_feedback.annotation.connection import Target, reporting_errors
from llm_feedback.annotation.record_pages import list_records
from llm_feedback.artifacts import atomic_path
from llm_feedback.errors import ConfigError, PipelineError

USERNAME_PATTERN = r"^(?!-|_)[a-z0-9_-]+$"  # Argilla's rule for usernames
ROLE_ORDER = {"owner": 0, "admin": 1, "annotator": 2}
OnResponses = Literal["refuse", "delete", "keep"]


@dataclass(frozen=True)
class Added:
    username: str
    password: str | None = field(repr=False)  # None: the user existed, its password is unchanged
    joined_workspace: bool


@dataclass(frozen=True)
class Account:
    """What `annotators list` shows of a user: never its password or API key."""

    username: str
    role: str
    workspaces: tuple[str, ...]  # the workspaces it is a member of (an owner reaches every one without membership)


@dataclass(frozen=True)
class Removed:
    username: str
    responses: int  # its responses on the server when it was removed
    deleted: bool  # False: the account and its responses stay, taken out of `left`
    left: tuple[str, ...] = ()


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
                password = _new_password()
                user = rg.User(username=name, password=password, role="annotator", client=client).create()
            elif user.role != "annotator":
                raise PipelineError(f"user {name!r} exists with role {user.role}; pick another name for an annotator")
            joined = name not in members
            if joined:
                user.add_to_workspace(space)
            added.append(Added(name, password, joined))
    _remember(store, target.url, {a.username: a.password for a in added if a.password is not None})
    return added


def list_accounts(target: Target) -> list[Account]:
    """Every user on the server with its role and workspaces, owners first, then admins, then annotators."""
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        http = target.client().http_client
        users = get_json(http, "/api/v1/users", doing="list users")["items"]
        memberships = _memberships(http)
    accounts = [Account(u["username"], u["role"], tuple(memberships.get(u["id"], ()))) for u in users]
    return sorted(accounts, key=lambda a: (ROLE_ORDER.get(a.role, len(ROLE_ORDER)), a.username))


def remove_annotators(target: Target, *, usernames: list[str], on_responses: OnResponses, store: Path) -> list[Removed]:
    """Delete annotator accounts. Argilla deletes a user's responses with the user (a cascade in its database), so an
    account that has responses is refused unless `on_responses` says what to do: `delete` deletes its responses one
    by one first (Argilla then recounts each record's task distribution, which deleting the user alone leaves
    stale: a record the user completed would stay completed with nobody's answer), or `keep` keeps the account and
    its responses and takes it out of every workspace. Every name is checked before anything is deleted."""
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client = target.client()
        http = client.http_client
        users = _annotators_named(http, target.url, usernames)
        counts = {name: _responses_by_dataset(http, name) for name in users}
        _check_responses(counts, on_responses, target.url)
        removed = [_remove(client, user=users[name], counts=counts[name], on_responses=on_responses) for name in users]
    _forget(store, target.url, [r.username for r in removed if r.deleted])
    return removed


def reset_password(target: Target, *, username: str, store: Path) -> str:
    """Give an annotator a new generated password, kept in `store` like those `add_annotators` hands out.

    Argilla 2.8 changes a password in place (PATCH /api/v1/users/{id}, owner only), so the account keeps its id, and
    with it its responses, workspaces and API key; deleting and re-creating the user would delete its responses
    (Argilla cascades them with the user). Argilla's session tokens name only the user, and its API has no way to
    rotate an API key, so sessions already open stay valid until they expire (a day by default) and the API key
    still works: to lock someone out, remove the account."""
    with reporting_errors(target), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        http = target.client().http_client
        user = _annotators_named(http, target.url, [username])[username]
        password = _new_password()
        http.patch(f"/api/v1/users/{user['id']}", json={"password": password}).raise_for_status()
    _remember(store, target.url, {username: password})
    return password


def get_json(http, path: str, *, doing: str, params: dict | None = None) -> dict:
    """GET `path` over the SDK's HTTP client; a refusal for lack of rights says which key is needed."""
    response = http.get(path, params=params)
    if response.status_code == 403:
        url = str(http.base_url).rstrip("/")
        raise PipelineError(f"Argilla at {url}: the API key's user may not {doing} (an owner's key is needed)")
    response.raise_for_status()
    return response.json()


def usernames_by_id(http) -> dict[str, str]:
    return {u["id"]: u["username"] for u in get_json(http, "/api/v1/users", doing="list users")["items"]}


def _new_password() -> str:
    return secrets.token_urlsafe(12)


def _memberships(http) -> dict[str, list[str]]:
    """user id -> the names of the workspaces it is a member of."""
    members: dict[str, list[str]] = {}
    for space in sorted(get_json(http, "/api/v1/me/workspaces", doing="list workspaces")["items"], key=_name):
        path = f"/api/v1/workspaces/{space['id']}/users"
        for user in get_json(http, path, doing="list a workspace's users")["items"]:
            members.setdefault(user["id"], []).append(space["name"])
    return members


def _name(item: dict) -> str:
    return item["name"]


def _annotators_named(http, url: str, usernames: list[str]) -> dict[str, dict]:
    """The users named, each of which must exist and be an annotator: owners and admins are not this tool's to touch."""
    users = {u["username"]: u for u in get_json(http, "/api/v1/users", doing="list users")["items"]}
    found = {}
    for name in dict.fromkeys(usernames):
        user = users.get(name)
        if user is None:
            raise PipelineError(f"no user named {name!r} at {url} (`llm-feedback annotators list` shows who there is)")
        if user["role"] != "annotator":
            raise PipelineError(f"user {name!r} is an {user['role']}, not an annotator: refused")
        found[name] = user
    return found


def _responses_by_dataset(http, username: str) -> dict[str, int]:
    """dataset id -> how many responses `username` has there (Argilla's per-user progress, any record status)."""
    counts = {}
    for dataset in get_json(http, "/api/v1/me/datasets", doing="list datasets")["items"]:
        path = f"/api/v1/datasets/{dataset['id']}/users/progress"
        for user in get_json(http, path, doing="read a dataset's progress")["users"]:
            total = _response_total(user) if user["username"] == username else 0
            if total:
                counts[dataset["id"]] = total
    return counts


def _response_total(progress: dict) -> int:
    """All of a user's responses in one entry of users/progress: by record status, then by response status."""
    return sum(sum((progress.get(status) or {}).values()) for status in ("completed", "pending"))


def _check_responses(counts: dict[str, dict[str, int]], on_responses: OnResponses, url: str) -> None:
    answered = {name: sum(by_dataset.values()) for name, by_dataset in counts.items() if by_dataset}
    if answered and on_responses == "refuse":
        who = ", ".join(f"{name} has {n} response{'s' * (n != 1)}" for name, n in answered.items())
        raise PipelineError(
            f"{who} at {url}, which Argilla deletes with the account: add --delete-responses to delete them too "
            "(pull first to keep them), or --keep-responses to keep the account and take it out of its workspaces"
        )


def _remove(client, *, user: dict, counts: dict[str, int], on_responses: OnResponses) -> Removed:
    http = client.http_client
    responses = sum(counts.values())
    if responses and on_responses == "keep":
        return Removed(user["username"], responses, deleted=False, left=_leave_workspaces(http, user["id"]))
    for dataset_id in counts:
        _delete_responses(client, dataset_id=dataset_id, user_id=user["id"])
    http.delete(f"/api/v1/users/{user['id']}").raise_for_status()
    return Removed(user["username"], responses, deleted=True)


def _leave_workspaces(http, user_id: str) -> tuple[str, ...]:
    spaces = get_json(http, f"/api/v1/users/{user_id}/workspaces", doing="list a user's workspaces")["items"]
    for space in spaces:
        http.delete(f"/api/v1/workspaces/{space['id']}/users/{user_id}").raise_for_status()
    return tuple(sorted(space["name"] for space in spaces))


def _delete_responses(client, *, dataset_id: str, user_id: str) -> None:
    """One DELETE per response: the way Argilla recounts the record's status (completed or pending) after it."""
    for record in list_records(client, dataset_id, {}, "deleting responses"):
        for response in record.responses:
            if response["user_id"] == user_id:
                client.http_client.delete(f"/api/v1/responses/{response['id']}").raise_for_status()


def _remember(store: Path, url: str, passwords: dict[str, str]) -> None:
    """Merge new passwords into the 0600 file: {server url: {username: password}}."""
    if not passwords:
        return
    known = _stored(store)
    known.setdefault(url, {}).update(passwords)
    _write_store(store, known)


def _forget(store: Path, url: str, usernames: list[str]) -> None:
    """Drop the passwords of deleted accounts: a name created again later gets a new one."""
    known = _stored(store)
    if not any(name in known.get(url, {}) for name in usernames):
        return
    for name in usernames:
        known[url].pop(name, None)
    _write_store(store, known)


def _stored(store: Path) -> dict[str, dict[str, str]]:
    return json.loads(store.read_text()) if store.exists() else {}


def _write_store(store: Path, known: dict[str, dict[str, str]]) -> None:
    with atomic_path(store) as tmp:
        os.chmod(tmp, 0o600)
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
