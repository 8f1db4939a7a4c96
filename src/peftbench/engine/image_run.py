"""One image-generation run: what `peftbench.engine.experiment` does for a text model, for an
image model (kind ``image-gen``) on an image task.

    images ─ resized to the run's resolution ─ latents (once) ; prompts ─ embeddings (once)
    base model: drift images, sample images (and, with eval_base, its test similarity)
    ─ build the technique on the transformer ─ the engine's training loop with the
      flow-matching loss (validation: similarity, one generation per prompt)
    ─ test similarity (three generations per prompt, per-item means) ─ drift ─ samples
    ─ inference overhead ─ save the adapter

Seeds as the suite sets them: training noise from the run's seed, evaluation from seed +
100,000, drift from seed + 100,000,000 (both models from the same noise), so generations never
reuse the training draws.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from peftbench.engine import evaluate
from peftbench.engine.cost_only import scores_note
from peftbench.engine.diffusion import Conditioning, ImagePipeline, flow_matching_loss
from peftbench.engine.image_scores import (
    ImageEncoder,
    drift,
    encoder_for,
    mean,
    paired_similarity,
    save_png,
)
from peftbench.engine.measure import MemoryTracker, count_parameters, tensor_bytes
from peftbench.engine.progress import phase
from peftbench.engine.record import Measurements
from peftbench.engine.train import train
from peftbench.errors import UserError

EVAL_SEED_OFFSET = 100_000
DRIFT_SEED_OFFSET = 100_000_000
TEST_REPEATS = 3
#: default square resolution for models that take any (the suite's)
DEFAULT_RESOLUTION = 512


@dataclass
class ImageData:
    """A run's images and prompts, encoded once: training latents, reference images of every
    split, and the prompt cache (train, validation, test, drift and sample prompts)."""

    pipe: ImagePipeline
    resolution: int
    latents: torch.Tensor  # training images' latent tokens (N, S, C)
    train_cond: Conditioning
    references: dict[str, torch.Tensor]  # split -> images (N, C, H, W) in [0, 1]
    prompts: dict[str, list[str]]  # split -> prompts
    cache: dict[str, Conditioning] = field(default_factory=dict)

    def ids(self, batch: int) -> torch.Tensor:
        """Latent position ids for a batch."""
        return self.pipe.latent_ids(batch, self.resolution)


def run_resolution(pipe: ImagePipeline, task: Any) -> int:
    """The run's square resolution: the model's own when it has one (a different task
    ``resolution`` is a `UserError`), else the task's, else `DEFAULT_RESOLUTION`."""
    asked = getattr(task, "resolution", None)
    if pipe.resolution is not None:
        if asked is not None and asked != pipe.resolution:
            raise UserError(f"task option resolution={asked}: this model generates "
                            f"{pipe.resolution}x{pipe.resolution} images only")
        return pipe.resolution
    return asked or DEFAULT_RESOLUTION


def to_tensor(pictures: list[np.ndarray], channels: int, resolution: int) -> torch.Tensor:
    """Pictures (H, W, C) uint8 as images (N, channels, R, R) in [0, 1] (bilinear resize;
    grey and RGB converted as needed)."""
    out = []
    for array in pictures:
        x = torch.from_numpy(np.ascontiguousarray(array)).float().div(255).permute(2, 0, 1)
        if x.shape[0] != channels:
            x = x.mean(0, keepdim=True) if channels == 1 else x[:1].expand(channels, -1, -1)
        if x.shape[1:] != (resolution, resolution):
            x = torch.nn.functional.interpolate(x[None], size=(resolution, resolution),
                                                mode="bilinear", align_corners=False)[0]
        out.append(x)
    return torch.stack(out)


def prepare_images(pipe: ImagePipeline, task: Any, splits: dict[str, list[Any]]) -> ImageData:
    """Encode the run's images and prompts once (`ImageData`)."""
    resolution = run_resolution(pipe, task)
    refs = {s: to_tensor(task.images(s), pipe.channels, resolution) for s in splits}
    prompts = {s: [e.prompt for e in examples] for s, examples in splits.items()}
    latents = pipe.encode_images(refs["train"] * 2 - 1)
    data = ImageData(pipe, resolution, latents, pipe.encode_prompts(prompts["train"]), refs,
                     prompts)
    every = [*prompts["validation"], *prompts["test"], *task.drift_prompts,
             *task.sample_prompts, ""]
    for prompt in dict.fromkeys(every):
        data.cache[prompt] = pipe.encode_prompts([prompt])
    return data


def generate_all(data: ImageData, model: nn.Module, prompts: list[str], seed: int,
                 batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Images for ``prompts`` in batches, from one generator (seeded ``seed`` unless given)."""
    generator = generator or torch.Generator().manual_seed(seed)
    model.eval()
    parts = [data.pipe.generate(model, prompts[i:i + batch_size], data.resolution, generator,
                                data.cache)
             for i in range(0, len(prompts), batch_size)]
    return torch.cat(parts)


def similarity_items(data: ImageData, model: nn.Module, encoder: ImageEncoder, split: str,
                     seed: int, batch_size: int, repeats: int = 1) -> list[float]:
    """Each item's similarity of its generated image to its reference image, averaged over
    ``repeats`` generations (one generator across them, as the suite draws)."""
    generator = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    totals = np.zeros(len(data.prompts[split]))
    for _ in range(repeats):
        images = generate_all(data, model, data.prompts[split], seed, batch_size, generator)
        totals += np.array(paired_similarity(encoder, images, data.references[split]))
    return (totals / repeats).tolist()


def save_samples(data: ImageData, model: nn.Module, prompts: list[str], seed: int,
                 folder: Path, prefix: str) -> list[dict[str, str]]:
    """One image per prompt (seed + 100,000, the suite's), saved as ``prefix_NN.png``; the
    list of {prompt, file, model}, files relative to the folder of the result file."""
    generator = torch.Generator().manual_seed(seed + EVAL_SEED_OFFSET)
    scale = max(1, 64 // data.resolution)
    out = []
    for k, prompt in enumerate(prompts, 1):
        image = generate_all(data, model, [prompt], seed, 1, generator)[0]
        path = folder / f"{prefix}_{k:02d}.png"
        save_png(image, path, scale)
        out.append({"prompt": prompt, "file": f"{folder.parent.name}/{folder.name}/{path.name}",
                    "model": prefix})
    return out


def train_and_measure_image(prep: Any, bar: Any, adapter_dir: Path | None,
                            samples_dir: Path | None, tracker: Any = None,
                            save: Any = None) -> Measurements:
    """Train and measure an image run (see the module's docstring); ``save(method, model,
    folder)`` saves the adapter and returns (size, path). Sample images are saved by runs
    that score test (not by tuning runs); a `UserError` leaves none behind."""
    if not prep.spec.train.eval_test:
        samples_dir = None
    try:
        with warnings.catch_warnings():  # bf16 autocast meets fp32 norm weights: a slower
            warnings.filterwarnings(  # kernel, the same result; not the user's concern
                "ignore", message=".*Mismatch dtype between input and weight.*")
            return _measure(prep, bar, adapter_dir, samples_dir, tracker, save)
    except UserError:
        if samples_dir is not None:
            import shutil

            shutil.rmtree(samples_dir, ignore_errors=True)
        raise


def _measure(prep: Any, bar: Any, adapter_dir: Path | None, samples_dir: Path | None,
             tracker: Any, save: Any) -> Measurements:
    spec, params, dev, amp = prep.spec, prep.spec.train, prep.device, prep.amp_dtype
    pipe: ImagePipeline = prep.loaded.pipeline
    m = Measurements(device=dev.type,
                     autocast_dtype=str(amp).replace("torch.", "") if amp else "float32",
                     scores_note=scores_note(spec, prep.loaded))
    scores = m.scores_note is None
    encoder = encoder_for(pipe.scorer) if scores else None
    data = prepare_images(pipe, prep.task, prep.splits)
    torch.manual_seed(params.seed)
    model = prep.loaded.model.to(dev)
    base_drift: torch.Tensor | None = None
    if scores:
        with phase(bar, "base model", 1):
            base_drift = generate_all(data, model, list(prep.task.drift_prompts),
                                      params.seed + DRIFT_SEED_OFFSET, params.eval_batch_size)
            if samples_dir is not None:
                m.sample_images = save_samples(data, model, list(prep.task.sample_prompts),
                                               params.seed, samples_dir, "base")
            if params.eval_base and params.eval_test:
                items = similarity_items(data, model, encoder, "test", params.seed,
                                         params.eval_batch_size, TEST_REPEATS)
                m.base_test_score, m.base_test_items = mean(items), items
    torch.manual_seed(params.seed)
    overrides = dict(spec.adapter_config)
    model = build_adapter(prep.method, model, spec.targets, overrides)
    model.to(dev)
    m.peft_config = _applied_config(model)
    if count_parameters(model)[0] == 0:
        raise UserError(f"{spec.method} has no trainable parameters on this model "
                        "(its config selects nothing here)")
    m.param_bytes = tensor_bytes({id(p): p for p in model.parameters()}.values())
    m.lr = params.lr or prep.method.default_lr
    if tracker is not None:
        tracker.start()
    _train(prep, data, model, encoder, bar, m, tracker)
    if scores and params.eval_test:
        with phase(bar, "test", 1):
            items = similarity_items(data, model, encoder, "test", params.seed,
                                     params.eval_batch_size, TEST_REPEATS)
        m.test_score, m.test_items = mean(items), items
        m.test_metrics = {prep.task.metric: m.test_score}
        adapted = generate_all(data, model, list(prep.task.drift_prompts),
                               params.seed + DRIFT_SEED_OFFSET, params.eval_batch_size)
        m.drift = m.forgetting = drift(encoder, base_drift, adapted)
        if samples_dir is not None:
            m.sample_images += save_samples(data, model, list(prep.task.sample_prompts),
                                            params.seed, samples_dir, "adapted")
    if params.measure_inference:
        m.inference_slowdown = evaluate.inference_slowdown(
            model, probe_batch(data, params.eval_batch_size), device=dev, amp_dtype=amp)
    m.mergeable = bool(prep.method.can_merge(model))
    if adapter_dir is not None and save is not None:
        m.file_size, m.adapter_path = save(prep.method, model, adapter_dir)
        if not scores:
            import shutil

            shutil.rmtree(m.adapter_path, ignore_errors=True)
            m.adapter_path = None
    return m


def build_adapter(method: Any, model: nn.Module, targets: str | None,
                  overrides: dict[str, Any]) -> nn.Module:
    """The technique on the transformer, with the suite's Flux target modules unless
    ``--targets`` or the config names others."""
    from peftbench.engine.image_models import OTHER_TARGETS, default_targets

    adapts = method.targets_modules or method.name in OTHER_TARGETS
    if targets is None and adapts and "target_modules" not in overrides:
        overrides = {**overrides, "target_modules": default_targets(method.name)}
    return method.build(model, "image-gen", targets, overrides)


def _train(prep: Any, data: ImageData, model: nn.Module, encoder: ImageEncoder | None,
           bar: Any, m: Measurements, tracker: Any) -> None:
    """The engine's training loop with the flow-matching loss; validation is the
    similarity on the validation split (one generation per prompt)."""
    params = prep.spec.train
    generator = torch.Generator().manual_seed(params.seed)

    def step_loss(net: nn.Module, indices: list[int]) -> tuple[torch.Tensor, int]:
        index = torch.tensor(indices)
        latents = data.latents.index_select(0, index).to(prep.device)
        cond = data.train_cond.select(index).to(prep.device)
        ids = data.ids(len(indices)).to(prep.device)
        loss = flow_matching_loss(data.pipe, net, latents, cond, ids, generator)
        return loss, int(latents.shape[0] * latents.shape[1])

    def validate() -> float:
        return mean(similarity_items(data, model, encoder, "validation", params.seed,
                                     params.eval_batch_size))

    memory = MemoryTracker(prep.device)
    memory.reset()
    with phase(bar, f"train {prep.spec.method}", params.steps_to_run()) as advance:
        outcome = train(model, prep.method, list(range(len(data.latents))), params, lr=m.lr,
                        pad_id=0, device=prep.device, amp_dtype=prep.amp_dtype, memory=memory,
                        validate=validate if encoder is not None else None,
                        metric=prep.task.metric,
                        on_step=lambda step, loss: advance(1, info=f"loss {loss:.3f}"),
                        on_log=tracker.log if tracker else None, step_loss=step_loss)
    m.take_training(outcome, memory)


def probe_batch(data: ImageData, batch_size: int) -> dict[str, torch.Tensor]:
    """A forward batch of the transformer (training latents at σ = 0.5, no noise: a fixed
    input) for the inference-overhead probe and the export's output comparison."""
    n = min(batch_size, len(data.latents))
    index = torch.arange(n)
    cond = data.train_cond.select(index)
    batch = {"hidden_states": data.latents[:n], "timestep": torch.full((n,), 0.5),
             "encoder_hidden_states": cond.embeds, "txt_ids": cond.ids, "img_ids": data.ids(n)}
    if data.pipe.guidance_embeds:
        batch["guidance"] = torch.full((n,), data.pipe.guidance_scale)
    return batch


def _applied_config(model: nn.Module) -> dict[str, Any] | None:
    configs = getattr(model, "peft_config", None)
    if not isinstance(configs, dict) or not configs:
        return None
    config = next(iter(configs.values()))
    return config.to_dict() if hasattr(config, "to_dict") else None
