"""``tiny-flux2``: a small Flux 2 diffusion transformer pretrained in-process on handwritten
digits, the embedded default of the image-generation track (no network, no download).

    scikit-learn's digits (8×8 grey, 10 classes) minus the subject class
      ─ prompts "a photo of digit three", "a drawing of digit three", …
      ─ pixel space, 2×2 patches → 16 latent tokens of 4 values (no VAE)
      ─ diffusers' own `Flux2Transformer2DModel` (so PEFT's FLUX target modules apply),
        trained with the flow-matching objective for a fixed number of seeded steps
      ─ cached as a diffusers model folder under $PEFTBENCH_CACHE (like the GGUF conversion)

It is a synthetic task like ``arith``, not a picture generator: it exists so that the image
track's every step (flow-matching fine-tuning, sampling, similarity and drift) runs on a laptop
CPU in minutes. The subject class (`SUBJECT_DIGIT`) is never shown in pretraining: the built-in
DreamBooth task teaches it under the new word "sks".

Prompts are encoded by a frozen word-embedding table (each word's vector drawn from a seed made
of the word itself), so any prompt, including one with an unseen word, has an encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftbench.engine.diffusion import Conditioning, ImagePipeline, flow_matching_loss

NAME = "tiny-flux2"
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: the class held out of pretraining: the built-in DreamBooth subject
SUBJECT_DIGIT = 7
#: prompt templates of pretraining ({name}: the digit's name)
TEMPLATES = ("a photo of digit {name}", "a drawing of digit {name}", "digit {name}",
             "a handwritten {name}")
RESOLUTION = 8
PATCH = 2
MAX_WORDS = 8


@dataclass(frozen=True)
class TinyFluxConfig:
    """The transformer's size and its pretraining budget; the cache key is its hash."""

    heads: int = 4
    head_dim: int = 16
    double_layers: int = 1
    single_layers: int = 2
    text_dim: int = 32
    mlp_ratio: float = 2.0
    steps: int = 1000  # about 2 minutes on one CPU thread
    batch_size: int = 128
    lr: float = 1e-3
    prompt_dropout: float = 0.1  # empty prompts, for classifier-free guidance
    seed: int = 0

    def key(self) -> str:
        """A short hash of the config: the cache folder's name."""
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


#: what ``--model tiny-flux2`` builds (tests swap in a smaller one)
DEFAULT_CONFIG = TinyFluxConfig()


def load_digits_data() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as (N, 8, 8) floats in [0, 1] and their labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def pretraining_indices(labels: np.ndarray) -> np.ndarray:
    """The digits pretraining sees: every class but `SUBJECT_DIGIT`."""
    return np.flatnonzero(labels != SUBJECT_DIGIT)


def subject_indices(labels: np.ndarray) -> np.ndarray:
    """The digits of the subject class (never seen in pretraining)."""
    return np.flatnonzero(labels == SUBJECT_DIGIT)


def transformer_config(cfg: TinyFluxConfig) -> dict[str, Any]:
    """`Flux2Transformer2DModel` arguments for ``cfg`` (pixel patches in, velocity out)."""
    quarter = cfg.head_dim // 4
    return {"patch_size": 1, "in_channels": PATCH * PATCH, "num_layers": cfg.double_layers,
            "num_single_layers": cfg.single_layers, "attention_head_dim": cfg.head_dim,
            "num_attention_heads": cfg.heads, "joint_attention_dim": cfg.text_dim,
            "timestep_guidance_channels": 64, "mlp_ratio": cfg.mlp_ratio,
            "axes_dims_rope": (quarter,) * 4, "guidance_embeds": False}


class WordEncoder:
    """Frozen prompt encoder: lower-cased words, each a fixed random vector seeded by the word
    itself, padded to `MAX_WORDS` with zeros (the empty prompt is all padding)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._vectors: dict[str, torch.Tensor] = {}

    def vector(self, word: str) -> torch.Tensor:
        """The word's embedding (unit variance per entry)."""
        if word not in self._vectors:
            seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
            gen = torch.Generator().manual_seed(seed % (2 ** 63))
            self._vectors[word] = torch.randn(self.dim, generator=gen)
        return self._vectors[word]

    def __call__(self, prompts: list[str]) -> Conditioning:
        """The prompts' embeddings (B, MAX_WORDS, dim) and text position ids (B, MAX_WORDS, 4)."""
        embeds = torch.zeros(len(prompts), MAX_WORDS, self.dim)
        for i, prompt in enumerate(prompts):
            for j, word in enumerate(prompt.lower().split()[:MAX_WORDS]):
                embeds[i, j] = self.vector(word)
        ids = torch.zeros(len(prompts), MAX_WORDS, 4)
        ids[..., 3] = torch.arange(MAX_WORDS, dtype=torch.float32)
        return Conditioning(embeds, ids)


class TinyFluxPipeline(ImagePipeline):
    """`ImagePipeline` of tiny-flux2: 8×8 grey pixels as 2×2 patches, the word encoder."""

    def __init__(self, text_dim: int) -> None:
        super().__init__(resolution=RESOLUTION, channels=1, scorer="digit",
                         num_inference_steps=20, guidance_scale=2.0,
                         info={"text_encoder": "frozen per-word random vectors",
                               "latents": "pixel space, 2x2 patches (no VAE)"})
        self.words = WordEncoder(text_dim)

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Word-vector embeddings of ``prompts``."""
        return self.words(prompts)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 1, 8, 8) pixels in [-1, 1] → (B, 16, 4) patch tokens."""
        b, c, h, w = pixels.shape
        x = pixels.reshape(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
        x = x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)
        return x

    def decode(self, latents: torch.Tensor, resolution: int) -> torch.Tensor:
        """(B, 16, 4) patch tokens → (B, 1, 8, 8) images in [0, 1]."""
        b, side = latents.shape[0], resolution // PATCH
        x = latents.reshape(b, side, side, self.channels, PATCH, PATCH)
        x = x.permute(0, 3, 1, 4, 2, 5).reshape(b, self.channels, resolution, resolution)
        return (x.float() + 1) / 2

    def latent_ids(self, batch: int, resolution: int) -> torch.Tensor:
        """(t, h, w, l) ids of the patch grid, as Flux 2 numbers its latents."""
        side = resolution // PATCH
        grid = torch.cartesian_prod(torch.arange(1), torch.arange(side), torch.arange(side),
                                    torch.arange(1)).float()
        return grid.unsqueeze(0).expand(batch, -1, -1)


def pretrain(cfg: TinyFluxConfig) -> nn.Module:
    """The transformer of ``cfg`` trained on the pretraining digits for ``cfg.steps`` seeded
    steps (AdamW, constant rate after a short warm-up, float32): deterministic for a given
    config on a given torch build."""
    from diffusers import Flux2Transformer2DModel

    torch.manual_seed(cfg.seed)
    model = Flux2Transformer2DModel(**transformer_config(cfg)).float()
    pipe = TinyFluxPipeline(cfg.text_dim)
    images, labels = load_digits_data()
    keep = pretraining_indices(labels)
    pixels = torch.from_numpy(images[keep] * 2 - 1).unsqueeze(1)
    latents = pipe.encode_images(pixels)
    rng = np.random.default_rng(cfg.seed)
    templates = rng.integers(0, len(TEMPLATES), size=len(keep))
    prompts = [TEMPLATES[t].format(name=DIGIT_NAMES[labels[i]]) for t, i in zip(templates, keep,
                                                                                 strict=True)]
    cond, empty = pipe.encode_prompts(prompts), pipe.encode_prompts([""])
    ids = pipe.latent_ids(cfg.batch_size, RESOLUTION)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    warmup = max(1, cfg.steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    for _ in range(cfg.steps):
        index = torch.randint(0, len(keep), (cfg.batch_size,), generator=gen)
        batch = cond.select(index)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.prompt_dropout
        batch.embeds[drop] = empty.embeds[0]
        loss = flow_matching_loss(pipe, model, latents[index], batch, ids, gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    return model


def cached_folder(cfg: TinyFluxConfig | None = None) -> Path:
    """The pretrained tiny-flux2 of ``cfg`` (default: `DEFAULT_CONFIG`) as a diffusers model
    folder under the cache, pretrained (once, minutes on one CPU thread) on first use."""
    from peftbench.engine.models import cache_dir

    cfg = cfg or DEFAULT_CONFIG
    target = cache_dir() / "models" / f"{NAME}-{cfg.key()}"
    if (target / "config.json").is_file():
        return target
    model = pretrain(cfg)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".pretrain-", dir=target.parent))
    try:
        model.save_pretrained(str(tmp))
        (tmp / "peftbench_pretraining.json").write_text(json.dumps(asdict(cfg), indent=1))
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
            return target
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_tiny_flux2(cfg: TinyFluxConfig | None = None) -> tuple[nn.Module, TinyFluxPipeline,
                                                                  dict[str, Any]]:
    """The pretrained transformer (float32, training mode off), its pipeline and what the
    result file says about it."""
    from diffusers import Flux2Transformer2DModel

    cfg = cfg or DEFAULT_CONFIG
    folder = cached_folder(cfg)
    model = Flux2Transformer2DModel.from_pretrained(str(folder)).float()
    info = {"source": "embedded", "path": str(folder), "model_type": "flux2-transformer",
            "num_parameters": sum(p.numel() for p in model.parameters()),
            "pretraining": asdict(cfg) | {"held_out_digit": SUBJECT_DIGIT,
                                          "data": "scikit-learn digits"}}
    return model, TinyFluxPipeline(cfg.text_dim), info
