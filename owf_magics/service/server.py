"""Serving the app with uvicorn, and stopping gracefully.

On SIGTERM or SIGINT the worker stops taking runs (503) and ends its event streams, uvicorn lets
requests in flight finish (``shutdown_grace`` seconds), then the app's lifespan gives running runs
the same time and leaves those still going ``waiting_approval``, resumable on any worker.
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from owf_magics.service.app import create_app
from owf_magics.service.config import ServiceConfig
from owf_magics.service.observability import configure_logging
from owf_magics.service.runner import RunService

#: The line `serve` prints on stdout once it listens (tests and scripts read the port from it).
READY = "owf serve: listening on http://{host}:{port}"


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: RunService) -> None:
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.service.stopping = True  # no new runs; event streams end so connections can close
        super().handle_exit(sig, frame)

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.config.port
            for server in self.servers:
                for sock in server.sockets:
                    port = sock.getsockname()[1]
            print(READY.format(host=self.config.host, port=port), flush=True)


def serve(config: ServiceConfig, *, log_level: str = "info") -> None:
    """Serve until SIGTERM/SIGINT (blocks). Loads the manifests first, so a bad one stops here.

    Raises:
        OWFError: Settings that cannot be served (see `ServiceConfig.check`).
        ManifestError: Every problem in the manifests at ``config.paths``.
    """
    configure_logging(log_level)
    app = create_app(config)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level=log_level,
            lifespan="on",
            timeout_graceful_shutdown=max(1, int(config.shutdown_grace)),
            server_header=False,
            proxy_headers=False,
            access_log=False,  # RequestLog writes one JSON line per request instead
            log_config=None,  # keep the JSON handlers of configure_logging
        ),
        app.state.service,
    )
    server.run()
    if not server.started:
        sys.exit(1)
