"""A local Redfish BMC over HTTPS: documents shaped like DMTF's published mockups, with a power you set.

The documents are written here, not copied: each layout follows the shape (resource types, links,
property names) of one mockup of DSP2043 2025.4 (the Redfish mockup bundle, as published in
DMTF/Redfish-Publications, tag 2025.4):

- "rackmount": public-rackmount1, chassis 1U (RackMount) with PowerSubsystem (CapacityWatts) and
  EnvironmentMetrics (PowerWatts.Reading), the newer shape;
- "rackmount-power": public-rackmount1's deprecated Power resource of chassis 1U
  (PowerControl[0].PowerConsumedWatts, PowerMetrics.AverageConsumedWatts, PowerCapacityWatts), with
  no EnvironmentMetrics, as in public-catfish and public-localstorage;
- "energy": chassis 1U whose EnvironmentMetrics has only EnergykWh.Reading (no mockup has one on a
  chassis; the property is EnvironmentMetrics.v1_5_0's, and its reading is in kWh like
  public-rackmount1's Sensors/TotalEnergy);
- "smartnic": public-smartnic, chassis 1U plus a Card1 (Card, ContainedBy 1U) with its own
  EnvironmentMetrics PowerWatts; here the card comes first in the collection;
- "bladed": public-bladed, a MultiBladeEncl (Enclosure) with a Power resource and Blade1..4
  (Blade) without any.

Modes: "ok"; "slow" (answers after `delay_s`); "fail" (HTTP 500); "unauthorized" (HTTP 401 for
every request, as after a password change on the BMC); "login" (302 to a login page); "html" (200
with an HTML page). Basic auth is checked on every request when `username` is set. Certificates are
made with the `cryptography` package (a dependency of codecarbon): a CA, and a server certificate it
signs for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = "/redfish/v1/"
REDFISH_VERSION = "1.15.0"


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key) under `directory`: a CA and a server certificate it signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "greenai test BMC CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca_file, cert_file, key_file


def _ref(path: str) -> dict[str, str]:
    return {"@odata.id": path}


def _chassis(chassis_id: str, kind: str, links: dict[str, Any], **resources: bool) -> dict[str, Any]:
    path = f"/redfish/v1/Chassis/{chassis_id}"
    doc: dict[str, Any] = {
        "@odata.type": "#Chassis.v1_26_0.Chassis",
        "@odata.id": path,
        "Id": chassis_id,
        "Name": f"{kind} chassis {chassis_id}",
        "ChassisType": kind,
        "Manufacturer": "Testco",
        "Model": f"T-{chassis_id}",
        "PowerState": "On",
        "Status": {"State": "Enabled", "Health": "OK"},
        "Links": links,
    }
    for name, present in resources.items():
        if present:
            doc[name] = _ref(f"{path}/{name}")
    return doc


class FakeBmc:
    """A Redfish service on 127.0.0.1 (HTTPS unless `tls` is False); set `power_w`, `energy_kwh`,
    `mode` at any time. `requests` counts every request, `paths` each path's."""

    def __init__(
        self,
        directory: Path,
        layout: str = "rackmount",
        *,
        username: str = "",
        password: str = "",
        power_w: float = 374.0,
        energy_kwh: float = 1000.0,
        tls: bool = True,
    ) -> None:
        self.layout = layout
        self.power_w = power_w
        self.energy_kwh = energy_kwh
        self.mode = "ok"
        self.delay_s = 1.0
        self.requests = 0
        self.paths: dict[str, int] = {}
        self._auth = (
            "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        )
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.ca_file: Path | None = None
        context: ssl.SSLContext | None = None
        if tls:
            self.ca_file, cert, key = make_certificates(directory)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        self._server = _Server(("127.0.0.1", 0), _Handler, self, context)
        port = self._server.server_address[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-bmc", daemon=True
        )
        self._thread.start()

    def count(self, path: str) -> None:
        with self._lock:
            self.requests += 1
            self.paths[path] = self.paths.get(path, 0) + 1

    def authorised(self, header: str | None) -> bool:
        return self._auth is None or header == self._auth

    def wait(self, seconds: float) -> None:
        """Sleep in a slow answer; close() ends every such sleep at once."""
        self._wake.wait(seconds)

    def documents(self) -> dict[str, dict[str, Any]]:
        """Every document of the layout by path, with the current power and energy."""
        docs: dict[str, dict[str, Any]] = {
            ROOT: {
                "@odata.type": "#ServiceRoot.v1_18_0.ServiceRoot",
                "@odata.id": ROOT,
                "Id": "RootService",
                "RedfishVersion": REDFISH_VERSION,
                "Systems": _ref("/redfish/v1/Systems"),
                "Chassis": _ref("/redfish/v1/Chassis"),
                "Managers": _ref("/redfish/v1/Managers"),
            }
        }
        chassis: list[dict[str, Any]] = []
        node_links = {
            "ComputerSystems": [_ref("/redfish/v1/Systems/1")],
            "ManagedBy": [_ref("/redfish/v1/Managers/BMC")],
        }
        if self.layout == "rackmount":
            chassis.append(
                _chassis("1U", "RackMount", node_links, PowerSubsystem=True, EnvironmentMetrics=True)
            )
            docs |= self._subsystem("1U") | self._metrics("1U", power=True)
        elif self.layout == "rackmount-power":
            chassis.append(_chassis("1U", "RackMount", node_links, Power=True))
            docs |= self._power("1U")
        elif self.layout == "energy":
            chassis.append(_chassis("1U", "RackMount", node_links, EnvironmentMetrics=True))
            docs |= self._metrics("1U", power=False)
        elif self.layout == "smartnic":
            card_links = {"ContainedBy": _ref("/redfish/v1/Chassis/1U")}
            chassis.append(_chassis("Card1", "Card", card_links, EnvironmentMetrics=True))
            chassis.append(
                _chassis("1U", "RackMount", node_links, PowerSubsystem=True, EnvironmentMetrics=True)
            )
            docs |= self._subsystem("1U") | self._metrics("1U", power=True)
            card = self._metrics("Card1", power=True)
            card["/redfish/v1/Chassis/Card1/EnvironmentMetrics"]["PowerWatts"]["Reading"] = 25.0
            docs |= card
        elif self.layout == "bladed":
            chassis.append(_chassis("MultiBladeEncl", "Enclosure", {}, Power=True))
            docs |= self._power("MultiBladeEncl")
            blade_links = {"ContainedBy": _ref("/redfish/v1/Chassis/MultiBladeEncl")}
            chassis += [_chassis(f"Blade{i}", "Blade", blade_links) for i in range(1, 5)]
        else:
            raise ValueError(f"unknown layout {self.layout}")
        docs["/redfish/v1/Chassis"] = {
            "@odata.type": "#ChassisCollection.ChassisCollection",
            "@odata.id": "/redfish/v1/Chassis",
            "Name": "Chassis Collection",
            "Members@odata.count": len(chassis),
            "Members": [_ref(c["@odata.id"]) for c in chassis],
        }
        docs |= {c["@odata.id"]: c for c in chassis}
        return docs

    def _subsystem(self, chassis_id: str) -> dict[str, dict[str, Any]]:
        path = f"/redfish/v1/Chassis/{chassis_id}/PowerSubsystem"
        return {
            path: {
                "@odata.type": "#PowerSubsystem.v1_1_3.PowerSubsystem",
                "@odata.id": path,
                "Id": "PowerSubsystem",
                "CapacityWatts": 2000,
                "Allocation": {"RequestedWatts": 1500, "AllocatedWatts": 1200},
                "PowerSupplies": _ref(f"{path}/PowerSupplies"),
                "Status": {"State": "Enabled", "Health": "OK"},
            }
        }

    def _metrics(self, chassis_id: str, power: bool) -> dict[str, dict[str, Any]]:
        base = f"/redfish/v1/Chassis/{chassis_id}"
        doc: dict[str, Any] = {
            "@odata.type": "#EnvironmentMetrics.v1_5_0.EnvironmentMetrics",
            "@odata.id": f"{base}/EnvironmentMetrics",
            "Id": "EnvironmentMetrics",
            "TemperatureCelsius": {"Reading": 31, "DataSourceUri": f"{base}/Sensors/IntakeTemp"},
        }
        if power:
            doc["PowerWatts"] = {"Reading": self.power_w, "DataSourceUri": f"{base}/Sensors/TotalPower"}
            doc["PowerLimitWatts"] = {"SetPoint": 900, "AllowableMax": 1100, "AllowableMin": 150}
        else:
            doc["EnergykWh"] = {"Reading": self.energy_kwh, "DataSourceUri": f"{base}/Sensors/TotalEnergy"}
        return {doc["@odata.id"]: doc}

    def _power(self, chassis_id: str) -> dict[str, dict[str, Any]]:
        path = f"/redfish/v1/Chassis/{chassis_id}/Power"
        control = {
            "@odata.id": f"{path}#/PowerControl/0",
            "MemberId": "0",
            "Name": "System Input Power",
            "PowerConsumedWatts": self.power_w,
            "PowerCapacityWatts": 1600,
            "PowerMetrics": {"IntervalInMin": 30, "MinConsumedWatts": 100, "AverageConsumedWatts": 300},
            "PowerLimit": {"LimitInWatts": 1400, "LimitException": "LogEventOnly"},
        }
        doc = {
            "@odata.type": "#Power.v1_7_3.Power",
            "@odata.id": path,
            "Id": "Power",
            "PowerControl": [control],
        }
        return {path: doc}

    def close(self) -> None:
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeBmc:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[_Handler], bmc: FakeBmc, context: ssl.SSLContext | None
    ) -> None:
        super().__init__(address, handler)
        self.bmc = bmc
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake in the request's own thread: a client that stalls it stalls no one else.
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate, or went away
        super().finish_request(request, client_address)

    def handle_error(self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any) -> None:
        pass  # a client that timed out and left a slow answer behind: expected here


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        bmc = self.server.bmc
        path = self.path.split("?", 1)[0]
        bmc.count(path)
        if bmc.mode == "slow":
            bmc.wait(bmc.delay_s)
        if bmc.mode == "unauthorized" or not bmc.authorised(self.headers.get("Authorization")):
            self._send(
                401, {"error": {"code": "Base.1.0.NoValidSession"}}, {"WWW-Authenticate": 'Basic realm="BMC"'}
            )
        elif bmc.mode == "fail":
            self._send(500, {"error": {"code": "Base.1.0.InternalError"}})
        elif bmc.mode == "login":
            self._send(302, None, {"Location": "/login.html"})
        elif bmc.mode == "html":
            self._send(200, "<html><body>Please log in</body></html>", {"Content-Type": "text/html"})
        else:
            doc = bmc.documents().get(path)
            if doc is None:
                self._send(404, {"error": {"code": "Base.1.0.ResourceMissingAtURI"}})
            else:
                self._send(200, doc)

    def _send(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        for name, value in ({"Content-Type": "application/json"} | (headers or {})).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
