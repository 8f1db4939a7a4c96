"""Scoring generated images: subject similarity and drift, as the PEFT suite defines them.

    generated image ─ image encoder ─ L2-normalized embedding ─┐
    reference image ─ image encoder ─ L2-normalized embedding ─┴ cosine similarity

- **similarity** (the test score): the mean cosine similarity between each test prompt's
  generated image and that item's reference image (the suite averages three generations per
  prompt on test, one on validation);
- **drift**: (1 − mean cosine similarity)/2 between the images the base model and the adapted
  model generate, from the same seeds, for prompts unrelated to the subject (0: unchanged).

Two encoders: DINOv2 (``facebook/dinov2-base``, the suite's; its class token embeds an image)
wherever it can be loaded, metric ``dino_similarity``; and, offline, `DigitEncoder`, a small
network trained in-process on scikit-learn's digits and cached, metric ``digit_similarity``.
The latter is a stand-in for tiny-flux2's 8×8 digits, not a DINOv2 figure, hence its own name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

DINO_MODEL = "facebook/dinov2-base"
DINO_METRIC = "dino_similarity"
DIGIT_METRIC = "digit_similarity"


class ImageEncoder:
    """Embeds images (B, C, H, W) with values in [0, 1] as L2-normalized vectors."""

    metric: str = ""

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The normalized embeddings (B, D)."""
        raise NotImplementedError


def paired_similarity(encoder: ImageEncoder, generated: torch.Tensor,
                      references: torch.Tensor) -> list[float]:
    """Cosine similarity of each generated image with the reference at the same position."""
    a, b = encoder.embed(generated), encoder.embed(references)
    return (a * b).sum(-1).tolist()


def drift(encoder: ImageEncoder, base_images: torch.Tensor,
          adapted_images: torch.Tensor) -> float:
    """The suite's drift: (1 − mean cosine similarity)/2 of the adapted model's images to the
    base model's (same prompts, same seeds); 0 when nothing changed, 1 at the opposite."""
    sims = paired_similarity(encoder, adapted_images, base_images)
    return (1 - float(np.mean(sims))) / 2


# ---------------------------------------------------------------------------- digits


class DigitNet(nn.Module):
    """An MLP on 8×8 grey digits: its hidden layer is the embedding, its head the class."""

    def __init__(self, hidden: int = 128, dim: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                                  nn.Linear(hidden, dim))
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(dim, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of images (B, 1, 8, 8) in [0, 1]."""
        return self.head(self.body(x))


class DigitEncoder(ImageEncoder):
    """The offline stand-in for DINOv2 on tiny-flux2's digits (``digit_similarity``)."""

    metric = DIGIT_METRIC

    def __init__(self, net: DigitNet) -> None:
        self.net = net.eval()

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized hidden-layer embeddings of 8×8 images (grey, or RGB averaged)."""
        x = _grey8(images)
        return torch.nn.functional.normalize(self.net.body(x), dim=-1)

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> list[int]:
        """The digit each image shows, as the encoder reads it."""
        return self.net(_grey8(images)).argmax(-1).tolist()


def _grey8(images: torch.Tensor) -> torch.Tensor:
    x = images.float()
    if x.shape[1] != 1:
        x = x.mean(1, keepdim=True)
    if x.shape[-1] != 8:
        x = torch.nn.functional.interpolate(x, size=(8, 8), mode="area")
    return x


_DIGIT_TRAINING = {"epochs": 400, "lr": 3e-3, "seed": 0, "hidden": 128, "dim": 64}


def train_digit_net(epochs: int = 400, lr: float = 3e-3, seed: int = 0, hidden: int = 128,
                    dim: int = 64) -> DigitNet:
    """A `DigitNet` trained full-batch on all 1,797 digits (every class: it is a scorer, not
    a contestant), seeded and deterministic; a few seconds on one CPU thread."""
    from peftbench.engine.tiny_flux2 import load_digits_data

    images, labels = load_digits_data()
    x, y = torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)
    torch.manual_seed(seed)
    net = DigitNet(hidden, dim)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    for _ in range(epochs):
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return net.eval()


def digit_encoder() -> DigitEncoder:
    """The cached digit encoder (trained on first use, under $PEFTBENCH_CACHE)."""
    from safetensors.torch import load_file, save_file

    from peftbench.engine.models import cache_dir

    key = hashlib.sha256(json.dumps(_DIGIT_TRAINING, sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / "models" / f"digit-encoder-{key}.safetensors"
    net = DigitNet(_DIGIT_TRAINING["hidden"], _DIGIT_TRAINING["dim"])
    if path.is_file():
        net.load_state_dict(load_file(str(path)))
        return DigitEncoder(net)
    net = train_digit_net(**_DIGIT_TRAINING)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{id(net)}.tmp")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return DigitEncoder(net)


# ---------------------------------------------------------------------------- DINOv2


class DinoEncoder(ImageEncoder):
    """DINOv2 as the suite uses it: the processor's resize and crop, the class token of the
    last hidden state, L2-normalized (``dino_similarity``)."""

    metric = DINO_METRIC

    def __init__(self, processor: Any, model: nn.Module) -> None:
        self.processor, self.model = processor, model.eval()

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Class-token embeddings of images in [0, 1] (grey ones repeated to RGB)."""
        x = images.float()
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        device = next(self.model.parameters()).device
        inputs = self.processor(images=list(x.cpu()), return_tensors="pt", do_rescale=False)
        hidden = self.model(pixel_values=inputs["pixel_values"].to(device)).last_hidden_state
        return torch.nn.functional.normalize(hidden[:, 0].float(), dim=-1).cpu()


def dino_encoder(model_id: str = DINO_MODEL) -> DinoEncoder:
    """DINOv2 from the hub (or a local folder); raises a `UserError` when it cannot load."""
    from transformers import AutoImageProcessor, AutoModel

    from peftbench.errors import UserError, first_line

    try:
        processor = AutoImageProcessor.from_pretrained(model_id)
        model = AutoModel.from_pretrained(model_id)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load the image encoder {model_id} for dino_similarity: "
                        f"{first_line(exc)}") from None
    return DinoEncoder(processor, model)


def encoder_for(scorer: str) -> ImageEncoder:
    """The image encoder a model's images are scored with: ``digit`` or ``dino``."""
    return digit_encoder() if scorer == "digit" else dino_encoder()


def save_png(image: torch.Tensor, path: Path, scale: int = 1) -> None:
    """Write one image (C, H, W) in [0, 1] as a PNG, enlarged ``scale`` times (nearest)."""
    from PIL import Image

    array = (image.clamp(0, 1).float().numpy() * 255).round().astype(np.uint8)
    array = array[0] if array.shape[0] == 1 else np.transpose(array, (1, 2, 0))
    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale),
                                 Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)


def mean(values: Sequence[float]) -> float:
    """The mean of ``values`` (0.0 for none)."""
    return float(np.mean(values)) if len(values) else 0.0
