"""What the conformance tests expect of each technique, computed from its definition on the tiny
models (independently of the counts the engine reports), and the documented exceptions.

Every exception names its reason; a technique missing from a table follows the shared rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from conformance_harness import MODELS, ConformanceRun
from torch import nn

from peftbench.engine.models import load_model
from peftbench.methods.base import ATTENTION_TARGETS

# ---------------------------------------------------------------------- shapes of the tiny models


def adapted_shapes(kind: str) -> list[tuple[int, int]]:
    """(in, out) of every linear layer the default targets adapt (the attention projections)."""
    model = load_model(MODELS[kind], kind).model
    return [(m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in ATTENTION_TARGETS]


def head_numel(kind: str) -> int:
    """Parameters of the classification head a seq-cls model trains in full (0 for an LM)."""
    if kind != "seq-cls":
        return 0
    model = load_model(MODELS[kind], kind).model
    return sum(p.numel() for p in model.classifier.parameters())


def hidden_size(kind: str) -> int:
    """The tiny model's hidden size."""
    return load_model(MODELS[kind], kind).model.config.hidden_size


def config(run: ConformanceRun) -> object:
    """The technique's config as built (PEFT's, or Delta-LoRA's own)."""
    configs = getattr(run.model, "peft_config", None)
    return configs["default"] if isinstance(configs, dict) else run.model.config


def lora_factors(run: ConformanceRun, rank_factor: int = 1) -> int:
    """Elements of A (r×in) and B (out×r) over the adapted layers, at ``rank_factor``·r."""
    r = config(run).r * rank_factor
    return sum(r * (i + o) for i, o in adapted_shapes(run.kind))


# ---------------------------------------------------------------------- trainable parameters


def _per_layer(per: Callable[[int, int, ConformanceRun], int]) -> Callable[[ConformanceRun], int]:
    def count(run: ConformanceRun) -> int:
        return sum(per(i, o, run) for i, o in adapted_shapes(run.kind)) + head_numel(run.kind)

    return count


_LORA = _per_layer(lambda i, o, run: config(run).r * (i + o))

#: trainable parameters after the optimizer is built, from each technique's definition
TRAINABLE: dict[str, Callable[[ConformanceRun], int]] = {
    **{name: _LORA for name in ("lora", "rslora", "pissa", "olora", "lora_plus", "qlora",
                                "delta_lora")},
    "lora_fa": _per_layer(lambda i, o, run: config(run).r * o),  # A frozen: only B trains
    "dora": _per_layer(lambda i, o, run: config(run).r * (i + o) + o),  # + a magnitude per row
    "loha": _per_layer(lambda i, o, run: 2 * config(run).r * (i + o)),  # two LoRA pairs
    "vera": _per_layer(lambda i, o, run: config(run).r + o),  # the scaling vectors d and b
    "ia3": _per_layer(lambda i, o, run: o),  # one rescaling vector per adapted output
    "beft": _per_layer(lambda i, o, run: o),  # one bias-like vector per adapted output
    "prompt_tuning": lambda run: config(run).num_virtual_tokens * hidden_size(run.kind)
    + head_numel(run.kind),
    "full": lambda run: run.base_total,
}

#: trainable parameters that get no gradient, by design of the implementation (the catalog's
#: caveat says so): a name fragment shared by all of them
NEVER_UPDATED: dict[str, str] = {
    "shadow": "shadow_update_",  # the last decoder layer's shadow update feeds nothing
}

# ---------------------------------------------------------------------- starting point

#: techniques whose adapted model differs from the base model at build, and why
NOT_IDENTITY_AT_INIT: dict[str, str] = {
    "c3a": "PEFT's default init_weights='xavier_uniform' starts from a non-zero update",
    "fourierft": "PEFT's default (init_weights=False) draws the spectral coefficients from a "
                 "normal distribution",
    "vblora": "both factors mix vectors of a random bank: the update is not zero at the start",
    "unilora": "the factors are projected from one random shared vector",
    "prefix_tuning": "attention reads the trained key/value prefixes from the start",
    "cartridge": "attention reads the trained key/value prefixes from the start",
    "prompt_tuning": "virtual tokens are prepended to every input",
    "p_tuning": "virtual tokens are prepended to every input",
    "qlora": "the base weights are quantized to 4-bit NF4",
}

# ---------------------------------------------------------------------- checkpoints


def _frozen_state(run: ConformanceRun) -> int:
    """The frozen tensors the technique adds (random projections, norms): parameters and
    buffers that are not the base model's, each once."""
    frozen = sum(p.numel() for i, (_, p) in run.added().items() if not p.requires_grad)
    buffers = {id(b): b for b in run.model.buffers() if id(b) not in run.base_buffers}
    return frozen + sum(b.numel() for b in buffers.values())


def _sparse(copies: int) -> Callable[[ConformanceRun], int]:
    """Values of a sparse technique stored with ``copies - 1`` integer indices each."""
    def elements(run: ConformanceRun) -> int:
        head = head_numel(run.kind)
        return copies * (run.trainable_count() - head) + head

    return elements


def _per_use(run: ConformanceRun) -> int:
    """Trainable tensors counted once per module that uses them (shared ones repeatedly)."""
    return sum(p.numel() for _, p in run.model.named_parameters(remove_duplicate=False)
               if p.requires_grad)


#: elements a technique's checkpoint holds where it is not exactly the trained parameters:
#: (expected elements from the definition, or None where only "more than trained" is
#: checked; the reason)
CHECKPOINT: dict[str, tuple[Callable[[ConformanceRun], int] | None, str]] = {
    "lora_fa": (lambda run: lora_factors(run) + head_numel(run.kind),
                "A is frozen at its random init but is part of the adapter: shipped with B"),
    "pissa": (lambda run: lora_factors(run, 2) + head_numel(run.kind),
              "saved as a rank-2r LoRA for the original base (PEFT's conversion)"),
    "olora": (lambda run: lora_factors(run, 2) + head_numel(run.kind),
              "saved as a rank-2r LoRA for the original base (PEFT's conversion)"),
    "full": (lambda run: run.base_total, "the whole model is the checkpoint"),
    **{name: (lambda run: run.trainable_count() + _frozen_state(run),
              "ships its frozen state (random projections, norms, bases) with the trained "
              "parameters")
       for name in ("vera", "pvera", "tinylora", "adamss", "delora", "glora", "cartridge")},
    "shira": (_sparse(3), "each trained value is stored with its row and column index"),
    "supertuning": (_sparse(2), "each trained value is stored with its index"),
    "p_tuning": (lambda run: config(run).num_virtual_tokens * hidden_size(run.kind)
                 + head_numel(run.kind),
                 "ships the prompt embeddings its encoder produced, not the encoder"),
    "lily": (_per_use, "PEFT stores each shared projector once per layer that uses it "
                       "(the catalog's caveat)"),
    "randlora": (None, "PEFT stores the shared random bases once and again sliced per layer "
                       "(the catalog's caveat)"),
    "frod": (None, "ships the frozen basis of each layer kind and the sparse positions with the "
                   "trained values"),
}


# ---------------------------------------------------------------------- optimizer


#: AdamW's hyperparameters every technique trains with unless its definition says otherwise
ADAMW = {"betas": (0.9, 0.999), "eps": 1e-8}
#: bytes of optimizer state per parameter tensor besides its two moments (AdamW's step
#: counter is a float32 tensor; LoRA-FA's optimizer keeps a Python int)
STEP_BYTES: dict[str, int] = {"lora_fa": 0}
#: learning-rate multipliers a technique's definition sets, by parameter name fragment
LR_RATIO: dict[str, tuple[str, Callable[[ConformanceRun], float]]] = {
    "lora_plus": ("lora_B", lambda run: float(run.method.options["loraplus_lr_ratio"])),
}


def expected_state_bytes(run: ConformanceRun) -> int:
    """Trainable parameters and their gradients, plus two moments (and a step counter) for
    every parameter that got a gradient; LoRA-FA keeps moments for B only, keyed per layer."""
    trainable = run.trainable()
    state = 2 * sum(p.numel() * p.element_size() for _, p in trainable.values())
    step = STEP_BYTES.get(run.name, 4)
    for i, (_, p) in trainable.items():
        if i in run.got_grad:
            state += 2 * p.numel() * p.element_size() + step
    return state


def is_close(a: float, b: float) -> bool:
    """Equal up to float rounding."""
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
