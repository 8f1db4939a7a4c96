"""One short, fully observed training run of a technique on a tiny model, for the conformance
tests: what was trainable when the optimizer was built, which parameters got a gradient, the
optimizer itself, the engine's reported figures, the logits before and after, and a saved and
reloaded checkpoint."""

from __future__ import annotations

import copy
import json
import math
import struct
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from methods_helpers import CAUSAL_TEXTS, CLS_TEXTS, fixed_task, outputs  # noqa: E402

from peftbench.engine.batching import collate  # noqa: E402
from peftbench.engine.measure import MemoryTracker, logical_numel  # noqa: E402
from peftbench.engine.models import load_model, tiny_tokenizer  # noqa: E402
from peftbench.engine.spec import TrainParams  # noqa: E402
from peftbench.engine.train import TrainOutcome, train  # noqa: E402
from peftbench.methods import Method, all_methods, get_method  # noqa: E402
from peftbench.methods.delta_lora.model import DeltaLoraModel  # noqa: E402

MODELS = {"causal-lm": "tiny-llama", "seq-cls": "tiny-bert"}
STEPS = 2
#: not zero, so that a technique whose optimizer drops the weight decay shows it
WEIGHT_DECAY = 0.01
#: file suffixes the engine counts as the checkpoint (``engine.experiment._save``)
CHECKPOINT_SUFFIXES = {".safetensors", ".bin", ".pt"}
#: bytes per element of the safetensors dtypes a checkpoint may hold
SAFETENSORS_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2,
                     "I8": 1, "U8": 1, "BOOL": 1}


def contestants() -> list[tuple[str, str]]:
    """Every (technique, model kind) the catalog lets compete, on the tiny models."""
    models = {kind: load_model(name, kind).model for kind, name in MODELS.items()}
    return [(method.name, kind) for method in all_methods() for kind, model in models.items()
            if method.why_not(kind) is None and method.why_not_on(model, kind) is None]


@dataclass
class ConformanceRun:
    """Everything observed in one run (see `conformance_run`)."""

    name: str
    kind: str
    method: Method
    lr: float
    base_ids: dict[int, str]  # id of each base-model parameter -> its name
    base_buffers: set[int]  # ids of the base model's buffers
    base_total: int  # logical parameters of the base model
    base_logits: torch.Tensor
    built_logits: torch.Tensor
    built: dict[str, torch.Tensor]  # every parameter right after build, by name
    model: nn.Module
    optimizer: torch.optim.Optimizer
    trainable_at_optimizer: set[int]  # ids with requires_grad right after the optimizer
    got_grad: set[int]  # ids of parameters that received a gradient during training
    outcome: TrainOutcome
    trained_logits: torch.Tensor
    folder: Path
    reloaded_logits: torch.Tensor
    #: a Delta-LoRA model's factors (A, B) per layer after each step
    steps_factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=list)

    def unique_parameters(self) -> dict[int, tuple[str, nn.Parameter]]:
        """Each parameter tensor once (shared ones too), with one of its names."""
        out: dict[int, tuple[str, nn.Parameter]] = {}
        for name, param in self.model.named_parameters():
            out.setdefault(id(param), (name, param))
        return out

    def trainable(self) -> dict[int, tuple[str, nn.Parameter]]:
        """The parameters that are trainable now (after training)."""
        return {i: np for i, np in self.unique_parameters().items() if np[1].requires_grad}

    def trainable_count(self) -> int:
        """Trainable parameters now, counted here (not by the engine)."""
        return sum(p.numel() for _, p in self.trainable().values())

    def added(self) -> dict[int, tuple[str, nn.Parameter]]:
        """Parameters the technique added (not those of the base model)."""
        return {i: np for i, np in self.unique_parameters().items() if i not in self.base_ids}

    def inputs(self) -> dict[str, torch.Tensor]:
        """The batch the logits are compared on."""
        return batch_inputs(self.kind)


def batch_inputs(kind: str) -> dict[str, torch.Tensor]:
    """The fixed task's inputs (no labels) for a ``kind`` model."""
    tokenizer = load_model(MODELS[kind], kind).tokenizer
    batch = collate(fixed_task(tokenizer, kind), tokenizer.pad_token_id)
    return {k: v for k, v in batch.items() if k != "labels"}


def run_overrides(name: str, kind: str) -> dict[str, Any]:
    """Trainable tokens' default (the special tokens) is absent from the fixed task's inputs:
    train the tokens the task starts with instead."""
    if name != "trainable_tokens":
        return {}
    tok = tiny_tokenizer()
    texts = CAUSAL_TEXTS if kind == "causal-lm" else [t for t, _ in CLS_TEXTS]
    return {"token_indices": sorted({tok(t)["input_ids"][0] for t in texts})}


def conformance_run(name: str, kind: str, folder: Path, overrides: dict[str, Any] | None = None,
                    steps: int = STEPS) -> ConformanceRun:
    """Build ``name`` on a fresh tiny model, train ``steps`` steps with the engine's loop
    (watching the optimizer and the gradients), save to ``folder`` and reload."""
    torch.set_num_threads(1)
    loaded = load_model(MODELS[kind], kind, seed=0)
    base = loaded.model
    base_ids = {id(p): n for n, p in base.named_parameters()}
    base_buffers = {id(b) for b in base.buffers()}
    base_total = sum(logical_numel(p) for p in {id(p): p for p in base.parameters()}.values())
    inputs = batch_inputs(kind)
    base_logits = outputs(base, inputs)
    method = copy.copy(get_method(name))
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = method.build(base, kind, None, {**run_overrides(name, kind), **(overrides or {})})
        built_logits = outputs(model, inputs)
    built = {n: p.detach().clone() for n, p in model.named_parameters()}
    seen: dict[str, Any] = {"got_grad": set()}
    _watch_optimizer(method, seen)
    factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]] = []
    outcome = _train(method, model, loaded, kind, steps, factors)
    trained_logits = outputs(model, inputs)
    folder.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        method.save(model, folder)
        fresh = load_model(MODELS[kind], kind, seed=0).model
        reloaded_logits = outputs(method.load(fresh, kind, folder), inputs)
    return ConformanceRun(
        name=name, kind=kind, method=method, lr=method.default_lr, base_ids=base_ids,
        base_buffers=base_buffers, base_total=base_total, base_logits=base_logits,
        built_logits=built_logits, built=built,
        model=model, optimizer=seen["optimizer"], trainable_at_optimizer=seen["trainable"],
        got_grad=seen["got_grad"], outcome=outcome, trained_logits=trained_logits, folder=folder,
        reloaded_logits=reloaded_logits, steps_factors=factors)


def _watch_optimizer(method: Method, seen: dict[str, Any]) -> None:
    """Make ``method.make_optimizer`` record the optimizer, what is trainable right after it,
    and (through hooks) every parameter that then receives a gradient."""
    make = method.make_optimizer

    def watched(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        optimizer = make(model, lr, weight_decay)
        seen["optimizer"] = optimizer
        trainable = {id(p): p for p in model.parameters() if p.requires_grad}
        seen["trainable"] = set(trainable)
        for param in trainable.values():
            param.register_post_accumulate_grad_hook(
                lambda p: seen["got_grad"].add(id(p)))
        return optimizer

    method.make_optimizer = watched  # type: ignore[method-assign]


def _train(method: Method, model: nn.Module, loaded: Any, kind: str, steps: int,
           factors: list[dict[str, tuple[torch.Tensor, torch.Tensor]]]) -> TrainOutcome:
    """The engine's training loop on the fixed task; ``factors`` gets each step's LoRA factors
    of a Delta-LoRA model (after its weight update)."""
    features = fixed_task(loaded.tokenizer, kind)
    params = TrainParams(max_steps=steps, batch_size=len(features), warmup_steps=0,
                         lr_scheduler="constant", dtype="float32", forgetting_samples=0,
                         measure_inference=False, weight_decay=WEIGHT_DECAY)

    def on_step(_step: int, _loss: float) -> None:
        if isinstance(model, DeltaLoraModel):
            factors.append({n: (layer.lora_A.detach().clone(), layer.lora_B.detach().clone())
                            for n, layer in model.layers().items()})

    device = torch.device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(model, method, features, params, lr=method.default_lr,
                     pad_id=loaded.tokenizer.pad_token_id, device=device, amp_dtype=None,
                     memory=MemoryTracker(device), on_step=on_step)


# ---------------------------------------------------------------------- checkpoints


@dataclass
class SavedFile:
    """A checkpoint file read independently of safetensors: header and tensor shapes."""

    path: Path
    size: int
    header_bytes: int
    tensors: dict[str, tuple[str, list[int]]]  # name -> (dtype, shape)

    def payload_elements(self) -> int:
        """Elements of every tensor in the file."""
        return sum(math.prod(shape) for _, shape in self.tensors.values())

    def payload_bytes(self) -> int:
        """Bytes of every tensor in the file, from dtypes and shapes."""
        return sum(SAFETENSORS_BYTES[dtype] * math.prod(shape)
                   for dtype, shape in self.tensors.values())


def read_safetensors(path: Path) -> SavedFile:
    """Parse a safetensors file's header by hand (8-byte length, JSON)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    header.pop("__metadata__", None)
    tensors = {k: (v["dtype"], list(v["shape"])) for k, v in header.items()}
    return SavedFile(path, len(raw), length, tensors)


def checkpoint_files(folder: Path) -> list[Path]:
    """The files the engine counts in ``file_size``."""
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix in CHECKPOINT_SUFFIXES)
