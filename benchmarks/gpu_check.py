"""The GPU check: one command that exercises peftbench's CUDA path whenever a GPU appears.

On a CUDA machine (no network needed) it

- trains a handful of techniques on the tiny models and on ``config:llama-3.2-1b`` (the real
  architecture with random weights), each run twice: through peftbench's harness (a cost-only
  run) and through a bare PyTorch loop on the same model, batches, optimizer and autocast;
- checks the harness's CUDA memory fields against ``torch.cuda.max_memory_allocated`` taken
  independently around the bare loop, and the fields against each other;
- compares the harness's step time with the bare loop's (ratio; steady state: the first step
  left out);
- reports bf16 training throughput as a share of the device's measured bf16 matmul peak
  (model FLOPs per token: 4·N for adapters, 6·N for full-parameter training, N the weights
  in matmuls);
- runs a tiny tournament end to end (worker processes: learning-rate search, finals, table)
  and a memory-only tournament on ``config:llama-3.2-1b``;
- writes everything to ``docs/gpu_check.json`` (with the GPU's name), from which
  ``scripts/gen_readme_tables.py`` makes the README's GPU table.

Without CUDA it prints one line saying so and exits 0, after running the same steps on the CPU
at toy sizes to check its own plumbing (CI runs that mode); nothing is written then.

On the GPU image (Python 3.12 with torch, transformers, accelerate, peft, safetensors, pytest),
bring the few pure-Python packages it lacks as wheels (``scripts/gpu_wheels.sh`` fetches them
into ``wheels/``) and run, from the checkout::

    pip install --no-index --find-links wheels pydantic typer rich
    pip install --no-deps --no-build-isolation -e .   # or nothing: src/ is used as it is
    PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py [--out docs/gpu_check.json]

(on a lent machine whose files come back only from ``$OUT``: ``--out $OUT/gpu_check.json``,
then copy it to ``docs/`` and run ``scripts/gen_readme_tables.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT_JSON = ROOT / "docs" / "gpu_check.json"
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network on the GPU machines
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
try:
    import peftbench  # noqa: F401
except ImportError:  # a checkout not installed: use its src/ (and so do the CLI children)
    sys.path.insert(0, str(ROOT / "src"))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), os.environ.get("PYTHONPATH")) if p)

import torch  # noqa: E402

#: the bare loop's peak may differ from the harness's by this share and still agree
MEMORY_TOLERANCE = 0.05
#: the harness's step may take this much longer than the bare loop's (target, not a failure)
STEP_TARGET = 1.05
#: a config small enough for the CPU plumbing mode, standing in for Llama-3.2-1B
TOY_CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 512, "max_position_embeddings": 512, "tie_word_embeddings": True}


@dataclass
class Settings:
    """What the check runs: (model, task, method) triples at each size, and the budget."""

    small: list[tuple[str, str, str]]
    big_model: str
    big_methods: list[str]
    steps: int
    big_steps: int
    batch: int
    big_batch: int
    seq: int
    matmul_size: int
    executor: str
    work: Path = Path(".")
    tournament_methods: str = "lora,ia3"
    lr_points: int = 2
    #: more ``--train-opt`` of the tiny tournament (the CPU mode's shorter generations)
    tournament_opts: list[str] = field(default_factory=list)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)


def gpu_settings(work: Path) -> Settings:
    """The CUDA check: tiny models with five techniques, Llama-3.2-1B with two."""
    small = [("tiny-llama", "gen", m) for m in ("lora", "ia3", "oft", "prompt_tuning", "full")]
    small.append(("tiny-bert", "cls", "lora"))
    return Settings(small, "config:llama-3.2-1b", ["lora", "full"], steps=10, big_steps=6,
                    batch=8, big_batch=8, seq=512, matmul_size=8192, executor="local",
                    work=work)


def cpu_settings(work: Path) -> Settings:
    """The plumbing mode: the same steps at toy sizes, in-process where that is faster."""
    toy = work / "toy-config.json"
    toy.write_text(json.dumps(TOY_CONFIG))
    return Settings([("tiny-llama", "gen", "lora"), ("tiny-bert", "cls", "lora")],
                    f"config:{toy}", ["lora"], steps=3, big_steps=3, batch=2, big_batch=2,
                    seq=32, matmul_size=128, executor="inline", work=work,
                    tournament_methods="lora", lr_points=1,
                    tournament_opts=["max_new_tokens=4", "measure_inference=false"])


# --------------------------------------------------------------------------------------------
# Data: synthetic files, so that nothing needs the network and sequences are full length


def write_data(work: Path, rows: int = 64) -> dict[str, dict[str, Any]]:
    """Two JSONL tasks: generation (long prompts, cut to the sequence length) and
    classification (short texts, two labels); returns their task options by kind."""
    words = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
             "omicron pi rho sigma tau upsilon phi chi psi omega").split()
    gen, cls = work / "gen.jsonl", work / "cls.jsonl"
    with gen.open("w") as g, cls.open("w") as c:
        for i in range(rows):
            text = " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(700))
            g.write(json.dumps({"prompt": text, "response": f" {i % 10}"}) + "\n")
            c.write(json.dumps({"text": text[: 80 + i], "label": "pos" if i % 2 else "neg"})
                    + "\n")
    return {"gen": {"task": f"jsonl:{gen}"}, "cls": {"task": f"jsonl:{cls}"}}


# --------------------------------------------------------------------------------------------
# One comparison: the harness's cost-only run, then a bare loop on the same everything


def cost_spec(model: str, task: str, method: str, steps: int, batch: int, seq: int) -> Any:
    """A cost-only run: one entry per step, no scores, probes or inference timing."""
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    train = TrainParams(max_steps=steps, batch_size=batch, max_seq_length=seq, eval_every=1,
                        measure_scores=False, measure_inference=False, forgetting_samples=0,
                        eval_test=False)
    return ExperimentSpec(model=model, task=task, method=method, train=train,
                          name=f"gpu-check-{method}")


def compare(spec: Any, work: Path) -> dict[str, Any]:
    """The harness's figures for ``spec``, the bare loop's, and how they compare."""
    from peftbench.engine.experiment import run_experiment

    free_memory()
    outcome = run_experiment(spec, work / "runs", progress=False)
    info = outcome.result["train_info"]
    free_memory()
    bare = bare_loop(spec)
    free_memory()
    harness_step = steady([m["train time"] for m in info["metrics"]])
    row = {"model": spec.model, "method": spec.method, "status": info["status"],
           "error": outcome.error or None, "device": info["device"],
           "autocast_dtype": info["autocast_dtype"],
           "trainable_params": info["num_trainable_params"],
           "total_params": info["num_total_params"], "file_size": info["file_size"],
           "tokens_per_step": info["train_tokens"] / max(len(info["metrics"]), 1),
           "harness_step_s": harness_step, "bare_step_s": bare["step_s"],
           "step_ratio": ratio(harness_step, bare["step_s"]),
           "tokens_per_sec": steady([m["tokens / sec"] for m in info["metrics"]]),
           "matmul_params": bare["matmul_params"]}
    row.update(memory_figures(info, bare))
    return row


def memory_figures(info: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """The harness's memory fields beside the bare loop's independent peak, and whether the
    fields hold together."""
    alloc = info.get("cuda_memory_max_allocated")
    return {
        "peak_memory": info.get("peak_memory"), "cuda_max_allocated": alloc,
        "cuda_max_reserved": info.get("cuda_memory_max_reserved"),
        "reserved_avg": info.get("accelerator_memory_reserved_avg"),
        "train_memory_accounted": info.get("train_memory"),
        "memory_method": info.get("memory_method"),
        "bare_max_allocated": bare["max_allocated"],
        "memory_ratio": ratio(alloc, bare["max_allocated"]),
        "fields_consistent": fields_consistent(info),
    }


def fields_consistent(info: dict[str, Any]) -> bool | None:
    """On CUDA: peak = max allocated = accelerator max ≤ max reserved, average reserved ≤ max
    reserved, measured by the allocator (None off CUDA)."""
    alloc = info.get("cuda_memory_max_allocated")
    if alloc is None:
        return None
    reserved = info.get("cuda_memory_max_reserved") or 0
    return (info.get("peak_memory") == alloc == info.get("accelerator_memory_max")
            and alloc <= reserved and (info.get("accelerator_memory_reserved_avg") or 0)
            <= reserved and info.get("memory_method") == "cuda allocator")


def bare_loop(spec: Any) -> dict[str, Any]:
    """The loop a practitioner would write, on what the harness trained: the same model and
    adapter, batches in the same order, the technique's optimizer, autocast and clipping.
    Peak memory is taken by ``torch.cuda.max_memory_allocated`` from the first step on."""
    from peftbench.engine.batching import batch_order, collate
    from peftbench.engine.experiment import encode_examples, prepare
    from peftbench.engine.train import autocast_context

    prep = prepare(spec)
    params, device, pad = spec.train, prep.device, prep.loaded.tokenizer.pad_token_id
    torch.manual_seed(params.seed)
    model = prep.method.build(prep.loaded.model.to(device), prep.loaded.kind, spec.targets,
                              spec.adapter_config).to(device)
    features = encode_examples(prep, prep.splits["train"])
    order = batch_order(len(features), params.batch_size, params.max_steps, params.seed)
    reset_peak(device)
    optimizer = prep.method.make_optimizer(model, prep.method.default_lr, params.weight_decay)
    times = []
    model.train()
    for step, indices in enumerate(order, 1):
        sync(device)
        started = time.perf_counter()
        batch = {k: v.to(device) for k, v in collate([features[i] for i in indices],
                                                     pad).items()}
        with autocast_context(device, prep.amp_dtype):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad],
                                       params.grad_norm_clip or 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        prep.method.after_step(model, step)
        loss.item()
        sync(device)
        times.append(time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {"step_s": steady(times), "max_allocated": peak, "matmul_params": matmul_params(model)}


def matmul_params(model: torch.nn.Module) -> int:
    """Weights that take part in matmuls: every Linear (a tied LM head counted once as one)."""
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    head = getattr(model, "get_output_embeddings", lambda: None)()
    if head is not None and not isinstance(head, torch.nn.Linear):
        n += head.weight.numel()
    return n


# --------------------------------------------------------------------------------------------
# The device's peak, throughput shares, tournaments


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10
                ) -> float:
    """Measured FLOP/s of a square matmul on ``device``: its practical peak (best of
    ``repeats``)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def add_throughput(row: dict[str, Any], peak_flops: float | None) -> None:
    """Model FLOP/s of a run and its share of the bf16 matmul peak (4·N per token for an
    adapter: forward, and backward through frozen weights; 6·N when most weights train)."""
    full = (row.get("trainable_params") or 0) > 0.5 * (row.get("total_params") or 1)
    per_token = (6 if full else 4) * (row.get("matmul_params") or 0)
    tps = row.get("tokens_per_sec")
    row["flops_per_token"] = per_token
    row["achieved_tflops"] = tps * per_token / 1e12 if tps else None
    row["peak_share"] = ratio(row["achieved_tflops"] and row["achieved_tflops"] * 1e12,
                              peak_flops)


def cli(args: list[str], timeout: float) -> tuple[int, str, str, float]:
    """``peftbench ARGS`` in a child process: (exit code, stdout, stderr, seconds)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "peftbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "COLUMNS": "200"})
    return done.returncode, done.stdout, done.stderr, time.perf_counter() - started


def tiny_tournament(s: Settings) -> dict[str, Any]:
    """A tiny tournament end to end: search over two rates, finals, the table (``--json``)."""
    out = s.work / "tournament"
    code, stdout, stderr, seconds = cli([
        "tournament", "--model", "tiny-llama", "--methods", s.tournament_methods, "--steps",
        "4", "--lr-points", str(s.lr_points), "--lr-extend", "0", "--no-calibrate",
        "--executor", s.executor,
        "--out", str(out), "--no-progress", "--json", "--task-opt", "n_train=32",
        "--task-opt", "n_valid=4", "--task-opt", "n_test=8", "--train-opt",
        "forgetting_samples=0", "--train-opt", "batch_size=4",
        *[a for opt in s.tournament_opts for a in ("--train-opt", opt)]], timeout=900)
    summary = json.loads(stdout) if code == 0 else {}
    return {"exit_code": code, "seconds": seconds, "executor": s.executor,
            "error": None if code == 0 else stderr.strip().splitlines()[-1:],
            "techniques": {m: {"verdict": t["status"], "chosen_lr": t["chosen_lr"],
                               "seeds": t["seeds"],
                               "test_score": (t["metrics"].get("test_score") or {}).get("value"),
                               "peak_memory": (t["metrics"].get("peak_memory") or {}).get(
                                   "value")}
                           for m, t in summary.get("techniques", {}).items()}}


def memory_only(s: Settings) -> dict[str, Any]:
    """``tournament --model <big config> --memory-only`` on the synthetic long sequences."""
    code, stdout, stderr, seconds = cli([
        "tournament", "--model", s.big_model, "--methods", ",".join(s.big_methods),
        "--steps", "3", "--executor", s.executor, "--out", str(s.work / "memory-only"),
        "--no-progress", "--json", "--task", s.tasks["gen"]["task"], "--train-opt",
        f"batch_size={s.big_batch}", "--train-opt", f"max_seq_length={s.seq}"], timeout=900)
    rows = json.loads(stdout)["techniques"] if code == 0 else []
    keep = ("method", "status", "peak_memory", "step_seconds", "tokens_per_sec", "file_size",
            "trainable_params")
    return {"exit_code": code, "seconds": seconds, "model": s.big_model,
            "error": None if code == 0 else stderr.strip().splitlines()[-1:],
            "techniques": [{k: r.get(k) for k in keep} for r in rows]}


# --------------------------------------------------------------------------------------------
# Helpers


def steady(values: list[float]) -> float | None:
    """The median of ``values`` after the first (one-time costs), or of all when one."""
    values = [v for v in values if isinstance(v, int | float)]
    return statistics.median(values[1:] or values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, None when either is missing or ``b`` is 0."""
    return a / b if a is not None and b else None


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (timings are then real)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start counting the allocator's peak from the memory held now."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def free_memory() -> None:
    """Drop what the last run left (the next one's peak starts from nothing)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def section(report: dict[str, Any], name: str, work: Callable[[], Any]) -> None:
    """``report[name] = work()``, or the error as one line when it raises."""
    try:
        report[name] = work()
    except Exception as exc:  # one part failing must not cost the others' figures
        where = traceback.extract_tb(exc.__traceback__)[-1]
        report[name] = {"error": f"{type(exc).__name__}: {exc} "
                                 f"(at {Path(where.filename).name}:{where.lineno})"}


def environment() -> dict[str, Any]:
    """The device and the versions the figures were measured with."""
    from importlib import metadata

    versions = {}
    for name in ("peftbench", "torch", "transformers", "peft", "accelerate", "safetensors"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    env: dict[str, Any] = {"python": platform.python_version(), "versions": versions,
                           "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = {"name": props.name, "memory": props.total_memory,
                      "capability": f"{props.major}.{props.minor}",
                      "bf16": torch.cuda.is_bf16_supported()}
    return env


# --------------------------------------------------------------------------------------------
# The whole check


def run_check(s: Settings) -> dict[str, Any]:
    """Every part of the check; each part's error is recorded in its place."""
    from peftbench.cli.display import quiet_third_party

    started = time.perf_counter()
    s.tasks = write_data(s.work)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report: dict[str, Any] = {"created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
    section(report, "environment", environment)
    section(report, "matmul_peak_tflops", lambda: {
        "bfloat16": matmul_peak(device, torch.bfloat16, s.matmul_size) / 1e12,
        "float32": matmul_peak(device, torch.float32, s.matmul_size) / 1e12,
        "size": s.matmul_size})
    peak = (report["matmul_peak_tflops"].get("bfloat16") or 0) * 1e12 or None
    plan = [(m, t, meth, s.steps, s.batch) for m, t, meth in s.small]
    plan += [(s.big_model, "gen", meth, s.big_steps, s.big_batch) for meth in s.big_methods]
    with quiet_third_party():
        report["runs"] = [run_one(s, *item, peak) for item in plan]
    section(report, "tournament", lambda: tiny_tournament(s))
    section(report, "memory_only", lambda: memory_only(s))
    report["seconds"] = time.perf_counter() - started
    report["checks"] = checks(report)
    if not torch.cuda.is_available():
        report["checks"]["README table renders"] = readme_table_renders(report)
    report["ok"] = all(report["checks"].values())
    return report


def run_one(s: Settings, model: str, kind: str, method: str, steps: int, batch: int,
            peak: float | None) -> dict[str, Any]:
    """One comparison's row (its error as one line when it could not run)."""
    entry: dict[str, Any] = {}
    spec = cost_spec(model, s.tasks[kind]["task"], method, steps, batch, s.seq)
    section(entry, "run", lambda: compare(spec, s.work))
    row = {"model": model, "method": method, **entry["run"]}
    if "error" not in entry["run"]:
        add_throughput(row, peak)
    return row


def checks(report: dict[str, Any]) -> dict[str, bool]:
    """What must hold for the CUDA path to count as working (the speed ratio is a figure
    with a target, not a check)."""
    runs = report.get("runs", [])
    cuda = bool((report.get("environment") or {}).get("gpu"))
    out = {
        "every part ran": all(not (report.get(k) or {}).get("error") for k in
                              ("environment", "matmul_peak_tflops", "tournament",
                               "memory_only")),
        "every run succeeded": bool(runs) and all(r.get("status") == "success" for r in runs),
        "tournament ended well": (report.get("tournament") or {}).get("exit_code") == 0
        and all(t["seeds"] for t in report["tournament"]["techniques"].values()),
        "memory-only table": bool((report.get("memory_only") or {}).get("techniques")),
    }
    if cuda:
        out["memory fields consistent"] = all(r.get("fields_consistent") for r in runs)
        out["memory agrees with max_memory_allocated"] = all(
            r.get("memory_ratio") is not None
            and abs(r["memory_ratio"] - 1) <= MEMORY_TOLERANCE for r in runs)
        out["bf16 autocast"] = all(r.get("autocast_dtype") == "bfloat16" for r in runs)
    return out


def readme_table_renders(report: dict[str, Any]) -> bool:
    """Whether ``scripts/gen_readme_tables.py`` makes the GPU table of a report like this
    one (given a GPU's name): a row per run, then the notes."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_readme_tables",
                                                  ROOT / "scripts" / "gen_readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    env = {**report["environment"], "gpu": {"name": "plumbing", "memory": 0}}
    lines = module.gpu_table({**report, "environment": env})
    return len(lines) == len(report["runs"]) + 4 and "plumbing" in lines[-1]


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the check prints on a GPU: one line per run, the tournaments, the checks."""
    gpu = report["environment"].get("gpu") or {}
    peak = report["matmul_peak_tflops"]
    lines = [f"{gpu.get('name')}: bf16 matmul peak {peak.get('bfloat16', 0):.0f} TFLOP/s; "
             f"{report['seconds']:.0f} s in all"]
    for r in report["runs"]:
        if r.get("status") != "success":
            lines.append(f"{r['model']:<22} {r['method']:<14} FAILED: {r.get('error')}")
            continue
        lines.append(
            f"{r['model']:<22} {r['method']:<14} peak {r['peak_memory'] / 2**20:9.0f} MiB "
            f"(bare loop x{_fmt(r['memory_ratio'])}) step x{_fmt(r['step_ratio'])} of the "
            f"bare loop, {r['tokens_per_sec'] or 0:,.0f} tok/s = {_pct(r.get('peak_share'))} "
            "of the bf16 peak")
    for name in ("tournament", "memory_only"):
        part = report.get(name) or {}
        lines.append(f"{name}: exit {part.get('exit_code')} in {part.get('seconds', 0):.0f} s "
                     f"{part.get('error') or ''}")
    lines += [f"check {'ok ' if ok else 'FAILED'} {name}" for name, ok in report["checks"].items()]
    return lines


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def plumbing_line(report: dict[str, Any]) -> tuple[str, bool]:
    """The CPU mode's one line, and whether the plumbing held."""
    failed = [name for name, ok in report["checks"].items() if not ok]
    errors = [r.get("error") for r in report.get("runs", []) if r.get("error")]
    errors += [(report.get(k) or {}).get("error") for k in ("tournament", "memory_only")
               if (report.get(k) or {}).get("error")]
    if failed:
        return (f"no CUDA: nothing measured; the check's plumbing FAILED on CPU: "
                f"{', '.join(failed)} {errors[:2]}"), False
    return (f"no CUDA: nothing measured, nothing written; the check's plumbing ran on CPU "
            f"({len(report['runs'])} runs, tournament, memory-only; "
            f"{report['seconds']:.0f} s)"), True


def main() -> None:
    """Run the check: on CUDA write the JSON and print the figures; else one line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT_JSON, help="the JSON (CUDA only)")
    ap.add_argument("--work", type=Path, help="keep the runs here (default: a temp folder)")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        work.mkdir(parents=True, exist_ok=True)
        report = run_check(gpu_settings(work) if cuda else cpu_settings(work))
    if not cuda:
        line, ok = plumbing_line(report)
        print(line)
        sys.exit(0 if ok else 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n".join(summary_lines(report)))
    print(f"wrote {args.out}")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
