"""QLoRA: LoRA on a base model quantized to 4-bit NF4 with bitsandbytes.

The base model is re-loaded through transformers' bitsandbytes integration (every linear layer
but the output head becomes a 4-bit layer), then LoRA is added on top. Whether bitsandbytes can
run 4-bit layers on this machine is probed once with a tiny layer: where it cannot, the entry
says so in one line instead of failing mid-run.

On a CPU with AVX512-BF16, bitsandbytes (0.50) repacks a 4-bit layer's weight for a faster
inference kernel on the layer's first forward in eval mode without gradients, and keeps that
layout: every later forward, training included, then runs ``gemv_4bit``, which has no backward.
Gradients through the frozen base are silently dropped, and a layer with a bias (BERT's) fails
with "a view of a leaf Variable that requires grad is being used in an in-place operation"
(``result += bias``). Training after any evaluation would break, so `quantize_4bit` switches
that repacking off: the layers compute the same way in training and in evaluation.
"""

from __future__ import annotations

import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.errors import first_line
from peftbench.methods.base import Method, ModelKind

if TYPE_CHECKING:
    from torch import nn

#: heads stay in full precision, as in QLoRA
SKIP_MODULES = ["lm_head", "score", "classifier"]
#: bitsandbytes' ``Linear4bit`` attribute that lets it repack its weight for CPU inference
CPU_REPACKING_FLAG = "support_avx512bf16_for_cpu"


class QLoraMethod(Method):
    """LoRA with the frozen base quantized to 4-bit NF4 (double quantization)."""

    def unavailable_reason(self) -> str | None:
        """Why 4-bit bitsandbytes layers cannot run here, or None."""
        return bnb_4bit_problem()

    def why_not(self, kind: ModelKind, probe: bool = True) -> str | None:
        """As `Method.why_not`; an image model is not quantized (its transformer is loaded
        by diffusers, not by the transformers loader this technique quantizes through)."""
        if kind == "image-gen":
            return "quantizes through transformers' loader; an image model's transformer is " \
                   "loaded by diffusers"
        return super().why_not(kind, probe)

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Quantize the base to 4 bits, then add LoRA."""
        self.check_applies(kind)
        return super().build(quantize_4bit(model), kind, targets, overrides)

    def load(self, model: nn.Module, kind: ModelKind, directory: Path) -> nn.Module:
        """Quantize the fresh base the same way, then load the LoRA adapter."""
        self.check_applies(kind)
        return super().load(quantize_4bit(model), kind, directory)


def quantize_4bit(model: nn.Module) -> nn.Module:
    """``model`` re-loaded with its linear layers (heads excluded) as bitsandbytes NF4."""
    import torch
    from transformers import BitsAndBytesConfig
    from transformers.utils import logging as hf_logging

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    config = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype if dtype != torch.float16 else torch.float32,
        llm_int8_skip_modules=SKIP_MODULES,
    )
    folder = tempfile.mkdtemp(prefix="peftbench-qlora-")
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:  # a failure here is not the user's: it propagates and the run records it
        model.save_pretrained(folder)
        quantized = type(model).from_pretrained(folder, quantization_config=config,
                                                device_map={"": str(device)}, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
        shutil.rmtree(folder, ignore_errors=True)
    keep_training_layout(quantized)
    return quantized


def keep_training_layout(model: nn.Module) -> int:
    """Switch off bitsandbytes' CPU inference repacking of ``model``'s 4-bit layers (see the
    module's docstring); returns how many layers had it."""
    layers = 0
    for module in model.modules():
        if hasattr(module, CPU_REPACKING_FLAG):
            setattr(module, CPU_REPACKING_FLAG, False)
            layers += 1
    return layers


@lru_cache(maxsize=1)
def bnb_4bit_problem() -> str | None:
    """Why bitsandbytes' 4-bit layers do not work here (a tiny probe), or None when they do.

    Only bitsandbytes saying that it has no 4-bit kernel for this device counts as "not
    supported here" (see `unsupported_here`). Any other failure of the probe is a broken
    install or a bug: it is not hidden behind "not supported" (QLoRA stays a contestant, and
    its runs and tests fail with the real error).
    """
    import importlib.util

    if importlib.util.find_spec("bitsandbytes") is None:
        return "not supported here: bitsandbytes is not installed (pip install bitsandbytes)"
    try:
        finite = _probe_4bit_layer()
    except Exception as exc:
        if not unsupported_here(exc):
            return None
        return ("not supported here: bitsandbytes has no 4-bit kernel for this device "
                f"({first_line(exc)})")
    if not finite:
        return "not supported here: bitsandbytes 4-bit layers give non-finite outputs"
    return None


def _probe_4bit_layer() -> bool:
    """Run a tiny NF4 layer on the default device; True when its output is finite."""
    import bitsandbytes as bnb
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    layer = bnb.nn.Linear4bit(16, 8, compute_dtype=torch.float32, quant_type="nf4")
    layer = layer.to(device)
    out = layer(torch.ones(1, 16, device=device))
    return bool(torch.isfinite(out).all())


#: what bitsandbytes and torch's operator dispatcher say when a device has no 4-bit kernel
NO_KERNEL_MESSAGES = ("Could not run 'bitsandbytes::", "Function not implemented",
                      "no kernel", "not supported on this device", "not available on")


def unsupported_here(exc: BaseException) -> bool:
    """Whether the probe's ``exc`` says that this device has no 4-bit kernel (as opposed to a
    broken install or a bug): a ``NotImplementedError`` naming a missing kernel."""
    text = str(exc)
    return isinstance(exc, NotImplementedError) and any(m in text for m in NO_KERNEL_MESSAGES)
