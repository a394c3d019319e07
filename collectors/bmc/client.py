"""GET Redfish JSON documents from a BMC over HTTP(S), every failure one `RedfishError` with a reason.

Standard library only (http.client and ssl). Each request opens its own connection: a BMC polled
every few seconds gains little from keep-alive, and many BMCs drop idle connections anyway. Basic
auth is sent with every request; the password is read once from its file and kept only inside the
encoded header, which no message, log line or repr ever contains. Redirects are not followed: a
BMC that redirects an API request is sending it to a login page.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import socket
import ssl
import stat
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAX_BODY_BYTES = 4 * 1024 * 1024
"""A Redfish document is a few kB; anything larger than this is not one."""


class RedfishError(Exception):
    """A request failed; `reason` is a snake_case label for metrics, the message one line."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PasswordFileError(Exception):
    """The password file cannot be used; `denied` when the agent may not read it."""

    def __init__(self, message: str, fix: str, denied: bool = False) -> None:
        super().__init__(message)
        self.fix = fix
        self.denied = denied


def read_password(path: Path) -> str:
    """The first line of `path`, stripped; refuses a file that every user can read."""
    fix = f"write the BMC password as the first line of {path}, owned by the agent, then chmod 600 {path}"
    try:
        mode = path.stat().st_mode
        if not stat.S_ISREG(mode):
            raise PasswordFileError(f"password file {path} is not a regular file", fix)
        if mode & (stat.S_IROTH | stat.S_IWOTH):
            raise PasswordFileError(
                f"password file {path} is readable or writable by every user (mode {stat.S_IMODE(mode):04o})",
                f"chmod 600 {path}",
            )
        with path.open(encoding="utf-8") as f:
            first = f.readline()
    except FileNotFoundError:
        raise PasswordFileError(f"password file {path} does not exist", fix) from None
    except PermissionError:
        raise PasswordFileError(
            f"password file {path} cannot be read by the agent: permission denied",
            f"make {path} readable by the agent's user only (chown, then chmod 600 {path})",
            denied=True,
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise PasswordFileError(f"password file {path} cannot be read: {e.__class__.__name__}", fix) from None
    password = first.strip()
    if not password:
        raise PasswordFileError(f"password file {path} is empty", fix)
    return password


def tls_context(verify: bool | Path) -> ssl.SSLContext:
    """The system's trust store (True), a CA bundle file (a Path), or no verification at all (False)."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if isinstance(verify, Path):
        return ssl.create_default_context(cafile=str(verify))
    return ssl.create_default_context()


class RedfishClient:
    """GETs paths of one Redfish service as JSON objects; `abort()` breaks a request in flight."""

    def __init__(
        self,
        url: str,
        *,
        username: str = "",
        password: str = "",
        context: ssl.SSLContext | None = None,
        timeout_seconds: float = 5.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {safe_url(url)}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._context = context
        self._timeout = timeout_seconds
        self.base = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        """scheme://host[:port], without any user info, for messages."""
        self.root = root_path(parts.path)
        self._headers = {"Accept": "application/json", "OData-Version": "4.0"}
        if username:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            self._headers["Authorization"] = "Basic " + token
        self._active: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"RedfishClient({self.base}{self.root})"

    def get(self, path: str) -> dict[str, Any]:
        """The JSON object at `path` (an @odata.id); raises RedfishError."""
        where = f"GET {self.base}{path}"
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
        with self._lock:
            self._active = conn
        try:
            conn.request("GET", path, headers=self._headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY_BYTES + 1)
        except (OSError, http.client.HTTPException) as e:
            raise _translate(e, where, self._timeout) from e
        finally:
            with self._lock:
                self._active = None
            conn.close()
        return _document(response.status, response.getheader("Location"), body, where)

    def abort(self) -> None:
        """Break the request in flight, if any, so that its thread returns at once (close())."""
        with self._lock:
            sock = self._active.sock if self._active is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing waits on it
                sock.shutdown(socket.SHUT_RDWR)


def root_path(path: str) -> str:
    """The service root's path: /redfish/v1/ under whatever path the configured URL has."""
    path = path.rstrip("/")
    if not path.endswith("/redfish/v1"):
        path += "/redfish/v1"
    return path + "/"


def safe_url(url: str) -> str:
    """`url` without user info, for messages: a password someone put in the URL is never shown."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _translate(e: Exception, where: str, timeout: float) -> RedfishError:
    """The one mapping from connection failures to reasons."""
    if isinstance(e, TimeoutError):
        return RedfishError("timeout", f"{where}: no answer within {timeout:g}s")
    if isinstance(e, ssl.SSLCertVerificationError):
        return RedfishError("tls_error", f"{where}: certificate not trusted: {e.verify_message}")
    if isinstance(e, ssl.SSLError):
        return RedfishError("tls_error", f"{where}: TLS failed: {e.reason or e.__class__.__name__}")
    if isinstance(e, ConnectionRefusedError):
        return RedfishError("connection_refused", f"{where}: connection refused")
    if isinstance(e, socket.gaierror):
        return RedfishError("unknown_host", f"{where}: host not found ({e.strerror})")
    if isinstance(e, http.client.HTTPException):
        return RedfishError("bad_document", f"{where}: not an HTTP answer ({e.__class__.__name__})")
    strerror = e.strerror if isinstance(e, OSError) and e.strerror else e.__class__.__name__
    return RedfishError("connection_error", f"{where}: {strerror}")


def _document(status: int, location: str | None, body: bytes, where: str) -> dict[str, Any]:
    """The JSON object of a 200 answer; a reason for anything else."""
    if status in (401, 403):
        reason = "unauthorized" if status == 401 else "forbidden"
        raise RedfishError(
            reason, f"{where}: HTTP {status} ({'bad credentials' if status == 401 else 'no access'})"
        )
    if 300 <= status < 400:
        target = safe_url(location) if location else "nowhere"
        raise RedfishError("bad_document", f"{where}: HTTP {status} redirect to {target} (a login page?)")
    if status != 200:
        raise RedfishError(f"http_{status}", f"{where}: HTTP {status}")
    if len(body) > MAX_BODY_BYTES:
        raise RedfishError("bad_document", f"{where}: answer larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError:
        raise RedfishError("bad_document", f"{where}: the answer is not JSON (a login page?)") from None
    if not isinstance(document, dict):
        raise RedfishError("bad_document", f"{where}: the answer is JSON but not an object")
    return document
