"""NVML's errors as ours: the one mapping from NVML return codes to reason labels, shared by the
nvml collector and its usage reader."""

from __future__ import annotations

from collections.abc import Mapping

from collectors.base import VendorError

# NVML return codes (nvml.h; stable across driver releases) and the reason labels we report.
_REASONS: Mapping[int, str] = {
    1: "uninitialized",
    3: "not_supported",
    4: "no_permission",
    6: "not_found",
    7: "insufficient_size",
    9: "driver_not_loaded",
    12: "library_not_found",
    13: "function_not_found",
    15: "gpu_lost",
    18: "lib_rm_version_mismatch",
}
_OTHER = "nvml_error"
LIBRARY_REASONS = frozenset(
    {"uninitialized", "driver_not_loaded", "library_not_found", "lib_rm_version_mismatch"}
)
"""Reasons that mean the library, not one device, is broken: the whole read fails."""
NEVER_READABLE = frozenset({"not_supported", "function_not_found"})
"""Reasons a GPU found at probe will not outgrow: it is not retried."""


class NvmlError(VendorError):
    """An NVML call failed; `reason` is a snake_case label for metrics, `code` the NVML return code."""


def translate(e: Exception) -> NvmlError:
    """The one place a pynvml NVMLError becomes our NvmlError."""
    code = getattr(e, "value", None)
    reason = _REASONS.get(code, _OTHER) if isinstance(code, int) else _OTHER
    return NvmlError(reason, str(e), code if isinstance(code, int) else None)


def text(value: object) -> str:
    """An NVML string as str: older pynvml releases return bytes."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
