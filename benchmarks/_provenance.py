"""Provenance of a benchmark table: the commit it was measured at and whether the PPI code differs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the PPI cores (estimators/ppi*.py: ppi.py re-exports ppi_base, ppi_means, ...), their models and targets
PPI_CODE = ("estimators/ppi*.py", "estimators/models.py", "estimators/_validate.py", "rectify/result.py",
            "rectify/estimand.py")


def code_version() -> str:
    """Short commit of the checkout, plus a flag when the estimator code has uncommitted changes.

    ``BENCH_CODE_VERSION`` in the environment overrides it (a run from an exported snapshot of a commit).
    """
    if os.environ.get("BENCH_CODE_VERSION"):
        return os.environ["BENCH_CODE_VERSION"]
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *PPI_CODE],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes to the PPI code" if dirty else "")


def cpu_info() -> tuple[str, str]:
    """CPU model name and the vector/matrix flags that matter here (avx2, avx512f, avx512_bf16, amx_bf16)."""
    cpu, flags = "unknown CPU", ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown CPU":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = " ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have)
                break
    except OSError:
        pass
    return cpu, flags


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine_line() -> str:
    """CPU model, its vector/matrix flags, visible cores and the load average now (for a results header)."""
    cpu, flags = cpu_info()
    return f"{cpu} ({os.cpu_count()} CPUs visible; flags {flags or 'none listed'}), load average {load_average()}"
