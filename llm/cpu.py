"""What the CPU offers the local backend: instruction-set flags, the weight dtype, thread count.

bf16 weights are only fast where the CPU multiplies bf16 natively (Intel AMX ``amx_bf16`` or
AVX-512 ``avx512_bf16``). Elsewhere torch emulates bf16 and it is *slower* than fp32: on a 2-core
AMD EPYC with AVX2 only, one 16-persona forward pass of SmolLM2-135M took 39.0 s in bf16 against
10.6 s in fp32, while on an Intel Xeon with AMX bf16 scored ~6x more prompts per second than fp32
(``benchmarks/results/llm_speed.md``). :func:`choose_dtype` encodes that rule as a pure function
of the flag set, so it is testable without the hardware.

Examples
--------
>>> choose_dtype({"avx2", "fma"})
'float32'
>>> choose_dtype({"avx2", "amx_bf16"})
'bfloat16'
"""

from __future__ import annotations

import os
from typing import Iterable

from rectify.errors import ConfigError

__all__ = ["BF16_FLAGS", "cpu_flags", "cpu_model", "choose_dtype", "resolve_dtype", "physical_cores"]

#: CPU flags (as in /proc/cpuinfo) that mean native bf16 matrix multiplication.
BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
_CPUINFO = "/proc/cpuinfo"


def _cpuinfo_text(path: str = _CPUINFO) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def cpu_flags(text: str | None = None) -> frozenset[str]:
    """The instruction-set flags of the first CPU in ``/proc/cpuinfo`` (empty where unreadable).

    Parameters
    ----------
    text : str, optional
        The contents of a cpuinfo file; default: read ``/proc/cpuinfo``.

    Returns
    -------
    frozenset of str

    Examples
    --------
    >>> sorted(cpu_flags("processor : 0\\nflags : fpu avx2 amx_bf16\\n"))
    ['amx_bf16', 'avx2', 'fpu']
    """
    text = _cpuinfo_text() if text is None else text
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(text: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` ("unknown" where unreadable).

    Examples
    --------
    >>> cpu_model("model name\\t: Intel(R) Xeon(R) Processor\\n")
    'Intel(R) Xeon(R) Processor'
    """
    text = _cpuinfo_text() if text is None else text
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown"


def choose_dtype(flags: Iterable[str]) -> str:
    """Weight dtype for CPU inference given the CPU's flags: ``"bfloat16"`` where the CPU has
    native bf16 matrix multiplication (``amx_bf16`` or ``avx512_bf16``), else ``"float32"``.

    bf16 is not faster in general: without those instructions it is emulated and several times
    slower than fp32 (see the module notes).

    Parameters
    ----------
    flags : iterable of str
        CPU flags as listed in ``/proc/cpuinfo`` (see :func:`cpu_flags`).

    Returns
    -------
    str

    Examples
    --------
    >>> choose_dtype(["avx512f", "avx512_bf16"])
    'bfloat16'
    >>> choose_dtype([])
    'float32'
    """
    return "bfloat16" if BF16_FLAGS & set(flags) else "float32"


def resolve_dtype(dtype: str, device: str = "cpu", flags: Iterable[str] | None = None) -> str:
    """The torch dtype name to load weights in: ``dtype`` itself unless it is ``"auto"``.

    ``"auto"`` on a CPU applies :func:`choose_dtype` to ``flags`` (default: this machine's
    :func:`cpu_flags`); on any other device it gives ``"float32"`` unless torch reports bf16
    support for CUDA (then ``"bfloat16"``).

    Parameters
    ----------
    dtype : str
        ``"auto"`` or a torch dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``).
    device : str
        Torch device string.
    flags : iterable of str, optional
        CPU flags; default: read from ``/proc/cpuinfo``.

    Returns
    -------
    str

    Raises
    ------
    ConfigError
        If ``dtype`` is not a string.

    Examples
    --------
    >>> resolve_dtype("auto", flags={"avx2"})
    'float32'
    >>> resolve_dtype("bfloat16", flags={"avx2"})   # an explicit dtype wins
    'bfloat16'
    """
    if not isinstance(dtype, str) or not dtype:
        raise ConfigError(f"argument 'dtype' must be 'auto' or a torch dtype name such as 'float32', got {dtype!r}")
    if dtype != "auto":
        return dtype
    if str(device).startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    if str(device) != "cpu":
        return "float32"
    return choose_dtype(cpu_flags() if flags is None else flags)


def physical_cores(text: str | None = None) -> int:
    """Number of physical cores this process may use (hyper-threads counted once).

    Counts distinct (physical id, core id) pairs in ``/proc/cpuinfo``, capped by the CPUs the
    process is allowed to run on; falls back to ``os.cpu_count()``. ``text``, if given, is a
    cpuinfo listing parsed instead of this machine's. Returns an int, at least 1.

    Examples
    --------
    >>> info = "\\n\\n".join(f"processor : {i}\\nphysical id : 0\\ncore id : {i // 2}" for i in range(4))
    >>> physical_cores(info) in (1, 2)   # 2 cores, fewer if this process may use only one CPU
    True
    """
    text = _cpuinfo_text() if text is None else text
    cores = set()
    for block in text.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        if "core id" in fields:
            cores.add((fields.get("physical id", "0"), fields["core id"]))
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        allowed = os.cpu_count() or 1
    n = len(cores) if cores else (os.cpu_count() or 1)
    return max(1, min(n, allowed))
