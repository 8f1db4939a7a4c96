"""Models built from a config alone: an architecture at its real size, with random weights.

    config:NAME | config:PATH | config:ORG/NAME ─ the config ─ parameters created on the meta
        device (no init cost) ─ filled from one seeded pool of random values ─ `LoadedModel`

Such a model answers cost questions before anything is downloaded ("which techniques fit on
my GPU for this model?"): memory, time, tokens/s, checkpoint size and trainable parameters are
real; its scores are meaningless, so runs on it record them as not measured. A few common bases
ship as small JSON files (`CONFIGS`), copied from their hub ``config.json``.

Tokens come from the model's own tokenizer where one is found beside the config (a local
folder, or the hub id whose config was read), else from a stand-in byte-level tokenizer whose
ids all lie in the model's vocabulary (sequence lengths then differ from the real tokenizer's;
the result says which was used).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.errors import UserError, first_line
from peftbench.methods.base import ModelKind

PREFIX = "config:"
#: configs shipped in the package (``engine/configs/NAME.json``): name -> the hub model
CONFIGS = {
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "qwen2.5-0.5b": "Qwen/Qwen2.5-0.5B",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
#: random values drawn once and tiled over every weight: drawing 1e9 normals costs ~40 s on
#: one CPU core, copying them ~1 s
_POOL_SIZE = 1 << 22
STAND_IN_TOKENIZER = "stand-in byte-level BPE (vocab 384): sequence lengths differ from the " \
                     "model's own tokenizer"


def is_config_model(name: str) -> bool:
    """Whether ``name`` asks for a model built from a config (``config:…``)."""
    return name.strip().startswith(PREFIX)


def shipped_config(name: str) -> Path:
    """The file of a shipped config (``llama-3.2-1b`` …)."""
    return Path(__file__).with_name("configs") / f"{name}.json"


def read_config(ref: str) -> tuple[Any, str]:
    """The transformers config that ``config:REF`` names and where it was read: a shipped
    name, a ``config.json`` file (or a folder holding one), or a hub id (only its config is
    downloaded). Anything else is a `UserError`."""
    ref = ref.strip()
    if ref in CONFIGS:
        path = shipped_config(ref)
        return _from_dict(_read_json(path), ref), str(path)
    path = Path(ref).expanduser()
    if path.is_dir():
        path = path / "config.json"
    if path.is_file():
        return _from_dict(_read_json(path), ref), str(path)
    if _HUB_ID.match(ref):
        return _from_hub(ref), ref
    known = ", ".join(CONFIGS)
    raise UserError(f"config:{ref}: not a shipped config ({known}), a config.json file or "
                    "folder, or a hub id (ORG/NAME)")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"config:{path}: not a readable JSON config ({first_line(exc)})") from None
    if not isinstance(data, dict):
        raise UserError(f"config:{path}: expected a JSON object")
    return data


def _from_dict(data: dict[str, Any], ref: str) -> Any:
    from transformers import AutoConfig

    fields = {k: v for k, v in data.items() if k not in ("torch_dtype", "dtype")}
    model_type = fields.pop("model_type", None)
    if not isinstance(model_type, str):
        raise UserError(f"config:{ref}: the config has no model_type")
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"config:{ref}: {first_line(exc)}") from None


def _from_hub(ref: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref)
    except (OSError, ValueError) as exc:
        raise UserError(f"config:{ref}: cannot read the config from the hub "
                        f"({first_line(exc)})") from None


def load_config_model(ref: str, kind: ModelKind, num_labels: int, seed: int) -> Any:
    """``config:REF`` as a `LoadedModel` with random weights (float32, on the CPU)."""
    from peftbench.engine.models import ENCODER_TYPES, LoadedModel, ensure_pad_token

    config, where = read_config(ref)
    if kind == "causal-lm" and config.model_type in ENCODER_TYPES:
        raise UserError(f"model 'config:{ref}' is an encoder ({config.model_type}); use it "
                        "with a classification task (e.g. --task sst2)")
    tokenizer, tokenizer_note = _tokenizer(ref, where, config)
    model = build_random(config, kind, num_labels, seed)
    ensure_pad_token(tokenizer, model)
    info = {"source": "config", "path": where, "model_type": config.model_type,
            "random_weights": True, "tokenizer": tokenizer_note,
            "num_parameters": sum(p.numel() for p in {id(p): p for p in
                                                      model.parameters()}.values())}
    return LoadedModel(model, tokenizer, kind, PREFIX + ref, "config", info)


def _tokenizer(ref: str, where: str, config: Any) -> tuple[Any, str]:
    """The model's own tokenizer beside its config (folder or hub id), else the stand-in."""
    from peftbench.engine.models import tiny_tokenizer

    own = _own_tokenizer(ref, where)
    if own is not None:
        return own
    tokenizer = tiny_tokenizer()
    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and vocab < len(tokenizer):
        raise UserError(f"config:{ref}: vocab_size {vocab} is smaller than the stand-in "
                        f"tokenizer's {len(tokenizer)} tokens (and no tokenizer was found "
                        "beside the config)")
    return tokenizer, STAND_IN_TOKENIZER


def _own_tokenizer(ref: str, where: str) -> tuple[Any, str] | None:
    if ref in CONFIGS:
        return None
    source = str(Path(where).parent) if Path(where).is_file() else where
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source), f"the model's own ({source})"
    except Exception:  # no tokenizer files there, or the hub unreachable: the stand-in
        return None


def build_random(config: Any, kind: ModelKind, num_labels: int, seed: int) -> nn.Module:
    """The architecture of ``config`` in float32 with seeded random weights (normal, std
    ``initializer_range``, norms at one, biases at zero), built without per-weight init."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if kind != "causal-lm":
        config = config.__class__(**{**config.to_dict(), "num_labels": num_labels})
    auto = AutoModelForCausalLM if kind == "causal-lm" else AutoModelForSequenceClassification
    with params_on_meta():
        model = auto.from_config(config, dtype=torch.float32)
    if any(b.is_meta for b in model.buffers()):  # built lazily by this transformers: no shortcut
        torch.manual_seed(seed)
        return auto.from_config(config, dtype=torch.float32).float()
    materialize(model, float(getattr(config, "initializer_range", 0.02) or 0.02), seed)
    return model.float()


@contextmanager
def params_on_meta() -> Iterator[None]:
    """Create every module's parameters on the meta device (buffers stay real: rotary
    frequencies and the like are computed as usual), so that no weight is initialised."""
    original = nn.Module.register_parameter

    def register(module: nn.Module, name: str, param: nn.Parameter | None) -> None:
        original(module, name, param)
        if param is not None and not param.is_meta:
            module._parameters[name] = nn.Parameter(param.to("meta"),
                                                    requires_grad=param.requires_grad)

    nn.Module.register_parameter = register  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = original  # type: ignore[method-assign]


def materialize(model: nn.Module, std: float, seed: int) -> None:
    """Give every meta parameter real storage, filled from one seeded pool of normal values
    (``std``); norm weights are ones, biases zeros. Shared (tied) parameters stay shared."""
    pool = torch.randn(_POOL_SIZE, generator=torch.Generator().manual_seed(seed)) * std
    made: dict[int, nn.Parameter] = {}
    start = 0
    for module in model.modules():
        for name, param in list(module._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in made:
                data = torch.empty(param.shape, dtype=param.dtype)
                start = _fill(data, _constant(module, name, param), pool, start)
                made[id(param)] = nn.Parameter(data, requires_grad=param.requires_grad)
            module._parameters[name] = made[id(param)]


def _constant(module: nn.Module, name: str, param: torch.Tensor) -> float | None:
    """The constant a parameter starts at (1 for a norm's weight, 0 for a bias), else None."""
    if name == "bias":
        return 0.0
    if param.dim() == 1 and "norm" in type(module).__name__.lower():
        return 1.0
    return None


def _fill(data: torch.Tensor, constant: float | None, pool: torch.Tensor, start: int) -> int:
    """Fill ``data`` with ``constant``, or with the pool's values from ``start`` on (wrapping
    around); returns where the next parameter starts in the pool."""
    if constant is not None:
        data.fill_(constant)
        return start
    flat, done, size = data.view(-1), 0, pool.numel()
    while done < flat.numel():
        take = min(flat.numel() - done, size - start)
        flat[done:done + take].copy_(pool[start:start + take])
        done += take
        start = (start + take) % size
    return (start + 7919) % size  # the next parameter does not repeat this one's values
