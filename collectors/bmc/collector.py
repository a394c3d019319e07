"""The node's wall power from its BMC over Redfish, as one cumulative counter in microjoules.

probe() finds the node's chassis and its power reading synchronously (discovery.py), then starts a
daemon thread that polls that one resource every `interval_seconds`. read() does no I/O and never
waits for the thread: it computes the counter from the last poll (track.py) on `clock`, under a lock
held only for that arithmetic, never during a request. A failed poll stops the counter and makes
read() raise CollectorError with the poll's reason, so the collector shows as down; a reading older
than three intervals is `stale`. docs/bmc.md.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from collectors.base import Clock, CollectorError, Counter, Device, Probe, Reading, Status
from collectors.bmc.client import (
    PasswordFileError,
    RedfishClient,
    RedfishError,
    read_password,
    safe_url,
    tls_context,
)
from collectors.bmc.discovery import NodeChassis, PowerSource, find_node, label
from collectors.bmc.track import Integrator

log = logging.getLogger("greenai.bmc")

SOURCE = "redfish"
STALE_INTERVALS = 3
"""A reading older than this many poll intervals counts as down."""


class BmcCollector:
    """Cumulative wall energy of the node in microjoules, from its BMC's Redfish power reading."""

    name = "bmc"

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        username: str = "",
        password_file: Path | None = None,
        verify_tls: bool | Path = True,
        interval_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
        background: bool = True,
    ) -> None:
        """`url` is the BMC's base URL (https://bmc-node17); `verify_tls` True (the system's trust
        store), False, or a CA bundle file. `background` False leaves polling to poll_once() calls."""
        self._url = safe_url(url)
        self._raw_url = url
        self._clock = clock
        self._username = username
        self._password_file = password_file
        self._verify_tls = verify_tls
        self._interval_s = interval_seconds
        self._timeout_s = timeout_seconds
        self._background = background
        self._stale_s = STALE_INTERVALS * interval_seconds
        self._client: RedfishClient | None = None
        self._node: NodeChassis | None = None
        self._device = ""
        self._lock = threading.Lock()
        self._integrator = Integrator(self._stale_s)
        self._last_good: float | None = None
        self._error: RedfishError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return (
            f"BmcCollector(url={self._url!r}, username={self._username!r}, "
            f"password_file={self._password_file!r}, verify_tls={self._verify_tls!r})"
        )

    # ---- probe -------------------------------------------------------------------------------

    def probe(self) -> Probe:
        """Find the node's chassis and read its power once; on success, start polling."""
        self.close()
        self._stop = threading.Event()
        self._node, self._error, self._last_good = None, None, None
        self._integrator = Integrator(self._stale_s)
        try:
            self._client = self._make_client()
        except PasswordFileError as e:
            status = Status.PERMISSION_DENIED if e.denied else Status.ERROR
            return Probe(status, str(e), e.fix)
        except (ValueError, OSError) as e:  # a bad URL, an unreadable CA file
            return Probe(Status.ERROR, f"cannot talk to the BMC: {e}", self._fix_config())
        notes: list[str] = []
        if self._verify_tls is False and self._url.startswith("https:"):
            notes.append("TLS certificate not verified (verify_tls: false)")
        if self._url.startswith("http:") and self._username:
            notes.append("plain http: the BMC password crosses the network unencrypted; use https")
        try:
            root = self._client.get(self._client.root)
            node = find_node(self._client.get, root, notes)
            if node is not None:
                self._node = node
                self._device = label(node.id)
                if not self.poll_once():
                    raise self._error or RedfishError("bad_document", "no reading")
        except RedfishError as e:
            self._node = None
            fix = _fix(e.reason, self._url, self._password_file)
            return Probe(Status.ERROR, f"BMC at {self._url}: {e}", fix, notes=tuple(notes))
        if node is None:
            return Probe(
                Status.NOT_FOUND,
                f"the BMC at {self._url} publishes no power reading for a whole node",
                "see the notes for each chassis; without a node meter the `other` component stays unknown",
                notes=tuple(notes),
            )
        version = root.get("RedfishVersion")
        notes.insert(0, f"Redfish {version}" if isinstance(version, str) else "Redfish version not stated")
        notes.append(_how(node, self._interval_s))
        if self._background:
            self._thread = threading.Thread(target=self._run, name="greenai-bmc-poll", daemon=True)
            self._thread.start()
        return Probe(
            Status.OK,
            f"node wall power of chassis {node.id} from the BMC at {self._url}",
            devices=(self._as_device(node),),
            notes=tuple(notes),
        )

    def _make_client(self) -> RedfishClient:
        password = ""
        if self._username:
            if self._password_file is None:
                raise PasswordFileError(
                    "collectors.bmc.username is set but password_file is not",
                    "set collectors.bmc.password_file to a file holding the BMC password (chmod 600)",
                )
            password = read_password(self._password_file)
        elif urlsplit(self._raw_url).username is not None:
            raise PasswordFileError(
                "collectors.bmc.url holds user info: credentials never go in the url",
                "remove user:password@ from the url; set username and password_file instead",
            )
        return RedfishClient(
            self._raw_url,
            username=self._username,
            password=password,
            context=tls_context(self._verify_tls),
            timeout_seconds=self._timeout_s,
        )

    def _fix_config(self) -> str:
        return "check collectors.bmc.url (e.g. https://bmc-node17) and collectors.bmc.verify_tls"

    def _as_device(self, node: NodeChassis) -> Device:
        details = {
            "url": self._url,
            "chassis": node.path,
            "chassis_type": node.type,
            "resource": node.source.path,
            "property": node.source.property,
            "interval_s": f"{self._interval_s:g}",
        }
        if node.model:
            details["model"] = node.model
        if node.max_power_w is not None:
            details["max_power_w"] = f"{node.max_power_w:g}"
            details["max_power_from"] = node.max_power_from
        if node.source.kind == "energy":
            details["resolution"] = "the BMC meter's own step; the counter trails the meter by about one step"
        method = "power" if node.source.kind == "power" else "counter"
        return Device("node", self._device, SOURCE, method, details)

    # ---- polling -----------------------------------------------------------------------------

    def poll_once(self) -> bool:
        """Poll the BMC's power resource once and update the counter; False when the poll failed."""
        client, node = self._client, self._node
        if client is None or node is None:
            return False
        source: PowerSource = node.source
        try:
            value = source.read(client.get(source.path))
        except RedfishError as e:
            with self._lock:
                self._integrator.stop(self._clock())
                previous, self._error = self._error, e
            if previous is None or previous.reason != e.reason:
                log.warning("bmc: %s; node power not counted until it answers", e)
            return False
        with self._lock:
            now = self._clock()
            if source.kind == "power":
                self._integrator.power(now, value)
            else:
                self._integrator.meter(now, value)
            previous, self._error = self._error, None
            self._last_good = now
        if previous is not None:
            log.warning("bmc: %s answers again (was %s)", self._url, previous.reason)
        return True

    def _run(self) -> None:
        """The poll thread: a poll every interval, on the monotonic clock, until close()."""
        next_at = time.monotonic() + self._interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            try:
                self.poll_once()
            except Exception:  # a bug must not end polling: read() would then only ever say "stale"
                log.exception("bmc: poll failed")
            next_at = max(next_at + self._interval_s, time.monotonic())

    # ---- read --------------------------------------------------------------------------------

    def read(self) -> Reading:
        """The counter as of now on `clock`, from the last poll; raises CollectorError while down."""
        with self._lock:
            now = self._clock()
            energy_uj = self._integrator.value(now)
            error, last_good = self._error, self._last_good
        if self._node is None:
            raise CollectorError("not_probed", "bmc: read() before a successful probe()")
        if error is not None:
            raise CollectorError(error.reason, f"bmc: {error}")
        if last_good is None or now - last_good > self._stale_s:
            age = "never" if last_good is None else f"{now - last_good:.0f}s ago"
            raise CollectorError(
                "stale", f"bmc: last reading from {self._url} {age} (polled every {self._interval_s:g}s)"
            )
        counter = Counter("node", self._device, SOURCE, energy_uj, None, self._node.max_power_w)
        return Reading((counter,))

    def close(self) -> None:
        """Stop the poll thread, breaking a request in flight."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if self._client is not None:
            self._client.abort()
        if thread is not None:
            thread.join(timeout=2.0)
            if thread.is_alive():
                log.debug("bmc: poll thread still in a request; it is a daemon and ends with it")


def _how(node: NodeChassis, interval_s: float) -> str:
    """The probe note that says what is read and how it becomes energy."""
    what = f"chassis {node.id} ({node.type}{', ' + node.model if node.model else ''})"
    if node.source.kind == "power":
        how = f"power integrated step-hold between polls every {interval_s:g}s"
    else:
        how = f"the BMC's energy meter, polled every {interval_s:g}s (coarse: the meter's own resolution)"
    limit = f"; max {node.max_power_w:g} W from {node.max_power_from}" if node.max_power_w else ""
    return f"{what}: {node.source.path} {node.source.property}, {how}{limit}"


def _fix(reason: str, url: str, password_file: Path | None) -> str:
    """What to do about a failed probe, by reason."""
    if reason == "tls_error":
        return (
            "give the CA that signed the BMC's certificate as collectors.bmc.verify_tls: /path/to/ca.pem"
            " (verify_tls: false skips the check, insecurely)"
        )
    if reason == "unauthorized":
        return f"check collectors.bmc.username and the password in {password_file}"
    if reason == "forbidden":
        return "give the BMC account read access to Chassis (a ReadOnly role is enough)"
    if reason in ("bad_document", "http_404"):
        return f"check that {url} is the BMC's Redfish service (it should answer {url}/redfish/v1/)"
    if reason.startswith("http_"):
        return (
            "the BMC failed the request: retry later; if it persists, check the BMC's health in its event log"
        )
    return (
        f"check collectors.bmc.url ({url}) and that this node reaches its BMC (network, firewall);"
        " a slow BMC needs a larger collectors.bmc.timeout_seconds"
    )
