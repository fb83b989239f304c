"""The owner's credentials, read from `DATA_DIR/credentials.json` (written by the pipeline's manager, mode 0600).

The file is refused when anyone but its owner may read or write it: it holds the owner's password and API key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

CREDENTIALS_FILE = "credentials.json"


class CredentialsError(Exception):
    """The credentials file is missing, too open, or malformed (the message is one line and holds no secret)."""


@dataclasses.dataclass(frozen=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)
    api_key: str = dataclasses.field(repr=False)


def read_credentials(data_dir: Path) -> Credentials:
    path = data_dir / CREDENTIALS_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CredentialsError(f"{path} is missing (write it with mode 0600 before starting the server)") from None
    if not stat.S_ISREG(mode):
        raise CredentialsError(f"{path} is not a regular file")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CredentialsError(
            f"{path} has mode {stat.S_IMODE(mode):04o}: group/other may access it; run `chmod 600 {path}`"
        )
    if os.name == "posix" and path.stat().st_uid != os.getuid():
        raise CredentialsError(f"{path} is not owned by the user running the server")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CredentialsError(f"{path} is not valid JSON ({type(error).__name__})") from None
    if not isinstance(raw, dict):
        raise CredentialsError(f"{path} must hold a JSON object")
    values = {}
    for key in ("username", "password", "api_key"):
        value = raw.get(key)
        if not isinstance(value, str) or not value:
            raise CredentialsError(f"{path}: `{key}` must be a non-empty string")
        values[key] = value
    # Argilla's own validators: usernames are lowercase slugs, passwords 8-100 characters.
    if len(values["password"]) < 8:
        raise CredentialsError(f"{path}: `password` must have at least 8 characters")
    if len(values["api_key"]) < 8:
        raise CredentialsError(f"{path}: `api_key` must have at least 8 characters")
    return Credentials(**values)
