"""Ship the winner: turn a finished run's adapter into a plain LoRA checkpoint (or a merged
model) that LoRA-only servers load, and prove that it still works.

    result JSON ─ re-create the task and the base model from the run's spec ─ load the original
    adapter (``Method.load``) and score it on test ─ merge it: the weight update of every changed
    Linear layer, ΔW = W_merged − W_base ─ LoRA factors ─ write ``adapter_config.json`` +
    ``adapter_model.safetensors`` to a temp folder ─ base model + exported LoRA
    (``PeftModel.from_pretrained``), scored on the same test set ─ ``export_report.json`` ─
    rename the folder into place

Two ways to the factors:

- PEFT's own ``convert_to_lora`` when every adapted layer supports it (LoRA, LoHa, LoKr, VeRA,
  FourierFT, …) *and* what it factorizes (each layer's ``get_delta_weight``) is the update the
  merged model really carries. For DoRA it is not (the magnitude is left out): when PEFT's
  factors are worse than the truncated SVD of the measured ΔW allows, the general path is used;
- the general path for every other technique that changes weights (Delta-LoRA, full fine-tuning,
  OFT, BOFT, IA³, …): truncated SVD of ΔW, ``B = U·√S``, ``A = √S·Vᵀ``.

Both bake the scaling into the factors: every layer has ``lora_alpha = r`` (scaling 1). The rank
is an integer (clamped to a layer's smaller dimension, which loses nothing) or a fraction in
(0, 1]: per layer, the smallest rank whose singular values keep that share of ΔW's energy
(Σσ²), PEFT's rule. The global ``r`` is the largest layer rank; smaller ones go in
``rank_pattern`` (with an equal ``alpha_pattern``).

Refused with a `UserError` before anything is written: prompt-based techniques (virtual tokens
or prefixes: no weight changes), techniques PEFT cannot merge (no weight update is defined),
techniques that change no Linear weight (LN tuning, trainable tokens), quantized bases.
Changes a LoRA cannot carry (norms, embeddings, biases, the LM head) are dropped and listed in
the report; the score after conversion shows what they cost. A classifier's trained head is
shipped whole (``modules_to_save``).

`vllm_compatible` checks an exported folder against what vLLM's LoRA loader enforces
(``vllm/lora/peft_helper.py``, ``vllm/lora/lora_model.py``, ``vllm/config/lora.py``):

- ``--max-lora-rank`` is one of 1, 8, 16, 32, 64, 128, 256, 320, 512 (default 16) and every
  layer's rank must be at most it: the check reports the flag value the adapter needs;
- no DoRA, no adapter bias, no ``modules_to_save`` (the newest releases accept only a
  classifier's ``score``/``classifier`` head), no PiSSA/OLoRA-style init, no layer replication;
- every tensor is ``base_model.model.<module>.lora_A.weight`` / ``lora_B.weight`` and every
  module is one of the projections vLLM's Llama-family models adapt (q/k/v/o_proj,
  gate/up/down_proj); other architectures have their own names, which the check reports rather
  than guesses;
- releases without ``rank_pattern`` support scale every layer by ``lora_alpha / r``: per-layer
  scalings must all equal it (they are all 1 here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from peftbench import experiment
from peftbench.batching import collate
from peftbench.errors import UserError
from peftbench.experiment import Prepared
from peftbench.progress import make_progress
from peftbench.results import STATUS_SUCCESS, atomic_write_json, read_result, sanitize
from peftbench.spec import ExperimentSpec, parse_spec

REPORT_NAME = "export_report.json"
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
#: the values vLLM accepts for --max-lora-rank (vllm/config/lora.py: MaxLoRARanks)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
#: the projections vLLM's Llama-family models (Llama, Mistral, Qwen2, SmolLM2, …) adapt
VLLM_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: output heads: never factorized; a classifier's trained head is shipped whole
HEADS = ("lm_head", "score", "classifier")
#: test examples whose logits are compared before and after conversion
PROBE_EXAMPLES = 4
#: PEFT's factors are kept when their error is within this of the SVD optimum at their rank
PEFT_TOLERANCE = 1e-3
PREFIX = "base_model.model."
_FACTOR_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")

Rank = int | float
Mode = Literal["lora", "merged"]


# ---------------------------------------------------------------------------- user input


def parse_rank(text: str | int | float) -> Rank:
    """``16`` is a fixed rank; ``0.9`` keeps 90% of each layer's update energy (Σσ²).

    Anything else (0, negative, ``1.5``, not a number) is a `UserError`.
    """
    value: Rank
    if isinstance(text, int | float) and not isinstance(text, bool):
        value = text
    else:
        try:
            value = int(str(text).strip())
        except ValueError:
            try:
                value = float(str(text).strip())
            except ValueError:
                raise UserError(f"--rank {text!r} is not a number: give an integer rank (16) "
                                "or a fraction of the update's energy in (0, 1] (0.9)") from None
    if isinstance(value, int):
        if value < 1:
            raise UserError(f"--rank {value}: an integer rank must be at least 1")
        return value
    if not (math.isfinite(value) and 0 < value <= 1):
        raise UserError(f"--rank {value}: a fractional rank is the share of each update's "
                        "energy to keep and must be in (0, 1]; use an integer for a fixed rank")
    return value


@dataclass
class SourceRun:
    """A finished run: its result file, spec and saved adapter folder."""

    path: Path
    result: dict[str, Any]
    spec: ExperimentSpec
    adapter_dir: Path


def open_run(path: str | os.PathLike[str]) -> SourceRun:
    """Read a result file; the run must have succeeded and its adapter folder must exist."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such result file")
    result = read_result(path)
    info, run_info = result["train_info"], result["run_info"]
    if info.get("status") != STATUS_SUCCESS:
        why = (run_info.get("error_msg") or "no error recorded").splitlines()[0]
        raise UserError(f"{path}: the run did not succeed ({info.get('status')}: {why}); "
                        "there is nothing to export")
    ours = run_info.get("peftbench") or {}
    if not ours.get("spec"):
        raise UserError(f"{path}: not a peftbench result (no run_info.peftbench.spec), so its "
                        "task and model cannot be re-created")
    adapter_dir = _adapter_dir(path, ours.get("adapter_path"))
    return SourceRun(path, result, parse_spec(ours["spec"]), adapter_dir)


def _adapter_dir(result_path: Path, recorded: str | None) -> Path:
    """The recorded adapter folder, else the standard one beside the result file."""
    beside = result_path.parent / "adapters" / result_path.stem
    for candidate in ([Path(recorded)] if recorded else []) + [beside]:
        if candidate.is_dir():
            return candidate
    if not recorded:
        raise UserError(f"{result_path}: the run saved no adapter (run_info.peftbench."
                        "adapter_path is empty)")
    raise UserError(f"{result_path}: the adapter folder {recorded} is missing")


def check_exportable(method: str, mode: Mode) -> None:
    """Refuse, in one line, techniques whose adapter is not a weight update (for ``lora``
    mode: not an update of Linear layers)."""
    from peftbench.methods.capabilities import all_capabilities

    if method == "full":
        return
    caps = all_capabilities().get(method, {})
    if caps.get("prompt_only"):
        raise UserError(f"{method} is prompt-based: it learns virtual tokens or prefixes, not "
                        "a change of weights, so it cannot become LoRA or be merged "
                        "(serve it with PEFT)")
    if not caps.get("merge", False):
        raise UserError(f"{method} cannot be merged into the base weights, so it has no "
                        "weight update that LoRA or a merged model could carry")
    if mode == "lora" and "Linear" not in caps.get("layers", ["Linear"]):
        adapts = ", ".join(caps.get("layers") or []) or "no Linear"
        raise UserError(f"{method} adapts {adapts} layers, not Linear ones: a LoRA adapter "
                        "cannot carry its change (--merge can)")


def check_out(out: Path, overwrite: bool) -> None:
    """The output folder must not exist unless ``overwrite``."""
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")


# ---------------------------------------------------------------------------- re-creating the run


@dataclass
class Session:
    """The re-created run: task and base model, and the base model with the original adapter."""

    source: SourceRun
    prep: Prepared
    model: nn.Module
    base: dict[str, torch.Tensor]  # the base model's state, by name, on the CPU
    bar: Any


def load_session(source: SourceRun, bar: Any) -> Session:
    """Re-create task and base model from the spec, snapshot the base, load the adapter."""
    train = source.spec.train.model_copy(update={"forgetting_samples": 0})
    prep = experiment.prepare(source.spec.model_copy(update={"train": train}))
    base_model = prep.loaded.model
    base = {k: v.detach().cpu().clone() for k, v in base_model.state_dict().items()}
    model = prep.method.load(base_model, prep.loaded.kind, source.adapter_dir)
    _refuse_quantized(model, source.spec.method)
    return Session(source, prep, model.to(prep.device), base, bar)


def _refuse_quantized(model: nn.Module, method: str) -> None:
    if any(type(m).__module__.startswith("bitsandbytes") for m in model.modules()):
        raise UserError(f"{method} runs on a quantized base: its merged weights carry the "
                        "quantization error, so its update cannot be measured; not supported")


def score_on_test(session: Session, model: nn.Module, label: str) -> float:
    """The task's test score of ``model``: the run's own test set, metric and settings."""
    model.to(session.prep.device)
    return experiment._score(session.prep, model, "test", session.bar, label)


@torch.no_grad()
def probe_logits(prep: Prepared, model: nn.Module) -> torch.Tensor:
    """Logits on the first test examples (float32), to compare outputs across conversion."""
    features = experiment._encode(prep, prep.splits["test"][:PROBE_EXAMPLES])
    batch = collate(features, prep.loaded.tokenizer.pad_token_id)
    model.eval()
    out = model(input_ids=batch["input_ids"].to(prep.device),
                attention_mask=batch["attention_mask"].to(prep.device))
    return out.logits.float().cpu()


def merged_model(session: Session) -> nn.Module:
    """The base model with the adapter folded in (for full fine-tuning: the model itself)."""
    method, model = session.prep.method, session.model
    if method.name == "full":
        return model
    if not method.can_merge(model):
        why = " (it folds into biases the adapted layers lack)" if method.merge_needs_bias else ""
        raise UserError(f"{method.name} cannot be merged on this model{why}, so it has no "
                        "weight update to export")
    return method.merge(model)


def restore_base(session: Session, model: nn.Module) -> nn.Module:
    """Put the snapshot of the base weights back into ``model`` (same architecture)."""
    model.load_state_dict(session.base)
    return model.to(session.prep.device)


# ---------------------------------------------------------------------------- the weight update


@dataclass
class Update:
    """What fine-tuning changed: Linear updates (to factorize), heads (shipped whole), the rest."""

    layers: dict[str, torch.Tensor]  # Linear layer name -> ΔW (out × in), float32, CPU
    heads: dict[str, torch.Tensor]  # state-dict key -> trained tensor
    dropped: list[dict[str, Any]]  # changed parameters no LoRA carries, with their change
    linear_names: set[str]  # every factorizable Linear layer of the model


def weight_update(merged: nn.Module, base: dict[str, torch.Tensor], kind: str) -> Update:
    """Compare the merged model's state with the base snapshot, parameter by parameter."""
    heads = {h for h in HEADS if kind == "seq-cls" and hasattr(merged, h)}
    linear = {name for name, m in merged.named_modules()
              if isinstance(m, nn.Linear) and not _is_head(name)}
    update = Update({}, {}, [], linear)
    for key, new in merged.state_dict().items():
        old = base.get(key)
        new = new.detach().cpu()
        if old is not None and old.shape == new.shape and torch.equal(old, new):
            continue
        module, _, param = key.rpartition(".")
        if key.split(".")[0] in heads:
            update.heads[key] = new.clone()
        elif param == "weight" and module in linear and old is not None:
            update.layers[module] = new.float() - old.float()
        else:
            update.dropped.append({"name": key, "relative_change": _relative_change(old, new)})
    return update


def _is_head(name: str) -> bool:
    return name.split(".")[-1] in HEADS or name.split(".")[0] in HEADS


def _relative_change(old: torch.Tensor | None, new: torch.Tensor) -> float | None:
    if old is None or old.shape != new.shape:
        return None
    norm = float(old.float().norm())
    return float((new.float() - old.float()).norm()) / norm if norm else None


def check_update(update: Update, method: str) -> None:
    """Refuse an update without any Linear change: nothing a LoRA adapter could carry."""
    if update.layers:
        return
    changed = ", ".join(d["name"] for d in update.dropped[:3]) or "nothing"
    raise UserError(f"{method} changed no Linear layer's weights (it changed: {changed}"
                    f"{', …' if len(update.dropped) > 3 else ''}); a LoRA adapter cannot "
                    "express that")


# ---------------------------------------------------------------------------- factorization


@dataclass
class LayerFactors:
    """One layer's LoRA factors and how well they reproduce its update."""

    name: str
    shape: tuple[int, int]
    A: torch.Tensor  # rank × in
    B: torch.Tensor  # out × rank
    relative_error: float  # ||ΔW − B·A||_F / ||ΔW||_F
    svd_bound: float  # the smallest error any rank-r factorization can reach (Eckart–Young)

    @property
    def rank(self) -> int:
        """The layer's LoRA rank."""
        return int(self.A.shape[0])

    def describe(self) -> dict[str, Any]:
        """The layer's line in the report."""
        return {"name": self.name, "shape": list(self.shape), "rank": self.rank,
                "relative_error": self.relative_error, "svd_bound": self.svd_bound}


def energy_rank(singular_values: torch.Tensor, fraction: float) -> int:
    """The smallest k whose top-k singular values hold ``fraction`` of Σσ² (PEFT's rule)."""
    energy = torch.cumsum(singular_values.double() ** 2, dim=0)
    k = int(torch.searchsorted(energy, fraction * energy[-1]).item()) + 1
    return min(k, len(singular_values))


def layer_rank(singular_values: torch.Tensor, rank: Rank) -> int:
    """An integer rank clamped to the layer's full rank, or the energy rank of a fraction."""
    if isinstance(rank, int):
        return min(rank, len(singular_values))
    return energy_rank(singular_values, rank)


def relative_error(delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> float:
    """||ΔW − B·A||_F / ||ΔW||_F, in float64."""
    delta = delta.double()
    norm = float(delta.norm())
    return float((delta - b.double() @ a.double()).norm()) / norm if norm else 0.0


def svd_bound(singular_values: torch.Tensor, rank: int) -> float:
    """The relative error of the best rank-``rank`` approximation: √(Σ_{i≥r} σᵢ² / Σ σᵢ²)."""
    energy = singular_values.double() ** 2
    total = float(energy.sum())
    return math.sqrt(float(energy[rank:].sum()) / total) if total else 0.0


def svd_factors(delta: torch.Tensor, rank: Rank, dtype: torch.dtype) -> tuple[
        torch.Tensor, torch.Tensor, torch.Tensor]:
    """Truncated SVD of ΔW: ``(A, B, singular values)`` with ``B·A`` ≈ ΔW, √S on each side."""
    u, s, vh = torch.linalg.svd(delta.double(), full_matrices=False)
    k = layer_rank(s, rank)
    root = s[:k].sqrt()
    a = (root[:, None] * vh[:k]).to(dtype).contiguous()
    b = (u[:, :k] * root).to(dtype).contiguous()
    return a, b, s


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: LAPACK's threaded SVD stalls (seconds instead of tens of
    milliseconds for a 576×576 update) when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def peft_factors(model: nn.Module, rank: Rank) -> tuple[
        dict[str, tuple[torch.Tensor, torch.Tensor]] | None, str]:
    """PEFT's ``convert_to_lora`` factors by layer name, or ``(None, why not)``."""
    from peft import convert_to_lora
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    if not layers:
        return None, "not a PEFT tuner: PEFT's convert_to_lora does not apply"
    unsupported = sorted({_layer_type(m) for m in layers if not m.supports_lora_conversion()})
    if unsupported:
        return None, f"PEFT cannot convert its layers ({', '.join(unsupported)})"
    try:
        with warnings.catch_warnings(), one_thread():
            warnings.simplefilter("ignore")  # "already a LoRA adapter": converting on purpose
            _, state = convert_to_lora(model, rank)
    except (TypeError, ValueError) as exc:
        return None, f"PEFT's convert_to_lora refused: {_first_line(exc)}"
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = _FACTOR_KEY.match(key)
        if match:
            found.setdefault(match.group(1), {})[match.group(2)] = tensor.detach().cpu()
    return {name: (f["A"], f["B"]) for name, f in found.items() if {"A", "B"} <= set(f)}, ""


def _layer_type(module: nn.Module) -> str:
    """``oft.Linear`` for ``peft.tuners.oft.layer.Linear``: the technique and the layer."""
    parts = type(module).__module__.split(".")
    owner = parts[2] if len(parts) > 2 and parts[:2] == ["peft", "tuners"] else parts[-1]
    return f"{owner}.{type(module).__name__}"


def factorize(update: Update, rank: Rank, dtype: torch.dtype,
              peft: dict[str, tuple[torch.Tensor, torch.Tensor]] | None) -> tuple[
        list[LayerFactors], str]:
    """LoRA factors for every changed Linear layer: PEFT's when they are as good as the SVD of
    the measured update allows (else the update is not what PEFT factorizes), else the SVD's.

    Returns the factors and the path taken with its reason (``"peft"`` or ``"general: …"``).
    """
    general: list[LayerFactors] = []
    from_peft: list[LayerFactors] = []
    mismatch = []
    with one_thread():
        for name, delta in sorted(update.layers.items()):
            ours, theirs = _layer_factors(name, delta, rank, dtype, (peft or {}).get(name))
            general.append(ours)
            if theirs is not None:
                from_peft.append(theirs)
            if peft is not None and (theirs is None
                                     or theirs.relative_error > theirs.svd_bound
                                     + PEFT_TOLERANCE):
                mismatch.append(name)
    if peft is None:
        return general, "general"
    if not mismatch:
        return from_peft, "peft"
    return general, (f"general: PEFT's factors miss the merged update of {len(mismatch)} "
                     f"layer(s), e.g. {mismatch[0]} (its get_delta_weight is not the whole "
                     "update)")


def _layer_factors(name: str, delta: torch.Tensor, rank: Rank, dtype: torch.dtype,
                   peft: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[
        LayerFactors, LayerFactors | None]:
    """The SVD's factors of one layer, and PEFT's (when given) measured against the same ΔW."""
    a, b, s = svd_factors(delta, rank, dtype)
    shape = (int(delta.shape[0]), int(delta.shape[1]))
    ours = LayerFactors(name, shape, a, b, relative_error(delta, a, b), svd_bound(s, a.shape[0]))
    if peft is None:
        return ours, None
    pa, pb = peft
    return ours, LayerFactors(name, shape, pa.to(dtype), pb.to(dtype),
                              relative_error(delta, pa, pb), svd_bound(s, pa.shape[0]))


# ---------------------------------------------------------------------------- writing the LoRA


def target_names(exported: set[str], linear: set[str]) -> list[str]:
    """Short names (q_proj, …) where every Linear layer of that name is exported, else full
    module names: PEFT then adapts exactly the exported layers."""
    by_leaf: dict[str, set[str]] = {}
    for name in linear:
        by_leaf.setdefault(name.rpartition(".")[2], set()).add(name)
    names: list[str] = []
    for leaf, members in sorted(by_leaf.items()):
        chosen = members & exported
        if chosen:
            names += [leaf] if chosen == members else sorted(chosen)
    return names


def lora_config(factors: list[LayerFactors], linear: set[str], heads: list[str],
                kind: str, base_name: str | None) -> Any:
    """A `LoraConfig` with scaling 1 everywhere: ``r = lora_alpha =`` the largest rank, the
    other ranks in ``rank_pattern`` with equal ``alpha_pattern``."""
    from peft import LoraConfig

    r = max(f.rank for f in factors)
    pattern = {f.name: f.rank for f in factors if f.rank != r}
    return LoraConfig(
        r=r, lora_alpha=r, lora_dropout=0.0, bias="none", inference_mode=True,
        target_modules=target_names({f.name for f in factors}, linear),
        rank_pattern=pattern, alpha_pattern=dict(pattern),
        modules_to_save=heads or None,
        task_type="SEQ_CLS" if kind == "seq-cls" else "CAUSAL_LM",
        base_model_name_or_path=base_name,
    )


def write_lora(folder: Path, factors: list[LayerFactors], update: Update, kind: str,
               base_name: str | None) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` in PEFT's layout."""
    from safetensors.torch import save_file

    state: dict[str, torch.Tensor] = {}
    for f in factors:
        state[f"{PREFIX}{f.name}.lora_A.weight"] = f.A.contiguous()
        state[f"{PREFIX}{f.name}.lora_B.weight"] = f.B.contiguous()
    for key, tensor in update.heads.items():
        state[f"{PREFIX}{key}"] = tensor.contiguous()
    heads = sorted({key.split(".")[0] for key in update.heads})
    save_file(state, str(folder / WEIGHTS_NAME), metadata={"format": "pt"})
    lora_config(factors, update.linear_names, heads, kind, base_name).save_pretrained(str(folder))


def load_lora(base_model: nn.Module, folder: Path) -> nn.Module:
    """The base model with the exported LoRA, loaded the way any PEFT user would."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(folder))


# ---------------------------------------------------------------------------- vLLM


@dataclass
class VllmCheck:
    """What vLLM's LoRA loader would say about an adapter folder."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    max_lora_rank: int | None = None  # the --max-lora-rank the adapter needs

    @property
    def compatible(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def describe(self) -> dict[str, Any]:
        """The check as report data."""
        return {"compatible": self.compatible, **dataclasses.asdict(self)}


def vllm_compatible(folder: str | os.PathLike[str]) -> VllmCheck:
    """Check an adapter folder against the rules of vLLM's LoRA loader (see the module doc);
    every rule broken is reported as a problem, nothing passes silently."""
    folder = Path(folder)
    check = VllmCheck()
    try:
        config = json.loads((folder / CONFIG_NAME).read_text())
    except (OSError, ValueError) as exc:
        check.problems.append(f"no readable {CONFIG_NAME}: {exc.__class__.__name__}")
        return check
    check.problems += _config_problems(config)
    ranks = _tensor_ranks(folder / WEIGHTS_NAME, check)
    check.problems += _declared_rank_problems(config, ranks)
    declared = [config.get("r") or 0, *(config.get("rank_pattern") or {}).values()]
    _check_ranks(max([*declared, *ranks.values()], default=0), check)
    return check


def _config_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    if config.get("peft_type") != "LORA":
        problems.append(f"peft_type is {config.get('peft_type')!r}: vLLM loads LoRA only")
    if not isinstance(config.get("r"), int) or config["r"] < 1:
        problems.append(f"r={config.get('r')!r}: vLLM needs a positive integer rank")
    if config.get("use_dora"):
        problems.append("use_dora: vLLM does not support DoRA")
    if config.get("bias", "none") != "none" or config.get("lora_bias"):
        problems.append("adapter bias: vLLM does not support LoRA biases")
    if config.get("modules_to_save"):
        problems.append(f"modules_to_save={config['modules_to_save']}: vLLM accepts none (its "
                        "newest releases only a classifier's score/classifier head)")
    init = config.get("init_lora_weights", True)
    if isinstance(init, str) and init.lower() not in {"gaussian", "eva", "orthogonal", "mica",
                                                      "lora_ga"}:
        problems.append(f"init_lora_weights={init!r} changes the base weights on load: vLLM "
                        "does not support it")
    for key in ("layer_replication", "alora_invocation_tokens", "use_qalora", "use_bdlora"):
        if config.get(key):
            problems.append(f"{key}: not supported by vLLM")
    problems += _scaling_problems(config)
    return problems


def _scaling_problems(config: dict[str, Any]) -> list[str]:
    """Per-layer scalings must equal the global one: older vLLM applies lora_alpha/r to all."""
    r, alpha = config.get("r") or 1, config.get("lora_alpha") or 1
    ranks, alphas = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    root = math.sqrt if config.get("use_rslora") else float
    scaling = alpha / root(r)
    odd = [key for key in set(ranks) | set(alphas)
           if not math.isclose(alphas.get(key, alpha) / root(ranks.get(key, r)), scaling)]
    if not odd:
        return []
    return [f"per-layer scaling of {sorted(odd)[0]} differs from lora_alpha/r: vLLM releases "
            "without rank_pattern support would scale it wrongly"]


def _tensor_ranks(path: Path, check: VllmCheck) -> dict[str, int]:
    """Each module's rank from its tensors; problems for keys and modules vLLM rejects."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {key: f.get_slice(key).get_shape() for key in f.keys()}  # noqa: SIM118
    except (OSError, RuntimeError, ValueError) as exc:
        check.problems.append(f"no readable {WEIGHTS_NAME}: {_first_line(exc)}")
        return {}
    factors: dict[str, dict[str, list[int]]] = {}
    strange = []
    for key, shape in shapes.items():
        match = _FACTOR_KEY.match(key)
        if match:
            factors.setdefault(match.group(1), {})[match.group(2)] = shape
        else:
            strange.append(key)
    if strange:
        check.problems.append(f"{len(strange)} tensor(s) are not LoRA factors "
                              f"(e.g. {strange[0]}): vLLM loads lora_A/lora_B weights only")
    unknown = sorted({name.rpartition(".")[2] for name in factors} - set(VLLM_MODULES))
    if unknown:
        check.problems.append(f"modules {', '.join(unknown)} are not projections vLLM's "
                              f"Llama-family models adapt ({', '.join(VLLM_MODULES)})")
    ranks = {}
    for name, pair in factors.items():
        if set(pair) != {"A", "B"} or pair["A"][0] != pair["B"][-1]:
            check.problems.append(f"{name}: lora_A and lora_B do not pair up")
            continue
        ranks[name] = pair["A"][0]
    if not factors:
        check.problems.append("no LoRA factors in the checkpoint")
    return ranks


def _declared_rank_problems(config: dict[str, Any], ranks: dict[str, int]) -> list[str]:
    """Each module's tensors must have the rank the config declares for it (``r``, or its
    ``rank_pattern`` entry, matched as PEFT and vLLM match it): vLLM scales by the declared one."""
    pattern = config.get("rank_pattern") or {}
    wrong = []
    for name, rank in sorted(ranks.items()):
        key = next((k for k in pattern if re.match(rf"(.*\.)?({k})$", name)), None)
        declared = pattern[key] if key is not None else config.get("r")
        if declared != rank:
            wrong.append(f"{name} (declared {declared}, tensors {rank})")
    if not wrong:
        return []
    return [f"{len(wrong)} module(s) have another rank than the config declares, e.g. "
            f"{wrong[0]}"]


def _check_ranks(largest: int, check: VllmCheck) -> None:
    fitting = [r for r in VLLM_MAX_LORA_RANKS if r >= largest]
    if not fitting:
        check.problems.append(f"rank {largest} exceeds vLLM's largest --max-lora-rank "
                              f"({VLLM_MAX_LORA_RANKS[-1]})")
        return
    check.max_lora_rank = fitting[0]
    if fitting[0] > VLLM_DEFAULT_MAX_LORA_RANK:
        check.notes.append(f"start vLLM with --max-lora-rank {fitting[0]} (its default is "
                           f"{VLLM_DEFAULT_MAX_LORA_RANK})")


# ---------------------------------------------------------------------------- the export


@dataclass
class ExportReport:
    """What an export wrote and measured; saved as ``export_report.json``."""

    status: Literal["exported", "rejected"]
    mode: Mode
    out: str
    result: str
    method: str
    model: str
    task: str
    metric: str
    score_recorded: float | None  # the run's own test score
    score_before: float  # base + original adapter, re-measured now
    score_after: float  # base + export (or the merged model)
    score_ratio: float  # after / before (1.0 when before is 0)
    min_score_ratio: float | None
    size_original_bytes: int
    size_exported_bytes: int
    probe_max_abs_logit_diff: float
    probe_relative_logit_diff: float
    rank_requested: Rank | None = None
    conversion: str | None = None  # "peft" or "general: why"
    layers: list[dict[str, Any]] = field(default_factory=list)
    mean_relative_error: float | None = None
    max_relative_error: float | None = None
    heads: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    vllm: dict[str, Any] | None = None
    base_model: dict[str, Any] = field(default_factory=dict)  # the weights the export applies to
    reason: str = ""
    seconds: float = 0.0
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the export was written (not rejected by --min-score-ratio)."""
        return self.status == "exported"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (NaN/inf become null)."""
        return sanitize(dataclasses.asdict(self))


def export_lora(result_path: str | os.PathLike[str], out: str | os.PathLike[str],
                rank: Rank, *, min_score_ratio: float | None = None, overwrite: bool = False,
                progress: bool = True) -> ExportReport:
    """Export a run's adapter as a plain LoRA at ``rank`` into ``out``, verified (see module doc).

    User mistakes raise `UserError` before anything is written. When the score ratio falls
    below ``min_score_ratio`` the report is written with status ``rejected`` and ``out`` holds
    only the report (no weights a server could pick up by mistake).
    """
    rank = parse_rank(rank)
    return _export(result_path, Path(out), "lora", rank, min_score_ratio, overwrite, progress)


def export_merged(result_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  min_score_ratio: float | None = None, overwrite: bool = False,
                  progress: bool = True) -> ExportReport:
    """Export the base model with the run's adapter merged in (safetensors, tokenizer
    included) into ``out``, verified by scoring the reloaded folder."""
    return _export(result_path, Path(out), "merged", None, min_score_ratio, overwrite, progress)


def _export(result_path: str | os.PathLike[str], out: Path, mode: Mode, rank: Rank | None,
            min_score_ratio: float | None, overwrite: bool, progress: bool) -> ExportReport:
    started = time.perf_counter()
    if min_score_ratio is not None and not (math.isfinite(min_score_ratio)
                                            and min_score_ratio >= 0):
        raise UserError(f"--min-score-ratio {min_score_ratio}: must be a number >= 0")
    check_out(out, overwrite)
    source = open_run(result_path)
    check_exportable(source.spec.method, mode)
    with make_progress(progress) as bar:
        session = load_session(source, bar)
        before = score_on_test(session, session.model, "score original")
        probe = probe_logits(session.prep, session.model)
        if mode == "lora":  # everything that can refuse happens here, before any file
            write = functools.partial(_write_lora, session, plan_lora(session, rank))
        else:
            write = functools.partial(_write_merged, session, merged_model(session))
        with staging(out, overwrite) as folder:
            fields, exported = write(folder)
            after = score_on_test(session, exported, "score exported")
            report = _report(session, out, mode, folder, before, after,
                             _probe_diff(probe, probe_logits(session.prep, exported)),
                             min_score_ratio, {"rank_requested": rank, **fields})
            report.seconds = time.perf_counter() - started
            _finish(folder, report)
    return report


@dataclass
class LoraPlan:
    """A LoRA export computed in memory: the merged model, its update and the factors."""

    merged: nn.Module
    update: Update
    factors: list[LayerFactors]
    conversion: str


def plan_lora(session: Session, rank: Rank | None) -> LoraPlan:
    """Merge, measure the update and factorize it (PEFT's converter first, when it applies)."""
    assert rank is not None
    peft, why_not = peft_factors(session.model, rank)
    merged = merged_model(session)
    update = weight_update(merged, session.base, session.prep.loaded.kind)
    check_update(update, session.source.spec.method)
    factors, conversion = factorize(update, rank, _weight_dtype(merged), peft)
    if conversion == "general" and why_not:
        conversion = f"general: {why_not}"
    return LoraPlan(merged, update, factors, conversion)


def _write_lora(session: Session, plan: LoraPlan, folder: Path) -> tuple[dict[str, Any],
                                                                          nn.Module]:
    """Write the LoRA and load it on the restored base model; the report's LoRA fields."""
    merged = plan.merged
    base_name = getattr(merged.config, "name_or_path", None) or session.source.spec.model
    write_lora(folder, plan.factors, plan.update, session.prep.loaded.kind, base_name)
    exported = load_lora(restore_base(session, merged), folder)
    errors = [f.relative_error for f in plan.factors]
    fields = {"conversion": plan.conversion, "layers": [f.describe() for f in plan.factors],
              "mean_relative_error": sum(errors) / len(errors), "max_relative_error": max(errors),
              "heads": sorted({k.split(".")[0] for k in plan.update.heads}),
              "dropped": plan.update.dropped, "vllm": vllm_compatible(folder).describe()}
    return fields, exported


def _write_merged(session: Session, merged: nn.Module, folder: Path) -> tuple[dict[str, Any],
                                                                                nn.Module]:
    """Save the merged model with its tokenizer, then load it back from the folder."""
    from peftbench.models import load_model

    merged.save_pretrained(str(folder))
    session.prep.loaded.tokenizer.save_pretrained(str(folder))
    prep = session.prep
    loaded = load_model(str(folder), prep.loaded.kind, num_labels=max(len(prep.task.labels), 2),
                        seed=prep.spec.train.seed)
    return {}, loaded.model.to(prep.device)


def _weight_dtype(model: nn.Module) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def _probe_diff(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    diff = (after - before).abs()
    norm = float(before.norm())
    return float(diff.max()), float((after - before).norm()) / norm if norm else 0.0


def score_ratio(before: float, after: float) -> float:
    """``after / before``; 1.0 when the score before is 0 (nothing measurable to lose)."""
    return after / before if before > 0 else 1.0


def _report(session: Session, out: Path, mode: Mode, folder: Path, before: float, after: float,
            probe: tuple[float, float], min_score_ratio: float | None,
            fields: dict[str, Any]) -> ExportReport:
    source, ratio = session.source, score_ratio(before, after)
    rejected = min_score_ratio is not None and ratio < min_score_ratio
    info = source.result["train_info"]
    report = ExportReport(
        status="rejected" if rejected else "exported", mode=mode, out=str(out),
        result=str(source.path), method=source.spec.method, model=source.spec.model,
        task=source.spec.task, metric=session.prep.task.metric,
        score_recorded=info.get("test_score"), score_before=before, score_after=after,
        score_ratio=ratio, min_score_ratio=min_score_ratio,
        size_original_bytes=checkpoint_bytes(source.adapter_dir),
        size_exported_bytes=checkpoint_bytes(folder),
        probe_max_abs_logit_diff=probe[0], probe_relative_logit_diff=probe[1],
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        base_model=session.prep.loaded.info | {"name": session.prep.loaded.name},
        versions=_versions(), **fields)
    if rejected:
        report.reason = (f"score ratio {ratio:.3f} < --min-score-ratio {min_score_ratio}: the "
                         "exported weights were removed")
    return report


def checkpoint_bytes(folder: Path) -> int:
    """Bytes of the weight files in ``folder`` (the rule of a run's ``file_size``)."""
    return sum(f.stat().st_size for f in folder.rglob("*")
               if f.is_file() and f.suffix in {".safetensors", ".bin", ".pt"})


def _finish(folder: Path, report: ExportReport) -> None:
    """Write the report; a rejected export keeps only the report."""
    if not report.ok:
        for item in folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
    atomic_write_json(folder / REPORT_NAME, report.to_json())


@contextlib.contextmanager
def staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temp folder beside ``out``, renamed to ``out`` when the block succeeds and removed
    when it fails: readers see no folder, the old one, or the complete new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    check_out(out, overwrite)
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return {"peft": peft.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else exc.__class__.__name__
