"""Where a tournament's runs execute: local worker processes (the default) or a Ray cluster.

Both run every experiment in its own process (`peftbench.worker`) and contain its failures:
a run that crashes, is killed, or exceeds the time limit becomes a result file with status
``failed`` or ``timeout``, and the tournament goes on. Results land in one folder either way;
a Ray run's result and adapter files are sent back to the driver and written there.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peftbench.errors import UserError
from peftbench.progress import parse_event
from peftbench.results import (
    STATUS_FAILED,
    STATUS_TIMEOUT,
    atomic_write_json,
    result_filename,
)
from peftbench.spec import ExperimentSpec

#: the status of a run stopped by the tournament's own interruption: no file, run it again
STATUS_INTERRUPTED = "interrupted"

#: called with (spec, event) for each progress event of a running spec
EventHandler = Callable[[ExperimentSpec, dict[str, Any]], None]


@dataclass
class RunRecord:
    """What the tournament learns from one run: its status and where its result file is."""

    spec: ExperimentSpec
    status: str
    path: Path
    result: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0
    reused: bool = False  # found finished in the output folder (resume), not run now

    @property
    def train_info(self) -> dict[str, Any]:
        """The result's ``train_info`` (empty when there is none)."""
        return self.result.get("train_info", {})


def result_path(spec: ExperimentSpec, out_dir: Path) -> Path:
    """Where a spec's result file goes: its name and content hash make it unique."""
    return out_dir / result_filename(spec.display_name(), spec.content_hash())


# --------------------------------------------------------------------------------------------
# One run in a worker process


def run_in_subprocess(spec: ExperimentSpec, out_dir: Path, *, timeout: float | None = None,
                      save_adapter: bool = True, on_event: EventHandler | None = None,
                      live: set[subprocess.Popen] | None = None,
                      stopping: threading.Event | None = None,
                      threads: int | None = None) -> RunRecord:
    """Run ``spec`` in a `peftbench.worker` process; contain whatever happens to it.

    ``timeout`` (seconds) kills the run's whole process group and records it as timed out.
    ``live`` collects the running process so that the caller can kill it on interruption;
    a run killed that way (``stopping`` set) writes nothing, so that a resumed tournament
    runs it again.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = result_path(spec, out_dir)
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".tmp", prefix=".spec-", dir=out_dir,
                                     delete=False) as fh:
        fh.write(spec.model_dump_json())
        spec_file = Path(fh.name)
    command = [sys.executable, "-m", "peftbench.worker", str(spec_file), str(out_dir)]
    if not save_adapter:
        command.append("--no-adapter")
    stderr_tail: deque[str] = deque(maxlen=40)
    try:
        code, timed_out = _supervise(command, spec, timeout, threads, on_event, live,
                                     stderr_tail)
    finally:
        spec_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    if stopping is not None and stopping.is_set() and code not in (0, 1):
        return RunRecord(spec, STATUS_INTERRUPTED, target, error="interrupted", seconds=seconds)
    if timed_out:
        return _record_failure(spec, target, STATUS_TIMEOUT,
                               f"timed out after {timeout:g} s (run killed)", seconds)
    if code in (0, 1) and target.exists():
        result = json.loads(target.read_text())
        status = result["train_info"]["status"]
        return RunRecord(spec, status, target, result, result["run_info"].get("error_msg", ""),
                         seconds)
    return _record_failure(spec, target, STATUS_FAILED, _why_it_died(code, stderr_tail), seconds)


def _supervise(command: list[str], spec: ExperimentSpec, timeout: float | None,
               threads: int | None, on_event: EventHandler | None,
               live: set[subprocess.Popen] | None, stderr_tail: deque[str]
               ) -> tuple[int, bool]:
    """Start the worker, relay its events, keep its stderr's tail, kill its process group on
    timeout; returns (exit code, timed out)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=_worker_env(threads))
    if live is not None:
        live.add(proc)
    try:
        readers = [
            threading.Thread(target=_read_events, args=(proc.stdout, spec, on_event),
                             daemon=True),
            threading.Thread(target=_read_tail, args=(proc.stderr, stderr_tail), daemon=True),
        ]
        for reader in readers:
            reader.start()
        timed_out = False
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(proc)
            code = proc.wait()
        for reader in readers:
            reader.join(timeout=5)
        return code, timed_out
    finally:
        if live is not None:
            live.discard(proc)


def _worker_env(threads: int | None = None) -> dict[str, str]:
    """The worker's environment; ``threads`` caps its CPU threads (BLAS/OpenMP/torch)."""
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(threads)
    return env


def threads_per_run(jobs: int) -> int | None:
    """CPU threads for each of ``jobs`` concurrent local runs (None: one run, all cores).

    Concurrent runs that each spin every core's OpenMP threads slow each other down far
    more than by their share of the machine, so each gets its share of the cores.
    """
    if jobs <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def _read_events(stream: Any, spec: ExperimentSpec, on_event: EventHandler | None) -> None:
    for line in stream:
        event = parse_event(line)
        if event is not None and on_event is not None:
            on_event(spec, event)


def _read_tail(stream: Any, tail: deque[str]) -> None:
    for line in stream:
        if line.strip():
            tail.append(line.rstrip())


def _why_it_died(code: int, stderr_tail: Iterable[str]) -> str:
    lines = list(stderr_tail)
    if code == 2 and lines:  # the worker's one-line user error
        return lines[-1].removeprefix("error: ")
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (the system's out-of-memory killer?)" if name == "SIGKILL" else ""
        return f"run process killed by {name}{hint}"
    last = lines[-1] if lines else "no output"
    return f"run process exited with code {code}: {last}"


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and everything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def failure_result(spec: ExperimentSpec, status: str, error: str, seconds: float) -> dict[str, Any]:
    """A result file for a run that could not write its own (killed, timed out, rejected):
    the PEFT-suite layout with the spec, the status and the error, and no measurements."""
    from peftbench.measure import package_versions

    return {
        "run_info": {
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "total_time": seconds,
            "experiment_name": f"{spec.method}/{spec.display_name()}",
            "train_config": {"model_id": spec.model, "seed": spec.train.seed,
                             "optimizer_kwargs": {"lr": spec.train.lr},
                             "max_steps": spec.train.max_steps, "task": spec.task},
            "peft_config": {"method": spec.method, **spec.adapter_config},
            "error_msg": error,
            "peftbench": {"spec": spec.model_dump(mode="json"),
                          "spec_hash": spec.content_hash(), "method": spec.method,
                          "lr": spec.train.lr, "adapter_path": None},
        },
        "train_info": {"status": status, "metrics": [], "total_time": seconds},
        "meta_info": {"package_info": package_versions()},
    }


def _record_failure(spec: ExperimentSpec, target: Path, status: str, error: str,
                    seconds: float) -> RunRecord:
    result = failure_result(spec, status, error, seconds)
    atomic_write_json(target, result)
    return RunRecord(spec, status, target, result, error, seconds)


# --------------------------------------------------------------------------------------------
# Executors


class LocalExecutor:
    """Runs specs as worker processes on this machine, ``jobs`` at a time (default one: on a
    shared CPU, parallel runs would distort each other's time and memory figures)."""

    name = "local"

    def __init__(self, jobs: int = 1, timeout: float | None = None) -> None:
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self._live: set[subprocess.Popen] = set()
        self._stopping = threading.Event()

    def slots(self) -> int:
        """How many runs go at once."""
        return self.jobs

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None) -> Iterator[RunRecord]:
        """Run ``specs``; yield each record as its run ends. Interruption kills the runs."""
        pending = list(specs)
        running: dict[Future, ExperimentSpec] = {}
        pool = ThreadPoolExecutor(max_workers=self.jobs)
        try:
            while pending or running:
                while pending and len(running) < self.jobs:
                    spec = pending.pop(0)
                    if on_start:
                        on_start(spec)
                    future = pool.submit(run_in_subprocess, spec, out_dir,
                                         timeout=self.timeout, save_adapter=save_adapter,
                                         on_event=on_event, live=self._live,
                                         stopping=self._stopping,
                                         threads=threads_per_run(self.jobs))
                    running[future] = spec
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    running.pop(future)
                    yield future.result()
        finally:
            if running:  # interrupted (Ctrl-C, an error in the caller): stop the runs
                self._stopping.set()
            for proc in list(self._live):
                kill_group(proc)
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Nothing to release for local runs."""


class RayExecutor:
    """Runs specs on a Ray cluster: one run per GPU, or per CPU slot on a cluster without GPUs.

    Each Ray task starts a worker process on its node (so failures are contained the same way
    as locally) and sends back the result and adapter files, which the driver writes into the
    tournament's folder.
    """

    name = "ray"

    def __init__(self, address: str | None = None, timeout: float | None = None,
                 num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise UserError("the Ray executor needs Ray: pip install 'peftbench[ray]'") from None
        self.ray = ray
        self.timeout = timeout
        if not ray.is_initialized():
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None,
                         include_dashboard=False, log_to_driver=False,
                         logging_level="warning")
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = address or "a new local cluster"
                raise UserError(f"cannot connect to Ray at {where}: {exc}") from None
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 1))

    def slots(self) -> int:
        """How many runs the cluster takes at once."""
        return self.gpus or max(1, self.cpus)

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None) -> Iterator[RunRecord]:
        """Submit every spec; yield each record as its run ends (files written locally)."""
        ray = self.ray
        options = {"num_gpus": 1, "num_cpus": 0} if self.gpus else {"num_cpus": 1}
        remote = ray.remote(max_retries=0, **options)(run_remotely)
        refs = {}
        for spec in specs:
            if on_start:
                on_start(spec)
            refs[remote.remote(spec.model_dump_json(), self.timeout, save_adapter)] = spec
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                spec = refs.pop(done[0])
                try:
                    payload = ray.get(done[0])
                except Exception as exc:  # the Ray task itself died (node lost, ...)
                    yield _record_failure(spec, result_path(spec, out_dir), STATUS_FAILED,
                                          f"Ray task failed: {exc.__class__.__name__}: {exc}",
                                          0.0)
                    continue
                yield write_payload(spec, payload, out_dir)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        """Disconnect from the cluster (a local one started here shuts down)."""
        self.ray.shutdown()


def run_remotely(spec_json: str, timeout: float | None, save_adapter: bool) -> dict[str, Any]:
    """The Ray task: run one spec in a worker process on this node; return its files' bytes."""
    spec = ExperimentSpec.model_validate_json(spec_json)
    with tempfile.TemporaryDirectory(prefix="peftbench-ray-") as tmp:
        record = run_in_subprocess(spec, Path(tmp), timeout=timeout, save_adapter=save_adapter)
        files = {}
        adapter = record.result.get("run_info", {}).get("peftbench", {}).get("adapter_path")
        if adapter and Path(adapter).is_dir():
            for file in Path(adapter).rglob("*"):
                if file.is_file():
                    files[str(file.relative_to(adapter))] = file.read_bytes()
        return {"result": record.result, "seconds": record.seconds, "adapter_files": files,
                "node": os.uname().nodename}


def write_payload(spec: ExperimentSpec, payload: dict[str, Any], out_dir: Path) -> RunRecord:
    """Write a Ray task's result (and adapter files) into ``out_dir``; its adapter path is
    rewritten to where the files now are."""
    target = result_path(spec, out_dir)
    result = payload["result"]
    files: dict[str, bytes] = payload.get("adapter_files") or {}
    info = result["run_info"]["peftbench"]
    if files:
        adapter_dir = out_dir / "adapters" / target.stem
        for rel, data in files.items():
            path = adapter_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        info["adapter_path"] = str(adapter_dir)
    else:
        info["adapter_path"] = None
    result["run_info"]["peftbench"]["executed_on"] = payload.get("node")
    atomic_write_json(target, result)
    return RunRecord(spec, result["train_info"]["status"], target, result,
                     result["run_info"].get("error_msg", ""), payload.get("seconds", 0.0))


class InlineExecutor:
    """Runs specs in this process, one after another: for debugging (a breakpoint reaches the
    run) and fast tests of the tournament's logic. No containment of crashes or hangs, and the
    memory figures include the caller's own; tournaments use `LocalExecutor`."""

    name = "inline"

    def slots(self) -> int:
        """One run at a time."""
        return 1

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None) -> Iterator[RunRecord]:
        """Run each spec with `run_experiment`; a user error becomes a failed result."""
        from peftbench.experiment import run_experiment

        for spec in specs:
            if on_start:
                on_start(spec)
            started = time.perf_counter()
            try:
                outcome = run_experiment(spec, out_dir, progress=False,
                                         save_adapter=save_adapter)
            except UserError as exc:
                yield _record_failure(spec, result_path(spec, out_dir), STATUS_FAILED, str(exc),
                                      time.perf_counter() - started)
                continue
            result = outcome.result
            yield RunRecord(spec, result["train_info"]["status"], outcome.path, result,
                            result["run_info"].get("error_msg", ""),
                            time.perf_counter() - started)

    def close(self) -> None:
        """Nothing to release."""
