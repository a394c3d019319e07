"""`web.config_file`: TLS and basic auth for /metrics and the API, in Prometheus exporter-toolkit's format.

The file is the one node_exporter and the other exporters read with `--web.config.file`:

    tls_server_config: {cert_file, key_file, client_auth_type, client_ca_file, min_version, max_version}
    basic_auth_users: {name: bcrypt hash}

Relative file names are taken from the web config file's own folder, as the exporter-toolkit does.
The certificates are loaded here once, so that a bad one stops the start with one line; the keys of
the toolkit that this agent does not implement are refused rather than silently ignored.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agent.config import checks
from agent.config.checks import ConfigError

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
"""The toolkit's client_auth_type values that Python's ssl can honour (it cannot ask for a
certificate without verifying it, so RequestClientCert and RequireAnyClientCert are refused)."""

BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")


@dataclass(frozen=True)
class TlsServerConfig:
    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str = "TLS13"

    def context(self) -> ssl.SSLContext:
        """A server-side SSL context; raises ValueError naming the file that cannot be used."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = TLS_VERSIONS[self.min_version]
        ctx.maximum_version = TLS_VERSIONS[self.max_version]
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(
                f"cannot load cert_file {self.cert_file} with key_file {self.key_file}: {_reason(e)}"
            ) from None
        ctx.verify_mode = CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file is not None:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"cannot load client_ca_file {self.client_ca_file}: {_reason(e)}") from None
        return ctx


@dataclass(frozen=True)
class WebConfig:
    """What `web.config_file` says; the default serves plain HTTP to anyone who can connect."""

    tls: TlsServerConfig | None = None
    basic_auth_users: Mapping[str, str] = field(default_factory=dict)
    """User name -> bcrypt hash of the password."""


def _reason(e: Exception) -> str:
    return str(getattr(e, "strerror", None) or getattr(e, "reason", None) or e)


def _relative_to(folder: Path) -> checks.Check:
    def check(value: Any) -> Path:
        given = Path(checks.text(value))
        return given if given.is_absolute() else folder / given

    return check


def _tls_section(folder: Path) -> checks.Check:
    file = _relative_to(folder)
    versions = checks.choice(*TLS_VERSIONS)
    schema = {
        "cert_file": file,
        "key_file": file,
        "client_auth_type": checks.choice(*CLIENT_AUTH),
        "client_ca_file": checks.optional(file),
        "min_version": versions,
        "max_version": versions,
    }
    fields = checks.section(schema, required=("cert_file", "key_file"))

    def check(value: Any) -> TlsServerConfig:
        tls = TlsServerConfig(**fields(value))
        if tls.client_auth_type != "NoClientCert" and tls.client_ca_file is None:
            raise checks.At(".client_ca_file", f"is required with client_auth_type {tls.client_auth_type}")
        if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
            raise checks.At(".min_version", f"is above max_version {tls.max_version}")
        return tls

    return check


def bcrypt_hash(value: Any) -> str:
    """A bcrypt hash such as `htpasswd -nBC 10 "" | tr -d ':'` prints."""
    if not isinstance(value, str) or not BCRYPT_HASH.fullmatch(value.strip()):
        raise ValueError("must be a bcrypt hash ($2y$10$ and 53 characters), not the password itself")
    return value.strip()


def _users(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a mapping of user names to bcrypt hashes, got {value!r}")
    out = {}
    for name, hashed in value.items():
        user = checks.nested(checks.text, name, f".{name}")
        if ":" in user:
            raise checks.At(f".{name}", "must not contain ':' (basic auth separates it from the password)")
        out[user] = checks.nested(bcrypt_hash, hashed, f".{name}")
    return out


def read_web_config(path: Path) -> WebConfig:
    """Read, check and try out `path`; raises ConfigError, one line naming the file and the key."""
    origin = f"web config {path}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{origin}: no such file; fix web.config_file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{origin}: cannot be read: {_reason(e)}") from None
    except yaml.YAMLError as e:
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{origin}: invalid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: the top level must be a mapping of keys")
    schema = {"tls_server_config": _tls_section(path.parent), "basic_auth_users": _users}
    values = checks.validate(data, schema, origin)
    web = WebConfig(values.get("tls_server_config"), values.get("basic_auth_users", {}))
    if web.tls is not None:
        try:
            web.tls.context()
        except ValueError as e:
            raise ConfigError(f"{origin}: key 'tls_server_config': {e}") from None
    return web
