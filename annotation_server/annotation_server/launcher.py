"""`python -m annotation_server --data-dir DIR [--host 127.0.0.1] [--port 6900]`: the contract the pipeline relies on.

Files in DIR: `credentials.json` (read; mode 0600, written by the manager), `argilla.db` (+ `-wal`, `-shm`),
`auth_secret.key` (the UI's session secret, created once), `server.lock`, `server_id.dat` (Argilla's), `jobs/`,
`tmp/` (emptied at each start). See ../README.md.

Readiness: one stdout line `annotation_server: ready on http://HOST:PORT` once the socket listens and start-up is
done (with `--port 0` it names the port the system picked); `GET /api/v1/status` (no authentication) answers 200 then.

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad arguments; 3 credentials file missing, too open or malformed;
4 database migration or owner set-up failed; 5 the server could not start (port in use, start-up failed);
6 another server already uses this data folder. Errors are one line on stderr, never holding a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

EXIT_OK = 0
EXIT_CREDENTIALS = 3
EXIT_DATABASE = 4
EXIT_SERVER = 5
EXIT_LOCKED = 6


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m annotation_server",
        description="Serve argilla-server 2.8.0 (API and UI) on SQLite, without Elasticsearch or Redis.",
    )
    parser.add_argument("--data-dir", type=Path, required=True, help="the server's folder (database, credentials)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=6900, help="port to listen on; 0 lets the system pick one")
    parser.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    parser.add_argument("--access-log", action="store_true", help="log each request (method, path, status)")
    parser.add_argument(
        "--no-speedups",
        action="store_true",
        help="serve Argilla's stock code paths (the benchmarks' baseline): bulk logging without our speed-ups "
        "(bulk.py) and a membership query per record and metadata key (membership.py)",
    )
    return parser.parse_args(argv)


def fail(code: int, message: str) -> int:
    first_line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    print(f"annotation_server: error: {first_line}", file=sys.stderr, flush=True)
    return code


def lock_data_dir(data_dir: Path) -> IO[str] | None:
    """Hold an exclusive lock for the process's life: two servers on one SQLite file and temp folder would clash."""
    handle = open(data_dir / "server.lock", "a+")  # noqa: SIM115 (the lock lives as long as the process, not a block)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def origin(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir: Path = args.data_dir.expanduser().resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    lock = lock_data_dir(data_dir)
    if lock is None:
        return fail(EXIT_LOCKED, f"another annotation server is using {data_dir}")

    from annotation_server.credentials import CredentialsError, read_credentials

    try:
        credentials = read_credentials(data_dir)
    except CredentialsError as error:
        return fail(EXIT_CREDENTIALS, str(error))

    from annotation_server import environment

    environment.prepare(data_dir, origin(args.host, args.port))

    # Only now may argilla_server be imported (by these modules and everything after).
    from annotation_server import patches, setup_db

    try:
        patches.check_sqlite()
        setup_db.migrate(data_dir / "argilla.db")
        outcome = asyncio.run(setup_db.ensure_owner(credentials))
    except setup_db.SetupError as error:
        return fail(EXIT_DATABASE, str(error))
    except Exception as error:  # noqa: BLE001 - any failure here is reported as one line, without a traceback
        return fail(EXIT_DATABASE, f"database set-up failed: {type(error).__name__}: {error}")
    print(f"annotation_server: owner {credentials.username!r} {outcome}", file=sys.stderr, flush=True)

    from annotation_server.serve import serve

    app = patches.apply(speedups=not args.no_speedups)
    started = serve(app, host=args.host, port=args.port, log_level=args.log_level, access_log=args.access_log)
    lock.close()
    return EXIT_OK if started else fail(EXIT_SERVER, "the server did not start (see the messages above)")
