"""`llm-feedback`: the commands that are not pipeline stages: the embedded annotation server, annotator accounts and
the annotators' progress."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from llm_feedback.annotation import embedded
from llm_feedback.annotation.annotators import (
    Account,
    Removed,
    add_annotators,
    annotators_file,
    list_accounts,
    remove_annotators,
    reset_password,
)
from llm_feedback.annotation.connection import Target, resolve
from llm_feedback.annotation.progress import dataset_progress
from llm_feedback.errors import ConfigError, PipelineError
from llm_feedback.params import DEFAULT_PARAMS_FILE, ArgillaParams, Params, load_argilla_params, load_params
from llm_feedback.secrets import scrub


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.command(args)
    except PipelineError as e:
        print(f"llm-feedback: error: {scrub(str(e))}", file=sys.stderr)
        return e.exit_code


def _server(args: argparse.Namespace) -> embedded.EmbeddedServer:
    defaults = _argilla_settings(can_do_without=args.data_dir is not None or args.command is not _start)
    return embedded.EmbeddedServer(
        data_dir=args.data_dir or defaults.data_dir, host=args.host, port=args.port or defaults.port
    )


def _argilla_settings(*, can_do_without: bool) -> ArgillaParams:
    """The server's settings from params.yaml. Server commands need only its argilla: section, so a typo elsewhere
    never keeps anyone from starting or stopping the server; stop, status and a command given --data-dir work even
    when that section is broken (with the defaults, and a warning)."""
    if not DEFAULT_PARAMS_FILE.exists():
        return ArgillaParams()
    try:
        return load_params().argilla
    except ConfigError as error:
        problem = error
    try:
        section = load_argilla_params()
    except ConfigError:
        if not can_do_without:
            raise problem from None
        print(f"warning: {scrub(str(problem))}; using the default argilla settings", file=sys.stderr)
        return ArgillaParams()
    print(f"warning: {scrub(str(problem))}; the server commands use only its argilla: section", file=sys.stderr)
    return section


def _start(args: argparse.Namespace) -> int:
    server = _server(args)
    if not embedded.is_loopback(server.host) and args.allow_remote:
        print(f"warning: listening on {server.host}: anyone who can reach it can try to log in", file=sys.stderr)
    credentials, already = embedded.start(server, allow_remote=args.allow_remote)
    if already:
        print(f"annotation server already running at {server.url}")
        return 0
    print(f"annotation server running at {server.url}")
    if credentials is not None:
        print(f"  owner login (shown once; kept in {server.credentials_file}, mode 0600):")
        print(f"    username: {credentials.username}")
        print(f"    password: {credentials.password}")
        print(f"    API key:  {credentials.api_key}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    server = _server(args)
    print("annotation server stopped" if embedded.stop(server) else "annotation server was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = embedded.status(_server(args))
    if not state.running:
        print(f"annotation server not running ({state.url})")
        return 3
    print(
        f"annotation server running at {state.url}: pid {state.pid}, argilla {state.version}, {state.datasets} datasets"
    )
    return 0


def _add_annotators(args: argparse.Namespace) -> int:
    params = load_params()
    store = annotators_file(params.argilla.data_dir)
    target = resolve(params.argilla)
    workspace = params.annotation.workspace
    for added in add_annotators(target, workspace=workspace, usernames=args.names, store=store):
        if added.password is None:
            note = "added to the workspace" if added.joined_workspace else "already in the workspace"
            print(f"{added.username}: exists, password unchanged ({note})")
        else:
            print(f"{added.username}: password {added.password}")
    print(
        f"annotators of workspace {workspace} at {target.url}; "
        f"new passwords are shown once and kept in {store} (mode 0600)"
    )
    return 0


def _team_target(params: Params) -> Target:
    """The server of the team commands: unlike push and `annotators add`, they never start the embedded server, so a
    server that is down is reported as such instead of being started (and installed) to be looked at."""
    return resolve(params.argilla, start_embedded=False)


def _list_annotators(args: argparse.Namespace) -> int:
    target = _team_target(load_params())
    accounts = list_accounts(target)
    if args.json:
        print(json.dumps([dataclasses.asdict(account) for account in accounts]))
        return 0
    rows = [("username", "role", "workspaces"), *((a.username, a.role, _workspaces(a)) for a in accounts)]
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    for username, role, workspaces in rows:
        print(f"{username.ljust(widths[0])}  {role.ljust(widths[1])}  {workspaces}".rstrip())
    return 0


def _workspaces(account: Account) -> str:
    if account.role == "owner":
        return "(every workspace, as owner)"
    return ", ".join(account.workspaces) or "-"


def _remove_annotators(args: argparse.Namespace) -> int:
    params = load_params()
    target = _team_target(params)
    on_responses = "delete" if args.delete_responses else "keep" if args.keep_responses else "refuse"
    store = annotators_file(params.argilla.data_dir)
    removed = remove_annotators(target, usernames=args.names, on_responses=on_responses, store=store)
    for account in removed:
        print(_removal_line(account))
    if any(account.deleted for account in removed):
        print(f"at {target.url}; the passwords of deleted accounts are dropped from {store}")
    return 0


def _removal_line(removed: Removed) -> str:
    n = removed.responses
    responses = f"{n} response{'s' * (n != 1)}"
    if not removed.deleted:
        left = f"taken out of {', '.join(removed.left)}" if removed.left else "it was in no workspace"
        return f"{removed.username}: account kept with its {responses}, {left}: it sees no dataset now"
    if not n:
        return f"{removed.username}: deleted (it had no responses)"
    return (
        f"{removed.username}: deleted with its {responses} (Argilla deletes a user's responses; records they "
        "completed are pending again)"
    )


def _reset_password(args: argparse.Namespace) -> int:
    params = load_params()
    target = _team_target(params)
    store = annotators_file(params.argilla.data_dir)
    password = reset_password(target, username=args.name, store=store)
    print(f"{args.name}: password {password}")
    print(
        f"new password shown once and kept in {store} (mode 0600); the old one no longer logs in, but sessions "
        "already open last until they expire (a day by default) and the user's API key is unchanged"
    )
    return 0


def _progress(args: argparse.Namespace) -> int:
    params = load_params()
    settings = params.annotation
    progress = dataset_progress(_team_target(params), workspace=settings.workspace, dataset=settings.dataset)
    print(json.dumps(progress.as_dict()) if args.json else "\n".join(progress.lines()))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-feedback", description=__doc__)
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    server = commands.add_parser("server", help="the embedded Argilla annotation server")
    actions = server.add_subparsers(required=True, metavar="ACTION")
    for name, function, help_text in (
        ("start", _start, "start it (installs it on first use); prints the URL, and the owner's login the first time"),
        ("stop", _stop, "stop it gracefully; its data stays"),
        ("status", _status, "URL, pid, version and dataset count (exit code 3 when not running)"),
    ):
        action = actions.add_parser(name, help=help_text)
        action.set_defaults(command=function)
        action.add_argument("--data-dir", type=Path, help="its folder (default: argilla.data_dir in params.yaml)")
        action.add_argument("--port", type=int, help="default: argilla.port in params.yaml")
        action.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1; others need --allow-remote")
        if name == "start":
            action.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --host")
    annotators = commands.add_parser("annotators", help="annotator accounts on the server params.yaml points at")
    annotator_actions = annotators.add_subparsers(required=True, metavar="ACTION")
    add = annotator_actions.add_parser(
        "add", help="create annotators with generated passwords in annotation.workspace (shown once, kept 0600)"
    )
    add.add_argument("names", nargs="+", metavar="NAME", help="user names: lower-case letters, digits, '-', '_'")
    add.set_defaults(command=_add_annotators)
    listing = annotator_actions.add_parser("list", help="every account: username, role, workspaces (no secrets)")
    listing.add_argument("--json", action="store_true", help="a JSON list instead of the table")
    listing.set_defaults(command=_list_annotators)
    remove = annotator_actions.add_parser(
        "remove", help="delete annotator accounts (Argilla deletes their responses with them: see the options)"
    )
    remove.add_argument("names", nargs="+", metavar="NAME")
    what = remove.add_mutually_exclusive_group()
    what.add_argument(
        "--delete-responses", action="store_true", help="an account that has responses is deleted with them"
    )
    what.add_argument(
        "--keep-responses",
        action="store_true",
        help="an account that has responses is kept with them and taken out of its workspaces",
    )
    remove.set_defaults(command=_remove_annotators)
    reset = annotator_actions.add_parser(
        "reset-password", help="a new generated password for an annotator (shown once, kept 0600)"
    )
    reset.add_argument("name", metavar="NAME")
    reset.set_defaults(command=_reset_password)
    progress = commands.add_parser(
        "progress", help="per annotator of annotation.dataset: submitted, draft, discarded, pending records"
    )
    progress.add_argument("--json", action="store_true", help="a JSON object instead of the table")
    progress.set_defaults(command=_progress)
    return parser


if __name__ == "__main__":
    sys.exit(main())
