"""Resolve an image model's name: the transformer the techniques adapt and its `ImagePipeline`.

- ``tiny-flux2``: the embedded default (`peftbench.engine.tiny_flux2`), pretrained in-process;
- ``flux2-klein``: ``black-forest-labs/FLUX.2-klein-base-4B`` through diffusers'
  ``Flux2KleinPipeline``, the PEFT suite's base model (a GPU and the hub needed);
- any diffusers pipeline by hub id or local folder (``model_index.json``) whose pipeline has
  the Flux 2 methods (``encode_prompt``, latent packing): `DiffusersPipeline`.

The suite's recipe for Flux 2 klein: bfloat16 weights, gradient checkpointing, the VAE and
the text encoder frozen; prompts encoded once (``max_sequence_length`` 512, text encoder
layers 10, 20, 30) and the VAE latents patchified and batch-normalized with the VAE's own
statistics; 20 inference steps at guidance 3.5 against the empty prompt.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.engine.diffusion import Conditioning, ImagePipeline, conditioning
from peftbench.engine.models import IMAGE
from peftbench.errors import UserError, first_line

KLEIN = "flux2-klein"
KLEIN_ID = "black-forest-labs/FLUX.2-klein-base-4B"
IMAGE_MODELS = IMAGE
#: the PEFT suite's image-gen target modules (every Linear of the Flux 2 blocks)
FLUX_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj",
                "to_add_out", "to_qkv_mlp_proj", "linear_in", "linear_out"]
#: targets of techniques that adapt other layers than Linear ones (the suite's choices)
OTHER_TARGETS = {"ln_tuning": ["norm_q", "norm_k"]}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_image_model(name: str) -> bool:
    """Whether ``name`` is an image model by name alone (built-in, alias or a local diffusers
    folder); hub ids are told apart only when loaded."""
    key = name.strip()
    return key in IMAGE_MODELS or key == KLEIN_ID or (Path(key).expanduser() /
                                                      "model_index.json").is_file()


def default_targets(method: str) -> list[str]:
    """The target modules a technique gets on a Flux 2 transformer unless told otherwise."""
    return list(OTHER_TARGETS.get(method, FLUX_TARGETS))


def load_image_model(name: str, seed: int = 0) -> Any:
    """``name`` as a `LoadedModel` of kind ``image-gen`` (its ``pipeline`` field holds the
    `ImagePipeline`); a name that is not an image model is a `UserError`."""
    from peftbench.engine.models import LoadedModel

    key = name.strip()
    if key == "tiny-flux2":
        from peftbench.engine.tiny_flux2 import load_tiny_flux2

        transformer, pipe, info = load_tiny_flux2()
        return LoadedModel(transformer, None, "image-gen", key, "embedded", info, pipe)
    where = KLEIN_ID if key == KLEIN else key
    local = Path(where).expanduser()
    if local.exists() and not (local / "model_index.json").is_file():
        raise UserError(f"{local} is not a diffusers pipeline folder (no model_index.json)")
    if not local.exists() and not _HUB_ID.match(where):
        known = ", ".join(IMAGE_MODELS)
        raise UserError(f"unknown image model '{name}': not {known}, a diffusers pipeline "
                        "folder or a hub id")
    torch.manual_seed(seed)
    pipeline = _from_pretrained(str(local) if local.exists() else where, key)
    recipe = DiffusersPipeline(pipeline)
    info = {"source": "local" if local.exists() else "hub", "path": where,
            "model_type": type(pipeline.transformer).__name__,
            "num_parameters": sum(p.numel() for p in pipeline.transformer.parameters())}
    return LoadedModel(pipeline.transformer, None, "image-gen", key,
                       info["source"], info, recipe)


def _from_pretrained(where: str, name: str) -> Any:
    """The diffusers pipeline at ``where`` in bfloat16 (the suite's dtype)."""
    from diffusers import DiffusionPipeline

    try:
        return DiffusionPipeline.from_pretrained(where, torch_dtype=torch.bfloat16)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load image model '{name}': {first_line(exc)}") from None


class DiffusersPipeline(ImagePipeline):
    """The suite's recipe on a diffusers Flux 2 pipeline (Flux2KleinPipeline and its kin):
    the transformer is what the techniques adapt, the rest stays frozen."""

    def __init__(self, pipeline: Any, max_sequence_length: int = 512,
                 text_encoder_out_layers: tuple[int, ...] = (10, 20, 30)) -> None:
        transformer = pipeline.transformer
        guidance = bool(getattr(transformer.config, "guidance_embeds", False))
        super().__init__(resolution=None, channels=3, scorer="dino", num_inference_steps=20,
                         guidance_scale=3.5, guidance_embeds=guidance,
                         info={"pipeline": type(pipeline).__name__,
                               "max_sequence_length": max_sequence_length,
                               "text_encoder_out_layers": list(text_encoder_out_layers)})
        self.pipeline = pipeline
        self.max_sequence_length = max_sequence_length
        self.text_encoder_out_layers = text_encoder_out_layers
        pipeline.set_progress_bar_config(disable=True)
        for part in ("vae", "text_encoder"):
            module = getattr(pipeline, part, None)
            if isinstance(module, nn.Module):
                module.requires_grad_(False).eval()
        if getattr(transformer, "_supports_gradient_checkpointing", False):
            transformer.enable_gradient_checkpointing()

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """The pipeline's own prompt encoding (suite settings), one prompt at a time."""
        embeds, ids = [], []
        for prompt in prompts:
            e, i = self.pipeline.encode_prompt(
                prompt=prompt, max_sequence_length=self.max_sequence_length,
                text_encoder_out_layers=list(self.text_encoder_out_layers))
            embeds.append(e.cpu())
            ids.append(i.cpu())
        return Conditioning(torch.cat(embeds), torch.cat(ids))

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """VAE latents (mode), patchified, normalized by the VAE's batch-norm statistics,
        packed to tokens."""
        vae, pipe = self.pipeline.vae, self.pipeline
        x = pixels.to(vae.device, vae.dtype)
        latents = pipe._patchify_latents(vae.encode(x).latent_dist.mode())
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        return pipe._pack_latents((latents - mean) / std.to(latents)).cpu()

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, resolution: int) -> torch.Tensor:
        """Tokens → VAE image in [0, 1] (the inverse of `encode_images`)."""
        vae, pipe = self.pipeline.vae, self.pipeline
        ids = self.latent_ids(latents.shape[0], resolution).to(latents.device)
        grid = pipe._unpack_latents_with_ids(latents, ids).to(vae.device, vae.dtype)
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(grid)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps)
        images = vae.decode(pipe._unpatchify_latents(grid * std.to(grid) + mean)).sample
        return ((images.float() + 1) / 2).cpu()

    def latent_ids(self, batch: int, resolution: int) -> torch.Tensor:
        """The pipeline's latent position ids for a ``resolution`` image."""
        side = resolution // (self.pipeline.vae_scale_factor * 2)
        probe = torch.zeros(batch, 1, side, side)
        return self.pipeline._prepare_latent_ids(probe)

    @torch.no_grad()
    def generate(self, transformer: nn.Module, prompts: list[str], resolution: int,
                 generator: torch.Generator, cache: dict[str, Conditioning] | None = None
                 ) -> torch.Tensor:
        """The pipeline's own sampling call (its scheduler and shift), as the suite
        generates: cached prompt embeddings, the empty prompt as the negative one."""
        cond = conditioning(self, prompts, cache)
        empty = conditioning(self, [""], cache)
        device = next(transformer.parameters()).device
        original, self.pipeline.transformer = self.pipeline.transformer, transformer
        try:
            out = self.pipeline(
                prompt_embeds=cond.embeds.to(device),
                negative_prompt_embeds=empty.embeds.to(device).expand(len(prompts), -1, -1),
                num_inference_steps=self.num_inference_steps, guidance_scale=self.guidance_scale,
                height=resolution, width=resolution, generator=generator, output_type="pt")
        finally:
            self.pipeline.transformer = original
        return out.images.float().cpu().clamp(0, 1)
