"""A tournament's runs in their own processes: containment of crashes, hangs and user errors,
resume after SIGKILL at random moments, the CLI, and the Ray executor on a local cluster."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from peftbench.engine.results import read_result
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.tournament.executors import LocalExecutor, run_in_subprocess

ROOT = Path(__file__).resolve().parent.parent
TINY_TRAIN = TrainParams(max_steps=4, batch_size=8, eval_every=4, max_new_tokens=6,
                         forgetting_samples=0, eval_batch_size=16, max_seq_length=64,
                         measure_inference=False)
TASK_OPTIONS = {"n_train": 32, "n_valid": 8, "n_test": 8}
CLI_ARGS = ["--model", "tiny-llama", "--task", "arith", "--task-opt", "n_train=32",
            "--task-opt", "n_valid=8", "--task-opt", "n_test=8", "--steps", "4",
            "--train-opt", "batch_size=8", "--train-opt", "max_new_tokens=6",
            "--train-opt", "forgetting_samples=0", "--train-opt", "max_seq_length=64",
            "--train-opt", "measure_inference=false", "--lr-extend", "0", "--no-progress"]


def tiny_spec(**train) -> ExperimentSpec:
    return ExperimentSpec(model="tiny-llama", task="arith", task_options=TASK_OPTIONS,
                          method="lora", train=TINY_TRAIN.model_copy(update=train))


def peftbench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "peftbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "COLUMNS": "250"})


def result_files(folder: Path) -> list[Path]:
    """Run results: every JSON but the manifest and the hidden calibration cache."""
    return [p for p in folder.glob("*.json")
            if p.name != "tournament.json" and not p.name.startswith(".")]


def workers_alive(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "peftbench.engine.worker" in cmdline and marker in cmdline:
            found.append(proc)
    return found


# ------------------------------------------------------------------------- containment


def test_a_hanging_run_is_killed_and_recorded_as_timed_out(tmp_path):
    started = time.perf_counter()
    record = run_in_subprocess(tiny_spec(max_steps=10_000, eval_every=10_000), tmp_path,
                               timeout=8)
    assert time.perf_counter() - started < 30
    assert record.status == "timeout" and "timed out after 8 s" in record.error
    data = read_result(record.path)
    assert data["train_info"]["status"] == "timeout"
    assert data["run_info"]["peftbench"]["spec_hash"] == record.spec.content_hash()
    assert not workers_alive(str(tmp_path))
    assert not list(tmp_path.glob(".spec-*"))


def test_a_killed_run_is_a_failure_and_the_others_go_on(tmp_path):
    executor = LocalExecutor()
    # the first run trains long enough for the kill to land mid-run, warm start or not
    specs = [tiny_spec(seed=1, max_steps=10_000, eval_every=10_000), tiny_spec(seed=2)]

    def kill_first_worker() -> None:  # what the system's out-of-memory killer would do
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            procs = workers_alive(str(tmp_path))
            if procs:
                time.sleep(1.0)
                procs[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    records = list(executor.run(specs, tmp_path, save_adapter=False))
    killer.join()
    by_seed = {r.spec.train.seed: r for r in records}
    assert by_seed[1].status == "failed" and "SIGKILL" in by_seed[1].error
    assert by_seed[2].status == "success"
    assert {read_result(r.path)["train_info"]["status"] for r in records} == {"failed",
                                                                               "success"}


def test_a_user_error_inside_a_run_is_recorded_with_its_message(tmp_path):
    spec = tiny_spec().model_copy(update={"adapter_config": {"no_such_field": 1}})
    record = run_in_subprocess(spec, tmp_path)
    assert record.status == "failed"
    assert "unknown lora config field 'no_such_field'" in record.error
    assert "Traceback" not in record.error


# ------------------------------------------------------------------------- the CLI


def test_dry_run_prints_the_plan_with_an_estimate_and_runs_nothing(tmp_path):
    out = tmp_path / "t"
    proc = peftbench("tournament", *CLI_ARGS, "--methods", "lora,ia3,adaption_prompt",
                     "--lr-points", "3", "--seeds", "2", "--out", str(out), "--dry-run")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout + proc.stderr
    assert "9 search runs" in text and "6 final runs" in text
    assert "estimated" in text and "s/step" in text
    assert result_files(out) == []


def test_the_quick_preset_sets_techniques_and_budget_and_options_override_it(tmp_path):
    out = tmp_path / "t"
    proc = peftbench("tournament", "--preset", "quick", "--out", str(out), "--dry-run",
                     "--no-calibrate")
    assert proc.returncode == 0, proc.stderr
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "8 search runs (steps per rung: 24)" in text and "4 final runs" in text
    proc = peftbench("tournament", "--preset", "quick", "--steps", "10", "--lr-points", "1",
                     "--out", str(out), "--dry-run", "--no-calibrate")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert "4 search runs (steps per rung: 10)" in text


@pytest.mark.parametrize("args, message", [
    (["--methods", "lora,nope"], "unknown method 'nope'"),
    (["--lr-grid", "1e-3,abc"], "--lr-grid"),
    (["--lr-grid", "-1"], "positive"),
    (["--seeds", "0"], "seeds"),
    (["--train-opt", "lr=0.1"], "set by the tournament"),
    (["--executor", "slurm"], "unknown executor"),
    (["--preset", "huge"], "unknown preset 'huge'"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    out = tmp_path / "t"
    proc = peftbench("tournament", *CLI_ARGS, "--out", str(out), "--no-calibrate", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not out.exists() or result_files(out) == []


def _expected_specs(out: Path) -> int:
    manifest = json.loads((out / "tournament.json").read_text())
    return sum(len(t["search"]) + len(t["finals"]) for t in manifest["techniques"].values())


def test_resume_after_sigkill_at_random_moments(tmp_path):
    out = tmp_path / "t"
    args = ["tournament", *CLI_ARGS, "--methods", "lora,ia3", "--lr-points", "2",
            "--out", str(out), "--no-calibrate"]
    rng = random.Random(7)
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "peftbench.cli", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        time.sleep(rng.uniform(2.0, 14.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        time.sleep(0.5)
        assert not workers_alive(str(out)), "a run outlived its killed tournament"
        for path in result_files(out):  # whatever is there is whole
            read_result(path)
    first = {p.name: p.stat().st_mtime_ns for p in result_files(out)}
    done = peftbench(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    files = result_files(out)
    hashes = [read_result(p)["run_info"]["peftbench"]["spec_hash"] for p in files]
    assert len(hashes) == len(set(hashes)) == _expected_specs(out) == 6
    # finished runs were not run again
    for name, mtime in first.items():
        status = read_result(out / name)["train_info"]["status"]
        if status in ("success", "failed"):
            assert (out / name).stat().st_mtime_ns == mtime, name
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    # a repeated command runs nothing and rewrites no result
    again = peftbench(*args)
    assert again.returncode == 0
    assert {p.name: p.stat().st_mtime_ns for p in result_files(out)} == {
        p.name: p.stat().st_mtime_ns for p in files}


def test_ctrl_c_stops_the_runs_in_flight_without_recording_them(tmp_path):
    out = tmp_path / "t"
    # a shell starts background jobs with SIGINT ignored, and Python then keeps it ignored:
    # give the tournament the default disposition, as a terminal's Ctrl-C finds it
    proc = subprocess.Popen([sys.executable, "-m", "peftbench.cli", "tournament", *CLI_ARGS,
                             "--methods", "lora", "--lr-points", "1", "--out", str(out),
                             "--no-calibrate"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not workers_alive(str(out)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers_alive(str(out)), "no run started"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    time.sleep(0.5)
    assert not workers_alive(str(out))
    # the interrupted run left no result, so a resumed tournament runs it
    assert result_files(out) == []


def test_two_tournaments_never_share_a_folder(tmp_path):
    from peftbench.errors import UserError
    from peftbench.tournament import FolderLock

    with FolderLock(tmp_path):
        with pytest.raises(UserError, match="another tournament"):
            with FolderLock(tmp_path):
                pass


# ------------------------------------------------------------------------- Ray


def test_ray_executor_on_a_local_cluster(tmp_path):
    ray_bin = Path(sys.executable).parent / "ray"
    assert ray_bin.exists(), "Ray's CLI is part of the dev install"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    temp = Path("/tmp") / f"ray-{os.getpid()}"  # Ray's socket paths must stay short
    port = str(random.Random().randint(20000, 40000))
    start = subprocess.run([str(ray_bin), "start", "--head", "--num-cpus", "2",
                            "--port", port, "--include-dashboard", "false",
                            "--temp-dir", str(temp), "--disable-usage-stats"],
                           capture_output=True, text=True, env=env, timeout=180)
    assert start.returncode == 0, start.stderr[-2000:]
    try:
        out = tmp_path / "t"
        proc = subprocess.run(
            [sys.executable, "-m", "peftbench.cli", "tournament", *CLI_ARGS,
             "--methods", "lora,ia3", "--lr-points", "1", "--out", str(out),
             "--no-calibrate", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"],
            capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        files = result_files(out)
        assert len(files) == 4  # 2 techniques x (1 rate + 1 final)
        for path in files:
            data = read_result(path)
            assert data["train_info"]["status"] == "success"
            assert data["run_info"]["peftbench"]["executed_on"]
        finals = [read_result(p) for p in files if "seed" in p.name]
        for data in finals:  # adapters came back from the cluster into the folder
            adapter = Path(data["run_info"]["peftbench"]["adapter_path"])
            assert adapter.is_relative_to(out) and any(adapter.glob("*.safetensors"))
    finally:
        subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, env=env,
                       timeout=120)
        shutil.rmtree(temp, ignore_errors=True)


def test_concurrent_local_runs_share_the_cores():
    from peftbench.tournament.executors.local import _worker_env, threads_per_run

    assert threads_per_run(1) is None  # one run at a time keeps every core
    cores = os.cpu_count() or 1
    assert threads_per_run(2) == max(1, cores // 2)
    assert threads_per_run(4 * cores) == 1
    assert _worker_env(3)["OMP_NUM_THREADS"] == "3"
