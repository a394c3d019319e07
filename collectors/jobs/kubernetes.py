"""Pod names and namespaces by pod UID, from the kubelet's /pods or the API server's pod list.

Job discovery finds pods by the UID in their cgroup path; this directory turns a UID into the pod's
name and namespace. It refreshes in a background thread so a slow or unreachable API never delays a
scan: a lookup only reads the last good map.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from collectors.workloads import JobInfo, JobKey

log = logging.getLogger("greenai.kubernetes")

MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_FIELD_CHARS = 256


def pods_request_url(pods_url: str, node_name: str) -> str:
    """The URL to fetch: an API server pod list gets a field selector for this node's pods."""
    parts = urllib.parse.urlsplit(pods_url)
    if parts.path.rstrip("/").endswith("/api/v1/pods") and "fieldSelector" not in parts.query:
        selector = urllib.parse.urlencode({"fieldSelector": f"spec.nodeName={node_name}"})
        query = f"{parts.query}&{selector}" if parts.query else selector
        return urllib.parse.urlunsplit(parts._replace(query=query))
    return pods_url


def parse_pod_list(body: bytes) -> dict[str, JobInfo]:
    """Pod UID -> JobInfo(name=pod name, account=namespace) from a PodList JSON document."""
    data = json.loads(body)
    if not isinstance(data, Mapping):
        raise ValueError("the pod list is not a JSON object")
    items = data.get("items") or []
    if not isinstance(items, list):
        raise ValueError("the pod list's items is not a list")
    pods: dict[str, JobInfo] = {}
    for item in items:
        metadata = item.get("metadata") if isinstance(item, Mapping) else None
        if not isinstance(metadata, Mapping):
            continue
        uid, name, namespace = (metadata.get(k) for k in ("uid", "name", "namespace"))
        if isinstance(uid, str) and uid:
            pods[uid] = JobInfo(name=_text(name), account=_text(namespace))
    return pods


def _text(value: Any) -> str:
    # Sanitised again downstream; here only bound what a hostile API server can make us keep.
    return value[:MAX_FIELD_CHARS] if isinstance(value, str) else ""


class PodDirectory:
    """Names this node's pods by UID; `start()` refreshes it every `refresh_seconds` in a thread."""

    def __init__(
        self,
        pods_url: str,
        node_name: str,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        refresh_seconds: float = 30.0,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = pods_request_url(pods_url, node_name)
        self._token_file = token_file
        self._ca_file = ca_file
        self._refresh_seconds = refresh_seconds
        self._timeout_seconds = timeout_seconds
        self._pods: dict[str, JobInfo] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error = ""
        """Why the last refresh failed, in one line; "" after a good one."""
        self.refreshes = 0
        """How many refreshes succeeded."""

    def lookup(self, key: JobKey) -> JobInfo | None:
        """The pod's name and namespace for a kubernetes job key; None when unknown."""
        if key.scheduler != "kubernetes":
            return None
        return self._pods.get(key.job_id)

    def __len__(self) -> int:
        return len(self._pods)

    def refresh(self) -> None:
        """Fetch the pod list once; on failure keep the last good map and set `last_error`."""
        try:
            pods = parse_pod_list(self._fetch())
        except (OSError, ValueError) as e:  # URLError, HTTPError, ssl errors and JSON errors included
            error = f"cannot list pods from {self.url}: {e}"
            if error != self.last_error:
                log.warning("%s", error)
            self.last_error = error
            return
        self._pods = pods  # one reference swap: lookups see the old map or the new one, never half
        self.last_error = ""
        self.refreshes += 1

    def _fetch(self) -> bytes:
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        if self._token_file is not None:
            # Read every time: projected service account tokens are rotated on disk.
            token = self._token_file.read_text(encoding="utf-8").strip()
            request.add_header("Authorization", f"Bearer {token}")
        context = None
        if self.url.startswith("https://"):
            cafile = str(self._ca_file) if self._ca_file is not None else None
            context = ssl.create_default_context(cafile=cafile)
        with urllib.request.urlopen(request, timeout=self._timeout_seconds, context=context) as response:
            body = bytes(response.read(MAX_RESPONSE_BYTES + 1))
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError(f"the pod list is larger than {MAX_RESPONSE_BYTES} bytes")
        return body

    def start(self) -> None:
        """Refresh now and then every `refresh_seconds`, in a daemon thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="greenai-pods", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.refresh()
            self._stop.wait(self._refresh_seconds)

    def close(self) -> None:
        """Stop the refresh thread (a fetch in flight is abandoned after its timeout)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
