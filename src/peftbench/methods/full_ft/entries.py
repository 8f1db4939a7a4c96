"""The catalog entries of the full-parameter and partial fine-tuning techniques.

Each entry is a `WeightTrainingMethod`: its config fields are its own (the ``defaults``; ``--set``
overrides them, type-checked against the default's type), `build` marks the weights it trains,
`make_optimizer` builds its package's optimizer (imported only then), and `save`/`load` ship the
whole model or only the trained tensors. Importing this module imports neither torch nor the
packages, so listing the catalog stays fast.

Defaults and learning rates come from the packages and from LLaMA-Factory, which offers these
techniques next to LoRA (``src/llamafactory/hparams/finetuning_args.py`` for the defaults,
``examples/extras/<technique>/*.yaml`` for the learning rates).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from peftbench.errors import UserError
from peftbench.methods.base import OPTIONS_ATTR, Method, ModelKind, _check_option

if TYPE_CHECKING:
    import torch
    from torch import nn

#: the optional extra that installs every package these techniques need
EXTRA = "full-ft"
LLAMA_FACTORY = "LLaMA-Factory examples/extras/"
LLAMA_FACTORY_ARGS = "LLaMA-Factory hparams/finetuning_args.py"
DECODER_ONLY = ("Adam-mini partitions parameters into blocks by decoder parameter names (q_proj, "
                "mlp, embed, lm_head); an encoder's names (BERT's output.LayerNorm) break it")
LAYERWISE_CAVEAT = ("updates each weight during the backward pass and frees its gradient at "
                    "once: the global gradient-norm clipping every other technique gets cannot "
                    "apply, and with gradient accumulation every micro-batch is a step")
LOMO_CAVEAT = ("fuses the update into the backward pass (LOMO): the global gradient-norm clipping "
               "every other technique gets cannot apply (LOMO's own remedy, a second backward "
               "pass for the norm, does not fit the shared training loop), and with gradient "
               "accumulation every micro-batch is a step")
BADAM_CAVEAT = ("the badam package keeps an fp32 master copy of the active block (a duplicate "
                "when the weights are fp32, as here) and switches blocks after steps N−1, "
                "2N−1, …, so the first block trains one step fewer than the others")
ADAM_MINI_CAVEAT = "Adam-mini gives norm scales and biases no weight decay (its own rule)"
CUDA_ONLY = "needs a CUDA GPU: {why}"


def _requires(module: str, package: str) -> tuple[str, ...]:
    return (f"{module}:{package}:{EXTRA}",)


@dataclass
class WeightTrainingMethod(Method):
    """A technique that trains the base model's own weights with its own optimizer.

    ``defaults`` are its config fields. ``subset_checkpoint`` ships only the tensors that were
    trainable at some point of the run (all others are the base model's, bit for bit);
    otherwise the checkpoint is the whole model, as for full fine-tuning.
    """

    name: str = ""
    peft_type: str | None = None
    targets_modules: bool = False
    family: str = "full-ft"
    trains_base_weights: bool = True
    subset_checkpoint: bool = False
    #: why the technique cannot run without a CUDA GPU ("" when it can)
    cuda_only: str = ""
    capabilities: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ config

    def settings(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The config fields: defaults with ``overrides`` applied, each checked against the
        default's type; an unknown field is a `UserError` listing the known ones."""
        fields, _ = self.split_overrides(overrides)
        out = dict(self.defaults)
        for key, value in fields.items():
            if key not in self.defaults:
                known = ", ".join(sorted(self.defaults)) or "none"
                raise UserError(f"unknown {self.name} config field '{key}' (fields: {known})")
            out[key] = _check_field(self.name, key, value, self.defaults[key])
        self.check_settings(out)
        return out

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Reject values out of range (a `UserError`); the base accepts everything."""

    def unavailable_reason(self) -> str | None:
        """Why the technique cannot run here: a CUDA-only package without a CUDA device."""
        if not self.cuda_only:
            return None
        import torch

        return None if torch.cuda.is_available() else CUDA_ONLY.format(why=self.cuda_only)

    # ------------------------------------------------------------------ build

    def build(
        self, model: nn.Module, kind: ModelKind, targets: str | None, overrides: dict[str, Any]
    ) -> nn.Module:
        """Mark the weights the technique trains (all of them unless it says otherwise) and
        keep the config on the model for `make_optimizer` and `save`."""
        self.check_applies(kind)
        settings = self.settings(overrides)
        from peftbench.methods.full_ft.checkpoint import TRAINED_ATTR
        from peftbench.methods.full_ft.layers import unique_parameters

        self.select_trainable(model, kind, settings)
        setattr(model, OPTIONS_ATTR, settings)
        trained = {name for name, p in unique_parameters(model) if p.requires_grad}
        if not trained:
            raise UserError(f"{self.name}: its config selects no weight of this model")
        setattr(model, TRAINED_ATTR, trained)
        return model

    def select_trainable(self, model: nn.Module, kind: ModelKind,
                         settings: dict[str, Any]) -> None:
        """Make the trained weights trainable: every parameter (overridden by freeze)."""
        for param in model.parameters():
            param.requires_grad_(True)

    def make_optimizer(
        self, model: nn.Module, lr: float, weight_decay: float
    ) -> torch.optim.Optimizer:
        """The technique's optimizer over the model's weights (`build_optimizer`)."""
        import warnings

        settings = getattr(model, OPTIONS_ATTR, None) or self.settings({})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the packages' deprecation and dtype warnings
            return self.build_optimizer(model, settings, lr, weight_decay)

    def build_optimizer(self, model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float) -> torch.optim.Optimizer:
        """AdamW over the trainable weights (what freeze tuning uses)."""
        from peftbench.methods.full_ft.optimizers import adamw

        return adamw(model, lr, weight_decay)

    # ------------------------------------------------------------------ persistence

    def save(self, model: nn.Module, directory: Path) -> None:
        """The whole model, or only the tensors that were trained (``subset_checkpoint``)."""
        from peftbench.methods.full_ft.checkpoint import save_trained

        if self.subset_checkpoint:
            save_trained(model, directory, self.name)
        else:
            model.save_pretrained(str(directory))

    def load(self, model: nn.Module, kind: ModelKind, directory: Path) -> nn.Module:
        """The trained model from the fresh base ``model`` and a checkpoint of `save`."""
        from peftbench.methods.full_ft.checkpoint import is_subset, load_trained

        if is_subset(directory):
            return load_trained(model, directory, self.name)
        try:
            return type(model).from_pretrained(str(directory), dtype=model.dtype)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load the {self.name} model in {directory}: {exc}") from None

    def can_merge(self, model: nn.Module) -> bool:
        """Nothing to merge: the trained weights are the model."""
        return False


def _check_field(method: str, key: str, value: Any, default: Any) -> Any:
    """``value`` checked against the default's type; module lists take a string or a list."""
    if key.endswith("modules"):
        if isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value)):
            return value
        raise UserError(f"invalid {method} config: {key}={value!r} is not a name or a list")
    if isinstance(default, int) and not isinstance(default, bool) and isinstance(value, float):
        raise UserError(f"invalid {method} config: {key}={value!r} is not an int")
    return _check_option(method, key, value, default)


# ---------------------------------------------------------------------- projected AdamW


@dataclass
class ProjectedAdamMethod(WeightTrainingMethod):
    """GaLore or APOLLO: AdamW with moments kept in a low-rank projection of each selected
    linear weight's gradient (the other weights: plain AdamW, in the same optimizer)."""

    algorithm: str = "galore"  # "galore", "galore-8bit" or "apollo"
    layerwise: bool = False

    def check_settings(self, settings: dict[str, Any]) -> None:
        """Rank and projection interval must be positive."""
        for key in ("rank", "update_proj_gap"):
            if settings[key] < 1:
                raise UserError(f"invalid {self.name} config: {key} must be >= 1")

    def build_optimizer(self, model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float) -> torch.optim.Optimizer:
        """The package's projected AdamW (per weight in the backward pass when layer-wise)."""
        from peftbench.methods.full_ft.projected import projected_optimizer

        return projected_optimizer(model, settings, lr, weight_decay, self.algorithm,
                                   self.layerwise)


# ---------------------------------------------------------------------- BAdam


@dataclass
class BlockAdamMethod(WeightTrainingMethod):
    """BAdam: Adam on one block (a decoder layer) at a time, switching every N steps; the
    classifier head of a sequence classifier stays trainable throughout."""

    subset_checkpoint: bool = True

    def check_settings(self, settings: dict[str, Any]) -> None:
        """A known switch mode and a positive interval."""
        if settings["switch_mode"] not in ("ascending", "descending", "random", "fixed"):
            raise UserError(f"invalid {self.name} config: switch_mode must be ascending, "
                            "descending, random or fixed")
        if settings["switch_every"] < 1:
            raise UserError(f"invalid {self.name} config: switch_every must be >= 1")

    def build_optimizer(self, model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float) -> torch.optim.Optimizer:
        """badam's BlockOptimizer around AdamW, one block per decoder layer."""
        from peftbench.methods.full_ft.blocks import block_optimizer

        return block_optimizer(model, settings, lr, weight_decay)


# ---------------------------------------------------------------------- Adam-mini


@dataclass
class AdamMiniMethod(WeightTrainingMethod):
    """Adam-mini: one second-moment value per block (attention head, neuron, tensor)."""

    def build_optimizer(self, model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float) -> torch.optim.Optimizer:
        """adam-mini's optimizer with the model's width and head counts."""
        from peftbench.methods.full_ft.optimizers import adam_mini

        return adam_mini(model, lr, weight_decay)


# ---------------------------------------------------------------------- LOMO / AdaLomo


@dataclass
class FusedUpdateMethod(WeightTrainingMethod):
    """LOMO (SGD) or AdaLomo (factored second moments): each weight is updated as soon as its
    gradient is computed, so whole-model gradients never exist."""

    adaptive: bool = False

    def build_optimizer(self, model: nn.Module, settings: dict[str, Any], lr: float,
                        weight_decay: float) -> torch.optim.Optimizer:
        """lomo-optim's optimizer, its update fused into the backward pass."""
        from peftbench.methods.full_ft.fused import fused_optimizer

        return fused_optimizer(model, lr, weight_decay, adaptive=self.adaptive)


# ---------------------------------------------------------------------- freeze tuning


@dataclass
class FreezeMethod(WeightTrainingMethod):
    """Freeze tuning (LLaMA-Factory's ``freeze``): only the last N layers (the first N for
    N < 0), optionally only some of their modules, plus extra modules, trained with AdamW."""

    subset_checkpoint: bool = True

    def check_settings(self, settings: dict[str, Any]) -> None:
        """At least one layer."""
        if settings["trainable_layers"] == 0:
            raise UserError(f"invalid {self.name} config: trainable_layers must not be 0 "
                            "(N > 0: the last N layers, N < 0: the first N)")

    def select_trainable(self, model: nn.Module, kind: ModelKind,
                         settings: dict[str, Any]) -> None:
        """Freeze everything but the chosen layers' modules, the extra modules and a
        classifier's head."""
        from peftbench.methods.full_ft.layers import freeze_selection

        chosen = freeze_selection(model, kind, settings)
        for name, param in model.named_parameters():
            param.requires_grad_(name in chosen)


# ---------------------------------------------------------------------- the entries

GALORE = {"rank": 16, "update_proj_gap": 200, "scale": 2.0, "proj_type": "std",
          "target_modules": "all-linear"}
APOLLO = {"rank": 16, "update_proj_gap": 200, "scale": 32.0, "proj": "random",
          "proj_type": "std", "scale_type": "channel", "target_modules": "all-linear"}
APOLLO_MINI = {**APOLLO, "rank": 1, "scale": 128.0, "scale_type": "tensor"}
GALORE_LR = (1e-4, LLAMA_FACTORY + "galore/llama3_full_sft.yaml (defaults: "
             + LLAMA_FACTORY_ARGS + ")")
FULL_LR = 1e-5


def _lr(example: str) -> tuple[float, str]:
    return FULL_LR, f"{LLAMA_FACTORY}{example} (defaults: {LLAMA_FACTORY_ARGS})"


def _projected(name: str, description: str, defaults: dict[str, Any], lr: tuple[float, str],
               algorithm: str, requires: tuple[str, ...], **extra: Any) -> ProjectedAdamMethod:
    return ProjectedAdamMethod(name=name, description=description, defaults=dict(defaults),
                               default_lr=lr[0], lr_source=lr[1], algorithm=algorithm,
                               requires=requires, **extra)


def full_ft_methods() -> list[Method]:
    """Every entry of this family (the catalog registers them with its own)."""
    galore = _requires("galore_torch", "galore-torch")
    apollo = _requires("apollo_torch", "apollo-torch")
    return [
        _projected("galore", "GaLore: full-parameter AdamW whose moments live in a rank-r "
                   "projection of each linear weight's gradient (Zhao et al., 2024); "
                   "galore-torch.", GALORE, GALORE_LR, "galore", galore),
        _projected("galore_layerwise", "GaLore, layer-wise: each weight updated during the "
                   "backward pass and its gradient freed at once; galore-torch.", GALORE,
                   GALORE_LR, "galore", galore, layerwise=True, caveat=LAYERWISE_CAVEAT),
        _projected("galore_8bit", "GaLore with 8-bit moments (bitsandbytes); galore-torch.",
                   GALORE, GALORE_LR, "galore-8bit",
                   galore + ("bitsandbytes:bitsandbytes:" + EXTRA,),
                   cuda_only="galore-torch's 8-bit GaLore calls torch.cuda.synchronize() on "
                   "every step"),
        _projected("apollo", "APOLLO: AdamW-like memory of SGD: moments of a random rank-r "
                   "projection scale the raw gradient per channel (Zhu et al., 2025); "
                   "apollo-torch.", APOLLO, _lr("apollo/llama3_full_sft.yaml"), "apollo",
                   apollo),
        _projected("apollo_mini", "APOLLO-Mini: APOLLO at rank 1 with one scaling factor per "
                   "tensor (SGD-like memory); apollo-torch.", APOLLO_MINI,
                   (FULL_LR, "as APOLLO: " + LLAMA_FACTORY + "apollo/llama3_full_sft.yaml"),
                   "apollo", apollo),
        BlockAdamMethod(
            name="badam", description="BAdam: block-coordinate Adam, one decoder layer "
            "trainable at a time, switching every N steps (Luo et al., 2024); badam.",
            defaults={"switch_every": 50, "switch_mode": "descending"},
            default_lr=_lr("badam/llama3_full_sft.yaml")[0],
            lr_source=_lr("badam/llama3_full_sft.yaml")[1]
            + "; switch mode: badam's own default", requires=_requires("badam", "badam"),
            caveat=BADAM_CAVEAT),
        AdamMiniMethod(
            name="adam_mini", description="Adam-mini: Adam with one second-moment value per "
            "block (attention head, neuron, tensor) instead of per weight (Zhang et al., "
            "2024); adam-mini.", defaults={},
            default_lr=_lr("adam_mini/qwen2_full_sft.yaml")[0],
            lr_source=_lr("adam_mini/qwen2_full_sft.yaml")[1],
            requires=_requires("adam_mini", "adam-mini"), kinds=("causal-lm",),
            not_for={"seq-cls": DECODER_ONLY}, caveat=ADAM_MINI_CAVEAT),
        FusedUpdateMethod(
            name="lomo", description="LOMO: plain SGD fused into the backward pass, so no "
            "whole-model gradient and no optimizer state (Lv et al., 2023); lomo-optim.",
            defaults={}, default_lr=0.03,
            lr_source="LOMO's own config (OpenLMLab/LOMO lomo/config/args_lomo.yaml)",
            requires=_requires("lomo_optim", "lomo-optim"), caveat=LOMO_CAVEAT),
        FusedUpdateMethod(
            name="adalomo", description="AdaLomo: LOMO with factored second moments per row and "
            "column (Lv et al., 2023); lomo-optim.", defaults={}, default_lr=5e-4,
            lr_source="AdaLomo's own instruction-tuning script (OpenLMLab/LOMO "
            "adalomo/instruction-tuning/train.py)", adaptive=True,
            requires=_requires("lomo_optim", "lomo-optim"), caveat=LOMO_CAVEAT,
            cuda_only="lomo-optim's AdaLomo allocates its state with .cuda()"),
        FreezeMethod(
            name="freeze", description="Freeze tuning: only the last N layers trainable (or "
            "chosen modules of them), AdamW; LLaMA-Factory's freeze type.",
            defaults={"trainable_layers": 2, "trainable_modules": "all", "extra_modules": []},
            default_lr=1e-4, lr_source=LLAMA_FACTORY + "llama_pro/llama3_freeze_sft.yaml "
            "(defaults: " + LLAMA_FACTORY_ARGS + ")"),
    ]
