"""The Helm chart helm/greenai-agent: lint, render, and validate what it renders.

`helm lint --strict` and `helm template` run with the default values and with ci/gpu-values.yaml;
the rendered core objects go through `kubernetes-validate --strict` (Kubernetes' own OpenAPI
schemas). kubernetes-validate has no schema for the Prometheus operator's ServiceMonitor and
PrometheusRule, so those are checked here with a small JSON schema of the fields the chart sets,
and the PrometheusRule's groups must be exactly dashboards/greenai.rules.yml (which promtool checks
in tests/deploy/test_alert_rules.py). Needs a helm binary: on PATH or .venv/bin/helm (scripts/test
installs one).
"""

from __future__ import annotations

import base64
import filecmp
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent.carbon.model import CarbonModel
from agent.config import settings as agent_config
from tests.support.examples import uncomment_block

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "greenai-agent"
GPU_VALUES = CHART / "ci" / "gpu-values.yaml"
RULES = ROOT / "dashboards" / "greenai.rules.yml"
CHART_RULES = CHART / "files" / "greenai.rules.yml"
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PrometheusRule"}
ALL_ON = ["--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"]


def _find_helm() -> str | None:
    venv_helm = ROOT / ".venv" / "bin" / "helm"
    return shutil.which("helm") or (str(venv_helm) if venv_helm.is_file() else None)


HELM = _find_helm()
needs_helm = pytest.mark.skipif(
    HELM is None, reason="no helm binary on PATH or in .venv/bin (scripts/test installs one)"
)


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    result = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result


def render(*args: str) -> list[dict[str, Any]]:
    out = helm("template", "greenai", str(CHART), "--namespace", "monitoring", *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


VALUE_SETS = {
    "default": [],
    "gpu": ["-f", str(GPU_VALUES)],
    "all-on": [*ALL_ON, "--set", "podLookup.enabled=true"],
    "device-plugin": ["--set", "gpu.enabled=true", "--set", "gpu.runtimeClassName=", "--set-string",
                      "gpu.resource=nvidia.com/gpu"],
    "amd-hwmon-bmc": ["--set", "amdGpu.enabled=true", "--set", "amdGpu.hostDevices=true",
                      "--set", "hwmon.gpuProcesses=true", "--set", "bmc.enabled=true",
                      "--set", "bmc.url=https://{node_name}-bmc.mgmt.example.org",
                      "--set", "bmc.username=monitor", "--set", "bmc.password=not-in-the-configmap",
                      "--set", "bmc.caSecret=bmc-ca"],
}  # fmt: skip


@needs_helm
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(name: str) -> None:
    result = helm("lint", "--strict", str(CHART), *VALUE_SETS[name])
    assert "0 chart(s) failed" in result.stdout


@needs_helm
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_rendered_core_objects_pass_kubernetes_validate_strict(name: str, tmp_path: Path) -> None:
    docs = render(*VALUE_SETS[name])
    core = [d for d in docs if d["kind"] not in PROMETHEUS_OPERATOR_KINDS]
    manifest = tmp_path / "core.yaml"
    manifest.write_text(yaml.safe_dump_all(core), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(manifest)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.count("passed for resource") == len(core), output
    assert "ERROR" not in output and "WARN" not in output, output


# The fields of the Prometheus operator's CRDs (monitoring.coreos.com/v1) that the chart sets, with
# their types from the CRDs; no other field is allowed, so a typo fails.
STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_META = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object"}},
    "additionalProperties": False,
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "properties": {"matchLabels": STRING_MAP},
                    "additionalProperties": False,
                },
                "namespaceSelector": {
                    "type": "object",
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                    "additionalProperties": False,
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^(0|(([0-9]+)(ms|s|m|h))+)$"},
                            "relabelings": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "properties": {
                                        "sourceLabels": {"type": "array", "items": {"type": "string"}},
                                        "targetLabel": {"type": "string"},
                                        "action": {"enum": ["replace", "keep", "drop", "labelmap"]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["groups"],
            "additionalProperties": False,
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string"},
                            "rules": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["expr"],
                                    "oneOf": [{"required": ["record"]}, {"required": ["alert"]}],
                                    "properties": {
                                        "record": {"type": "string"},
                                        "alert": {"type": "string"},
                                        "expr": {"type": ["string", "integer"]},
                                        "for": {"type": "string"},
                                        "labels": STRING_MAP,
                                        "annotations": STRING_MAP,
                                    },
                                    "additionalProperties": False,
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}


@needs_helm
def test_prometheus_operator_objects_match_their_crd_fields() -> None:
    docs = render(*ALL_ON)
    jsonschema.validate(one(docs, "ServiceMonitor"), SERVICE_MONITOR_SCHEMA)
    jsonschema.validate(one(docs, "PrometheusRule"), PROMETHEUS_RULE_SCHEMA)
    monitor = one(docs, "ServiceMonitor")
    service = one(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"


@needs_helm
def test_prometheus_rule_is_the_rules_file() -> None:
    rule = one(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    source = yaml.safe_load(CHART_RULES.read_text(encoding="utf-8"))
    assert rule["spec"]["groups"] == source["groups"]


@pytest.mark.skipif(not RULES.exists(), reason="dashboards/greenai.rules.yml does not exist yet")
def test_chart_rules_are_a_copy_of_dashboards_rules() -> None:
    # Helm reads no file outside the chart (nor a symlink leading out), so the chart keeps a copy.
    assert filecmp.cmp(RULES, CHART_RULES, shallow=False), (
        f"{CHART_RULES.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}: "
        f"cp {RULES.relative_to(ROOT)} {CHART_RULES.relative_to(ROOT)}"
    )


@needs_helm
def test_optional_objects_are_off_by_default() -> None:
    assert kinds(render()) == {"ServiceAccount", "ConfigMap", "Service", "DaemonSet"}


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "DaemonSet")["spec"]["template"]["spec"]
    return spec


@needs_helm
def test_daemonset_is_least_privilege_and_mounts_the_host_read_only() -> None:
    out = helm("template", "greenai", str(CHART)).stdout
    assert "privileged: true" not in out
    pod = _pod([d for d in yaml.safe_load_all(out) if d])
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork") and not pod.get("hostIPC")
    assert pod["automountServiceAccountToken"] is False
    assert "runtimeClassName" not in pod
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["privileged"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert not security["capabilities"].get("add")
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["requests"] and container["resources"]["limits"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["proc"]["hostPath"]["path"] == "/proc"
    assert volumes["sys"]["hostPath"]["path"] == "/sys"
    assert mounts["proc"] == {"name": "proc", "mountPath": "/host/proc", "readOnly": True}
    assert mounts["sys"] == {"name": "sys", "mountPath": "/host/sys", "readOnly": True}
    assert volumes["ledger"]["hostPath"] == {"path": "/var/lib/greenai", "type": "DirectoryOrCreate"}
    assert mounts["ledger"]["mountPath"] == "/var/lib/greenai"
    # Every hostPath but the ledger and the local socket's directory is read-only.
    host_volumes = {name for name, v in volumes.items() if "hostPath" in v}
    assert {name for name in host_volumes if not mounts[name].get("readOnly")} == {"ledger", "socket"}
    assert "$(NODE_NAME)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


def _agent_config(docs: list[dict[str, Any]], tmp_path: Path) -> agent_config.Config:
    path = tmp_path / "agent.yaml"
    path.write_text(one(docs, "ConfigMap")["data"]["agent.yaml"], encoding="utf-8")
    return agent_config.load(path)  # the agent's own validation: a ConfigError fails the test


@needs_helm
def test_configmap_is_a_valid_agent_config_for_the_pod(tmp_path: Path) -> None:
    docs = render()
    config = _agent_config(docs, tmp_path)
    assert config.listen == "0.0.0.0:9877"
    assert str(config.host.procfs) == "/host/proc"
    assert str(config.host.sysfs) == "/host/sys"
    assert str(config.host.cgroupfs) == "/host/sys/fs/cgroup"
    assert str(config.ledger.path) == "/var/lib/greenai/ledger.db"
    assert config.kubernetes.pods_url == ""
    pod = _pod(docs)
    assert pod["containers"][0]["ports"][0]["containerPort"] == 9877
    (config_volume,) = [v for v in pod["volumes"] if "configMap" in v]
    assert config_volume["configMap"]["name"] == one(docs, "ConfigMap")["metadata"]["name"]


@needs_helm
def test_rbac_only_with_pod_lookup(tmp_path: Path) -> None:
    assert not kinds(render()) & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    docs = render("--set", "podLookup.enabled=true")
    role = one(docs, "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "monitoring"}
    ]
    pod = _pod(docs)
    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    config = _agent_config(docs, tmp_path)
    assert config.kubernetes.pods_url == "https://kubernetes.default.svc/api/v1/pods"
    assert str(config.kubernetes.token_file) == "/var/run/secrets/kubernetes.io/serviceaccount/token"


@needs_helm
def test_gpu_values_use_the_nvidia_runtime_without_taking_a_gpu(tmp_path: Path) -> None:
    docs = render("-f", str(GPU_VALUES))
    pod = _pod(docs)
    assert pod["runtimeClassName"] == "nvidia"
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "utility"
    assert not any("nvidia.com" in key for key in container["resources"]["limits"])
    assert pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert "privileged: true" not in yaml.safe_dump_all(docs)
    assert _agent_config(docs, tmp_path).collectors.nvml.enabled == "true"


@needs_helm
def test_gpu_through_the_device_plugin() -> None:
    pod = _pod(render(*VALUE_SETS["device-plugin"]))
    assert "runtimeClassName" not in pod
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1
    assert limits["memory"] == "256Mi"


@needs_helm
@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--set-json", "image.tag=5"], "/image/tag"),
        (["--set", "image.tag=1"], "/image/tag"),
        (["--set", "port=metrics"], "/port"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "securityContext.privileged=yes"], "/securityContext/privileged"),
        (["--set", "config.log_level=loud"], "/config/log_level"),
        (["--set", "config.listen=0.0.0.0:1"], "listen"),
        (["--set", "ledger.hostPath=var/lib/greenai"], "/ledger/hostPath"),
        (["--set", "podLookup.enabled=maybe"], "/podLookup/enabled"),
        (["--set", "no_such_key=1"], "no_such_key"),
        (["--set", "bmc.no_such_key=1"], "no_such_key"),
        (["--set", "bmc.passwordFile=/etc/pw"], "passwordFile"),
        (["--set", "amdGpu.no_such_key=1"], "no_such_key"),
        (["--set", "hwmon.no_such_key=1"], "no_such_key"),
        (["--set", "hwmon.gpuProcesses=yes"], "/hwmon/gpuProcesses"),
        (["--set", "bmc.url=ftp://bmc"], "/bmc/url"),
        (["--set", "bmc.intervalSeconds=0"], "/bmc/intervalSeconds"),
        (["--set", "bmc.timeoutSeconds=120"], "/bmc/timeoutSeconds"),
        (["--set", "bmc.verifyTls=/etc/ca.pem"], "/bmc/verifyTls"),
        (["--set", "bmc.existingSecret=Not_A_Name"], "/bmc/existingSecret"),
        (["--set", "amdGpu.rocmPath=/"], "/amdGpu/rocmPath"),
        (["--set", "amdGpu.resourceCount=0"], "/amdGpu/resourceCount"),
        # The chart owns collectors.bmc: it comes from bmc.*, so config cannot set it.
        (["--set", "config.collectors.bmc.url=https://bmc"], "bmc"),
        # Nor api.socket, which comes from localSocket.*.
        (["--set", "config.api.socket=/tmp/agent.sock"], "socket"),
        (["--set", "localSocket.no_such_key=1"], "no_such_key"),
        (["--set", "localSocket.enabled=yes"], "/localSocket/enabled"),
        (["--set", "localSocket.hostPath=run/greenai"], "/localSocket/hostPath"),
        (["--set", "localSocket.hostPath=/run/greenai/"], "/localSocket/hostPath"),
    ],
)
def test_schema_rejects_bad_values(args: list[str], complaint: str) -> None:
    result = helm("lint", "--strict", str(CHART), *args, check=False)
    assert result.returncode != 0, result.stdout
    assert complaint in result.stdout + result.stderr


@needs_helm
def test_the_carbon_example_in_the_values_renders_and_resolves_when_uncommented(tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    text = uncomment_block((CHART / "values.yaml").read_text(encoding="utf-8"), "carbon:")
    values.write_text(text, encoding="utf-8")
    assert yaml.safe_load(text)["config"]["carbon"]["sites"]["main"]["location"] == "FR"
    helm("lint", "--strict", str(CHART), "-f", str(values))
    carbon = _agent_config(render("-f", str(values)), tmp_path).carbon
    warnings: list[str] = []
    model = CarbonModel.from_config(carbon, warn=warnings.append)
    assert warnings == [] and model.default.name == "main"
    for site in model.sites:
        assert site.annual.provenance.location == "FRA" and not site.annual.provenance.fallback


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _pod(docs)["containers"]
    return dict(container)


def _by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


AMD = ["--set", "amdGpu.enabled=true"]


@needs_helm
def test_amd_gpus_get_the_hosts_rocm_and_the_device_plugins_resource() -> None:
    docs = render(*AMD, "--set", "amdGpu.rocmPath=/opt/rocm-6.4.1", "--set", "amdGpu.resourceCount=2")
    pod = _pod(docs)
    container = _container(docs)
    volumes = _by_name(pod["volumes"])
    mounts = _by_name(container["volumeMounts"])
    assert volumes["rocm"]["hostPath"] == {"path": "/opt/rocm-6.4.1", "type": "Directory"}
    assert mounts["rocm"] == {"name": "rocm", "mountPath": "/opt/rocm-6.4.1", "readOnly": True}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["LD_LIBRARY_PATH"] == "/opt/rocm-6.4.1/lib"
    assert env["ROCM_PATH"] == "/opt/rocm-6.4.1"
    limits = container["resources"]["limits"]
    assert limits["amd.com/gpu"] == 2
    assert limits["memory"] == "256Mi"
    # The resource brings the devices: no hostPath device nodes, and no privilege added for them.
    assert not {"dev-kfd", "dev-dri"} & volumes.keys()
    assert container["securityContext"] == _container(render())["securityContext"]
    assert "runtimeClassName" not in pod and "NVIDIA_VISIBLE_DEVICES" not in env


@needs_helm
def test_amd_host_devices_are_read_only_host_paths_without_the_resource() -> None:
    docs = render(*AMD, "--set", "amdGpu.hostDevices=true", "--set", "amdGpu.resource=")
    container = _container(docs)
    volumes = _by_name(_pod(docs)["volumes"])
    mounts = _by_name(container["volumeMounts"])
    assert volumes["dev-kfd"]["hostPath"] == {"path": "/dev/kfd", "type": "CharDevice"}
    assert volumes["dev-dri"]["hostPath"] == {"path": "/dev/dri", "type": "Directory"}
    assert mounts["dev-kfd"] == {"name": "dev-kfd", "mountPath": "/dev/kfd", "readOnly": True}
    assert mounts["dev-dri"] == {"name": "dev-dri", "mountPath": "/dev/dri", "readOnly": True}
    assert not any(key.startswith("amd.com/") for key in container["resources"]["limits"])
    assert container["securityContext"]["privileged"] is False
    assert not container["securityContext"]["capabilities"].get("add")
    host_volumes = {name for name, v in volumes.items() if "hostPath" in v}
    assert {name for name in host_volumes if not mounts[name].get("readOnly")} == {"ledger", "socket"}


@needs_helm
def test_amd_and_nvidia_resources_are_requested_together() -> None:
    limits = _container(render(*VALUE_SETS["device-plugin"], *AMD))["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == 1 and limits["amd.com/gpu"] == 1


@needs_helm
def test_amd_is_off_by_default() -> None:
    docs = render()
    container = _container(docs)
    assert not {"rocm", "dev-kfd", "dev-dri"} & _by_name(_pod(docs)["volumes"]).keys()
    assert not {"LD_LIBRARY_PATH", "ROCM_PATH"} & {e["name"] for e in container["env"]}
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}


@needs_helm
@pytest.mark.parametrize("added", [[], ["NET_RAW"]])
def test_hwmon_gpu_processes_adds_sys_ptrace_and_nothing_else(added: list[str]) -> None:
    extra = ["--set-json", f"securityContext.capabilities.add={added}".replace("'", '"')]
    without = render(*extra)
    with_ptrace = render(*extra, "--set", "hwmon.gpuProcesses=true")
    capabilities = _container(with_ptrace)["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"], "add": [*added, "SYS_PTRACE"]}
    # Everything else, the rest of the DaemonSet included, is what it was without the option.
    capabilities["add"] = added
    assert with_ptrace == without


BMC = ["--set", "bmc.enabled=true", "--set", "bmc.url=https://{node_name}-bmc.mgmt.example.org",
       "--set", "bmc.username=monitor"]  # fmt: skip


def _bmc_volume(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bmc volume and its mount."""
    return _by_name(_pod(docs)["volumes"])["bmc"], _by_name(_container(docs)["volumeMounts"])["bmc"]


@needs_helm
def test_bmc_existing_secret_is_mounted_owner_only_and_configures_the_collector(tmp_path: Path) -> None:
    docs = render(*BMC, "--set", "bmc.existingSecret=node-bmc", "--set", "bmc.passwordKey=pw")
    assert "Secret" not in kinds(docs)  # the operator's Secret, not one of the chart's
    volume, mount = _bmc_volume(docs)
    assert mount == {"name": "bmc", "mountPath": "/etc/greenai/bmc", "readOnly": True}
    # 0400: the agent refuses a password file that every user can read.
    assert volume["projected"]["defaultMode"] == 0o400
    assert volume["projected"]["sources"] == [
        {"secret": {"name": "node-bmc", "items": [{"key": "pw", "path": "password"}]}}
    ]

    bmc = _agent_config(docs, tmp_path).collectors.bmc
    assert bmc.enabled == "auto"
    assert bmc.url == "https://{node_name}-bmc.mgmt.example.org"
    assert bmc.username == "monitor"
    assert bmc.password_file == Path(mount["mountPath"]) / "password"
    assert bmc.verify_tls is True
    assert (bmc.interval_seconds, bmc.timeout_seconds) == (10.0, 5.0)
    agent_yaml = one(docs, "ConfigMap")["data"]["agent.yaml"]
    assert "password:" not in agent_yaml and "node-bmc" not in agent_yaml


@needs_helm
def test_bmc_password_value_becomes_a_secret_and_nowhere_else(tmp_path: Path) -> None:
    password = "c0rrect-h0rse-battery"
    docs = render(*BMC, "--set", f"bmc.password={password}")
    secret = one(docs, "Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == password
    assert secret["metadata"]["namespace"] == "monitoring"
    volume, _ = _bmc_volume(docs)
    (source,) = volume["projected"]["sources"]
    assert source["secret"]["name"] == secret["metadata"]["name"]
    for kind in ("ConfigMap", "DaemonSet"):
        assert password not in yaml.safe_dump(one(docs, kind))
    assert str(_agent_config(docs, tmp_path).collectors.bmc.password_file) == "/etc/greenai/bmc/password"


@needs_helm
def test_bmc_ca_bundle_and_required(tmp_path: Path) -> None:
    # --set gives 2.5 as a string; --set-json as a number.
    docs = render(*BMC, "--set", "bmc.existingSecret=node-bmc", "--set", "bmc.caSecret=bmc-ca",
                  "--set", "bmc.required=true", "--set", "bmc.intervalSeconds=30",
                  "--set-json", "bmc.timeoutSeconds=2.5")  # fmt: skip
    volume, _ = _bmc_volume(docs)
    assert volume["projected"]["sources"][1] == {
        "secret": {"name": "bmc-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    }
    bmc = _agent_config(docs, tmp_path).collectors.bmc
    assert bmc.verify_tls == Path("/etc/greenai/bmc/ca.crt")
    assert bmc.enabled == "true"
    assert (bmc.interval_seconds, bmc.timeout_seconds) == (30.0, 2.5)

    no_tls = render(*BMC, "--set", "bmc.existingSecret=s", "--set", "bmc.verifyTls=false")
    assert _agent_config(no_tls, tmp_path).collectors.bmc.verify_tls is False


@needs_helm
def test_bmc_without_credentials_sends_none(tmp_path: Path) -> None:
    docs = render(*BMC[:4])
    assert "bmc" not in _by_name(_pod(docs)["volumes"])
    bmc = _agent_config(docs, tmp_path).collectors.bmc
    assert bmc.username == "" and bmc.password_file is None


@needs_helm
def test_bmc_is_off_by_default(tmp_path: Path) -> None:
    docs = render()
    assert _agent_config(docs, tmp_path).collectors.bmc.enabled == "false"
    assert "bmc" not in _by_name(_pod(docs)["volumes"])
    assert "Secret" not in kinds(docs)


@needs_helm
@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (BMC[:2], "bmc.enabled needs bmc.url"),
        ([*BMC, "--set", "bmc.existingSecret=s", "--set", "bmc.password=p"], "not both"),
        (BMC, "bmc.username needs the password"),
        ([*BMC[:4], "--set", "bmc.existingSecret=s"], "needs bmc.username"),
        ([*BMC, "--set", "bmc.existingSecret=s", "--set", "bmc.caSecret=ca", "--set", "bmc.verifyTls=false"],
         "bmc.caSecret is given but bmc.verifyTls is false"),
    ],
)  # fmt: skip
def test_contradictory_bmc_values_fail_with_one_line(args: list[str], complaint: str) -> None:
    result = helm("template", "greenai", str(CHART), *args, check=False)
    assert result.returncode != 0, result.stdout
    assert complaint in result.stderr


@needs_helm
def test_local_socket_is_on_by_default_in_a_node_directory(tmp_path: Path) -> None:
    docs = render()
    volume = _by_name(_pod(docs)["volumes"])["socket"]
    mount = _by_name(_container(docs)["volumeMounts"])["socket"]
    assert volume["hostPath"] == {"path": "/run/greenai", "type": "DirectoryOrCreate"}
    # Read-write: the agent creates agent.sock there.
    assert mount == {"name": "socket", "mountPath": "/run/greenai"}
    assert _agent_config(docs, tmp_path).api.socket == "/run/greenai/agent.sock"


@needs_helm
def test_local_socket_in_another_node_directory_keeps_the_other_api_keys(tmp_path: Path) -> None:
    docs = render("--set", "localSocket.hostPath=/var/run/greenai-agent",
                  "--set", "config.api.allow_annotate=true")  # fmt: skip
    volume = _by_name(_pod(docs)["volumes"])["socket"]
    mount = _by_name(_container(docs)["volumeMounts"])["socket"]
    assert volume["hostPath"]["path"] == mount["mountPath"] == "/var/run/greenai-agent"
    api = _agent_config(docs, tmp_path).api
    assert api.socket == "/var/run/greenai-agent/agent.sock"
    assert api.allow_annotate is True


@needs_helm
def test_local_socket_off_renders_no_mount_and_an_empty_socket(tmp_path: Path) -> None:
    docs = render("--set", "localSocket.enabled=false")
    assert "socket" not in _by_name(_pod(docs)["volumes"])
    assert "socket" not in _by_name(_container(docs)["volumeMounts"])
    assert "/run/greenai" not in yaml.safe_dump(one(docs, "DaemonSet"))
    assert 'socket: ""' in one(docs, "ConfigMap")["data"]["agent.yaml"]
    assert _agent_config(docs, tmp_path).api.socket == ""


@needs_helm
@pytest.mark.parametrize("taken", ["/var/lib/greenai", "/host/proc", "/tmp", "/etc/greenai"])
def test_local_socket_directory_may_not_be_another_mount(taken: str) -> None:
    result = helm("template", "greenai", str(CHART), "--set", f"localSocket.hostPath={taken}", check=False)
    assert result.returncode != 0, result.stdout
    assert f"localSocket.hostPath {taken} is already mounted" in result.stderr


@needs_helm
@pytest.mark.parametrize("enabled", [True, False])
def test_notes_tell_workloads_how_to_reach_the_socket(enabled: bool) -> None:
    args = [
        "--set",
        f"localSocket.enabled={str(enabled).lower()}",
        "--set",
        "localSocket.hostPath=/srv/greenai",
    ]
    out = helm("install", "greenai", str(CHART), "--dry-run", "--namespace", "monitoring", *args).stdout
    notes = out[out.index("NOTES:") :]
    assert ("path: /srv/greenai" in notes) is enabled
    assert ("value: /run/greenai/agent.sock" in notes) is enabled
    assert ("local socket is off" in notes) is not enabled
