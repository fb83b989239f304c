"""`llm-feedback annotators list|remove|reset-password` and `llm-feedback progress` as a team lead runs them, against
the real embedded server; annotators answer over REST as themselves, the way the web UI does. Most commands run through
the CLI's `main` with argv in the project folder (each process of its own would import the SDK again, seconds each);
`reset-password`, which prints a password once by design, runs as a process of its own."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from llm_feedback.annotation.annotators import add_annotators
from llm_feedback.annotation.connection import resolve
from llm_feedback.annotation.push import push
from llm_feedback.cli import main
from llm_feedback.params import Params
from llm_feedback.testing.argilla_records import owner_records
from llm_feedback.testing.ports import free_port
from tests.conftest import PROJECT_ROOT
from tests.integration.annotation.annotating import make_generations, make_tasks
from tests.integration.annotation.conftest import RunningServer
from tests.project import make_project, run_cli

pytestmark = pytest.mark.slow

MODELS = ["alpha", "beta"]
SCORES = {"score_response_1": 5, "score_response_2": 3}


def project_params(argilla: dict, *, dataset: str = "unused", min_submitted: int = 1) -> dict:
    """params.yaml of a project on `argilla`, with `dataset` assigned by overlap (min_submitted submissions each)."""
    return {
        "argilla": argilla,
        "annotation": {
            "dataset": dataset,
            "assignment": "overlap",
            "min_submitted": min_submitted,
            "guidelines": str(PROJECT_ROOT / "annotation/guidelines.md"),
        },
        "models": {m: {"backend": "openai", "model": m, "base_url": "http://127.0.0.1:9/v1"} for m in MODELS},
        "compare": MODELS,
    }


def team_project(folder: Path, server: RunningServer, *, dataset: str, tasks: int, min_submitted: int) -> list[dict]:
    """A project folder whose params.yaml points at the embedded server, with `tasks` records pushed to `dataset`:
    those records as the owner sees them."""
    params = project_params(local(server), dataset=dataset, min_submitted=min_submitted)
    make_project(folder, params=params)
    table = make_tasks(tasks)
    pushed = push(Params.model_validate(params), tasks=table, generations=make_generations(table, MODELS))
    records = owner_records(server.url, server.api_key, pushed.receipt.dataset_id)
    return sorted(records, key=lambda r: r["external_id"])


def local(server: RunningServer) -> dict:
    return {"url": "local", "data_dir": str(server.data_dir), "port": server.server.port}


@dataclass
class Member:
    """An annotator `annotators add` created: the password it handed out, and a session of its own (its API key:
    each password login costs the server a bcrypt check, so only the password tests log in with one)."""

    username: str
    password: str
    session: httpx.Client

    def respond(self, record_uuid: str, status: str, values: dict | None) -> None:
        body = {"status": status, "values": {k: {"value": v} for k, v in values.items()} if values else None}
        response = self.session.post(f"/api/v1/records/{record_uuid}/responses", json=body)
        assert response.status_code == 201, response.text


def team(server: RunningServer, names: list[str]) -> dict[str, Member]:
    """Annotators created the way `annotators add` creates them, each acting as itself."""
    target = resolve(Params.model_validate(project_params(local(server))).argilla)
    added = add_annotators(target, workspace="llm-feedback", usernames=names, store=store_of(server))
    keys = {u["username"]: u["api_key"] for u in owner(server).get("/api/v1/users").json()["items"]}
    return {
        a.username: Member(a.username, a.password, session_of(server, keys[a.username]))
        for a in added
        if a.password is not None
    }


def session_of(server: RunningServer, api_key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-Argilla-Api-Key": api_key}, timeout=30)


def store_of(server: RunningServer) -> Path:
    return server.data_dir / "annotators.json"


Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`llm-feedback ARGS` in `folder`, through the CLI's own `main`: its exit code and what it printed."""

    def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(folder)
        capsys.readouterr()
        code = main(list(args))
        printed = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), code, printed.out, printed.err)

    return run


def owner(server: RunningServer) -> httpx.Client:
    return session_of(server, server.api_key)


def one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("llm-feedback: error: ") and result.stderr.count("\n") == 1, result.stderr
    for part in parts:
        assert part in result.stderr, result.stderr


def test_list_shows_every_account_with_its_role_and_workspaces_and_no_secret(
    argilla_server: RunningServer, tmp_path: Path, cli: Cli
) -> None:
    make_project(tmp_path, params=project_params(local(argilla_server)))
    people = team(argilla_server, ["list-a"])
    text, as_json = cli(tmp_path, "annotators", "list"), cli(tmp_path, "annotators", "list", "--json")
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["username", "role", "workspaces"]
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in lines[1:]}
    assert rows["list-a"] == ["annotator", "llm-feedback"]
    assert rows["owner"] == ["owner", "(every workspace, as owner)"]
    assert lines[1].startswith("owner "), "owners first"
    accounts = {a["username"]: a for a in json.loads(as_json.stdout)}
    assert accounts["list-a"] == {"username": "list-a", "role": "annotator", "workspaces": ["llm-feedback"]}
    assert set(accounts) == set(rows)

    api_keys = [u["api_key"] for u in owner(argilla_server).get("/api/v1/users").json()["items"]]
    secrets = [*api_keys, argilla_server.credentials.password, *(p.password for p in people.values())]
    for output in (text.stdout, text.stderr, as_json.stdout, as_json.stderr):
        assert not any(secret in output for secret in secrets)


def test_progress_counts_each_annotators_responses_and_pending_records(
    argilla_server: RunningServer, tmp_path: Path, cli: Cli
) -> None:
    records = team_project(tmp_path, argilla_server, dataset="team-progress", tasks=4, min_submitted=2)
    people = team(argilla_server, ["prog-a", "prog-b", "prog-c"])
    people["prog-a"].respond(records[0]["id"], "submitted", SCORES)
    people["prog-a"].respond(records[1]["id"], "submitted", SCORES)
    people["prog-a"].respond(records[2]["id"], "draft", {"score_response_1": 2})
    people["prog-b"].respond(records[0]["id"], "submitted", SCORES)
    people["prog-b"].respond(records[3]["id"], "discarded", None)
    # record 0 has its 2 submissions: completed; the others are pending for whoever has not answered them

    text, as_json = cli(tmp_path, "progress"), cli(tmp_path, "progress", "--json")
    assert text.returncode == 0 and as_json.returncode == 0, text.stderr + as_json.stderr
    progress = json.loads(as_json.stdout)
    assert (progress["records"], progress["completed"], progress["min_submitted"]) == (4, 1, 2)
    rows = {row.pop("annotator"): row for row in progress["annotators"]}
    assert rows["prog-a"] == {"submitted": 2, "draft": 1, "discarded": 0, "pending": 1}
    assert rows["prog-b"] == {"submitted": 1, "draft": 0, "discarded": 1, "pending": 2}
    assert rows["prog-c"] == {"submitted": 0, "draft": 0, "discarded": 0, "pending": 3}, "no answer yet"

    lines = text.stdout.splitlines()
    assert lines[0] == f"llm-feedback/team-progress at {argilla_server.url}: 4 records, 1 completed (min_submitted 2)"
    assert lines[1].split() == ["annotator", "submitted", "draft", "discarded", "pending"]
    table = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert table["prog-a"] == ["2", "1", "0", "1"] and table["prog-b"] == ["1", "0", "1", "2"]

    dataset_id = records[0]["dataset_id"]
    argilla = owner(argilla_server).get(f"/api/v1/datasets/{dataset_id}/users/progress").json()["users"]
    submitted = {u["username"]: u["completed"]["submitted"] + u["pending"]["submitted"] for u in argilla}
    assert submitted == {"prog-a": 2, "prog-b": 1}, "the same counts as Argilla's own per-user progress"


def test_remove_deletes_annotators_says_what_becomes_of_their_responses_and_refuses_the_rest(
    argilla_server: RunningServer, tmp_path: Path, cli: Cli
) -> None:
    records = team_project(tmp_path, argilla_server, dataset="team-remove", tasks=3, min_submitted=1)
    people = team(argilla_server, ["rm-a", "rm-b", "rm-c", "rm-plain"])
    people["rm-a"].respond(records[0]["id"], "submitted", SCORES)
    people["rm-b"].respond(records[1]["id"], "draft", {"score_response_1": 1})
    people["rm-plain"].respond(records[2]["id"], "submitted", SCORES)
    http = owner(argilla_server)
    assert http.get(f"/api/v1/records/{records[0]['id']}").json()["status"] == "completed"

    # Why remove deletes responses itself: Argilla deleting the user alone takes its responses along but leaves the
    # record "completed", out of everyone's Pending queue, with nobody's answer.
    (plain,) = [u for u in http.get("/api/v1/users").json()["items"] if u["username"] == "rm-plain"]
    http.delete(f"/api/v1/users/{plain['id']}").raise_for_status()
    record = http.get(f"/api/v1/records/{records[2]['id']}", params={"include": "responses"}).json()
    assert record["responses"] == [] and record["status"] == "completed"

    unknown = cli(tmp_path, "annotators", "remove", "rm-c", "nobody")
    an_owner = cli(tmp_path, "annotators", "remove", "owner")
    answered = cli(tmp_path, "annotators", "remove", "rm-a")
    one_line_error(unknown, "no user named 'nobody'")
    one_line_error(an_owner, "user 'owner' is an owner, not an annotator")
    one_line_error(answered, "rm-a has 1 response", "Argilla deletes with the account", "--delete-responses")
    users = {u["username"] for u in http.get("/api/v1/users").json()["items"]}
    assert {"rm-a", "rm-c", "owner"} <= users, "a refused command deletes nobody"

    deleted = cli(tmp_path, "annotators", "remove", "rm-a", "rm-c", "--delete-responses")
    assert deleted.returncode == 0, deleted.stderr
    assert "rm-a: deleted with its 1 response (Argilla deletes a user's responses;" in deleted.stdout
    assert "rm-c: deleted (it had no responses)" in deleted.stdout
    users = {u["username"] for u in http.get("/api/v1/users").json()["items"]}
    assert not {"rm-a", "rm-c"} & users
    record = http.get(f"/api/v1/records/{records[0]['id']}", params={"include": "responses"}).json()
    assert record["responses"] == [] and record["status"] == "pending", "open again for the others"
    assert not {"rm-a", "rm-c"} & set(json.loads(store_of(argilla_server).read_text())[argilla_server.url])

    kept = cli(tmp_path, "annotators", "remove", "rm-b", "--keep-responses")
    assert kept.returncode == 0, kept.stderr
    assert "rm-b: account kept with its 1 response, taken out of llm-feedback" in kept.stdout
    responses = http.get(f"/api/v1/records/{records[1]['id']}", params={"include": "responses"}).json()["responses"]
    assert [r["status"] for r in responses] == ["draft"]
    assert people["rm-b"].session.get("/api/v1/me/datasets").json()["items"] == [], "it sees no dataset any more"


def test_reset_password_makes_the_old_one_fail_and_the_new_one_log_in(
    argilla_server: RunningServer, tmp_path: Path, cli: Cli
) -> None:
    records = team_project(tmp_path, argilla_server, dataset="team-reset", tasks=1, min_submitted=1)
    person = team(argilla_server, ["reset-a"])["reset-a"]
    person.respond(records[0]["id"], "submitted", SCORES)

    reset = run_cli("annotators", "reset-password", "reset-a", cwd=tmp_path)
    unknown = cli(tmp_path, "annotators", "reset-password", "nobody")
    an_owner = cli(tmp_path, "annotators", "reset-password", "owner")
    assert reset.returncode == 0, reset.stderr
    one_line_error(unknown, "no user named 'nobody'")
    one_line_error(an_owner, "user 'owner' is an owner, not an annotator")

    (line,) = [line for line in reset.stdout.splitlines() if line.startswith("reset-a: password ")]
    new = line.removeprefix("reset-a: password ")
    assert new != person.password and len(new) >= 8
    login = f"{argilla_server.url}/api/v1/token"
    assert httpx.post(login, data={"username": "reset-a", "password": person.password}).status_code == 401
    assert httpx.post(login, data={"username": "reset-a", "password": new}).status_code == 201
    store = store_of(argilla_server)
    assert json.loads(store.read_text())[argilla_server.url]["reset-a"] == new
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert reset.stdout.count(new) == 1 and new not in reset.stderr, "shown once"
    assert person.password not in reset.stdout + reset.stderr
    assert new not in (argilla_server.data_dir / "server.log").read_text()
    responses = owner_records(argilla_server.url, argilla_server.api_key, records[0]["dataset_id"])[0]["responses"]
    assert [r["status"] for r in responses] == ["submitted"], "the account keeps its responses"


def test_team_commands_name_a_server_that_is_down_and_a_dataset_that_is_missing(
    argilla_server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli
) -> None:
    make_project(tmp_path / "missing", params=project_params(local(argilla_server), dataset="never-pushed"))
    down = make_project(tmp_path / "down", params=project_params({"url": f"http://127.0.0.1:{free_port()}"}))
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    no_dataset = cli(tmp_path / "missing", "progress")
    one_line_error(no_dataset, "llm-feedback/never-pushed is not on", "run push first")
    for args in (("progress",), ("annotators", "list"), ("annotators", "reset-password", "x")):
        result = cli(down, *args)
        one_line_error(result, "cannot reach Argilla at http://127.0.0.1:")
        assert argilla_server.api_key not in result.stdout + result.stderr
