"""What the engine needs from a technique: build the adapted model, its optimizer, its hooks.

A `Method` is one entry of the catalog. The training loop calls, in order:
``build`` (wrap the base model), ``make_optimizer``, ``after_step`` after every optimizer step
(a no-op for most techniques; Delta-LoRA updates frozen weights there), and ``save`` at the end.
``load`` puts a saved adapter back on a fresh base model.

This module imports neither torch nor PEFT at import time: listing the catalog must stay fast.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from peftbench.errors import UserError, first_line

if TYPE_CHECKING:
    import torch
    from torch import nn

ModelKind = Literal["causal-lm", "seq-cls", "image-gen"]
#: the kinds of language models every technique serves unless it says otherwise; an image
#: model (a diffusion transformer) is served by what adapts its layers (`image_gen_problem`)
MODEL_KINDS: tuple[ModelKind, ...] = ("causal-lm", "seq-cls")

#: attention projections by model family: the default targets, the same for every technique
ATTENTION_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "query", "key", "value"]

#: a model-aware default: (config fields, model, keys the user set) -> fields to use
Fitter = Callable[[dict[str, Any], Any, set[str]], dict[str, Any]]

#: attribute of a built model holding the peftbench-only options of its technique
OPTIONS_ATTR = "peftbench_options"

#: PEFT types whose prompts are key/value prefixes handed to the model as ``past_key_values``
#: (PEFT's ``peft_type in (PeftType.PREFIX_TUNING, PeftType.CARTRIDGE)`` in ``peft_model.py``)
KV_PREFIX_TYPES = ("PREFIX_TUNING", "CARTRIDGE")


@dataclass
class Method:
    """A technique: its name, default PEFT config fields and default learning rate.

    ``options`` are settings that are not PEFT config fields (an optimizer's ratio, a warm-up);
    ``--set`` accepts them like config fields. ``fit`` adapts sizes (block sizes, ranks,
    frequencies) to the target model so that the default config is valid on any model.
    """

    name: str
    peft_type: str | None  # PEFT's PeftType value; None for techniques outside PEFT
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    default_lr: float = 2e-4
    lr_source: str = ""
    targets_modules: bool = True  # False for prompt-based techniques
    kinds: tuple[ModelKind, ...] = MODEL_KINDS
    not_for: dict[str, str] = field(default_factory=dict)  # kind -> why it does not apply
    fit: Fitter | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: importable modules it needs beyond the base install: ``module``, ``module:package`` or
    #: ``module:package:extra`` (then the missing-package line names peftbench's extra)
    requires: tuple[str, ...] = ()
    family: str = "peft"
    curated: bool = True
    merge_needs_bias: bool = False  # merging folds into the adapted layers' biases
    #: capabilities (keys of `capabilities.CAPABILITY_KEYS`) of an entry that peftbench's
    #: capability table does not list, such as a technique from another package; they override
    #: those of its PEFT type (see `capabilities.method_capabilities`)
    capabilities: dict[str, Any] = field(default_factory=dict)
    #: where the technique, as it runs here, departs from its definition or from the rules
    #: every other technique follows (what tests/conformance found and could not fix), and why
    caveat: str = ""
    #: the technique trains the base model's own weights (full or partial fine-tuning, with
    #: whatever optimizer): there is no adapter to merge, the checkpoint is the weights (or the
    #: changed subset), and an export to LoRA factorizes trained − base
    trains_base_weights: bool = False

    # ------------------------------------------------------------------ applicability

    def why_not(self, kind: ModelKind, probe: bool = True) -> str | None:
        """Why this technique cannot run on a ``kind`` model here (None when it can).

        ``probe=False`` skips hardware probes (they import torch), for a fast listing.
        """
        if kind == "image-gen":
            reason = image_gen_problem(self)
            if reason:
                return reason
        elif kind not in self.kinds:
            return self.not_for.get(kind, f"{self.name} does not support {kind} models")
        import importlib.util

        for requirement in self.requires:
            module, _, rest = requirement.partition(":")
            package, _, extra = rest.partition(":")
            if importlib.util.find_spec(module) is None:
                install = f"pip install 'peftbench[{extra}]'" if extra else \
                    f"pip install {package or module}"
                return f"needs the package {package or module} ({install})"
        return self.unavailable_reason() if probe else None

    def unavailable_reason(self) -> str | None:
        """Why the technique cannot run on this machine at all (None when it can)."""
        return None

    def why_not_on(self, model: nn.Module, kind: ModelKind) -> str | None:
        """Why this technique cannot train this very ``model`` (None when it can).

        `why_not` answers for a kind of model; this looks at the model itself (its forward's
        parameters), so the answer follows the installed transformers and PEFT releases.
        """
        if self.peft_type in KV_PREFIX_TYPES:
            return kv_prefix_problem(model, kind)
        return None

    # ------------------------------------------------------------------ config and build

    def split_overrides(self, overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """Separate peftbench options from PEFT config fields; options get their defaults."""
        options = dict(self.options)
        fields = {}
        for key, value in _strip_meta(overrides).items():
            if key in self.options:
                options[key] = _check_option(self.name, key, value, self.options[key])
            else:
                fields[key] = value
        return fields, options

    def config_fields(
        self, targets: str | None, overrides: dict[str, Any], model: Any = None
    ) -> dict[str, Any]:
        """The config fields: defaults, the shared targets, ``overrides``, then model fitting."""
        fields = copy.deepcopy(self.defaults)
        if self.targets_modules and "target_modules" not in overrides:
            fields["target_modules"] = resolve_targets(targets)
        fields.update(overrides)
        if self.fit is not None and model is not None:
            fields = self.fit(fields, model, set(overrides))
        return fields

    def peft_config(
        self, kind: ModelKind, targets: str | None, overrides: dict[str, Any], model: Any = None
    ) -> Any:
        """The PEFT config for this technique with ``overrides`` applied on the defaults."""
        from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

        cls = PEFT_TYPE_TO_CONFIG_MAPPING[self.peft_type]
        fields, _ = self.split_overrides(overrides)
        fields = self.config_fields(targets, fields, model)
        fields["task_type"] = {"causal-lm": "CAUSAL_LM", "seq-cls": "SEQ_CLS"}.get(kind)
        check_fields(self.name, cls, fields)
        try:
            return cls(**fields)
        except (TypeError, ValueError) as exc:
            raise UserError(f"invalid {self.name} config: {first_line(exc)}") from None

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Wrap ``model`` with this technique; only the adapter's parameters stay trainable."""
        from peft import get_peft_model

        self.check_applies(kind)
        reason = self.why_not_on(model, kind)
        if reason:
            raise UserError(f"{self.name} cannot be applied to this model: {reason}")
        config = self.peft_config(kind, targets, overrides, model)
        _, options = self.split_overrides(overrides)
        try:
            peft_model = get_peft_model(model, config)
        except Exception as exc:
            if not is_peft_refusal(exc):
                raise  # a bug (PEFT's, peftbench's, torch's): the run records it as failed
            raise UserError(f"{self.name} cannot be applied to this model: "
                            f"{first_line(exc)}") from None
        setattr(peft_model, OPTIONS_ATTR, options)
        return peft_model

    def check_applies(self, kind: ModelKind) -> None:
        """Raise a `UserError` saying why when the technique cannot run on a ``kind`` model."""
        reason = self.why_not(kind)
        if reason:
            raise UserError(f"{self.name} cannot be used here: {reason}")

    # ------------------------------------------------------------------ training hooks

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters, in its fastest implementation on their device
        (`adamw_implementation`); overridden by optimizer-based techniques."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay,
                                 **adamw_implementation(params))

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step; a no-op unless the technique needs it."""

    # ------------------------------------------------------------------ persistence

    def save(self, model: nn.Module, directory: Path) -> None:
        """Save the trained adapter (what a user would ship) to ``directory``."""
        model.save_pretrained(str(directory))

    def load(self, model: nn.Module, kind: ModelKind, directory: Path) -> nn.Module:
        """Put the adapter saved by `save` in ``directory`` back on the fresh base ``model``."""
        from peft import PeftModel

        reason = self.why_not_on(model, kind)
        if reason:
            raise UserError(f"{self.name} cannot be applied to this model: {reason}")
        try:
            return PeftModel.from_pretrained(model, str(directory))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise UserError(f"cannot load the {self.name} adapter in {directory}: "
                            f"{first_line(exc)}") from None

    def can_merge(self, model: nn.Module) -> bool:
        """Whether the trained adapter can be folded into the base weights."""
        from peftbench.methods.capabilities import method_capabilities

        caps = method_capabilities(self)
        if not (caps.get("merge", True) and hasattr(model, "merge_and_unload")):
            return False
        if self.merge_needs_bias:
            from peft.tuners.tuners_utils import BaseTunerLayer

            return all(getattr(m.get_base_layer(), "bias", None) is not None
                       for m in model.modules() if isinstance(m, BaseTunerLayer))
        return True

    def merge(self, model: nn.Module) -> nn.Module:
        """The base model with the adapter folded in (call only when `can_merge`)."""
        return model.merge_and_unload()


#: exception types PEFT raises on purpose to refuse a config or a model it cannot adapt
PEFT_REFUSAL_TYPES: tuple[type[BaseException], ...] = (
    ValueError, TypeError, NotImplementedError, ImportError, AttributeError)


def adamw_implementation(params: list[Any]) -> dict[str, bool]:
    """Keyword arguments for AdamW's fastest implementation over ``params``: the fused kernel
    where torch has one (floating-point parameters all on one CPU or CUDA device; on a 2-core
    CPU it steps LoRA's parameters about 4x faster than the per-tensor loop, see
    benchmarks/bench_throughput.py), else torch's own choice. The fused step differs from the
    loop's only in rounding (~1e-8) and is deterministic."""
    devices = {p.device.type for p in params}
    if params and len(devices) == 1 and devices <= {"cpu", "cuda"} and all(
            p.is_floating_point() for p in params):
        return {"fused": True}
    return {}


def is_peft_refusal(exc: BaseException) -> bool:
    """Whether ``exc`` is PEFT refusing a config or a model (the user's to fix), not a bug.

    That is an exception of a `PEFT_REFUSAL_TYPES` type raised by a ``raise`` statement in
    PEFT's own code: PEFT checks configs and target layers and raises with a message saying
    what is wrong ("Target modules ... not found", "... is not supported"). The same types
    raised anywhere else (inside torch or transformers, by Python itself on a bad operation) or
    other types (``KeyError``, ``RuntimeError``) are bugs; so is PEFT's generic
    ``AttributeError`` for a missing module attribute.
    """
    import traceback

    if not isinstance(exc, PEFT_REFUSAL_TYPES) or exc.__traceback__ is None:
        return False
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames or not _in_peft(frames[-1].filename):
        return False
    if not (frames[-1].line or "").lstrip().startswith("raise"):
        return False
    return not (isinstance(exc, AttributeError) and "has no attribute" in str(exc))


def _in_peft(filename: str) -> bool:
    """Whether ``filename`` is a source file of the installed PEFT package."""
    import importlib.util

    spec = importlib.util.find_spec("peft")
    roots = list(spec.submodule_search_locations or []) if spec else []
    here = Path(filename).resolve()
    return any(here.is_relative_to(Path(root).resolve()) for root in roots)


def image_gen_problem(method: Method) -> str | None:
    """Why ``method`` cannot adapt a diffusion transformer (None when it can): an image model
    has no token prompt to extend and no decoder blocks or LM head, so the contestants are
    the techniques that adapt layers (every one whose layers include ``Linear``) and full
    fine-tuning; those made for language models alone keep their reason."""
    from peftbench.methods.capabilities import method_capabilities

    if not method.kinds:
        return next(iter(method.not_for.values()), f"{method.name} applies to no model here")
    if "seq-cls" not in method.kinds:  # built for decoder LMs (blocks, head, embeddings)
        why = method.not_for.get("seq-cls", "made for causal language models")
        return f"made for causal language models ({why})"
    caps = method_capabilities(method)
    if caps.get("prompt_only"):
        return "prompt-based: a diffusion transformer has no token prompt to extend"
    if method.targets_modules and "Linear" not in caps.get("layers", []):
        return "adapts no Linear layer (an image model is adapted through its Linear layers)"
    return None


def kv_prefix_problem(model: Any, kind: ModelKind) -> str | None:
    """Why PEFT cannot hand key/value prefixes to ``model`` (None when it can).

    For a classification model PEFT passes the prefixes as ``past_key_values`` only to a
    forward that names that parameter: the model's own, else its backbone's (its first child
    that is a transformers model), and otherwise fails at the first forward pass. This applies
    the same rule before building. (For causal LMs PEFT passes them unconditionally.)
    """
    if kind != "seq-cls":
        return None
    if _takes(model, "past_key_values"):
        return None
    backbone = _backbone(model)
    if _takes(backbone, "past_key_values"):
        return None
    renamed = " (this transformers release names it 'cache')" if _takes(backbone, "cache") else ""
    return ("PEFT hands a classification model its key/value prefixes as past_key_values, "
            f"which {type(backbone).__name__}.forward does not take{renamed}")


def _backbone(model: Any) -> Any:
    """The transformers model inside ``model`` as PEFT finds it (else ``model`` itself)."""
    from transformers import PreTrainedModel

    for child in model.children():
        if isinstance(child, PreTrainedModel):
            return child
    return model


def _takes(module: Any, parameter: str) -> bool:
    import inspect

    try:
        return parameter in inspect.signature(module.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return False


def resolve_targets(targets: str | None) -> list[str] | str:
    """Target modules: attention projections by default, ``all-linear`` to widen, or a list."""
    if targets is None or targets == "attention":
        return list(ATTENTION_TARGETS)
    if targets == "all-linear":
        return "all-linear"
    return [t.strip() for t in targets.split(",") if t.strip()]


def check_fields(method: str, config_cls: type, fields: dict[str, Any]) -> None:
    """Reject unknown config keys and values of the wrong simple type, in one line."""
    known = {f.name: f for f in dataclasses.fields(config_cls)}
    for key, value in fields.items():
        if key not in known:
            raise UserError(f"unknown {method} config field '{key}' "
                            f"(not a field of PEFT's {config_cls.__name__})")
        expected = _SIMPLE_TYPES.get(str(known[key].type).replace(" ", ""))
        if expected and value is not None and not _is_instance(value, expected):
            raise UserError(f"invalid {method} config: {key}={value!r} is not "
                            f"{known[key].type}")


_SIMPLE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,), "float": (int, float), "bool": (bool,), "str": (str,),
    "Optional[int]": (int,), "Optional[float]": (int, float), "Optional[bool]": (bool,),
    "Optional[str]": (str,), "int|None": (int,), "float|None": (int, float),
}


def _is_instance(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def _check_option(method: str, key: str, value: Any, default: Any) -> Any:
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if default is not None and not isinstance(value, kind):
        raise UserError(f"invalid {method} option: {key}={value!r} is not a {kind.__name__}")
    return value


def _strip_meta(overrides: dict[str, Any]) -> dict[str, Any]:
    """Drop fields of a saved adapter_config.json that describe, rather than configure, it."""
    skip = {"peft_type", "task_type", "base_model_name_or_path", "revision", "auto_mapping",
            "inference_mode", "peft_version"}
    return {k: v for k, v in overrides.items() if k not in skip}


