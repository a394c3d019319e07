"""Which job a cgroup path belongs to, and what the path tells about it.

A job is found by the shape of its cgroup path, anywhere under the hierarchy root (so a host that
nests everything one level down, or a test prefix, still matches):

    slurm[_<node>]/uid_<u>/job_<id>           slurm:<id>     (v1; the job level includes every step)
    [<node>_]slurmstepd.scope/job_<id>        slurm:<id>     (v2)
    kubepods[.slice]/.../pod<uid>, kubepods-[<qos>-]pod<uid_with_underscores>.slice
                                              kubernetes:<pod uid>  (containers inside belong to it)
    docker/<64 hex>, docker-<64 hex>.scope    docker:<12 hex>
    libpod-<64 hex>[.scope]                   podman:<12 hex>  (system, machine or user slices)
    system.slice/<name>.service               systemd:<name>.service, unless a job is inside it

Anything else is not a job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from collectors.workloads import JobKey

MAX_ID_CHARS = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SAFE = re.compile(r"[\x20-\x7e]*")
_SLURM_ROOT = re.compile(r"slurm(?:_.+)?", re.S)
_SLURM_UID = re.compile(r"uid_(\d{1,10})")
_SLURM_JOB = re.compile(r"job_(.+)", re.S)
_STEPD = re.compile(r"(?:.+_)?slurmstepd\.scope", re.S)
_POD = re.compile(r"kubepods-(?:burstable-|besteffort-)?pod(.+)\.slice|pod(.+)", re.S)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_DOCKER_SCOPE = re.compile(r"docker-([0-9a-f]{64})\.scope")
_LIBPOD = re.compile(r"libpod-([0-9a-f]{64})(?:\.scope)?")
_USER = re.compile(r"user@(\d{1,10})\.service|user-(\d{1,10})\.slice")
_KUBEPODS = ("kubepods", "kubepods.slice")


def clean_text(text: str, limit: int = MAX_ID_CHARS) -> str:
    """`text` as valid UTF-8 without control characters, at most `limit` characters."""
    if len(text) <= limit and _SAFE.fullmatch(text):
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")  # undo how os.listdir decoded non-UTF-8 bytes
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return _CONTROL.sub("", raw.decode("utf-8", "replace"))[:limit]


@dataclass(frozen=True)
class PathMatch:
    """A cgroup path component that names a job, and what the path says about it."""

    key: JobKey
    uid: int | None = None
    name: str = ""


PathContext = tuple[str, int | None]
"""Where a walk is: the kind of parent ("", slurm, slurm_uid, stepd, kube, docker, system, user) and
the uid a parent named."""
ROOT_CONTEXT: PathContext = ("", None)


def classify_dir(ctx: PathContext, name: str) -> tuple[PathContext, PathMatch | None]:
    """Classify cgroup directory `name` inside context `ctx`: the child's context and any job it is."""
    state, uid = ctx
    if state == "kube":
        m = _POD.fullmatch(name)
        if m:
            return ctx, PathMatch(JobKey("kubernetes", clean_text((m[1] or m[2]).replace("_", "-"))))
        return ctx, None  # QoS slices, and containers never outside a pod's cgroup
    if state == "slurm":
        m = _SLURM_UID.fullmatch(name)
        if m:
            return ("slurm_uid", int(m[1])), None
    elif state in ("slurm_uid", "stepd"):
        m = _SLURM_JOB.fullmatch(name)
        if m:
            return ctx, PathMatch(JobKey("slurm", clean_text(m[1])), uid)
    elif state == "docker" and _HEX64.fullmatch(name):
        return ctx, PathMatch(JobKey("docker", name[:12]), uid, name[:12])
    elif state == "system" and name.endswith(".service"):
        unit = clean_text(name)
        return ROOT_CONTEXT, PathMatch(JobKey("systemd", unit), None, unit)
    if name in _KUBEPODS:
        return ("kube", None), None
    if _SLURM_ROOT.fullmatch(name):
        return ("slurm", None), None
    if _STEPD.fullmatch(name):
        return ("stepd", None), None
    if name == "docker":
        return ("docker", uid), None
    m = _DOCKER_SCOPE.fullmatch(name) or _LIBPOD.fullmatch(name)
    if m:
        scheduler = "docker" if name.startswith("docker") else "podman"
        return ctx, PathMatch(JobKey(scheduler, m[1][:12]), uid, m[1][:12])
    if name == "system.slice":
        return ("system", uid), None
    m = _USER.fullmatch(name)
    if m:
        return ("user", int(m[1] or m[2])), None
    return (("user", uid) if uid is not None else ROOT_CONTEXT), None


def classify_path(path: str, nesting_services: set[JobKey]) -> PathMatch | None:
    """The job a cgroup path belongs to, with the walk's rules: the job nearest the root wins,
    except a systemd service that has jobs inside it (`nesting_services`)."""
    ctx, service = ROOT_CONTEXT, None
    for name in path.split("/"):
        if not name:
            continue
        ctx, match = classify_dir(ctx, name)
        if match is None:
            continue
        if match.key.scheduler != "systemd":
            return match
        if service is None:
            service = match
    if service is not None and service.key not in nesting_services:
        return service
    return None
