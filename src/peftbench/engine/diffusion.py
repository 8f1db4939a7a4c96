"""Image generation with a Flux-style diffusion transformer: the flow-matching objective and
the sampler every image-gen run shares.

    images (pixels in [-1, 1]) ─ `ImagePipeline.encode_images` ─ latent tokens (B, S, C)
    prompts ─ `ImagePipeline.encode_prompts` ─ text embeddings (B, T, D) and their position ids
    training: x_t = (1 - σ) x + σ ε, the transformer predicts ε − x (`flow_matching_loss`)
    sampling: Euler steps of diffusers' FlowMatchEulerDiscreteScheduler from pure noise, with
        classifier-free guidance against the empty prompt (`ImagePipeline.generate`)

An `ImagePipeline` is what a model brings besides its transformer (text encoder, VAE or pixel
patches, position ids); the transformer itself is what the techniques adapt. The built-in
``tiny-flux2`` (`peftbench.engine.tiny_flux2`) and a diffusers pipeline loaded from the hub
(`peftbench.engine.diffusers_models`) both implement it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class Conditioning:
    """Encoded prompts: text embeddings (B, T, D) and their rotary position ids (B, T, 4)."""

    embeds: torch.Tensor
    ids: torch.Tensor

    def select(self, index: torch.Tensor) -> Conditioning:
        """The rows ``index`` (a batch of examples)."""
        return Conditioning(self.embeds.index_select(0, index), self.ids.index_select(0, index))

    def to(self, device: torch.device) -> Conditioning:
        """Both tensors on ``device``."""
        return Conditioning(self.embeds.to(device), self.ids.to(device))


@dataclass
class ImagePipeline:
    """The parts of an image model outside its transformer, and its sampling settings.

    Subclasses implement `encode_prompts`, `encode_images`, `decode` and `latent_ids`;
    `generate` is shared (or replaced by a pipeline's own call, see the diffusers recipe).
    """

    #: pixel resolution the model generates (square); None: any, the task's
    resolution: int | None
    #: colour channels of the images it generates (1: grey, 3: RGB)
    channels: int
    #: the image encoder that scores its images: "digit" (tiny-flux2) or "dino" (DINOv2)
    scorer: str
    num_inference_steps: int = 20
    guidance_scale: float = 3.5
    #: the transformer takes a guidance embedding (guidance-distilled checkpoints)
    guidance_embeds: bool = False
    #: what the result file says about the model beyond the transformer
    info: dict[str, Any] = field(default_factory=dict)

    def encode_prompts(self, prompts: list[str]) -> Conditioning:
        """Text embeddings of ``prompts`` (frozen: no gradient)."""
        raise NotImplementedError

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Latent tokens (B, S, C) of images (B, channels, H, W) with values in [-1, 1]."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor, resolution: int) -> torch.Tensor:
        """Images (B, channels, H, W) with values in [0, 1] from latent tokens."""
        raise NotImplementedError

    def latent_ids(self, batch: int, resolution: int) -> torch.Tensor:
        """Rotary position ids (B, S, 4) of the latent tokens of one image."""
        raise NotImplementedError

    def latent_shape(self, resolution: int) -> tuple[int, int]:
        """(tokens, channels) of one image's latents at ``resolution``."""
        probe = torch.zeros(1, self.channels, resolution, resolution)
        shape = self.encode_images(probe).shape
        return int(shape[1]), int(shape[2])

    def predict(self, transformer: nn.Module, latents: torch.Tensor, sigma: torch.Tensor,
                cond: Conditioning, ids: torch.Tensor) -> torch.Tensor:
        """The transformer's velocity prediction (B, S, C) for noisy ``latents`` at noise
        level ``sigma`` (B,) given ``cond``."""
        guidance = None
        if self.guidance_embeds:
            guidance = torch.full_like(sigma, self.guidance_scale)
        out = transformer(hidden_states=latents, timestep=sigma, guidance=guidance,
                          encoder_hidden_states=cond.embeds, txt_ids=cond.ids, img_ids=ids,
                          return_dict=False)[0]
        return out[:, : latents.shape[1]]

    @torch.no_grad()
    def generate(self, transformer: nn.Module, prompts: list[str], resolution: int,
                 generator: torch.Generator, cache: dict[str, Conditioning] | None = None
                 ) -> torch.Tensor:
        """Images (B, channels, H, W) in [0, 1] for ``prompts``: Euler steps of the
        flow-matching ODE from seeded noise, classifier-free guidance against the empty
        prompt when ``guidance_scale`` > 1 and the model has no guidance embedding."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        device = next(transformer.parameters()).device
        cond = conditioning(self, prompts, cache).to(device)
        cfg = self.guidance_scale > 1 and not self.guidance_embeds
        uncond = conditioning(self, [""] * len(prompts), cache).to(device) if cfg else None
        tokens, channels = self.latent_shape(resolution)
        x = torch.randn(len(prompts), tokens, channels, generator=generator).to(device)
        ids = self.latent_ids(len(prompts), resolution).to(device)
        scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        scheduler.set_timesteps(self.num_inference_steps, device=device)
        for t in scheduler.timesteps:
            sigma = (t / 1000).expand(len(prompts)).to(x.dtype)
            v = self.predict(transformer, x, sigma, cond, ids)
            if uncond is not None:
                v_empty = self.predict(transformer, x, sigma, uncond, ids)
                v = v_empty + self.guidance_scale * (v - v_empty)
            x = scheduler.step(v, t, x, return_dict=False)[0]
        return self.decode(x, resolution).clamp(0, 1)


def conditioning(pipe: ImagePipeline, prompts: list[str],
                  cache: dict[str, Conditioning] | None) -> Conditioning:
    """Encoded prompts, from ``cache`` where it holds them (filled as it goes): each prompt
    is encoded once per run, however many images are generated from it."""
    if cache is None:
        return pipe.encode_prompts(prompts)
    missing = [p for p in dict.fromkeys(prompts) if p not in cache]
    if missing:
        encoded = pipe.encode_prompts(missing)
        for i, prompt in enumerate(missing):
            cache[prompt] = Conditioning(encoded.embeds[i:i + 1], encoded.ids[i:i + 1])
    parts = [cache[p] for p in prompts]
    return Conditioning(torch.cat([c.embeds for c in parts]), torch.cat([c.ids for c in parts]))


def sample_sigmas(batch: int, generator: torch.Generator, steps: int = 1000) -> torch.Tensor:
    """Noise levels for a training batch: uniform timestep indices over ``steps`` training
    timesteps, σ = t / steps (the suite's ``weighting_scheme="none"`` on a flow-matching
    scheduler without shift)."""
    index = torch.randint(0, steps, (batch,), generator=generator)
    return (steps - index).float() / steps


def flow_matching_loss(pipe: ImagePipeline, transformer: nn.Module, latents: torch.Tensor,
                       cond: Conditioning, ids: torch.Tensor,
                       generator: torch.Generator) -> torch.Tensor:
    """The rectified-flow objective: noise ``latents`` to x_t = (1 − σ) x + σ ε and regress
    the transformer's output on the velocity ε − x (mean squared error per image, then over
    the batch). Noise and σ come from ``generator``, so a run's draws follow its seed."""
    noise = torch.randn(latents.shape, generator=generator).to(latents.device, latents.dtype)
    sigma = sample_sigmas(latents.shape[0], generator).to(latents.device, latents.dtype)
    noisy = (1 - sigma[:, None, None]) * latents + sigma[:, None, None] * noise
    pred = pipe.predict(transformer, noisy, sigma, cond, ids)
    target = noise - latents
    per_image = ((pred.float() - target.float()) ** 2).reshape(latents.shape[0], -1).mean(1)
    return per_image.mean()
