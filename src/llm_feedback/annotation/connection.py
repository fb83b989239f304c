"""One way to reach Argilla, embedded or hosted: the URL and key resolved from params and the environment, and every
failure turned into one line that says what to do (the SDK alone retries silently, then raises a raw traceback).

Or no way at all: with LLM_FEEDBACK_ANNOTATION_OFFLINE=1 (a teammate with the repository and the DVC remote, but
without the server), push and pull keep the artifacts they have, as `dvc pull` brought them, and nothing here
contacts or starts a server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from llm_feedback.annotation import embedded
from llm_feedback.errors import ConfigError, InputError, PipelineError
from llm_feedback.params import ArgillaParams

API_KEY_VARIABLE = "ARGILLA_API_KEY"
HF_TOKEN_VARIABLE = "HF_TOKEN"
CONNECT_RETRIES = 1  # the SDK's default of 5 means 7.5 s of silence before a dead server is reported
PROBE_TIMEOUT_S = 5.0  # Argilla answers /version at once; a listener that accepts and never answers is not Argilla
# 1: push and pull contact no server and keep their artifacts. An environment variable, not a param: it changes no
# output, so a teammate's `dvc repro` leaves params.yaml and dvc.lock as they are.
OFFLINE_VARIABLE = "LLM_FEEDBACK_ANNOTATION_OFFLINE"
OFFLINE = f"{OFFLINE_VARIABLE}=1"


def offline() -> bool:
    """Whether push and pull are to do without the annotation server (LLM_FEEDBACK_ANNOTATION_OFFLINE=1)."""
    value = os.environ.get(OFFLINE_VARIABLE, "").strip()
    if value in ("", "0"):
        return False
    if value == "1":
        return True
    raise ConfigError(
        f"{OFFLINE_VARIABLE} must be 1 (push and pull keep their artifacts and contact no annotation server) or 0 "
        "(or unset)"
    )


def kept_offline(path: Path) -> Path:
    """`path`, the artifact a stage keeps as it is in offline mode; missing, it stops the stage: only `dvc pull` can
    bring it without the server."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: not found, and with {OFFLINE} no annotation server is contacted: run `dvc pull` first"
        )
    return path


@dataclass(frozen=True)
class Target:
    """A server to talk to: its URL, and the secrets that go with it (kept out of reprs)."""

    url: str
    api_key: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    embedded: bool = False
    timeout_s: float = 60.0

    def client(self):  # -> argilla.Argilla (imported late: the SDK reads the environment at import)
        import argilla as rg
        from argilla._exceptions import NotFoundError

        self._probe()
        try:
            return rg.Argilla(
                api_url=self.url,
                api_key=self.api_key,
                timeout=self.timeout_s,
                retries=CONNECT_RETRIES,
                headers=dict(self.headers),
            )
        except NotFoundError:  # the first call is /api/v1/me: something answers, but not Argilla's API
            raise PipelineError(
                f"{self.url} answers, but not as Argilla: check argilla.url (the server's root URL); a private Hugging "
                f"Face Space also needs {HF_TOKEN_VARIABLE}"
            ) from None

    def _probe(self) -> None:
        """One quick, unauthenticated request first, so a port that accepts but never answers fails in seconds rather
        than after the SDK's full timeout and retry."""
        try:
            httpx.get(f"{self.url}/api/v1/version", headers=self.headers, timeout=min(self.timeout_s, PROBE_TIMEOUT_S))
        except httpx.TimeoutException:
            raise PipelineError(
                f"{self.url} accepts connections but did not answer within "
                f"{min(self.timeout_s, PROBE_TIMEOUT_S):.0f} s: is it Argilla? "
                "(check argilla.url, or argilla.port for the embedded server)"
            ) from None


def resolve(params: ArgillaParams, start_embedded: bool = True) -> Target:
    """The server params point at; `local` starts the embedded server when it is not running. Refused in offline
    mode, so no caller reaches or starts a server then."""
    if offline():
        raise ConfigError(f"{OFFLINE} is set: the annotation server is not contacted (unset it to reach {params.url})")
    if params.url == "local":
        server = embedded.EmbeddedServer(data_dir=params.data_dir, port=params.port)
        if start_embedded:
            _, already = embedded.start(server)
            if not already:
                print(
                    f"annotation server started at {server.url} (owner login in {server.credentials_file})", flush=True
                )
        credentials = embedded.load_credentials(server)
        if credentials is None:
            raise PipelineError(f"no credentials in {server.data_dir}: run `llm-feedback server start` first")
        return Target(server.url, credentials.api_key, embedded=True, timeout_s=params.timeout_s)
    api_key = os.environ.get(API_KEY_VARIABLE, "").strip()
    if not api_key:
        raise ConfigError(
            f"argilla.url is {params.url}: export {API_KEY_VARIABLE} with an owner's or admin's API key "
            "(Argilla UI > My settings), or set argilla.url: local for the embedded server"
        )
    headers = {}
    token = os.environ.get(HF_TOKEN_VARIABLE, "").strip()
    if token and _sends_hf_token(params.url, params.send_hf_token):
        headers["Authorization"] = f"Bearer {token}"
    return Target(params.url, api_key, headers, timeout_s=params.timeout_s)


def _sends_hf_token(url: str, mode: str) -> bool:
    """A Hugging Face token goes only where it is needed: a private Space, never to an arbitrary host."""
    if mode != "auto":
        return mode == "always"
    host = urlsplit(url).hostname or ""
    return host.endswith(".hf.space")


@contextmanager
def reporting_errors(target: Target) -> Iterator[None]:
    """Turn transport and HTTP failures from the SDK or httpx into one PipelineError line."""
    from argilla._exceptions import ArgillaCredentialsError, ArgillaError, ForbiddenError, UnauthorizedError

    try:
        yield
    except httpx.ConnectError:
        hint = "start it with `llm-feedback server start`" if target.embedded else "check argilla.url, or the network"
        raise PipelineError(
            f"cannot reach Argilla at {target.url}: connection refused or unresolvable ({hint}; without access to it, "
            f"{OFFLINE} keeps the annotations `dvc pull` brought)"
        ) from None
    except httpx.TimeoutException:
        raise PipelineError(
            f"Argilla at {target.url} did not answer within {target.timeout_s:.0f} s (argilla.timeout_s)"
        ) from None
    except httpx.TransportError as e:
        raise PipelineError(f"lost the connection to Argilla at {target.url}: {type(e).__name__}") from None
    except (UnauthorizedError, ArgillaCredentialsError):
        raise PipelineError(
            f"Argilla at {target.url} rejected the API key ({API_KEY_VARIABLE}"
            f"{'' if not target.headers else ', or the Space rejected HF_TOKEN'})"
        ) from None
    except ForbiddenError:
        raise PipelineError(
            f"Argilla at {target.url}: the API key's user may not do this (an owner or admin key is needed)"
        ) from None
    except ArgillaError as e:  # any other refusal, e.g. a record or a setting the server did not accept
        raise PipelineError(f"Argilla at {target.url}: {_first_line(e)}") from None
    except httpx.HTTPStatusError as e:
        raise PipelineError(
            f"Argilla at {target.url}: {e.response.status_code} for {e.request.method} {e.request.url.path}: "
            f"{_detail(e.response)}"
        ) from None


def _first_line(error: Exception) -> str:
    text = str(error) or str(getattr(error, "message", ""))
    return text.strip().splitlines()[0][:300] if text.strip() else type(error).__name__


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    return str(detail)[:300]
