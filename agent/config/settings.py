"""The agent's configuration: one YAML file, every key optional, validated into frozen dataclasses.

A problem in the file is a ConfigError whose message is one line naming the file, the key and what
to do; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from agent.config import checks
from agent.config.carbon import CarbonConfig, carbon_section
from agent.config.checks import ConfigError
from agent.config.web import WebConfig, read_web_config
from agent.config.work import WorkRule, parse_rules

DEFAULT_PORT = 9877
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_SOCKET = "/run/greenai/agent.sock"
REDACTABLE = ("user", "uid", "account", "name")


@dataclass(frozen=True)
class HostPaths:
    """Where the host's filesystems are: other than / inside a container that mounts them."""

    sysfs: Path = Path("/sys")
    procfs: Path = Path("/proc")
    cgroupfs: Path = Path("/sys/fs/cgroup")


def default_ledger_path() -> Path:
    """/var/lib/greenai/ledger.db for root (the system service); the user's state directory otherwise."""
    if os.geteuid() == 0:
        return Path("/var/lib/greenai/ledger.db")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "greenai" / "ledger.db"


@dataclass(frozen=True)
class LedgerConfig:
    path: Path = field(default_factory=default_ledger_path)
    flush_seconds: float = 5.0


@dataclass(frozen=True)
class SourceConfig:
    """A collector that takes nothing but `enabled` (rapl, hwmon)."""

    enabled: str = "auto"


@dataclass(frozen=True)
class GpuLibraryConfig:
    """A collector over a vendor GPU library (nvml, amdsmi): a lost GPU is tried again this often."""

    enabled: str = "auto"
    reprobe_seconds: float = 30.0


RaplConfig = SourceConfig
HwmonConfig = SourceConfig
NvmlConfig = GpuLibraryConfig
AmdSmiConfig = GpuLibraryConfig


@dataclass(frozen=True)
class BmcConfig:
    """The node's wall power from its BMC over Redfish; off unless `url` is set."""

    enabled: str = "auto"
    url: str = ""
    """The BMC's base URL, e.g. https://bmc-node17; `{node_name}` in it is replaced by the node's name
    (one config for a fleet: https://{node_name}-bmc); "" leaves the collector off."""
    username: str = ""
    password_file: Path | None = None
    """A file holding the password (its first line); never the password itself in the config."""
    verify_tls: bool | Path = True
    """true, false, or a CA bundle file to verify the BMC's certificate with."""
    interval_seconds: float = 10.0
    """How often to poll the BMC: BMCs are slow, 5-30 s is usual."""
    timeout_seconds: float = 5.0
    """The longest one request may take; a poll never delays sampling, whatever this is."""


@dataclass(frozen=True)
class EstimateConfig:
    """Options of the estimate collector; None means "work it out from the hardware"."""

    enabled: str = "auto"
    cpu_tdp_watts: float | None = None
    cpu_idle_watts: float | None = None
    cpu_idle_fraction: float = 0.3
    memory_watts_per_gb: float = 0.375


@dataclass(frozen=True)
class AttributionConfig:
    idle_policy: str = "share"
    """share: idle CPU power is split among jobs by allocation (or usage); node: it stays unattributed."""
    other_policy: str = "share"
    """share: the node's `other` energy (wall power no CPU, DRAM or GPU counter explains: fans, power
    supply losses, NICs, disks) goes to jobs by their share of the node's attributed energy; node: it
    stays unattributed."""


@dataclass(frozen=True)
class JobsConfig:
    grace_seconds: float = 300.0
    """How long a finished job's series stay on /metrics."""
    max_job_series: int = 1000
    """At most this many jobs on /metrics; the rest is summed in greenai_jobs_unexported_energy_joules."""
    labels: tuple[str, ...] = ()
    """Extra labels on job series, from: user, account, name, partition, project, phase, model (the
    last three from agent.live.work); they go on greenai_job_energy_joules and greenai_job_co2_grams."""


@dataclass(frozen=True)
class SlurmConfig:
    scontrol: str = "scontrol"
    """scontrol to ask for job metadata, by path or name on PATH; "" turns the look-ups off."""
    refresh_seconds: float = 60.0
    environ_fallback: str = "auto"
    """Find jobs by SLURM_JOB_ID in process environments (proctrack/linuxproc): auto: only while no
    Slurm job cgroup exists; true; false."""


@dataclass(frozen=True)
class KubernetesConfig:
    pods_url: str = ""
    """Kubelet /pods or API server pods URL, to name pods; "" leaves the pod UID as the job id."""
    token_file: Path | None = None
    ca_file: Path | None = None
    refresh_seconds: float = 30.0


@dataclass(frozen=True)
class WorkConfig:
    rules: tuple[WorkRule, ...] = ()
    """Ordered; the first rule that matches a job gives its project, phase and model (agent.config.work)."""


@dataclass(frozen=True)
class ApiConfig:
    allow_annotate: bool = False
    """Accept POST /api/v1/jobs/<id>/annotate when listening on an address other than loopback."""
    redact: tuple[str, ...] = ()
    """Job fields left out of the API (null there) and off the job series' labels on /metrics, for
    clusters whose users must not see each other: any of user, uid, account, name."""
    socket: str = DEFAULT_SOCKET
    """The Unix socket on which jobs read their own energy and open windows (docs/in-code.md); ""
    turns it off."""


@dataclass(frozen=True)
class WebSettings:
    config_file: Path | None = None
    """Prometheus exporter-toolkit web config: TLS and basic auth for every endpoint but /healthz."""
    loaded: WebConfig = field(default_factory=WebConfig)
    """What `config_file` says, read and checked when the config is loaded."""


@dataclass(frozen=True)
class ReportContact:
    """Whom readers of the annual report may ask: a name and an email, or free text, or both."""

    name: str | None = None
    email: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class ReportBoundary:
    """What the annual report covers, in the publisher's words; the figures cover the ledgers read."""

    description: str | None = None
    sites: tuple[str, ...] = ()
    included: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportConfig:
    """Who publishes the annual report, whom to contact and what it covers: the report's front block.

    The reporting period is the calendar year (UTC) given by `greenai report --year`.
    """

    organisation: str | None = None
    contact: ReportContact | None = None
    reporting_boundary: ReportBoundary | None = None


@dataclass(frozen=True)
class CollectorsConfig:
    rapl: RaplConfig = field(default_factory=RaplConfig)
    nvml: NvmlConfig = field(default_factory=NvmlConfig)
    amdsmi: AmdSmiConfig = field(default_factory=AmdSmiConfig)
    hwmon: HwmonConfig = field(default_factory=HwmonConfig)
    bmc: BmcConfig = field(default_factory=BmcConfig)
    estimate: EstimateConfig = field(default_factory=EstimateConfig)


@dataclass(frozen=True)
class Config:
    node_name: str = field(default_factory=socket.gethostname)
    interval_seconds: float = 1.0
    listen: str = DEFAULT_LISTEN
    log_level: str = "info"
    host: HostPaths = field(default_factory=HostPaths)
    ledger: LedgerConfig = field(default_factory=LedgerConfig)
    collectors: CollectorsConfig = field(default_factory=CollectorsConfig)
    attribution: AttributionConfig = field(default_factory=AttributionConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    kubernetes: KubernetesConfig = field(default_factory=KubernetesConfig)
    work: WorkConfig = field(default_factory=WorkConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    web: WebSettings = field(default_factory=WebSettings)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    source: str = "defaults"
    """The config file read (for errors found after loading, such as an unknown carbon location)."""

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


def parse_listen(value: Any) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:port`) into its parts; raises ValueError on anything else."""
    host, sep, port_text = checks.text(value).rpartition(":")
    if not sep or not host:
        raise ValueError(f"must be host:port, such as {DEFAULT_LISTEN}; got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"port must be a number from 0 to 65535; got {port_text!r}")
    return host, int(port_text)


def _listen(value: Any) -> str:
    parse_listen(value)
    return checks.text(value)


def _email(value: Any) -> str:
    checked = checks.text(value)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", checked):
        raise ValueError(f"must be an email address such as energy@example.org, got {value!r}")
    return checked


_CONTACT = checks.section({"name": checks.text, "email": _email, "text": checks.prose})
_BOUNDARY = checks.section(
    {
        "description": checks.prose,
        "sites": checks.prose_list,
        "included": checks.prose_list,
        "excluded": checks.prose_list,
    }
)


def _contact(value: Any) -> ReportContact:
    """Free text, or {name, email, text}."""
    if isinstance(value, str):
        return ReportContact(text=checks.prose(value))
    checked = _CONTACT(value)
    if not checked:
        raise ValueError("must give a name and an email, or a text, such as {name: ..., email: ...}")
    return ReportContact(**checked)


def _boundary(value: Any) -> ReportBoundary:
    """Free text, or {description, sites, included, excluded}."""
    if isinstance(value, str):
        return ReportBoundary(description=checks.prose(value))
    checked = _BOUNDARY(value)
    if not checked:
        raise ValueError("must give a description, or lists of sites, included or excluded")
    return ReportBoundary(**checked)


_REPORT = checks.section({"organisation": checks.text, "contact": _contact, "reporting_boundary": _boundary})


def report_section(value: Any) -> ReportConfig:
    """Check the `report:` mapping and build its config; raises ValueError/At naming the bad key."""
    return ReportConfig(**_REPORT(value))


def _socket(value: Any) -> str:
    """An absolute path for the local socket, or "" (off)."""
    if value in ("", None):
        return ""
    return str(checks.path(value))


def _verify_tls(value: Any) -> bool | Path:
    """true, false, or the path of a CA bundle file."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip():
        return checks.path(value)
    raise ValueError(f"must be true, false or the path of a CA bundle file, got {value!r}")


# ---- the schema: dotted key -> checker; a section is a nested dict ----

SCHEMA: checks.Schema = {
    "node_name": checks.text,
    "interval_seconds": checks.number(0.05, 3600),
    "listen": _listen,
    "log_level": checks.choice("debug", "info", "warning", "error", fold_case=True),
    "host": {"sysfs": checks.path, "procfs": checks.path, "cgroupfs": checks.path},
    "ledger": {"path": checks.path, "flush_seconds": checks.number(0.1, 3600)},
    "collectors": {
        "rapl": {"enabled": checks.enabled},
        "nvml": {"enabled": checks.enabled, "reprobe_seconds": checks.number(0.1, 86400)},
        "amdsmi": {"enabled": checks.enabled, "reprobe_seconds": checks.number(0.1, 86400)},
        "hwmon": {"enabled": checks.enabled},
        "bmc": {
            "enabled": checks.enabled,
            "url": checks.url,
            "username": checks.text,
            "password_file": checks.optional(checks.path),
            "verify_tls": _verify_tls,
            "interval_seconds": checks.number(1, 3600),
            "timeout_seconds": checks.number(0.1, 60),
        },
        "estimate": {
            "enabled": checks.enabled,
            "cpu_tdp_watts": checks.optional(checks.number(0, 10000, low_inclusive=False)),
            "cpu_idle_watts": checks.optional(checks.number(0, 10000)),
            "cpu_idle_fraction": checks.number(0, 1),
            "memory_watts_per_gb": checks.number(0, 100),
        },
    },
    "attribution": {
        "idle_policy": checks.choice("share", "node"),
        "other_policy": checks.choice("share", "node"),
    },
    "jobs": {
        "grace_seconds": checks.number(0, 30 * 86400),
        "max_job_series": checks.integer(1, 1_000_000),
        "labels": checks.subset("user", "account", "name", "partition", "project", "phase", "model"),
    },
    "slurm": {
        "scontrol": checks.program,
        "refresh_seconds": checks.number(1, 86400),
        "environ_fallback": checks.enabled,
    },
    "kubernetes": {
        "pods_url": checks.url,
        "token_file": checks.optional(checks.path),
        "ca_file": checks.optional(checks.path),
        "refresh_seconds": checks.number(1, 86400),
    },
    "work": {"rules": parse_rules},
    "api": {"allow_annotate": checks.flag, "redact": checks.subset(*REDACTABLE), "socket": _socket},
    "web": {"config_file": checks.optional(checks.path)},
    "carbon": carbon_section,
    "report": report_section,
}


def _build(values: Mapping[str, Any]) -> Config:
    c = values.get("collectors", {})
    sections = {
        "host": HostPaths,
        "ledger": LedgerConfig,
        "attribution": AttributionConfig,
        "jobs": JobsConfig,
        "slurm": SlurmConfig,
        "kubernetes": KubernetesConfig,
        "work": WorkConfig,
        "api": ApiConfig,
    }
    kwargs: dict[str, Any] = {k: v for k, v in values.items() if k not in (*sections, "collectors", "web")}
    web_file = values.get("web", {}).get("config_file")
    kwargs["web"] = WebSettings(web_file, read_web_config(web_file) if web_file else WebConfig())
    kwargs.update({name: cls(**values.get(name, {})) for name, cls in sections.items()})
    return Config(
        **kwargs,
        collectors=CollectorsConfig(
            rapl=RaplConfig(**c.get("rapl", {})),
            nvml=NvmlConfig(**c.get("nvml", {})),
            amdsmi=AmdSmiConfig(**c.get("amdsmi", {})),
            hwmon=HwmonConfig(**c.get("hwmon", {})),
            bmc=BmcConfig(**c.get("bmc", {})),
            estimate=EstimateConfig(**c.get("estimate", {})),
        ),
    )


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Read and validate the config file (None: all defaults), then apply command-line overrides.

    `overrides` is a nested mapping like the file's, e.g. {"listen": "0.0.0.0:9877"}.
    """
    file_values: dict[str, Any] = {}
    if path is not None:
        file_values = checks.validate(_read_yaml(path), SCHEMA, str(path))
    flag_values = checks.validate(overrides or {}, SCHEMA, "command line")
    config = _build(_merge(file_values, flag_values))
    return replace(config, source=str(path)) if path is not None else config


def _read_yaml(path: Path) -> Mapping[Any, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass an existing --config or none for defaults") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a YAML file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied; make it readable by the agent's user") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; save it as UTF-8 YAML") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data
