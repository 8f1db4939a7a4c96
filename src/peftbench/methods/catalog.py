"""The catalog: every technique in the installed PEFT release, plus peftbench's own entries.

The contestants are discovered from PEFT's own mapping (through the capability snapshot, see
`capabilities.py`), so a new PEFT release brings its new techniques with PEFT's own defaults.
`CURATED` adds, per technique: defaults sensible on small and large models (sizes fitted to the
adapted layers), a default learning rate and where it comes from, a one-line description, and
the model kinds it cannot serve with the reason. LoRA variants, optimizer-based techniques
and full fine-tuning are entries of their own; Delta-LoRA registers itself from its own package
(`peftbench.methods.delta_lora`), as a technique from another package would.

Learning-rate sources: ``SUITE`` is PEFT's method comparison (MetaMathQA on Llama-3.2-3B,
``experiments/<method>/<experiment>/training_params.json``; an experiment without that file uses
``default_training_params.json``, lr 1e-4).
"""

from __future__ import annotations

from peftbench.methods.base import Method
from peftbench.methods.fitting import (
    capped_fitter,
    divisor_fitter,
    fit_decoder_blocks,
    fit_decoder_layers,
    fit_hidden_size,
    fit_norm_layers,
    fit_special_tokens,
)

SUITE = "PEFT method comparison (MetaMathQA, Llama-3.2-3B): experiments/"
SUITE_DEFAULT_LR = 1e-4
LORA_LR = 1e-3
LORA_LR_SOURCE = "peftbench calibration on SmolLM2-135M/arith (LoRA at r=16 on a 135M model)"
LORA_DEFAULTS = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0}
CAUSAL_ONLY = ("causal-lm",)
#: PiSSA's initialisation: randomized SVD with 16 power iterations, which PEFT documents as
#: about equivalent to the exact SVD. On SmolLM2-135M's q/v projections (all 30 layers, seed 0)
#: it captured 99.8% / 99.3% of the exact top-16 spectral energy, against 96.9% / 93.8% with 4
#: iterations, at a fraction of the exact SVD's cost on large layers (a 2048×2048 weight: ~1 s
#: against ~14 s on one busy core)
PISSA_INIT = "pissa_niter_16"
PISSA_INIT_NOTE = ("initialisation: randomized SVD, 16 power iterations (about exact; "
                   "init_lora_weights=pissa for the exact SVD).")

NEEDS_TASK_IDS = ("routes every example by a task id (multi-task training); peftbench trains one "
                  "task at a time and passes no task ids")
NEEDS_EXPERTS = ("mixes LoRA experts that were trained beforehand; it is not trained from a base "
                 "model alone")
CPT_INPUTS = ("needs few-shot inputs in CPT's own template (token type masks per example); "
              "peftbench's tasks are plain prompt/target pairs")
DECODER_ONLY = "works on decoder language models only (PEFT supports no encoder here)"
NO_HEAD = ("PEFT's trainable tokens has no modules_to_save, so a classifier's new head would stay "
           "frozen at its random init (every other technique trains it)")
SHADOW_CAVEAT = ("PEFT's ShadowPEFT gives the last decoder layer a shadow update (transform and "
                 "gate) whose output nothing reads: those parameters count as trainable but never "
                 "get a gradient")
LILY_CAVEAT = ("PEFT's Lily checkpoint stores each shared projector once per layer that uses "
               "it, so its file size counts shared parameters repeatedly")
RANDLORA_CAVEAT = ("PEFT's RandLoRA checkpoint stores the shared random bases once and again "
                   "sliced for every layer, so its file size counts them repeatedly")
LORA_FA_CAVEAT = ("PEFT's LoRA-FA optimizer computes B's projected gradient under bf16 autocast "
                  "wherever bf16 is available (CPUs included), so its updates carry bf16 rounding "
                  "even in fp32 runs")


def _suite(experiment: str, lr: float | None = None) -> tuple[float, str]:
    where = SUITE + experiment
    if lr is None:
        return SUITE_DEFAULT_LR, where + " (default_training_params.json)"
    return lr, where + "/training_params.json"


def _entry(name: str, description: str, defaults: dict | None = None,
           lr: tuple[float, str] = (SUITE_DEFAULT_LR, SUITE + "default_training_params.json"),
           **extra) -> Method:
    return Method(name=name, peft_type=name.upper(), description=description,
                  defaults=defaults or {}, default_lr=lr[0], lr_source=lr[1], **extra)


def _prompt(name: str, description: str, defaults: dict, lr: tuple[float, str],
            **extra) -> Method:
    return _entry(name, description, defaults, lr, targets_modules=False, family="prompt",
                  **extra)


def _shira_rank(i: int, o: int) -> int:
    return (i * o) // (i + o)


PEFT_ENTRIES: list[Method] = [
    _entry("lora", "Low-rank update B·A added to frozen weights (Hu et al., 2021).",
           LORA_DEFAULTS, (LORA_LR, LORA_LR_SOURCE), family="lora"),
    _entry("adalora", "LoRA in SVD form whose rank budget is reallocated across layers during "
           "training (Zhang et al., 2023).",
           {"init_r": 24, "target_r": 16, "lora_alpha": 32, "total_step": 200, "tinit": 20,
            "tfinal": 40, "deltaT": 1, "beta1": 0.85, "beta2": 0.85, "orth_reg_weight": 0.5},
           _suite("adalora/llama-3.2-3B-rank32")),
    _entry("adamss", "Adaptive multi-subspace adaptation: the weight's SVD split into "
           "subspaces trained selectively (AdaMSS).",
           {"r": 100, "num_subspaces": 32, "subspace_rank": 1, "init_weights": "orthogonal"},
           _suite("adamss/llama-3.2-3B-rank32", 1e-4), requires=("sklearn:scikit-learn",),
           fit=capped_fitter("r", min)),
    _prompt("adaption_prompt", "LLaMA-Adapter: learned prompts with zero-initialised gated "
            "attention in the top decoder layers (Zhang et al., 2023).",
            {"adapter_len": 10}, _suite("adaptionprompt/llama-3.2-3B-lr_5e-3", 5e-3),
            kinds=CAUSAL_ONLY, not_for={"seq-cls": DECODER_ONLY}, fit=fit_decoder_layers),
    _entry("beft", "Bias-efficient fine-tuning: trains a bias-like vector per adapted layer.",
           {"init_weights": True}, _suite("beft/llama-3.2-3B-target-v_proj"),
           merge_needs_bias=True),
    _entry("boft", "Butterfly orthogonal fine-tuning: the weight rotated by a product of sparse "
           "orthogonal butterfly factors (Liu et al., 2024).",
           {"boft_block_size": 4, "boft_n_butterfly_factor": 1, "boft_dropout": 0.0},
           _suite("boft/llama-3.2-3B-default"), fit=divisor_fitter("boft_block_size", "in")),
    _entry("c3a", "Circular convolution adaptation: a block-circulant update computed with FFTs "
           "(Chen et al., 2025).",
           {"block_size": 64}, _suite("c3a/llama-3.2-3B-default", 3e-1),
           fit=divisor_fitter("block_size", "both")),
    _prompt("cartridge", "Cartridges: a KV-cache prefix stored directly as trainable "
            "parameters (served like prefix tuning).",
            {"num_virtual_tokens": 20},
            (1e-3, "as prefix tuning: " + SUITE + "prefixtuning/llama-3.2-3B-lr_0.001")),
    _prompt("cpt", "Context-aware prompt tuning: prompt embeddings refined with projected, "
            "loss-weighted updates (Blau et al., 2024).",
            {}, (1e-3, "as prompt tuning: " + SUITE + "prompt_tuning/llama-3.2-3B-lr_0.001"),
            kinds=(), not_for={"seq-cls": "PEFT's CPT supports causal language models only",
                               "causal-lm": CPT_INPUTS}),
    _entry("deft", "DeFT: decomposed low-rank update with a QR decomposition of the adapter.",
           {"r": 16, "decomposition_method": "qr"}, _suite("deft/llama-3.2-3B-rank32-para")),
    _entry("delora", "DeLoRA: LoRA whose update is normalised and scaled by a learnable bound "
           "λ, decoupling angle and strength (Bini et al., 2025).",
           {"r": 16, "delora_lambda": 15}, _suite("delora/llama-3.2-3B-rank32", 1e-3)),
    _entry("fourierft", "FourierFT: learns a few spectral coefficients of the weight update, "
           "mapped back with an inverse DFT (Gao et al., 2024).",
           {"n_frequency": 1000, "scaling": 300.0, "random_loc_seed": 777},
           _suite("fourierft/llama-3.2-3B-default"),
           fit=capped_fitter("n_frequency", lambda i, o: i * o)),
    _entry("frod", "FRoD: a sparse rotation of the frozen weight's basis.",
           {"sparse_rate": 0.01, "regularization_alpha": 0.001},
           _suite("frod/llama-3.2-3B-default")),
    _entry("glora", "Generalised LoRA: low-rank terms scaling and shifting weights, bias and "
           "activations (Chavan et al., 2023).",
           {"r": 8, "config_A_B": "lora", "config_C": "lora", "config_D_E": "constant"},
           _suite("glora/llama-3.2-3B-default")),
    _entry("gralora", "Granular LoRA: the weight split into k×k blocks, each with its own "
           "low-rank adapter (Jung et al., 2025).",
           {"r": 16, "alpha": 32, "gralora_k": 2}, _suite("gralora/llama-3.2-3B-rank32", 2e-4)),
    _entry("hira", "HiRA: a Hadamard (element-wise) product of the weight with a low-rank "
           "matrix, giving a high-rank update (Huang et al., 2025).",
           {"r": 16}, _suite("hira/llama-3.2-3B-rank32-lr4.5e-3", 4.5e-3)),
    _entry("hra", "Householder reflection adaptation: the weight multiplied by a chain of "
           "learned Householder reflections (Yuan et al., 2024).",
           {"r": 8}, _suite("hra/llama-3.2-3B-default")),
    _entry("ia3", "(IA)³: learned vectors rescaling activations of the adapted layers "
           "(Liu et al., 2022).",
           {"feedforward_modules": []}, _suite("ia3/llama-3.2-3B-all-attn-5k-lr0.005", 5e-3)),
    _entry("lily", "Lily: low-rank projectors shared across layers through a router "
           "(Zhong et al., 2024).",
           {}, _suite("lily/llama-3.2-3B-rank896-a2-b2-s2.0"), caveat=LILY_CAVEAT),
    _entry("ln_tuning", "LN tuning: trains only the normalisation layers' scales and biases "
           "(Zhao et al., 2023).",
           {}, _suite("ln_tuning/llama-3.2-3B-default"), targets_modules=False,
           fit=fit_norm_layers),
    _entry("loha", "LoHa: the update is the Hadamard product of two low-rank products "
           "(LyCORIS; Hyeon-Woo et al., 2022).",
           {"r": 16, "alpha": 32}, _suite("loha/llama-3.2-3B-rank32")),
    _entry("lokr", "LoKr: the update is a Kronecker product of a small and a low-rank matrix "
           "(LyCORIS).",
           {"r": 16, "alpha": 32, "decompose_factor": 4},
           _suite("lokr/llama-3.2-3B-rank32-factor4-lr0.003", 3e-3)),
    _entry("miss", "MiSS (formerly Bone): a shared small matrix expanded over the weight's "
           "blocks (Kang & Yin, 2024).",
           {"r": 64}, _suite("miss/llama-3.2-3B-default"),
           fit=divisor_fitter("r", "out")),
    _prompt("multitask_prompt_tuning", "Multitask prompt tuning: one prompt shared by tasks, "
            "adapted per task by a low-rank product (Wang et al., 2023).",
            {"num_virtual_tokens": 20}, _suite("prompt_tuning/llama-3.2-3B-lr_0.001", 1e-3),
            kinds=(), not_for={"causal-lm": NEEDS_TASK_IDS, "seq-cls": NEEDS_TASK_IDS}),
    _entry("oft", "Orthogonal fine-tuning: the weight rotated by a learned block-diagonal "
           "orthogonal matrix (Qiu et al., 2023).",
           {"r": 0, "oft_block_size": 32, "eps": 6e-5}, _suite("oft/llama-3.2-3B-rank32"),
           fit=divisor_fitter("oft_block_size", "in")),
    _entry("osf", "Orthogonal subspace fine-tuning: updates kept orthogonal to the weight's "
           "top singular directions, limiting forgetting.",
           {}, _suite("osf/llama-3.2-3B-rank128", 5e-5)),
    _prompt("p_tuning", "P-tuning: virtual prompt tokens produced by a small MLP encoder "
            "(Liu et al., 2021).",
            {"num_virtual_tokens": 20, "encoder_reparameterization_type": "MLP",
             "encoder_num_layers": 2}, _suite("ptuning/llama-3.2-3B-default"),
            fit=fit_hidden_size("encoder_hidden_size")),
    _entry("peanut", "Peanut: a small non-linear adapter network on the weight update.",
           {"r": 32, "act_fn": "relu", "scaling": 2.0},
           _suite("peanut/llama-3.2-3B-rank32-relu-depth0-s2.0")),
    _entry("poly", "Polytropon: a library of LoRA modules combined per task by a learned "
           "router (Ponti et al., 2023).",
           {"r": 8}, _suite("lora/llama-3.2-3B-rank32"),
           kinds=(), not_for={"causal-lm": NEEDS_TASK_IDS, "seq-cls": NEEDS_TASK_IDS}),
    _prompt("prefix_tuning", "Prefix tuning: trainable key/value prefixes in every attention "
            "layer (Li & Liang, 2021).",
            {"num_virtual_tokens": 20}, _suite("prefixtuning/llama-3.2-3B-lr_0.001", 1e-3)),
    _prompt("prompt_tuning", "Prompt tuning: trainable soft-prompt embeddings prepended to the "
            "input (Lester et al., 2021).",
            {"num_virtual_tokens": 20, "prompt_tuning_init": "RANDOM"},
            _suite("prompt_tuning/llama-3.2-3B-lr_0.001", 1e-3)),
    _entry("psoft", "PSOFT: orthogonal fine-tuning restricted to the weight's principal "
           "subspace.", {}, _suite("psoft/llama-3.2-3B-default")),
    _entry("pvera", "PVeRA: VeRA with probabilistic (sampled) scaling vectors.",
           {"r": 256, "d_initial": 0.1, "save_projection": True},
           _suite("pvera/llama-3.2-3B-default", 3e-3)),
    _entry("randlora", "RandLoRA: full-rank updates from many frozen random low-rank bases "
           "with trained diagonal scalings (Albert et al., 2025).",
           {"r": 32, "randlora_alpha": 640, "save_projection": True},
           _suite("randlora/llama-3.2-3B-default"), caveat=RANDLORA_CAVEAT),
    _entry("road", "RoAd: 2×2 rotations of output-feature pairs, learned per group "
           "(Liao et al., 2024).",
           {"variant": "road_2", "group_size": 64}, _suite("road/llama-3.2-3B-lr_0.001", 1e-3),
           fit=divisor_fitter("group_size", "out")),
    _entry("shadow", "ShadowPEFT: a small parallel shadow network riding the decoder's layers "
           "and correcting their inputs.",
           {}, (SUITE_DEFAULT_LR, SUITE + "default_training_params.json"),
           targets_modules=False, fit=fit_decoder_blocks, kinds=CAUSAL_ONLY,
           not_for={"seq-cls": "wraps decoder blocks (``layers.N``); encoders have none"},
           caveat=SHADOW_CAVEAT),
    _entry("shira", "SHiRA: trains a sparse random subset of each weight's entries "
           "(Bhardwaj et al., 2024).",
           {"r": 32, "mask_type": "random", "random_seed": 42},
           _suite("shira/llama-3.2-3B-lr_0.0003-random_seed_42", 3e-4),
           fit=capped_fitter("r", _shira_rank)),
    _entry("supertuning", "SuperTuning: trains a sparse top-k selected subset of the weights.",
           {"sparsity": 0.9935, "select_top": True},
           _suite("supertuning/llama-3.2-3B-s9935-topk")),
    _entry("tinylora", "TinyLoRA: a few trained coordinates in a frozen random projection of "
           "a low-rank update.",
           {"r": 2, "u": 64, "projection_seed": 42, "save_projection": True},
           _suite("tinylora/llama-3.2-3B-default", 1e-3)),
    _entry("trainable_tokens", "Trainable tokens: trains the embeddings of chosen tokens only "
           "(here the special tokens).",
           {}, _suite("trainable_tokens/llama-3.2-3B-sos+eos", 0.2), targets_modules=False,
           fit=fit_special_tokens,
           kinds=CAUSAL_ONLY, not_for={"seq-cls": NO_HEAD}),
    _entry("unilora", "Uni-LoRA: all LoRA parameters projected from one small shared vector.",
           {"r": 16, "theta_d_length": 256, "proj_seed": 42, "init_theta_d_bound": 0.02},
           _suite("unilora/llama-3.2-3B-default")),
    _entry("vblora", "VB-LoRA: LoRA factors composed from a shared bank of vectors by top-k "
           "mixing (Li et al., 2024).",
           {"r": 4, "num_vectors": 256, "vector_length": 256, "topk": 2,
            "init_logits_std": 0.1, "init_vector_bank_bound": 0.02},
           _suite("vblora/llama-3.2-3B-default"),
           fit=divisor_fitter("vector_length", "both")),
    _entry("vera", "VeRA: frozen random low-rank matrices shared across layers, trained "
           "scaling vectors only (Kopiczko et al., 2024).",
           {"r": 256, "d_initial": 0.1, "save_projection": True},
           _suite("vera/llama-3.2-3B-default", 1e-3)),
    _entry("waveft", "WaveFT: learns sparse wavelet coefficients of the weight update.",
           {"n_frequency": 2592, "scaling": 25.0, "wavelet_family": "db1", "use_idwt": True,
            "random_loc_seed": 777},
           _suite("waveft/llama-3.2-3B-n_frequency-5000"),
           fit=capped_fitter("n_frequency", lambda i, o: i * o // 2)),
    _entry("xlora", "X-LoRA: a learned gate mixing several already trained LoRA experts per "
           "token (Buehler & Buehler, 2024).",
           {}, _suite("lora/llama-3.2-3B-rank32"),
           kinds=(), not_for={"causal-lm": NEEDS_EXPERTS, "seq-cls": NEEDS_EXPERTS}),
]


def _variants() -> list[Method]:
    """LoRA variants, optimizer-based techniques, full fine-tuning and its memory-efficient
    forms (`peftbench.methods.full_ft`; Delta-LoRA registers itself:
    `peftbench.methods.delta_lora`)."""
    from peftbench.methods.adaptive_rank import AdaLoraMethod
    from peftbench.methods.full import FullFineTuning
    from peftbench.methods.full_ft import full_ft_methods
    from peftbench.methods.lora_init import ResidualInitLora
    from peftbench.methods.optimizers import LoraFaMethod, LoraPlusMethod
    from peftbench.methods.quantized import QLoraMethod

    as_lora = (LORA_LR, "as LoRA: " + LORA_LR_SOURCE)
    lora = {"peft_type": "LORA", "family": "lora-variant", "default_lr": as_lora[0],
            "lr_source": as_lora[1]}
    return [
        AdaLoraMethod(**_fields_of(PEFT_ENTRIES, "adalora")),
        Method(name="rslora", description="rank-stabilised LoRA: scaling α/√r instead of α/r "
               "(Kalajdzievski, 2023).", defaults={**LORA_DEFAULTS, "use_rslora": True},
               **lora),
        Method(name="dora", description="DoRA: LoRA on the direction, plus a trained magnitude "
               "per output (Liu et al., 2024).", defaults={**LORA_DEFAULTS, "use_dora": True},
               **lora),
        ResidualInitLora(name="pissa", description="PiSSA: LoRA initialised from the weight's "
                         "principal singular vectors, training the residual's complement "
                         "(Meng et al., 2024); " + PISSA_INIT_NOTE,
                         defaults={**LORA_DEFAULTS, "init_lora_weights": PISSA_INIT},
                         **lora),
        ResidualInitLora(name="olora", description="OLoRA: LoRA initialised from a QR "
                         "decomposition of the weight (Büyükakyüz, 2024).",
                         defaults={**LORA_DEFAULTS, "init_lora_weights": "olora"}, **lora),
        LoraPlusMethod(name="lora_plus", description="LoRA+: B trained with a learning rate "
                       "16× that of A (Hayou et al., 2024); PEFT's LoRA+ optimizer.",
                       defaults=dict(LORA_DEFAULTS), options={"loraplus_lr_ratio": 16.0},
                       peft_type="LORA", family="lora-variant", default_lr=SUITE_DEFAULT_LR,
                       lr_source="LoRA+ has no PEFT-suite experiment: " + SUITE
                       + "default_training_params.json"),
        LoraFaMethod(name="lora_fa", description="LoRA-FA: A frozen at its random init, B "
                     "trained with a projected gradient; PEFT's LoRA-FA optimizer "
                     "(Zhang et al., 2023).", defaults=dict(LORA_DEFAULTS), peft_type="LORA",
                     family="lora-variant", default_lr=1e-4, caveat=LORA_FA_CAVEAT,
                     lr_source=SUITE + "lora/llama-3.2-3B-rank32-lorafa/training_params.json"),
        QLoraMethod(name="qlora", description="QLoRA: LoRA on a 4-bit NF4-quantized base "
                    "(bitsandbytes; Dettmers et al., 2023).", defaults=dict(LORA_DEFAULTS),
                    **lora),
        FullFineTuning(),
        *full_ft_methods(),
    ]


def _fields_of(entries: list[Method], name: str) -> dict:
    import dataclasses

    entry = next(e for e in entries if e.name == name)
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}


def curated_methods() -> dict[str, Method]:
    """Every curated entry by name (PEFT techniques and peftbench's own but Delta-LoRA)."""
    table = {m.name: m for m in PEFT_ENTRIES}
    table.update({m.name: m for m in _variants()})
    return table


def uncurated_method(peft_type_name: str) -> Method:
    """An entry for a PEFT technique newer than this catalog: PEFT's own defaults."""
    from peftbench.methods.capabilities import peft_capabilities

    caps = peft_capabilities()["types"].get(peft_type_name, {})
    return Method(
        name=peft_type_name, peft_type=caps.get("peft_type", peft_type_name.upper()),
        description="(new in this PEFT release: PEFT's own defaults, not yet curated)",
        default_lr=SUITE_DEFAULT_LR, lr_source=SUITE + "default_training_params.json",
        targets_modules=not caps.get("prompt_only", False),
        family="prompt" if caps.get("prompt_only") else "peft", curated=False,
    )
