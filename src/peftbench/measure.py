"""Memory, time and hardware probes for CUDA and CPU.

On CUDA the allocator's own counters are exact (max allocated / reserved, plus the reserved
average and 99th percentile sampled each step, as the PEFT suite reports). On CPU there is no
allocator to ask, so a run reports two honest figures: the process's peak resident set size
(everything: weights, activations, Python) and the bytes of trainable parameters, their
gradients and the optimizer state (what the technique itself costs).
"""

from __future__ import annotations

import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

import torch
from torch import nn


def device_for_run() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul (AVX-512 BF16 or AMX), where bf16 autocast pays."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(requested: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a run: None means plain fp32."""
    if requested == "float32":
        return None
    if requested == "bfloat16":
        return torch.bfloat16
    if requested == "float16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else None


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def tensor_bytes(tensors: Any) -> int:
    """Bytes held by an iterable of tensors (non-tensors ignored)."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of trainable parameters + their gradients + the optimizer's state tensors.

    Gradients are counted at the size of their parameters: they exist at every step's peak even
    when they are freed between steps.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    total = 2 * tensor_bytes(trainable)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += tensor_bytes(state.values())
    return total


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total


@dataclass
class MemoryTracker:
    """Collects the memory figures of a run; ``sample`` is called once per optimizer step."""

    device: torch.device
    reserved_samples: list[int] = field(default_factory=list)

    def reset(self) -> None:
        """Start counting CUDA peaks from here (after loading, before training)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def sample(self) -> None:
        """Record the currently reserved CUDA memory (no-op on CPU)."""
        if self.device.type == "cuda":
            self.reserved_samples.append(torch.cuda.memory_reserved(self.device))

    def report(self) -> dict[str, Any]:
        """The memory fields of the result file."""
        out: dict[str, Any] = {"cpu_peak_rss": peak_rss_bytes()}
        if self.device.type == "cuda":
            samples = sorted(self.reserved_samples) or [0]
            max_alloc = torch.cuda.max_memory_allocated(self.device)
            out.update(
                cuda_memory_max_allocated=max_alloc,
                cuda_memory_max_reserved=torch.cuda.max_memory_reserved(self.device),
                accelerator_memory_max=max_alloc,
                accelerator_memory_reserved_avg=int(sum(samples) / len(samples)),
                accelerator_memory_reserved_99th=samples[min(len(samples) - 1,
                                                             int(0.99 * len(samples)))],
                peak_memory=max_alloc,
            )
        else:
            out.update(
                accelerator_memory_max=None,
                accelerator_memory_reserved_avg=None,
                accelerator_memory_reserved_99th=None,
                peak_memory=out["cpu_peak_rss"],
            )
        return out


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Stopwatch:
    """Accumulates elapsed seconds over several start/stop intervals."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.total = 0.0
        self._start: float | None = None

    def __enter__(self) -> Stopwatch:
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        assert self._start is not None
        self.total += time.perf_counter() - self._start
        self._start = None


def package_versions() -> dict[str, str | None]:
    """Versions of the packages that decide a run's numbers."""
    names = ["peftbench", "torch", "transformers", "peft", "datasets", "safetensors",
             "bitsandbytes", "accelerate", "numpy"]
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[f"{name}-version"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[f"{name}-version"] = None
    return out


def system_info(device: torch.device) -> dict[str, Any]:
    """Hardware and OS of the run, for reproducing and comparing it."""
    info: dict[str, Any] = {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_count": _cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
    }
    if device.type == "cuda":
        info["accelerator"] = torch.cuda.get_device_name(device)
        info["accelerator_memory"] = torch.cuda.get_device_properties(device).total_memory
    else:
        info["accelerator"] = None
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def matmul_peak_flops(dtype: torch.dtype = torch.float32, size: int = 1024,
                      repeats: int = 10) -> float:
    """Measured FLOP/s of a square matmul on the CPU: the machine's practical peak."""
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best
