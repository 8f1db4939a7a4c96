"""Would vLLM load it? `vllm_compatible` checks an adapter folder against what vLLM's LoRA
loader enforces (``vllm/lora/peft_helper.py``, ``vllm/lora/lora_model.py``,
``vllm/config/lora.py``):

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

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import first_line
from peftbench.export.factorization import FACTOR_KEY
from peftbench.export.lora_files import CONFIG_NAME, WEIGHTS_NAME

#: the values vLLM accepts for --max-lora-rank (vllm/config/lora.py: MaxLoRARanks)
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
VLLM_DEFAULT_MAX_LORA_RANK = 16
#: the projections vLLM's Llama-family models (Llama, Mistral, Qwen2, SmolLM2, …) adapt
VLLM_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


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
        check.problems.append(f"no readable {WEIGHTS_NAME}: {first_line(exc)}")
        return {}
    factors: dict[str, dict[str, list[int]]] = {}
    strange = []
    for key, shape in shapes.items():
        match = FACTOR_KEY.match(key)
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
