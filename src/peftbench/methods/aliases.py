"""Names and aliases of every PEFT technique, keyed by catalog technique name.

One table for everything that has to recognise a technique by name: the catalog's name lookup
and the adoption census (`peftbench census`), which finds techniques in model cards and code.

- `ALIASES`: catalog name -> aliases; the first alias is the display name. Spaces, hyphens and
  underscores inside an alias are interchangeable when matching ("prompt tuning" also matches
  "prompt-tuning" and "prompt_tuning").
- `EXACT_CASE`: aliases that are ordinary words or names in another capitalisation ("DoRA" vs
  Dora, "VeRA" vs Vera, "RoAd" vs road); in free text they match only as spelled here.
- `AMBIGUOUS`: aliases too common to count as evidence at all ("Bone", "CPT", "Shadow"); they
  stay valid names for lookup but the census never counts them.
- `VARIANT_OF`: technique -> the technique it refines. A card naming both ("QLoRA, a 4-bit
  LoRA") names one technique, the more specific one.
- `EXTRA_CONFIG_CLASSES`: PEFT config class names that `peft.mapping` does not list (older or
  LoRA-initialisation configs); `GENERIC_CONFIG_CLASSES` are PEFT base classes, no technique.
"""

from __future__ import annotations

ALIASES: dict[str, list[str]] = {
    # LoRA and the techniques that are LoRA with an option or a different initialisation
    "lora": ["LoRA", "LoRAs", "low-rank adaptation"],
    "qlora": ["QLoRA", "Q-LoRA", "QLoRAs", "quantized LoRA"],
    "dora": ["DoRA", "DoRAs", "weight-decomposed low-rank adaptation"],
    "rslora": ["rsLoRA", "rank-stabilized LoRA"],
    "pissa": ["PiSSA"],
    "olora": ["OLoRA"],
    "loftq": ["LoftQ"],
    "eva": ["EVA"],
    "corda": ["CorDA"],
    "lora_fa": ["LoRA-FA"],
    "lora_plus": ["LoRA+", "LoraPlus"],
    "delta_lora": ["Delta-LoRA"],
    "adalora": ["AdaLoRA"],
    "xlora": ["X-LoRA"],
    "vblora": ["VB-LoRA"],
    "randlora": ["RandLoRA"],
    "gralora": ["GraLoRA"],
    "tinylora": ["TinyLoRA"],
    "unilora": ["Uni-LoRA"],
    "delora": ["DeLoRA"],
    "glora": ["GLoRA"],
    # LyCORIS family
    "loha": ["LoHa", "LoHas"],
    "lokr": ["LoKr"],
    "locon": ["LoCon"],
    # other weight-space techniques
    "ia3": ["IA3", "(IA)3", "(IA)^3", "(IA)³", "IA³"],
    "oft": ["OFT", "orthogonal fine-tuning"],
    "boft": ["BOFT", "butterfly orthogonal fine-tuning"],
    "vera": ["VeRA", "vector-based random matrix adaptation"],
    "pvera": ["PVeRA"],
    "fourierft": ["FourierFT"],
    "waveft": ["WaveFT"],
    "hra": ["HRA", "householder reflection adaptation"],
    "miss": ["MiSS", "Bone"],
    "hira": ["HiRA"],
    "shira": ["SHiRA"],
    "c3a": ["C3A"],
    "road": ["RoAd"],
    "ln_tuning": ["LN tuning", "LayerNorm tuning"],
    "trainable_tokens": ["trainable tokens"],
    "poly": ["Poly", "Polytropon"],
    "adamss": ["AdaMSS"],
    "beft": ["BEFT"],
    "deft": ["DeFT"],
    "frod": ["FRoD"],
    "lily": ["Lily"],
    "osf": ["OSF"],
    "peanut": ["Peanut"],
    "psoft": ["PSOFT"],
    "shadow": ["Shadow"],
    "supertuning": ["SuperTuning"],
    "cartridge": ["Cartridge"],
    # prompt-based techniques
    "prompt_tuning": ["prompt tuning"],
    "multitask_prompt_tuning": ["multitask prompt tuning", "multi-task prompt tuning"],
    "p_tuning": ["P-tuning"],
    "prefix_tuning": ["prefix tuning"],
    "adaption_prompt": ["adaption prompt", "LLaMA-Adapter"],
    "cpt": ["CPT", "context-aware prompt tuning"],
}

EXACT_CASE: frozenset[str] = frozenset(
    {"DoRA", "DoRAs", "EVA", "CorDA", "OFT", "VeRA", "PVeRA", "HRA", "MiSS", "HiRA", "SHiRA",
     "C3A", "RoAd", "LLaMA-Adapter", "DeFT", "FRoD", "BEFT", "PSOFT"}
)

AMBIGUOUS: frozenset[str] = frozenset(
    {"EVA", "Bone", "trainable tokens", "Poly", "Lily", "OSF", "Peanut", "Shadow", "Cartridge",
     "CPT", "DeFT"}
)

VARIANT_OF: dict[str, str] = {
    "qlora": "lora",
    "dora": "lora",
    "rslora": "lora",
    "pissa": "lora",
    "olora": "lora",
    "loftq": "lora",
    "eva": "lora",
    "corda": "lora",
    "lora_fa": "lora",
    "lora_plus": "lora",
    "delta_lora": "lora",
    "boft": "oft",
    "multitask_prompt_tuning": "prompt_tuning",
}

EXTRA_CONFIG_CLASSES: dict[str, str] = {
    "BoneConfig": "miss",
    "LoftQConfig": "loftq",
    "EvaConfig": "eva",
    "CordaConfig": "corda",
}

GENERIC_CONFIG_CLASSES: frozenset[str] = frozenset(
    {"PeftConfig", "PeftConfigMixin", "PromptLearningConfig", "LoraRuntimeConfig"}
)


def aliases_for(name: str) -> list[str]:
    """The aliases of technique ``name`` (display name first); unknown names give []."""
    return list(ALIASES.get(name.strip().lower(), []))


#: display names of catalog entries that are not PEFT techniques (full-parameter training with
#: a memory-efficient optimizer, freeze tuning): written for people, but not counted by the
#: adoption census, which measures PEFT techniques
DISPLAY_ONLY: dict[str, str] = {
    "galore": "GaLore", "galore_layerwise": "GaLore (layer-wise)", "galore_8bit": "GaLore 8-bit",
    "apollo": "APOLLO", "apollo_mini": "APOLLO-Mini", "badam": "BAdam", "adam_mini": "Adam-mini",
    "lomo": "LOMO", "adalomo": "AdaLomo", "freeze": "freeze tuning",
}


def display_name(name: str) -> str:
    """How a technique is written for people ("lora" -> "LoRA"); unknown names unchanged."""
    key = name.strip().lower()
    aliases = ALIASES.get(key)
    return aliases[0] if aliases else DISPLAY_ONLY.get(key, name)


def technique_for_alias(alias: str) -> str | None:
    """The catalog name an alias stands for, ignoring case and separators; None if unknown."""
    key = _loose_key(alias)
    for name, names in ALIASES.items():
        if key == _loose_key(name) or any(key == _loose_key(a) for a in names):
            return name
    return None


def _loose_key(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in " -_")
