"""Warm workers: runs forked by a fork server give the results cold worker processes give, are
worker processes in every way supervision relies on, and survive the fork server's death."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from peftbench.engine.results import read_result
from peftbench.engine.spec import ExperimentSpec, TrainParams
from peftbench.engine.zygote import Zygote
from peftbench.tournament import Tournament, TournamentConfig, make_plan
from peftbench.tournament.executors import LocalExecutor, run_in_subprocess
from peftbench.tournament.executors.local import _worker_env

TINY_TRAIN = {"max_steps": 6, "batch_size": 8, "eval_every": 3, "max_new_tokens": 8,
              "forgetting_samples": 0, "eval_batch_size": 16, "max_seq_length": 64,
              "measure_inference": False}
TASK_OPTIONS = {"n_train": 32, "n_valid": 8, "n_test": 8}
#: what must not depend on how the run's process started (timing, memory, host fields may)
SAME_TRAIN_INFO = ("status", "test_score", "test_items", "valid_score", "train_loss_curve",
                   "data_order", "num_trainable_params", "num_total_params", "file_size")
SAME_METRICS = ("step", "train loss", "train samples", "valid accuracy", "test accuracy")


@pytest.fixture(autouse=True)
def _warm_allowed(monkeypatch):
    monkeypatch.delenv("PEFTBENCH_COLD_WORKERS", raising=False)


def tiny_spec(**train) -> ExperimentSpec:
    return ExperimentSpec(model="tiny-llama", task="arith", task_options=TASK_OPTIONS,
                          method="lora",
                          train=TrainParams(**TINY_TRAIN).model_copy(update=train))


def result_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.name != "tournament.json")


def forked_workers(marker: str) -> list[psutil.Process]:
    """Worker processes (by command line, as the process tests find them) under ``marker``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if "peftbench.engine.worker" in cmdline and marker in cmdline:
            found.append(proc)
    return found


def comparable(path: Path) -> dict:
    info = read_result(path)["train_info"]
    same = {key: info.get(key) for key in SAME_TRAIN_INFO}
    same["metrics"] = [{k: m.get(k) for k in SAME_METRICS} for m in info["metrics"]]
    return same


@pytest.mark.parametrize("bucket_batches", [0, 2])
def test_warm_and_cold_tournaments_write_the_same_results(tmp_path, bucket_batches):
    cfg = TournamentConfig(model="tiny-llama", task="arith", task_options=dict(TASK_OPTIONS),
                           methods=["lora"], lr_points=2,
                           train=TrainParams(**TINY_TRAIN, bucket_batches=bucket_batches),
                           lr_extend=0)
    plan = make_plan(cfg, "causal-lm")
    for warm in (True, False):
        executor = LocalExecutor(warm=warm)
        try:
            outcome = Tournament(plan, tmp_path / str(warm), executor,
                                 save_adapters=False).run()
            assert (executor._zygote is not None) == warm
            if warm:
                assert executor._zygote.starts == 1 and executor._zygote.pid
        finally:
            executor.close()
        assert not outcome.failed()
    warm_files, cold_files = result_files(tmp_path / "True"), result_files(tmp_path / "False")
    assert [p.name for p in warm_files] == [p.name for p in cold_files]
    assert len(warm_files) == 3  # two rates searched, one final
    for warm_file, cold_file in zip(warm_files, cold_files, strict=True):
        warm, cold = comparable(warm_file), comparable(cold_file)
        assert warm["status"] == "success" and warm["train_loss_curve"]
        assert warm == cold, warm_file.name


def test_a_forked_run_is_a_worker_process(tmp_path):
    zygote = Zygote(1, _worker_env(1))
    seen: dict = {}

    def inspect_the_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not seen:
            for proc in forked_workers(str(tmp_path)):
                seen.update(pid=proc.pid, ppid=proc.ppid(), sid=os.getsid(proc.pid),
                            cmdline=proc.cmdline(), zygote=zygote.pid,
                            environ=psutil.Process(zygote.pid).environ())
            time.sleep(0.05)

    watcher = threading.Thread(target=inspect_the_run)
    watcher.start()
    try:
        record = run_in_subprocess(tiny_spec(max_steps=10_000, eval_every=10_000), tmp_path,
                                   timeout=20, zygote=zygote)
        watcher.join()
        assert record.status == "timeout" and "timed out after 20 s" in record.error
        assert read_result(record.path)["train_info"]["status"] == "timeout"
        # forked by the zygote, leading its own session, with a worker's command line
        assert seen["ppid"] == seen["zygote"] and seen["sid"] == seen["pid"]
        assert seen["cmdline"][1:3] == ["-m", "peftbench.engine.worker"]
        assert seen["cmdline"][3].startswith(str(tmp_path / ".spec-"))
        assert seen["environ"]["OMP_NUM_THREADS"] == "1"
        assert not forked_workers(str(tmp_path)) and not list(tmp_path.glob(".spec-*"))
        # a user error: exit code 2 and its one line, as from a cold worker
        bad = tiny_spec().model_copy(update={"adapter_config": {"no_such_field": 1}})
        record = run_in_subprocess(bad, tmp_path / "bad", zygote=zygote)
        assert record.status == "failed" and "Traceback" not in record.error
        assert "unknown lora config field 'no_such_field'" in record.error
        assert zygote.starts == 1 and zygote.pid == seen["zygote"]
    finally:
        zygote.close()
    assert not psutil.pid_exists(seen["zygote"]) or (
        psutil.Process(seen["zygote"]).status() == psutil.STATUS_ZOMBIE)


def test_a_killed_zygote_loses_no_run(tmp_path):
    executor = LocalExecutor()
    specs = [tiny_spec(seed=s) for s in (1, 2, 3)]
    killed: list[int] = []

    def kill_the_zygote_under_a_run() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if forked_workers(str(tmp_path)) and executor._zygote.pid:
                time.sleep(1.0)
                killed.append(executor._zygote.pid)
                os.kill(killed[0], signal.SIGKILL)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_zygote_under_a_run)
    killer.start()
    try:
        records = list(executor.run(specs, tmp_path, save_adapter=False))
        killer.join()
        assert killed, "no run started"
        assert [r.status for r in records] == ["success"] * 3, [r.error for r in records]
        hashes = [read_result(p)["run_info"]["peftbench"]["spec_hash"]
                  for p in result_files(tmp_path)]
        assert sorted(hashes) == sorted(s.content_hash() for s in specs)
        # the later runs went warm again, from a new zygote
        assert executor._zygote.starts == 2 and executor._zygote.pid not in (None, killed[0])
    finally:
        executor.close()
    assert not forked_workers(str(tmp_path))
    assert not list(tmp_path.glob(".spec-*"))


def test_cold_workers_on_request(monkeypatch):
    assert LocalExecutor(warm=False)._zygote_for_runs() is None
    monkeypatch.setenv("PEFTBENCH_COLD_WORKERS", "1")
    assert LocalExecutor()._zygote_for_runs() is None
    monkeypatch.setenv("PEFTBENCH_COLD_WORKERS", "0")
    executor = LocalExecutor()
    assert executor._zygote_for_runs() is not None
    executor.close()


def test_a_zygote_that_cannot_start_leaves_runs_cold(tmp_path):
    zygote = Zygote("not-a-number", _worker_env(), max_starts=2)  # type: ignore[arg-type]
    assert zygote.spawn(["x", "y"]) is None and zygote.starts == 1  # it exits at once
    bad = tiny_spec().model_copy(update={"adapter_config": {"no_such_field": 1}})
    record = run_in_subprocess(bad, tmp_path, zygote=zygote)  # a cold worker ran it
    assert "unknown lora config field 'no_such_field'" in record.error
    assert zygote.starts == 2 and zygote.spawn(["x", "y"]) is None  # no endless restarts
    assert zygote.starts == 2
    zygote.close()
