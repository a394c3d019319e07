"""A stand-in for the agent's /api/v1/jobs/slurm:<id> on 127.0.0.1, for the epilog's tests."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

JOBS_PREFIX = "/api/v1/jobs/slurm:"


@contextlib.contextmanager
def serve_job(job: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Serve `job` (with the asked id as its job_id) for /api/v1/jobs/slurm:<id>, 404 for anything
    else; yields the base URL and the list of paths asked, in order."""
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append(self.path)
            if not self.path.startswith(JOBS_PREFIX):
                self.send_error(404)
                return
            body = json.dumps({**job, "job_id": self.path[len(JOBS_PREFIX) :]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
