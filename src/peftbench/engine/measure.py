"""Memory, time and hardware probes for CUDA and CPU.

On CUDA the allocator's own counters are exact (max allocated / reserved, plus the reserved
average and 99th percentile sampled each step, as the PEFT suite reports). On CPU there is no
allocator to ask, so a run reports two honest figures: the process's peak resident set size
(everything: weights, activations, Python) and the bytes of trainable parameters, their
gradients and the optimizer state (what the technique itself costs).
"""

from __future__ import annotations

import ctypes
import gc
import math
import platform
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from typing import Any

import torch
from torch import nn

from peftbench.engine.record import MemoryFigures


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


def _status_kib(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None where absent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def rss_bytes() -> int | None:
    """Current resident set size of this process (Linux), or None where it cannot be read."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def window_peak_rss_bytes() -> int | None:
    """Peak RSS since the last `reset_peak_rss` (``VmHWM``), or None where not available."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def trim_heap() -> None:
    """Collect garbage and hand the C heap's free pages back to the kernel (glibc), so that
    memory freed by earlier phases does not hide the next phase's growth in RSS."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS (Linux ``clear_refs`` 5).

    Returns False where the kernel does not offer it; callers then fall back to the
    whole-process peak and say so."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return window_peak_rss_bytes() is not None


class SavedTensorMeter:
    """Counts the bytes autograd saves for backward (the activations) during a forward pass.

    Storages are counted once however many tensors view them, parameters are not counted
    (they are the weights), and the peak over the micro-batches measured is kept. The count depends
    only on the model, the technique and the batch, so identical runs give identical figures.
    """

    def __init__(self, model: nn.Module) -> None:
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: set[int] = set()
        self.current = 0
        self.peak = 0

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        try:
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key and key not in self._params and key not in self._seen:
                self._seen.add(key)
                self.current += storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. sparse)
            pass
        return tensor

    @contextmanager
    def micro_batch(self) -> Iterator[None]:
        """Count the tensors saved inside this block (one micro-batch's forward and backward:
        its saved tensors are freed by the backward, so each micro-batch is counted alone)."""
        self._seen.clear()
        self.current = 0
        with torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t):
            yield
        self.peak = max(self.peak, self.current)


def tensor_bytes(tensors: Any) -> int:
    """Bytes held by an iterable of tensors (non-tensors ignored)."""
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of trainable parameters + their gradients + the optimizer's state tensors.

    Gradients are counted at the size of their parameters: they exist at every step's peak even
    when they are freed between steps. An optimizer that holds state outside ``optimizer.state``
    or never holds whole-model gradients (GaLore's projections, BAdam's block copies, updates
    fused into the backward pass) reports its own bytes through ``trainable_state_bytes(model)``.
    """
    own = getattr(optimizer, "trainable_state_bytes", None)
    if callable(own):
        return int(own(model))
    trainable = [p for p in model.parameters() if p.requires_grad]
    total = 2 * tensor_bytes(trainable)
    if optimizer is not None:
        for state in optimizer.state.values():
            total += tensor_bytes(state.values())
    return total


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts, each shared tensor counted once, quantized weights
    by their logical number of weights (see `logical_numel`)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        count = logical_numel(p)
        total += count
        if p.requires_grad:
            trainable += count
    return trainable, total


def logical_numel(param: torch.Tensor) -> int:
    """How many weights ``param`` holds: a bitsandbytes 4-bit weight packs two per byte in a
    flat uint8 tensor and keeps its real shape in ``quant_state.shape``; others are numel."""
    shape = getattr(getattr(param, "quant_state", None), "shape", None)
    if shape is not None:
        return math.prod(shape)
    return param.numel()


@dataclass
class MemoryTracker:
    """Collects the memory figures of a run's training phase.

    ``reset`` is called when training starts, ``sample`` once per optimizer step, ``paused``
    around work that is not training (validation), ``report`` at the end.
    """

    device: torch.device
    reserved_samples: list[int] = field(default_factory=list)
    window_reset: bool = False
    window_peak: int = 0  # highest RSS over the windows in which training steps ran
    window_increase: int = 0  # their largest rise over the RSS at the window's start
    _window_start: int | None = None
    _stepped: bool = False

    def reset(self) -> None:
        """Start counting peaks from here (after loading, before training)."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.window_peak = self.window_increase = 0
        self._open_window()

    def sample(self) -> None:
        """Mark a training step done; on CUDA record the currently reserved memory."""
        self._stepped = True
        if self.device.type == "cuda":
            self.reserved_samples.append(torch.cuda.memory_reserved(self.device))

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the enclosed work (validation) out of the training phase's CPU peak."""
        self._close_window()
        try:
            yield
        finally:
            self._open_window()

    def _open_window(self) -> None:
        trim_heap()
        self._window_start = rss_bytes()
        self.window_reset = reset_peak_rss() and self._window_start is not None
        self._stepped = False

    def _close_window(self) -> None:
        if self.window_reset and self._stepped and self._window_start is not None:
            peak = window_peak_rss_bytes() or 0
            self.window_peak = max(self.window_peak, peak)
            self.window_increase = max(self.window_increase, peak - self._window_start)
        self._stepped = False

    def report(self, *, param_bytes: int, trainable_bytes: int, state_bytes: int,
               activation_bytes: int) -> MemoryFigures:
        """The memory fields of the result file.

        ``param_bytes`` are all parameters, ``trainable_bytes`` the trainable ones,
        ``state_bytes`` trainable parameters + gradients + optimizer state, and
        ``activation_bytes`` the saved-tensor peak of a training step.
        """
        self._close_window()
        frozen = param_bytes - trainable_bytes
        out = MemoryFigures(
            # resetting the peak counter also lowers what getrusage reports later
            cpu_peak_rss=max(peak_rss_bytes(), self.window_peak),
            memory_frozen_weights=frozen,
            memory_trainable_state=state_bytes,
            memory_activations=activation_bytes,
            train_memory=frozen + state_bytes + activation_bytes,
            memory_method="cuda allocator" if self.device.type == "cuda" else (
                "clear_refs" if self.window_reset else "whole-process peak (no clear_refs)"),
        )
        if self.window_reset and self.window_peak:
            out.train_peak_rss = self.window_peak
            out.train_rss_increase = max(self.window_increase, 0)
        if self.device.type == "cuda":
            self._add_cuda_figures(out)
        else:
            out.peak_memory = out.train_memory
        return out

    def _add_cuda_figures(self, out: MemoryFigures) -> None:
        """The allocator's figures, as the PEFT suite reports them."""
        samples = sorted(self.reserved_samples) or [0]
        max_alloc = torch.cuda.max_memory_allocated(self.device)
        out.cuda_memory_max_allocated = max_alloc
        out.cuda_memory_max_reserved = torch.cuda.max_memory_reserved(self.device)
        out.accelerator_memory_max = max_alloc
        out.accelerator_memory_reserved_avg = int(sum(samples) / len(samples))
        out.accelerator_memory_reserved_99th = samples[min(len(samples) - 1,
                                                           int(0.99 * len(samples)))]
        out.peak_memory = max_alloc


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
