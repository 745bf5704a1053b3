"""What a worker's memory holds, measured: resident parameter bytes, peak RSS, device peaks.

``Probe`` takes the process's resident set as a baseline when made and resets the kernel's
high-water mark (Linux ``/proc/self/clear_refs``), so ``sample`` reports the peak *since then*:
the loop makes one before building the model, so "the model's load never held more than X"
is a number in run.json (``memory``), not a claim. Parameter bytes count what this rank really
holds: a ZeRO-3 parameter's local partition (``ds_tensor``), else the whole tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def status_kb(field: str) -> int | None:
    """A field of /proc/self/status in kB (VmRSS: resident now; VmHWM: resident high-water)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Reset the resident high-water mark to the current RSS (Linux >= 4.0); False elsewhere."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def parameter_bytes(module: torch.nn.Module) -> dict[str, int]:
    """``resident``: bytes of parameters this rank holds now (ZeRO-3: its partitions, plus any
    gathered right now); ``full``: bytes of the whole model's parameters (tied ones once)."""
    resident = full = 0
    for p in module.parameters():  # tied parameters once
        item = p.element_size()
        numel = getattr(p, "ds_numel", p.numel())
        full += numel * item
        part = getattr(p, "ds_tensor", None)
        if part is None:
            resident += p.numel() * item
        else:
            resident += part.numel() * part.element_size() + p.data.numel() * item
    return {"resident": resident, "full": full}


class Probe:
    """Memory from a baseline on: the resident peak since the probe was made, and parameter bytes."""

    def __init__(self, device: torch.device | None = None):
        self.device = device
        self.baseline_kb = status_kb("VmRSS")
        self.reset = reset_peak()
        if device is not None and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)

    def sample(self, module: torch.nn.Module | None = None) -> dict[str, Any]:
        """Peak and current RSS above the baseline (bytes), parameter bytes, device peak."""
        out: dict[str, Any] = {}
        hwm, rss = status_kb("VmHWM"), status_kb("VmRSS")
        if self.reset and hwm is not None and self.baseline_kb is not None:
            out["peak_rss_above_baseline"] = (hwm - self.baseline_kb) * 1024
        if rss is not None and self.baseline_kb is not None:
            out["rss_above_baseline"] = (rss - self.baseline_kb) * 1024
        if self.baseline_kb is not None:
            out["baseline_rss"] = self.baseline_kb * 1024
        if module is not None:
            params = parameter_bytes(module)
            out["parameter_bytes_resident"] = params["resident"]
            out["parameter_bytes_full"] = params["full"]
        if self.device is not None and self.device.type == "cuda":
            out["device_peak_allocated"] = torch.cuda.max_memory_allocated(self.device)
        return out
