"""``dreambooth``: teach an image model a subject from a few pictures, each with its prompt.

Where the images come from:

- ``--task dreambooth`` alone: the built-in subject, the digit class tiny-flux2 never saw in
  pretraining (`peftbench.engine.tiny_flux2.SUBJECT_DIGIT`), under the new word "sks"
  ("a photo of sks digit"); no download;
- ``--task dreambooth:FOLDER`` (or ``--data FOLDER``): a local folder in the PEFT suite's
  layout, images with one prompt each: ``metadata.jsonl`` lines ``{"file_name": …,
  "prompt": …}`` (the hub's imagefolder convention), or ``NAME.txt`` beside ``NAME.png``, or
  one ``instance_prompt`` option for every image;
- ``--task dreambooth:ORG/NAME``: a hub data set (column ``image``; prompts from a
  ``prompt``/``text`` column, the ``instance_prompt`` option, or, for the suite's own cat data
  set, the suite's twenty prompts), when the hub is reachable.

The split is the suite's: a permutation of all images from the seed, then train, validation
(``valid_size``) and test (``test_size``). Every image is opened and checked before anything
trains: an unreadable file, a missing prompt, or images of different sizes (without a
``resolution`` that resizes them all) is one `UserError` line.

Examples carry the prompt and a hash of the image (so that result fingerprints cover the
pixels); `DreamBoothTask.images` gives the pixels themselves. The score is the similarity of
generated to reference images (`peftbench.engine.image_scores`), named by the image encoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from peftbench.errors import UserError, first_line
from peftbench.tasks.base import SPLITS, Example, TaskDoc, TaskOption, document_task, register
from peftbench.tasks.options import TaskOptions
from peftbench.tasks.prepared import PreparedTask

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SUITE_DATASET = "peft-internal-testing/cat-image-dataset"
#: the PEFT suite's instance prompts of its cat data set, one per image in data set order
SUITE_PROMPTS = (
    "sks cat sitting on a chair in front of a box of chocolates",
    "sks cat playing on the Steam Deck",
    "sks cat wearing a necklace while sitting in a box on a sofa",
    "a box with four donuts in front of sks cat",
    "sks cat wearing a pink veil with flowers on it and a dagger made out of yellow cardboard",
    "sks cat between two pillows, with one pillow showing a polar bear and the other a fox",
    "sks cat with an espresso reading the newspaper",
    "a close up of a hand petting sks cat on the head",
    "sks cat opens a white door",
    "sks cat with a VIP \"all access\" pass",
    "sks cat in front of a monitor showing the video game \"RimWorld\"",
    "sks cat reads a newspaper about cannabis",
    "sks cat reading the newspaper with the title \"DIE BOX\"",
    "sks cat being fed sushi",
    "sks cat in front of a box of tomatoes",
    "a gingerbread house in front of sks cat",
    "sks cat is wearing a Wednesday Addams costume",
    "sks cat looks skeptical as he reads a magazine depicting a black cat",
    "sks cat wearing a striped scarf",
    "sleepy sks cat lying in bed covered by a blue blanket",
)
#: the suite's sample prompts (the subject, a drawing, a scene, and two leakage checks: the
#: token on another class, and the class without the token)
SUITE_SAMPLE_PROMPTS = ("a photo of sks cat", "a color drawing of sks cat",
                        "sks cat at the beach", "a photo of sks dog", "a photo of an orange cat")
#: the suite's drift prompts: unrelated to the subject, so the images should not change
SUITE_DRIFT_PROMPTS = (
    "a photo of cat", "a color drawing of cat", "cat sitting in a bathtub",
    "cat looks into a mirror", "a photo of cat next to a tree",
    "the Mona Lisa but she looks angry", "a dog holding a sign that says hello world",
    "a photo of the Eiffel tower at night", "an astronaut riding a horse",
    "3d design concept of a chair that looks like an avocado",
)
#: the built-in subject's prompts, cycled over its images
DIGIT_INSTANCE_PROMPTS = ("a photo of sks digit", "a drawing of sks digit", "sks digit",
                          "a handwritten sks digit")
#: what the samples of the built-in subject show: the subject twice, then the leakage
#: checks (the token on another noun; a pretrained class without the token)
DIGIT_SAMPLE_PROMPTS = ("a photo of sks digit", "a handwritten sks digit",
                        "a photo of sks letter", "a photo of digit three")


@dataclass
class Picture:
    """One image of the data set, its prompt and where it came from."""

    pixels: np.ndarray  # (H, W, C) uint8, C = 1 or 3
    prompt: str
    name: str

    def digest(self) -> str:
        """A short hash of the pixels (the example's identity in fingerprints)."""
        return hashlib.sha256(self.pixels.tobytes()).hexdigest()[:16]


class DreamBoothTask(PreparedTask):
    """A subject from a few images with prompts; scored by image similarity and drift."""

    name = "dreambooth"
    kind = "image"
    metric = "digit_similarity"

    def __init__(self, pictures: list[Picture], sizes: dict[str, int], seed: int,
                 resolution: int | None, source: dict[str, Any], sample_prompts: tuple[str, ...],
                 drift_prompts: tuple[str, ...]) -> None:
        self.pictures, self.sizes, self.seed = pictures, sizes, seed
        self.resolution, self._source = resolution, source
        self.sample_prompts, self.drift_prompts = sample_prompts, drift_prompts
        self._chosen = split_indices(len(pictures), sizes, seed)

    def build_splits(self) -> dict[str, list[Example]]:
        """The examples of each split: prompt, image hash (``answer``) and name (``text``)."""
        return {split: [Example(self.pictures[i].prompt, "", self.pictures[i].digest(),
                                self.pictures[i].name) for i in self._chosen[split]]
                for split in SPLITS}

    def images(self, split: str) -> list[np.ndarray]:
        """The pixels (H, W, C) uint8 of ``split``'s images, in the examples' order."""
        return [self.pictures[i].pixels for i in self._chosen[split]]

    def source(self) -> dict[str, Any]:
        """Where the images came from, the seed, the resolution and the prompt lists."""
        return {**self._source, "seed": self.seed, "resolution": self.resolution,
                "valid_size": self.sizes["validation"], "test_size": self.sizes["test"],
                "sample_image_prompts": list(self.sample_prompts),
                "drift_image_prompts": list(self.drift_prompts)}

    def extract_answer(self, generated: str) -> str:
        """Not used: images are scored by similarity, not by an extracted answer."""
        return generated


def split_indices(n: int, sizes: dict[str, int], seed: int) -> dict[str, list[int]]:
    """The suite's split: one seeded permutation, then train, validation and test."""
    order = np.random.RandomState(seed).permutation(n).tolist()
    n_train, n_valid = sizes["train"], sizes["validation"]
    return {"train": order[:n_train], "validation": order[n_train:n_train + n_valid],
            "test": order[n_train + n_valid:n_train + n_valid + sizes["test"]]}


# ---------------------------------------------------------------------------- sources


def builtin_pictures() -> list[Picture]:
    """The built-in subject: every digit of the class tiny-flux2 never saw, as 8×8 grey
    pictures, with the subject's prompts in turn."""
    from peftbench.engine.tiny_flux2 import SUBJECT_DIGIT, load_digits_data, subject_indices

    images, labels = load_digits_data()
    out = []
    for k, i in enumerate(subject_indices(labels)):
        pixels = (images[i] * 255).round().astype(np.uint8)[:, :, None]
        out.append(Picture(pixels, DIGIT_INSTANCE_PROMPTS[k % len(DIGIT_INSTANCE_PROMPTS)],
                           f"digits[{i}] (class {SUBJECT_DIGIT})"))
    return out


def folder_pictures(folder: Path, instance_prompt: str | None) -> list[Picture]:
    """The images of ``folder`` (sorted by name) with their prompts; every problem is a
    `UserError` naming the file."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    prompts = _metadata_prompts(folder)
    out = []
    for path in files:
        prompt = prompts.get(path.name) or _sidecar_prompt(path) or instance_prompt
        if not prompt:
            raise UserError(f"{path}: no prompt for this image (add it to metadata.jsonl, "
                            f"write {path.with_suffix('.txt').name}, or set --task-opt "
                            "instance_prompt=...)")
        out.append(Picture(open_image(path), prompt, path.name))
    return out


def _metadata_prompts(folder: Path) -> dict[str, str]:
    path = folder / "metadata.jsonl"
    if not path.is_file():
        return {}
    found = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{n}: not JSON ({exc.msg})") from None
        name = row.get("file_name") if isinstance(row, dict) else None
        prompt = (row.get("prompt") or row.get("text")) if isinstance(row, dict) else None
        if not isinstance(name, str) or not isinstance(prompt, str) or not prompt.strip():
            raise UserError(f"{path}:{n}: expected {{\"file_name\": ..., \"prompt\": ...}}")
        found[Path(name).name] = prompt.strip()
    return found


def _sidecar_prompt(image: Path) -> str | None:
    text = image.with_suffix(".txt")
    if not text.is_file():
        return None
    return text.read_text(encoding="utf-8").strip() or None


def open_image(path: Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, upright (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable image ({first_line(exc)})") from None


def hub_pictures(repo: str, split: str, instance_prompt: str | None) -> list[Picture]:
    """The images of a hub data set with their prompts (see the module's docstring)."""
    from peftbench.tasks.hub import load_hub_rows

    rows = load_hub_rows(repo, None, split, ("image",))
    prompts: list[str | None]
    if repo == SUITE_DATASET and instance_prompt is None:
        prompts = list(SUITE_PROMPTS)
    else:
        prompts = [instance_prompt] * len(rows)
    if len(prompts) != len(rows) or not all(prompts):
        raise UserError(f"{repo}: {len(rows)} images but no prompt for each; set --task-opt "
                        "instance_prompt=...")
    out = []
    for k, (row, prompt) in enumerate(zip(rows, prompts, strict=True)):
        image = row["image"]
        out.append(Picture(np.asarray(image.convert("RGB")), str(prompt), f"{repo}[{k}]"))
    return out


def check_sizes(pictures: list[Picture], resolution: int | None, where: str) -> None:
    """Images of different sizes need a ``resolution`` to resize them to: else a `UserError`
    naming two that differ."""
    if resolution is not None:
        return
    first = pictures[0]
    for other in pictures[1:]:
        if other.pixels.shape[:2] != first.pixels.shape[:2]:
            (h1, w1), (h2, w2) = first.pixels.shape[:2], other.pixels.shape[:2]
            raise UserError(f"{where}: images of different sizes ({first.name} {w1}x{h1}, "
                            f"{other.name} {w2}x{h2}); set --task-opt resolution=N to resize "
                            "them all to NxN")


# ---------------------------------------------------------------------------- factory


document_task("dreambooth", TaskDoc(
    summary="DreamBooth: teach an image model a subject from a few images with prompts; "
            "alone, the built-in subject (a digit tiny-flux2 never saw, called 'sks digit')",
    metric="cosine similarity of generated to reference test images (digit_similarity on "
           "tiny-flux2, dino_similarity with DINOv2 elsewhere) and drift",
    argument="FOLDER of images with prompts, or a hub data set ORG/NAME",
    options=(
        TaskOption("data", None, "the image folder (same as dreambooth:FOLDER)"),
        TaskOption("instance_prompt", None, "the prompt of every image without its own"),
        TaskOption("resolution", None, "resize every image to NxN (default: the model's "
                   "own, 8 for tiny-flux2, else 512)"),
        TaskOption("n_train", None, "training images (default: the rest; built-in: 16)"),
        TaskOption("valid_size", 2, "validation images (built-in: 8)"),
        TaskOption("test_size", 4, "test images (built-in: 16)"),
        TaskOption("seed", 0, "seed of the split"),
        TaskOption("dataset_split", "train", "the hub data set's split"),
    ),
    example="--task dreambooth:my_dog/ --task-opt resolution=512 --model flux2-klein",
))


@register("dreambooth")
def make_dreambooth(argument: str, options: dict[str, Any]) -> DreamBoothTask:
    """Build `DreamBoothTask` from the folder, hub id or built-in subject, and its options."""
    opts = TaskOptions("dreambooth", options)
    data = opts.text("data", None)
    if argument and data:
        raise UserError(f"task dreambooth: two sources given (dreambooth:{argument} and "
                        f"data={data}); give one")
    where = argument or data
    instance_prompt = opts.text("instance_prompt", None)
    resolution = opts.integer("resolution", None, minimum=8)
    builtin = not where
    n_train = opts.integer("n_train", 16 if builtin else None, minimum=1)
    valid = opts.integer("valid_size", 8 if builtin else 2, minimum=1)
    test = opts.integer("test_size", 16 if builtin else 4, minimum=1)
    seed = opts.integer("seed", 0) or 0
    hub_split = opts.text("dataset_split", "train") or "train"
    opts.finish()
    pictures, source, samples, drifts = _load(where, instance_prompt, hub_split)
    check_sizes(pictures, resolution, where or "dreambooth")
    sizes = _sizes(len(pictures), n_train, valid or 2, test or 4, where or "the built-in subject")
    return DreamBoothTask(pictures, sizes, seed, resolution, source, samples, drifts)


def _load(where: str | None, instance_prompt: str | None, hub_split: str
          ) -> tuple[list[Picture], dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    """The pictures, the description of their source, and the sample and drift prompts."""
    if not where:
        from peftbench.engine.tiny_flux2 import DIGIT_NAMES, SUBJECT_DIGIT

        drifts = tuple(f"a photo of digit {name}" for d, name in enumerate(DIGIT_NAMES)
                       if d != SUBJECT_DIGIT) + ("a drawing of digit zero",)
        return (builtin_pictures(), {"source": "built-in digits subject",
                                     "subject_digit": SUBJECT_DIGIT},
                DIGIT_SAMPLE_PROMPTS, drifts)
    path = Path(where).expanduser()
    if path.is_dir():
        pictures = folder_pictures(path, instance_prompt)
        samples = tuple(dict.fromkeys(p.prompt for p in pictures))[:3]
        return pictures, {"source": "folder", "path": str(path.resolve())}, samples, \
            SUITE_DRIFT_PROMPTS[5:]
    if path.exists():
        raise UserError(f"task dreambooth: {path} is not a folder of images")
    if "/" not in where or where.startswith((".", "/", "~")):
        raise UserError(f"task dreambooth: no folder {where}")
    pictures = hub_pictures(where, hub_split, instance_prompt)
    suite = where == SUITE_DATASET
    samples = SUITE_SAMPLE_PROMPTS if suite else tuple(dict.fromkeys(
        p.prompt for p in pictures))[:3]
    return pictures, {"source": "hub", "dataset_id": where, "dataset_split": hub_split}, \
        samples, SUITE_DRIFT_PROMPTS if suite else SUITE_DRIFT_PROMPTS[5:]


def _sizes(n: int, n_train: int | None, valid: int, test: int, where: str) -> dict[str, int]:
    train = n - valid - test if n_train is None else n_train
    if train < 1 or train + valid + test > n:
        raise UserError(f"task dreambooth: {where} has {n} images; need at least "
                        f"{max(train, 1) + valid + test} for {max(train, 1)} train, {valid} "
                        f"validation and {test} test images")
    return {"train": train, "validation": valid, "test": test}
