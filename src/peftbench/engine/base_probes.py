"""The base model's figures (general-text loss, test score and items), measured once per
result folder and shared by every run there with the same inputs, whatever technique it trains.

    run ─ key (content hash of everything the figures depend on) ─ folder/.base-probes/KEY.json
        ├─ found: read it ("reused")
        └─ else: measure on the base model, store it ("measured")
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from peftbench.engine.inputs import inputs_digest
from peftbench.engine.measure import package_versions
from peftbench.engine.prepared import Prepared, general_loss, items_fingerprint, score_items
from peftbench.engine.record import Measurements
from peftbench.engine.results import atomic_write_json

#: where a result folder keeps the base model's figures, shared by the runs written there
BASE_PROBES_DIR = ".base-probes"


def base_probes_key(prep: Prepared) -> str:
    """The content hash of everything the base model's figures depend on (model, task and
    its data options, general text, evaluation settings, seed, device, threads, versions):
    runs with equal keys can share them, whatever technique they train. The content of the
    user's files (data, a local model folder, general text) is part of it."""
    p = prep.spec.train
    contents = inputs_digest(prep.inputs)
    blob = json.dumps({
        "model": prep.spec.model, "kind": prep.loaded.kind, "task": prep.spec.task,
        "task_options": prep.spec.task_options, "general_text": prep.spec.general_text,
        "forgetting_samples": p.forgetting_samples, "max_seq_length": p.max_seq_length,
        "eval_batch_size": p.eval_batch_size, "max_new_tokens": p.max_new_tokens,
        "dtype": p.dtype, "seed": p.seed, "device": prep.device.type,
        "threads": torch.get_num_threads(), "eval_base": p.eval_base,
        "test_items": items_fingerprint(prep.splits["test"]),
        "versions": package_versions(),
        **({"inputs": contents} if contents else {}),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def measure_base_probes(prep: Prepared, model: nn.Module, bar: Any, cache_dir: Path | None,
                        m: Measurements) -> None:
    """Fill ``m``'s base-model figures: the general-text loss and (with ``eval_base``) the
    test score and items, read from ``cache_dir`` when an earlier run there measured them with
    the same inputs, else measured now and stored for the next run."""
    if not prep.general_blocks and not prep.spec.train.eval_base:
        return
    path = cache_dir / f"{base_probes_key(prep)}.json" if cache_dir is not None else None
    cached = _read_cache(path)
    if cached is not None:
        _fill(m, cached, "reused")
        return
    found: dict[str, Any] = {}
    if prep.general_blocks:
        found["base_general_loss"] = general_loss(prep, model)
    if prep.spec.train.eval_base:
        found["base_test_score"], found["base_test_items"] = score_items(
            prep, model, "test", bar, "base model test")
    if path is not None:
        atomic_write_json(path, found)
    _fill(m, found, "measured")


def _read_cache(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fill(m: Measurements, figures: dict[str, Any], source: str) -> None:
    m.base_general_loss = figures.get("base_general_loss")
    m.base_test_score = figures.get("base_test_score")
    m.base_test_items = figures.get("base_test_items")
    m.base_probes = source
