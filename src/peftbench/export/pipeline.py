"""The export from result file to verified folder: `export_lora` and `export_merged`.

Everything that can refuse happens before any file is written; the folder is staged beside
``out`` and renamed into place only when complete, with ``export_report.json`` (`ExportReport`)
saying what was written and measured. See the package doc (`peftbench.export`) for the steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from peftbench.engine.progress import make_progress
from peftbench.engine.record import ResultView
from peftbench.engine.results import atomic_write_json, sanitize
from peftbench.errors import UserError
from peftbench.export.factorization import (
    LayerFactors,
    Rank,
    Update,
    check_update,
    factorize,
    parse_rank,
    peft_factors,
    weight_update,
)
from peftbench.export.lora_files import checkpoint_bytes, load_lora, write_lora
from peftbench.export.source import (
    Mode,
    Session,
    check_exportable,
    load_session,
    merged_model,
    open_run,
    probe_logits,
    restore_base,
    score_on_test,
)
from peftbench.export.vllm import vllm_compatible

REPORT_NAME = "export_report.json"


# ---------------------------------------------------------------------------- the export


@dataclass
class ExportReport:
    """What an export wrote and measured; saved as ``export_report.json``."""

    status: Literal["exported", "rejected"]
    mode: Mode
    out: str
    result: str
    method: str
    model: str
    task: str
    metric: str
    score_recorded: float | None  # the run's own test score
    score_before: float  # base + original adapter, re-measured now
    score_after: float  # base + export (or the merged model)
    score_ratio: float | None  # after / before; None (not measured) when before is 0
    min_score_ratio: float | None
    size_original_bytes: int
    size_exported_bytes: int
    probe_max_abs_logit_diff: float
    probe_relative_logit_diff: float
    rank_requested: Rank | None = None
    conversion: str | None = None  # "peft" or "general: why"
    layers: list[dict[str, Any]] = field(default_factory=list)
    mean_relative_error: float | None = None
    max_relative_error: float | None = None
    heads: list[str] = field(default_factory=list)
    dropped: list[dict[str, Any]] = field(default_factory=list)
    vllm: dict[str, Any] | None = None
    base_model: dict[str, Any] = field(default_factory=dict)  # the weights the export applies to
    reason: str = ""
    seconds: float = 0.0
    created_at: str = ""
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the export was written (not rejected by --min-score-ratio)."""
        return self.status == "exported"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON data (NaN/inf become null)."""
        return sanitize(dataclasses.asdict(self))


def export_lora(result_path: str | os.PathLike[str], out: str | os.PathLike[str],
                rank: Rank, *, min_score_ratio: float | None = None, overwrite: bool = False,
                progress: bool = True, inputs: dict[str, str] | None = None) -> ExportReport:
    """Export a run's adapter as a plain LoRA at ``rank`` into ``out``, verified (see package doc).

    User mistakes raise `UserError` before anything is written. When the score ratio falls
    below ``min_score_ratio`` the report is written with status ``rejected`` and ``out`` holds
    only the report (no weights a server could pick up by mistake). ``inputs`` points at the
    run's files where they moved (role -> path, e.g. ``{"data": "qa.jsonl"}``).
    """
    rank = parse_rank(rank)
    return _export(result_path, Path(out), "lora", rank, min_score_ratio, overwrite, progress,
                   inputs)


def export_merged(result_path: str | os.PathLike[str], out: str | os.PathLike[str], *,
                  min_score_ratio: float | None = None, overwrite: bool = False,
                  progress: bool = True, inputs: dict[str, str] | None = None) -> ExportReport:
    """Export the base model with the run's adapter merged in (safetensors, tokenizer
    included) into ``out``, verified by scoring the reloaded folder (``inputs``: as for
    `export_lora`)."""
    return _export(result_path, Path(out), "merged", None, min_score_ratio, overwrite, progress,
                   inputs)


def _export(result_path: str | os.PathLike[str], out: Path, mode: Mode, rank: Rank | None,
            min_score_ratio: float | None, overwrite: bool, progress: bool,
            inputs: dict[str, str] | None = None) -> ExportReport:
    started = time.perf_counter()
    if min_score_ratio is not None and not (math.isfinite(min_score_ratio)
                                            and min_score_ratio >= 0):
        raise UserError(f"--min-score-ratio {min_score_ratio}: must be a number >= 0")
    check_out(out, overwrite)
    source = open_run(result_path, inputs)
    check_exportable(source.spec.method, mode)
    if mode == "merged" and ResultView(source.result).dataset_info.get("kind") == "image":
        raise UserError("--merge of an image-generation run is not supported (the merged "
                        "transformer alone is not a pipeline); export it --to-lora")
    with make_progress(progress) as bar:
        session = load_session(source, bar)
        before = score_on_test(session, session.model, "score original")
        probe = probe_logits(session.prep, session.model, session.image)
        if mode == "lora":  # everything that can refuse happens here, before any file
            write = functools.partial(_write_lora, session, plan_lora(session, rank))
        else:
            write = functools.partial(_write_merged, session, merged_model(session))
        with staging(out, overwrite) as folder:
            fields, exported = write(folder)
            after = score_on_test(session, exported, "score exported")
            report = _report(session, out, mode, folder, before, after,
                             _probe_diff(probe, probe_logits(session.prep, exported,
                                                             session.image)),
                             min_score_ratio, {"rank_requested": rank, **fields})
            report.seconds = time.perf_counter() - started
            _finish(folder, report)
    return report


# ---------------------------------------------------------------------------- the steps


@dataclass
class LoraPlan:
    """A LoRA export computed in memory: the merged model, its update and the factors."""

    merged: nn.Module
    update: Update
    factors: list[LayerFactors]
    conversion: str


def plan_lora(session: Session, rank: Rank | None) -> LoraPlan:
    """Merge, measure the update and factorize it (PEFT's converter first, when it applies)."""
    assert rank is not None
    peft, why_not = peft_factors(session.model, rank)
    merged = merged_model(session)
    update = weight_update(merged, session.base, session.prep.loaded.kind)
    check_update(update, session.source.spec.method)
    factors, conversion = factorize(update, rank, _weight_dtype(merged), peft)
    if conversion == "general" and why_not:
        conversion = f"general: {why_not}"
    return LoraPlan(merged, update, factors, conversion)


def _write_lora(session: Session, plan: LoraPlan, folder: Path) -> tuple[dict[str, Any],
                                                                          nn.Module]:
    """Write the LoRA and load it on the restored base model; the report's LoRA fields."""
    merged = plan.merged
    base_name = getattr(merged.config, "name_or_path", None) or session.source.spec.model
    write_lora(folder, plan.factors, plan.update, session.prep.loaded.kind, base_name)
    exported = load_lora(restore_base(session, merged), folder)
    errors = [f.relative_error for f in plan.factors]
    fields = {"conversion": plan.conversion, "layers": [f.describe() for f in plan.factors],
              "mean_relative_error": sum(errors) / len(errors), "max_relative_error": max(errors),
              "heads": sorted({k.split(".")[0] for k in plan.update.heads}),
              "dropped": plan.update.dropped, "vllm": vllm_compatible(folder).describe()}
    return fields, exported


def _write_merged(session: Session, merged: nn.Module, folder: Path) -> tuple[dict[str, Any],
                                                                                nn.Module]:
    """Save the merged model with its tokenizer, then load it back from the folder."""
    from peftbench.engine.models import load_model

    merged.save_pretrained(str(folder))
    session.prep.loaded.tokenizer.save_pretrained(str(folder))
    prep = session.prep
    loaded = load_model(str(folder), prep.loaded.kind, num_labels=_head_size(merged, prep),
                        seed=prep.spec.train.seed)
    return {}, loaded.model.to(prep.device)


def _head_size(model: nn.Module, prep: Any) -> int:
    """The run's real head size: the merged model's own (one for a regression), else the
    task's."""
    from peftbench.engine.prepared import head_size

    size = getattr(getattr(model, "config", None), "num_labels", None)
    return size if isinstance(size, int) and size > 0 else head_size(prep.task)


def _weight_dtype(model: nn.Module) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def _probe_diff(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    diff = (after - before).abs()
    norm = float(before.norm())
    return float(diff.max()), float((after - before).norm()) / norm if norm else 0.0


def score_ratio(before: float, after: float) -> float | None:
    """``after / before``; None when the score before is 0: there is nothing to compare, so
    the ratio is not measured (and a --min-score-ratio cannot be met)."""
    return after / before if before > 0 else None


def _report(session: Session, out: Path, mode: Mode, folder: Path, before: float, after: float,
            probe: tuple[float, float], min_score_ratio: float | None,
            fields: dict[str, Any]) -> ExportReport:
    source, ratio = session.source, score_ratio(before, after)
    rejected = min_score_ratio is not None and (ratio is None or ratio < min_score_ratio)
    report = ExportReport(
        status="rejected" if rejected else "exported", mode=mode, out=str(out),
        result=str(source.path), method=source.spec.method, model=source.spec.model,
        task=source.spec.task, metric=session.prep.task.metric,
        score_recorded=ResultView(source.result).test_score, score_before=before, score_after=after,
        score_ratio=ratio, min_score_ratio=min_score_ratio,
        size_original_bytes=checkpoint_bytes(source.adapter_dir),
        size_exported_bytes=checkpoint_bytes(folder),
        probe_max_abs_logit_diff=probe[0], probe_relative_logit_diff=probe[1],
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        base_model=session.prep.loaded.info | {"name": session.prep.loaded.name},
        versions=_versions(), **fields)
    if rejected:
        why = (f"score ratio {ratio:.3f} < --min-score-ratio {min_score_ratio}" if ratio is not None
               else f"the score before export is 0, so the ratio --min-score-ratio "
                    f"{min_score_ratio} asks for cannot be measured")
        report.reason = f"{why}: the exported weights were removed"
    return report


def _versions() -> dict[str, str]:
    import peft
    import transformers

    return {"peft": peft.__version__, "transformers": transformers.__version__,
            "torch": torch.__version__}


# ---------------------------------------------------------------------------- staging the folder


def check_out(out: Path, overwrite: bool) -> None:
    """The output folder must not exist unless ``overwrite``."""
    if out.exists() and not overwrite:
        raise UserError(f"{out} already exists; choose another --out or pass --overwrite")
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a folder")


def _finish(folder: Path, report: ExportReport) -> None:
    """Write the report; a rejected export keeps only the report."""
    if not report.ok:
        for item in folder.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()
    atomic_write_json(folder / REPORT_NAME, report.to_json())


@contextlib.contextmanager
def staging(out: Path, overwrite: bool) -> Iterator[Path]:
    """A temp folder beside ``out``, renamed to ``out`` when the block succeeds and removed
    when it fails: readers see no folder, the old one, or the complete new one."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        _publish(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, out: Path, overwrite: bool) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    check_out(out, overwrite)
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
