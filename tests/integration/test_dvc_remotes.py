"""The default remote switched to shared storage, the way the README switches it, against servers on loopback: S3 (the
`s3` extra) through moto's S3 in server mode, and SSH (the `ssh` extra) through an SFTP server of asyncssh's. `dvc
push` fills the storage, and a fresh clone holding only its own credentials `dvc pull`s the artifacts and finds the
pipeline up to date."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_feedback.testing.ports import free_port
from tests.project import copy_project, edit_params, run

ARTIFACTS = ("data/tasks.parquet", "data/prompts.parquet")  # what fetch and format write
BUCKET = "team-artifacts"
# What a proxy, a profile, an agent or an instance's metadata service could add to a connection: none of it applies.
MACHINE_ENVIRONMENT = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "SSH_AUTH_SOCK",
)


@dataclass(frozen=True)
class Storage:
    """A remote as a team sets it up: its URL and options in the committed .dvc/config, each teammate's credentials
    in .dvc/config.local; `stored` lists the files it holds, by their paths under the URL."""

    url: str
    shared: dict[str, str]
    personal: dict[str, str]
    stored: Callable[[], set[str]]


@pytest.fixture(autouse=True)
def only_loopback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment the `dvc` commands inherit names no proxy, no credentials, profile or agent of the machine's,
    and no instance metadata service; HOME is empty (no ~/.aws, ~/.ssh)."""
    for name in MACHINE_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "home/.aws/config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "home/.aws/credentials"))
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


@pytest.fixture
def s3() -> Iterator[Storage]:
    """moto's S3 on a loopback port, with an empty bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        # made up here: the copied project holds this file, so literals would be found in its commits
        key_id, key = f"AKIA{secrets.token_hex(8).upper()}", secrets.token_urlsafe(30)
        client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=key)
        client.create_bucket(Bucket=BUCKET)

        def stored() -> set[str]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="llm-feedback/")
            return {item["Key"].removeprefix("llm-feedback/") for page in pages for item in page.get("Contents", [])}

        yield Storage(
            url=f"s3://{BUCKET}/llm-feedback",
            shared={"endpointurl": endpoint},
            personal={"access_key_id": key_id, "secret_access_key": key},
            stored=stored,
        )
    finally:
        server.stop()


@pytest.fixture
def ssh(tmp_path: Path) -> Iterator[Storage]:
    """An SFTP server on a loopback port that lets in one key and shows a folder of its own as /."""
    import asyncssh

    served = tmp_path / "sftp-root"
    served.mkdir()
    keyfile = tmp_path / "home/.ssh/id_ed25519"
    keyfile.parent.mkdir(parents=True)
    user_key = asyncssh.generate_private_key("ssh-ed25519")
    user_key.write_private_key(str(keyfile))
    keyfile.chmod(0o600)

    port = free_port()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def listen() -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1",
            port,
            server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
            authorized_client_keys=asyncssh.import_authorized_keys(user_key.export_public_key().decode()),
            sftp_factory=lambda channel: asyncssh.SFTPServer(channel, chroot=str(served).encode()),
            allow_scp=False,
        )

    server = asyncio.run_coroutine_threadsafe(listen(), loop).result(timeout=30)
    try:
        folder = served / "llm-feedback"
        yield Storage(
            url=f"ssh://teammate@127.0.0.1:{port}/llm-feedback",
            shared={},
            personal={"keyfile": str(keyfile)},
            stored=lambda: {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()},
        )
    finally:
        server.close()
        asyncio.run_coroutine_threadsafe(server.wait_closed(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


def api_models(params: dict) -> None:
    """Models that fetch and format only name: no tokenizer to load, no request sent."""
    params["models"] = {
        name: {"backend": "openai", "model": name, "base_url": "http://127.0.0.1:9/v1"} for name in ("a", "b")
    }
    params["compare"] = ["a", "b"]


@pytest.mark.parametrize("kind", ["s3", "ssh"])
def test_the_default_remote_switched_to_shared_storage_hands_the_artifacts_to_a_fresh_clone(
    tmp_path: Path, request: pytest.FixtureRequest, kind: str
) -> None:
    storage: Storage = request.getfixturevalue(kind)

    def credentials(repo: Path) -> None:
        """Each teammate's own, in .dvc/config.local, which git ignores."""
        for option, value in storage.personal.items():
            run(["dvc", "remote", "modify", "--local", "team", option, value], repo)

    repo = copy_project(tmp_path / "project")
    edit_params(repo, api_models)
    run(["dvc", "remote", "add", "-d", "team", storage.url], repo)
    for option, value in storage.shared.items():
        run(["dvc", "remote", "modify", "team", option, value], repo)
    credentials(repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the team's remote"], repo)

    run(["dvc", "repro", "format"], repo)
    assert "2 files pushed" in run(["dvc", "push"], repo).stdout
    assert not (tmp_path / "llm-feedback-dvc-remote").exists(), "the local folder is no longer the default remote"
    objects = repo / ".dvc/cache/files"
    cached = {p.relative_to(objects.parent).as_posix() for p in objects.rglob("*") if p.is_file()}
    assert len(cached) == len(ARTIFACTS)
    assert storage.stored() == cached, "the cache's files, at the same paths, in the remote"

    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "run"], repo)
    committed = run(["git", "show", "HEAD:.dvc/config"], repo).stdout
    assert "remote = team" in committed and f"url = {storage.url}" in committed
    assert all(f"{option} = {value}" in committed for option, value in storage.shared.items())
    assert ".dvc/config.local" not in run(["git", "ls-files"], repo).stdout.splitlines()
    history = run(["git", "log", "--all", "--patch"], repo).stdout
    for value in storage.personal.values():
        assert value in (repo / ".dvc/config.local").read_text()
        assert value not in history, "no credential in any commit"

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    credentials(clone)
    assert "2 files fetched" in run(["dvc", "pull", "--with-deps", "format"], clone).stdout
    for artifact in ARTIFACTS:
        assert (clone / artifact).read_bytes() == (repo / artifact).read_bytes()
    assert "Data and pipelines are up to date" in run(["dvc", "status", "--with-deps", "format"], clone).stdout
    assert "Cache and remote 'team' are in sync" in run(["dvc", "status", "--cloud"], clone).stdout
