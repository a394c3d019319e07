"""amdsmi's errors as ours: the one mapping from amdsmi status codes to reason labels, shared by the
amdsmi collector and its usage reader."""

from __future__ import annotations

from collections.abc import Mapping

from collectors.base import VendorError

# amdsmi_status_t values (amdsmi.h; the bindings raise AmdSmiLibraryException with them, and its
# subclasses AmdSmiRetryException and AmdSmiTimeoutException for RETRY and TIMEOUT).
_REASONS: Mapping[int, str] = {
    1: "invalid_argument",
    2: "not_supported",
    3: "not_yet_implemented",
    4: "fail_load_module",
    5: "fail_load_symbol",
    6: "drm_error",
    7: "api_failed",
    8: "timeout",
    9: "retry",
    10: "no_permission",
    11: "interrupted",
    12: "io_error",
    13: "address_fault",
    14: "file_error",
    15: "out_of_resources",
    16: "internal_exception",
    17: "input_out_of_bounds",
    18: "init_error",
    19: "refcount_overflow",
    20: "directory_not_found",
    30: "busy",
    31: "not_found",
    32: "not_initialised",
    33: "no_slot",
    34: "driver_not_loaded",
    40: "no_data",
    41: "insufficient_size",
    42: "unexpected_size",
    43: "unexpected_data",
    52: "file_not_found",
    53: "invalid_pointer",
    54: "amdgpu_restart_failed",
}
_OTHER = "amdsmi_error"
LIBRARY_REASONS = frozenset(
    {"fail_load_module", "fail_load_symbol", "init_error", "not_initialised", "driver_not_loaded"}
)
"""Reasons that mean the library, not one device, is broken: the whole read fails."""
NEVER_READABLE = frozenset({"not_supported", "not_yet_implemented", "function_not_found"})
"""Reasons a GPU found at probe will not outgrow: it is not retried."""


class AmdSmiError(VendorError):
    """An amdsmi call failed; `reason` is a snake_case label for metrics, `code` the amdsmi status."""


def translate(e: Exception) -> AmdSmiError:
    """The one place an exception of the amdsmi bindings becomes our AmdSmiError.

    The bindings' own messages span lines ("Error code:\\n\\t2 | ..."): ours keep one line.
    """
    code = getattr(e, "err_code", None)
    if not isinstance(code, int):  # a parameter, key or BDF format exception: no status code
        return AmdSmiError(_OTHER, " ".join(str(e).split()) or type(e).__name__)
    info = getattr(e, "err_info", "") or f"status {code}"
    return AmdSmiError(_REASONS.get(code, _OTHER), f"{info} (status {code})", code)
