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

`vllm_compatible` checks an exported folder against what vLLM's LoRA loader enforces; the rules
are listed in `peftbench.export.vllm`.

The modules, each importing only those listed before it: `source` (open and re-create a
finished run), `factorization` (the weight update and its LoRA factors), `lora_files` (PEFT's
adapter folder), `vllm` (the vLLM check), `pipeline` (`export_lora`, `export_merged`: staging,
verifying, reporting). Everything public is re-exported here.
"""

from peftbench.export.factorization import (
    FACTOR_KEY,
    HEADS,
    PEFT_TOLERANCE,
    PREFIX,
    LayerFactors,
    Rank,
    Update,
    check_update,
    energy_rank,
    factorize,
    is_head,
    layer_rank,
    one_thread,
    parse_rank,
    peft_factors,
    relative_error,
    svd_bound,
    svd_factors,
    weight_update,
)
from peftbench.export.lora_files import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    checkpoint_bytes,
    load_lora,
    lora_config,
    target_names,
    write_lora,
)
from peftbench.export.pipeline import (
    REPORT_NAME,
    ExportReport,
    LoraPlan,
    check_out,
    export_lora,
    export_merged,
    plan_lora,
    score_ratio,
    staging,
)
from peftbench.export.source import (
    PROBE_EXAMPLES,
    Mode,
    Session,
    SourceRun,
    check_exportable,
    load_session,
    merged_model,
    open_run,
    probe_logits,
    restore_base,
    score_on_test,
)
from peftbench.export.vllm import (
    VLLM_DEFAULT_MAX_LORA_RANK,
    VLLM_MAX_LORA_RANKS,
    VLLM_MODULES,
    VllmCheck,
    vllm_compatible,
)

__all__ = [
    # the export (pipeline)
    "REPORT_NAME", "ExportReport", "LoraPlan", "check_out", "export_lora", "export_merged",
    "plan_lora", "score_ratio", "staging",
    # the finished run (source)
    "PROBE_EXAMPLES", "Mode", "Session", "SourceRun", "check_exportable", "load_session",
    "merged_model", "open_run", "probe_logits", "restore_base", "score_on_test",
    # the weight update and its factors (factorization)
    "FACTOR_KEY", "HEADS", "PEFT_TOLERANCE", "PREFIX", "LayerFactors", "Rank", "Update",
    "check_update", "energy_rank", "factorize", "is_head", "layer_rank", "one_thread",
    "parse_rank", "peft_factors", "relative_error", "svd_bound", "svd_factors", "weight_update",
    # the adapter folder (lora_files)
    "CONFIG_NAME", "WEIGHTS_NAME", "checkpoint_bytes", "load_lora", "lora_config",
    "target_names", "write_lora",
    # vLLM's rules (vllm)
    "VLLM_DEFAULT_MAX_LORA_RANK", "VLLM_MAX_LORA_RANKS", "VLLM_MODULES", "VllmCheck",
    "vllm_compatible",
]
