"""Serve the app with uvicorn and announce readiness on stdout once it listens."""

from __future__ import annotations

import signal
import socket
import sys

import uvicorn


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints the ready line after start-up (lifespan done, socket bound)."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit:
            host, port = self._bound_address()
            shown = f"[{host}]" if ":" in host else host
            print(f"annotation_server: ready on http://{shown}:{port}", flush=True)

    def _bound_address(self) -> tuple[str, int]:
        for server in self.servers:
            for sock in server.sockets:
                address = sock.getsockname()
                return str(self.config.host), int(address[1])
        return str(self.config.host), int(self.config.port)


def serve(app, *, host: str, port: int, log_level: str, access_log: bool) -> bool:
    """Run until SIGTERM/SIGINT; False when the server never started (port taken, start-up failed)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        server_header=False,
        proxy_headers=False,
    )
    server = _AnnouncingServer(config)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal through the handler it found at
    # start: with these no-op handlers in place the process ends normally (exit 0) instead of dying by the signal.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    except SystemExit:  # uvicorn exits(1) when it cannot bind
        return False
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    sys.stdout.flush()
    return server.started
