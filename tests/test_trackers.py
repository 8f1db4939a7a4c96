"""Experiment trackers: what runs report, read back through each tracker's own reader.

A tiny tournament in worker processes reports to TensorBoard and MLflow; every run's loss
curve, validation score, final figures, tags and artifacts are read back (TensorBoard's event
reader, the MLflow client on the local SQLite store) and checked against its result file. A
single run reports to W&B (offline) and Trackio (local), read back in another process. The
rest is fast: names, the missing-extra line, a failing tracker, the spec hash.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peftbench.cli import main
from peftbench.engine.record import ResultView
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.engine.worker import worker_args
from peftbench.errors import UserError
from peftbench.trackers import (
    Artifacts,
    RunInfo,
    RunTracking,
    TrackingConfig,
    check_installed,
    parse_report_to,
    tracking_config,
)

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--model", "tiny-llama", "--task", "arith", "--task-opt", "n_train=32",
        "--task-opt", "n_valid=8", "--task-opt", "n_test=8", "--steps", "4", "--no-progress"]
TOURNAMENT = [*TINY, "--train-opt", "batch_size=8", "--train-opt", "max_new_tokens=6",
              "--train-opt", "forgetting_samples=0", "--train-opt", "max_seq_length=64",
              "--train-opt", "measure_inference=false", "--train-opt", "eval_every=2",
              "--lr-extend", "0", "--methods", "lora", "--lr-points", "2", "--no-calibrate"]


def peftbench(*args: str, cwd: Path = ROOT, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})


def results(folder: Path) -> dict[str, dict]:
    """Result files by stem (the run's name in every tracker)."""
    return {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")
            if p.name != "tournament.json" and not p.name.startswith(".")}


def valid_curve(result: dict) -> list[tuple[int, float]]:
    return [(m["step"], m["valid accuracy"]) for m in ResultView(result).metrics
            if "valid accuracy" in m]


# ------------------------------------------------------------------- a tournament, read back


@pytest.fixture(scope="module")
def tournament(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, dict]]:
    """A tiny tournament (2 search runs, 1 final) reporting to TensorBoard and MLflow."""
    base = tmp_path_factory.mktemp("tracked")
    out, store = base / "tiny-tourney", base / "trackers"
    proc = peftbench("tournament", *TOURNAMENT, "--out", str(out),
                     "--report-to", "tensorboard,mlflow", "--tracking-dir", str(store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"tensorboard --logdir {store / 'tensorboard'}" in proc.stderr
    found = results(out)
    assert len(found) == 3, sorted(found)
    return out, store, found


def test_mlflow_holds_every_run_of_the_tournament_as_its_result_says(tournament) -> None:
    from mlflow.tracking import MlflowClient

    out, store, found = tournament
    client = MlflowClient(f"sqlite:///{store / 'mlflow' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(out.name)  # the tournament groups its runs
    assert experiment is not None
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert set(runs) == set(found)
    for name, result in found.items():
        view, run = ResultView(result), runs[name]
        final = view.spec_data["train"]["eval_test"]
        assert run.data.tags["peftbench.stage"] == ("final" if final else "search")
        assert run.data.tags["peftbench.spec_hash"] == view.spec_hash
        assert run.info.status == "FINISHED"
        assert run.data.params["method"] == "lora"
        assert float(run.data.params["train.lr"]) == view.spec_data["train"]["lr"]
        losses = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                         "train/loss")]
        assert sorted(losses) == [tuple(p) for p in view.train_info["train_loss_curve"]]
        lrs = [m.value for m in sorted(client.get_metric_history(run.info.run_id,
                                                                  "train/learning_rate"),
                                       key=lambda m: m.step)]
        lr = view.spec_data["train"]["lr"]  # a one-step warm-up from 0, then cosine decay
        assert len(lrs) == 4 and lrs[0] == 0.0 and lrs[1] == pytest.approx(lr)
        assert lrs[1] > lrs[3] > 0
        valid = sorted((m.step, m.value) for m in
                       client.get_metric_history(run.info.run_id, "valid/accuracy"))
        assert valid == valid_curve(result) and len(valid) == 2
        assert run.data.metrics["valid_score"] == view.valid_score
        assert run.data.metrics["train_time"] == view.train_time
        assert run.data.metrics["num_trainable_params"] == view.train_info["num_trainable_params"]
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert f"{name}.json" in artifacts
        if final:
            assert run.data.metrics["test_score"] == view.test_score
            assert f"{name}.answers.jsonl" in artifacts and "adapter" in artifacts
            adapter = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
            assert {"adapter/README.md", "adapter/adapter_config.json"} <= adapter
        else:
            assert "test_score" not in run.data.metrics and "adapter" not in artifacts


def test_tensorboard_event_files_hold_each_runs_curves_and_figures(tournament) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, store, found = tournament
    for name, result in found.items():
        view = ResultView(result)
        events = EventAccumulator(str(store / "tensorboard" / out.name / name),
                                  size_guidance={"scalars": 0})
        events.Reload()
        loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
        expected = view.train_info["train_loss_curve"]
        assert [s for s, _ in loss] == [s for s, _ in expected]
        assert [v for _, v in loss] == pytest.approx([v for _, v in expected], rel=1e-6)
        valid = [(e.step, e.value) for e in events.Scalars("valid/accuracy")]
        assert [s for s, _ in valid] == [s for s, _ in valid_curve(result)]
        assert [v for _, v in valid] == pytest.approx([v for _, v in valid_curve(result)])
        finals = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]
                  if tag.startswith("final/")}
        assert finals["final/train_tokens"] == view.train_info["train_tokens"]
        assert finals["final/succeeded"] == 1.0
        if view.test_score is not None:
            assert finals["final/test_score"] == pytest.approx(view.test_score)


def test_the_trackers_keep_nothing_in_the_results_folder(tournament) -> None:
    out, store, _ = tournament
    assert not (out / "mlruns").exists() and not any(out.rglob("*.tfevents*"))
    assert not store.is_relative_to(out)


# --------------------------------------------------------- W&B offline and Trackio local

READ_TRACKIO = """
import json, sys, trackio
from trackio.sqlite_storage import SQLiteStorage
runs = [r.name for r in trackio.Api().runs("peftbench")]
logs = SQLiteStorage.get_logs("peftbench", runs[0])
print(json.dumps({"runs": runs, "logs": logs}, default=str))
"""


def test_a_run_reports_to_wandb_offline_and_trackio_locally(tmp_path: Path) -> None:
    store = tmp_path / "trackers"
    proc = peftbench("run", *TINY, "--batch-size", "8", "--max-new-tokens", "6",
                     "--max-seq-length", "64", "--out", str(tmp_path / "results"),
                     "--report-to", "wandb,trackio", "--tracking-dir", str(store))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result_file = Path(proc.stdout.strip())  # stdout holds only the result's path
    assert result_file.is_file() and result_file.parent == tmp_path / "results"
    result = json.loads(result_file.read_text())
    offline = list((store / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(offline) == 1
    data = offline[0].read_bytes()  # W&B's offline log: protobuf records, keys as text
    for needle in (result_file.stem, "train/loss", "valid/accuracy", "test_score"):
        assert needle.encode() in data, needle
    read = subprocess.run([sys.executable, "-c", READ_TRACKIO], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "TRACKIO_DIR": str(store / "trackio")})
    assert read.returncode == 0, read.stderr[-2000:]
    back = json.loads(read.stdout.splitlines()[-1])
    assert back["runs"] == [result_file.stem]
    losses = [(row["step"], row["train/loss"]) for row in back["logs"] if "train/loss" in row]
    assert losses == [tuple(p) for p in result["train_info"]["train_loss_curve"]]
    finals = [row for row in back["logs"] if "final/test_score" in row]
    assert finals and finals[-1]["final/test_score"] == result["train_info"]["test_score"]


# ------------------------------------------------------------------------- fast checks


def test_report_to_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_report_to("none") == [] and parse_report_to(None) == []
    assert parse_report_to(" MLflow, tensorboard,mlflow ") == ["mlflow", "tensorboard"]
    with pytest.raises(UserError, match="did you mean 'tensorboard'"):
        parse_report_to("tensorbord")
    assert tracking_config("none", Path("x")) is None


def test_a_missing_tracker_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(UserError, match=r"pip install 'peftbench\[trackers\]'"):
        check_installed(["tensorboard", "wandb"])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--model", "tiny-llama", "--report-to", "wandb"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert "Weights & Biases is not installed" in err[0] and "peftbench[trackers]" in err[0]
    assert list(tmp_path.iterdir()) == []


def test_the_tracking_folder_must_be_outside_the_results(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="outside the results folder"):
        tracking_config("tensorboard", tmp_path / "out" / "trackers", results=tmp_path / "out")
    config = tracking_config("tensorboard", tmp_path / "trackers", "t", results=tmp_path / "out")
    assert config is not None and config.group == "t" and Path(config.root).is_absolute()


def test_tracker_settings_travel_as_a_worker_argument_not_in_the_spec(tmp_path: Path) -> None:
    spec = ExperimentSpec(model="tiny-llama", train=TrainParams(max_steps=2))
    config = TrackingConfig(report_to=["mlflow"], root=str(tmp_path), group="g")
    args = worker_args(tmp_path / "spec.json", tmp_path, tracking=config.to_arg())
    assert TrackingConfig.from_arg(args[args.index("--tracking") + 1]) == config
    assert "tracking" not in spec.model_dump() and spec.content_hash() == \
        ExperimentSpec.model_validate(json.loads(spec.model_dump_json())).content_hash()


class _Broken:
    name = "broken"

    def start(self, run: RunInfo) -> None:
        raise OSError("disk full")


class _Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def start(self, run: RunInfo) -> None:
        self.calls.append(f"start {run.name}")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.calls.append(f"log {step} {sorted(metrics)}")

    def finish(self, figures: dict[str, float], artifacts: Artifacts, ok: bool) -> None:
        self.calls.append(f"finish {ok} {sorted(figures)}")


def test_a_failing_tracker_is_said_once_and_the_others_go_on(capsys) -> None:
    recorder = _Recorder()
    tracking = RunTracking([_Broken(), recorder], RunInfo("r", "run"))
    tracking.log(1, {"train/loss": 1.0})  # before start: nothing
    tracking.start()
    tracking.log(1, {"train/loss": 1.0})
    tracking.finish({"test_score": 0.5}, Artifacts(Path("missing.json")), True)
    tracking.finish({}, Artifacts(Path("missing.json")), True)  # once only
    assert recorder.calls == ["start r", "log 1 ['train/loss']", "finish True ['test_score']"]
    err = capsys.readouterr().err
    assert err.count("tracker broken failed") == 1 and "disk full" in err
