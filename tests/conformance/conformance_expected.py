"""What the conformance tests expect of each technique, computed from its definition on the tiny
models (independently of the counts the engine reports), and the documented exceptions.

Every exception names its reason; a technique missing from a table follows the shared rule.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from conformance_harness import MODELS, ConformanceRun
from torch import nn

from peftbench.engine.models import load_model
from peftbench.methods.base import ATTENTION_TARGETS, OPTIONS_ATTR

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
    every parameter that got a gradient; LoRA-FA keeps moments for B only, keyed per layer;
    optimizers of other kinds as `STATE_BYTES` defines them."""
    if run.name in STATE_BYTES:
        return STATE_BYTES[run.name](run)
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


# ---------------------------------------------------------------------- weight-training techniques
# Full-parameter training with memory-efficient optimizers, and freeze tuning
# (`peftbench.methods.full_ft`): they train the base model's own weights.

#: techniques that train every weight of the model and ship it whole
ALL_WEIGHTS = ("galore", "galore_layerwise", "galore_8bit", "apollo", "apollo_mini",
               "adam_mini", "lomo", "adalomo")
#: transformer-block parameter names of the tiny models: ``model.layers.N.`` and
#: ``bert.encoder.layer.N.``
BLOCK = re.compile(r"\.layers?\.(\d+)\.")


def blocks(kind: str) -> dict[int, dict[str, int]]:
    """The fresh base model's parameters by block index: {index: {name: numel}}."""
    model = load_model(MODELS[kind], kind).model
    out: dict[int, dict[str, int]] = {}
    for name, param in model.named_parameters():
        found = BLOCK.search(name)
        if found:
            out.setdefault(int(found.group(1)), {})[name] = param.numel()
    return out


def block_linears(kind: str) -> list[tuple[str, int, int]]:
    """(name, out, in) of every linear weight inside the transformer blocks: what a projected
    optimizer (GaLore, APOLLO) projects by default."""
    model = load_model(MODELS[kind], kind).model
    return [(f"{name}.weight", m.out_features, m.in_features)
            for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and BLOCK.search(name + ".")]


def settings(run: ConformanceRun) -> dict:
    """The technique's config as built (kept on the model)."""
    return getattr(run.model, OPTIONS_ATTR)


def _last_blocks(count: int) -> Callable[[ConformanceRun], int]:
    def numel(run: ConformanceRun) -> int:
        table = blocks(run.kind)
        chosen = sorted(table)[-count:]
        return sum(sum(table[i].values()) for i in chosen) + head_numel(run.kind)

    return numel


TRAINABLE.update({
    **{name: (lambda run: run.base_total) for name in ALL_WEIGHTS},
    "badam": _last_blocks(1),  # one block at a time, the last first (descending)
    "freeze": lambda run: _last_blocks(settings(run)["trainable_layers"])(run),
})
CHECKPOINT.update({name: (lambda run: run.base_total, "the whole model is the checkpoint")
                   for name in ALL_WEIGHTS})


def _fp32_bytes(numel: int) -> int:
    return 4 * numel


def _trainable_bytes(run: ConformanceRun) -> int:
    return sum(p.numel() * p.element_size() for _, p in run.trainable().values())


def projected_state_bytes(run: ConformanceRun, per_projected: int = 0) -> int:
    """The optimizer state of GaLore/APOLLO by their definition: for each projected weight
    (m×n, rank r' = min(r, m, n)) two moments of the projected gradient (r'·max(m, n) each)
    and the projection matrix (r'·min(m, n)), plus ``per_projected`` bytes; two full moments
    for every other weight. (The packages keep the step count as a Python int.)"""
    rank = settings(run)["rank"]
    projected = {name: (m, n) for name, m, n in block_linears(run.kind)}
    total = 0
    for name, param in run.model.named_parameters():
        if name in projected:
            m, n = projected[name]
            r = min(rank, m, n)
            total += _fp32_bytes(2 * r * max(m, n) + r * min(m, n)) + per_projected
        else:
            total += _fp32_bytes(2 * param.numel())
    return total


def _largest_gradient(run: ConformanceRun) -> int:
    return max(p.numel() * p.element_size() for _, p in run.trainable().values())


def _adam_mini_second_moments(run: ConformanceRun) -> int:
    """One value per attention head of the query and key projections, per output row
    (neuron, token) of the other matrices, per tensor for norm scales."""
    config = run.model.config
    count = 0
    for name, param in run.model.named_parameters():
        if name.endswith("q_proj.weight"):
            count += config.num_attention_heads
        elif name.endswith("k_proj.weight"):
            count += config.num_key_value_heads
        elif param.dim() == 2:
            count += param.shape[0]
        else:
            count += 1
    return count


def _badam_state(run: ConformanceRun) -> int:
    """The active block (weights, gradients), its fp32 master copy, and AdamW's two moments
    and float32 step counter per tensor of that copy."""
    active = [p for _, p in run.trainable().values()]
    numel = sum(p.numel() for p in active)
    return _fp32_bytes(5 * numel) + 4 * len(active)


#: trainable state bytes of techniques whose optimizer departs from AdamW's (the shared rule
#: in `expected_state_bytes`), from each definition
STATE_BYTES: dict[str, Callable[[ConformanceRun], int]] = {
    "galore": lambda run: 2 * _trainable_bytes(run) + projected_state_bytes(run),
    "galore_layerwise": lambda run: _trainable_bytes(run) + _largest_gradient(run)
    + projected_state_bytes(run),
    # APOLLO keeps the norm of the last scaled gradient (a float32 scalar) per projected weight
    "apollo": lambda run: 2 * _trainable_bytes(run) + projected_state_bytes(run, 4),
    "apollo_mini": lambda run: 2 * _trainable_bytes(run) + projected_state_bytes(run, 4),
    "adam_mini": lambda run: 2 * _trainable_bytes(run) + _trainable_bytes(run)
    + _fp32_bytes(_adam_mini_second_moments(run)),
    "badam": _badam_state,
    # no state; the gradients held at once are measured (bounded in test_conformance_full_ft)
    "lomo": lambda run: _trainable_bytes(run) + run.optimizer.peak_gradient_bytes,
}

#: optimizers without moments (their groups have no betas or ε): why
NO_MOMENTS: dict[str, str] = {"lomo": "LOMO is plain SGD"}
#: parameters an optimizer exempts from weight decay by its own rule: (name test, why)
NO_DECAY: dict[str, tuple[Callable[[str], bool], str]] = {
    "adam_mini": (lambda name: any(k in name.lower() for k in ("norm", "ln", "bias")),
                  "Adam-mini's own rule: no decay on norm scales and biases (catalog caveat)"),
}


def stepping_groups(run: ConformanceRun) -> list[tuple[dict, list[nn.Parameter]]]:
    """The parameter groups that really step the weights, each with the model parameters it
    updates: BAdam's inner AdamW (over fp32 copies of the active block), each weight's own
    optimizer when updates are layer-wise, else the optimizer's groups."""
    optimizer = run.optimizer
    if hasattr(optimizer, "base_optimizer") and hasattr(optimizer, "param_idx2hp"):
        copies = {id(hp): lp for lp, hp in zip(optimizer.param_idx2lp.values(),
                                                optimizer.param_idx2hp.values(), strict=True)}
        return [(g, [copies[id(p)] for p in g["params"]])
                for g in optimizer.base_optimizer.param_groups]
    inner = getattr(optimizer, "inner", None)
    if isinstance(inner, dict):
        return [(g, list(g["params"])) for opt, _ in inner.values() for g in opt.param_groups]
    return [(g, list(g["params"])) for g in optimizer.param_groups]
