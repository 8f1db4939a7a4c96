"""Local worker processes: each run in its own `peftbench.engine.worker` process, supervised.

A run that crashes, is killed, or exceeds the time limit becomes a result file with status
``failed`` or ``timeout``, and the tournament goes on; a run stopped by the tournament's own
interruption writes nothing, so that a resumed tournament runs it again.

Runs start warm by default: forked by a fork server that has already imported the engine
(`peftbench.engine.zygote`), which saves each run seconds of imports. A forked run is supervised
exactly as a worker started cold; where the fork server cannot serve, or dies under a run, the
run starts cold (``PEFTBENCH_COLD_WORKERS=1`` or ``LocalExecutor(warm=False)``: always cold).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from peftbench.engine.progress import parse_event
from peftbench.engine.results import STATUS_FAILED, STATUS_TIMEOUT
from peftbench.engine.spec import ExperimentSpec
from peftbench.engine.worker import worker_args, worker_command
from peftbench.engine.zygote import WarmProcess, Zygote
from peftbench.tournament.executors.base import (
    STATUS_INTERRUPTED,
    EventHandler,
    RunRecord,
    record_failure,
    result_path,
)
from peftbench.trackers import TrackingConfig

#: a worker process started cold, or forked warm by a zygote
WorkerProcess = subprocess.Popen | WarmProcess

#: set to 1 to start every local run as a new process (no fork server)
COLD_WORKERS_ENV = "PEFTBENCH_COLD_WORKERS"

# --------------------------------------------------------------------------------------------
# One run in a worker process


def run_in_subprocess(spec: ExperimentSpec, out_dir: Path, *, timeout: float | None = None,
                      save_adapter: bool = True, on_event: EventHandler | None = None,
                      live: set[WorkerProcess] | None = None,
                      stopping: threading.Event | None = None,
                      threads: int | None = None, zygote: Zygote | None = None,
                      tracking: TrackingConfig | None = None) -> RunRecord:
    """Run ``spec`` in a `peftbench.engine.worker` process; contain whatever happens to it.

    ``timeout`` (seconds) kills the run's whole process group and records it as timed out.
    ``live`` collects the running process so that the caller can kill it on interruption;
    a run killed that way (``stopping`` set) writes nothing, so that a resumed tournament
    runs it again. ``zygote`` forks the worker warm where it can; a run whose zygote died
    under it runs again, cold. ``tracking``: the experiment trackers the run reports to.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    target = result_path(spec, out_dir)
    earlier = _stamp(target)  # a result made from other inputs, to be replaced
    started = time.perf_counter()
    with tempfile.NamedTemporaryFile("w", suffix=".tmp", prefix=".spec-", dir=out_dir,
                                     delete=False) as fh:
        fh.write(spec.model_dump_json())
        spec_file = Path(fh.name)
    args = worker_args(spec_file, out_dir, save_adapter=save_adapter,
                       tracking=tracking.to_arg() if tracking else None)
    stderr_tail: deque[str] = deque(maxlen=40)
    try:
        proc = _start(args, threads, zygote)
        code, timed_out = _supervise(proc, spec, timeout, on_event, live, stopping, stderr_tail)
        if getattr(proc, "zygote_lost", False) and not _is_set(stopping):
            proc = _start(args, threads, None)
            code, timed_out = _supervise(proc, spec, timeout, on_event, live, stopping,
                                         stderr_tail)
    finally:
        spec_file.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    if _is_set(stopping) and code not in (0, 1):
        return RunRecord(spec, STATUS_INTERRUPTED, target, error="interrupted", seconds=seconds)
    if timed_out:
        return record_failure(spec, target, STATUS_TIMEOUT,
                               f"timed out after {timeout:g} s (run killed)", seconds)
    if code in (0, 1) and target.exists() and _stamp(target) != earlier:
        return RunRecord.from_result(spec, target, json.loads(target.read_text()), seconds)
    return record_failure(spec, target, STATUS_FAILED, _why_it_died(code, stderr_tail), seconds)


def _stamp(path: Path) -> tuple[int, int] | None:
    """The file's inode and modification time (None when it does not exist): a result the
    worker wrote has a new one, since results are replaced by rename."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def _start(args: list[str], threads: int | None, zygote: Zygote | None) -> WorkerProcess:
    """A worker with arguments ``args``: forked by ``zygote`` where it can, else started cold."""
    proc = zygote.spawn(args) if zygote is not None else None
    if proc is None:
        proc = subprocess.Popen(worker_command(args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True,
                                env=_worker_env(threads))
    return proc


def _is_set(event: threading.Event | None) -> bool:
    return event is not None and event.is_set()


def _supervise(proc: WorkerProcess, spec: ExperimentSpec, timeout: float | None,
               on_event: EventHandler | None, live: set[WorkerProcess] | None,
               stopping: threading.Event | None, stderr_tail: deque[str]) -> tuple[int, bool]:
    """Relay a started worker's events, keep its stderr's tail, kill its process group on
    timeout (or at once when the tournament is stopping); returns (exit code, timed out)."""
    if live is not None:
        live.add(proc)
    if _is_set(stopping):  # interrupted while it started: the caller's kill may have missed it
        kill_group(proc)
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


def kill_group(proc: WorkerProcess) -> None:
    """SIGKILL a worker and everything it started (it leads its own process group; a forked
    worker may not lead it yet, so the worker itself is killed too)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# --------------------------------------------------------------------------------------------
# Executors


class LocalExecutor:
    """Runs specs as worker processes on this machine, ``jobs`` at a time (default one: on a
    shared CPU, parallel runs would distort each other's time and memory figures).

    ``warm`` forks the workers from a fork server started on the first run and kept until
    `close` (``PEFTBENCH_COLD_WORKERS=1`` turns it off); cold, each is a new process.
    """

    name = "local"

    def __init__(self, jobs: int = 1, timeout: float | None = None, warm: bool = True) -> None:
        self.jobs = max(1, jobs)
        self.timeout = timeout
        self.warm = warm
        self._live: set[WorkerProcess] = set()
        self._stopping = threading.Event()
        self._zygote: Zygote | None = None

    @classmethod
    def from_options(cls, *, jobs: int = 1, address: str | None = None,
                     timeout: float | None = None) -> LocalExecutor:
        """The executor the CLI's options ask for (``address`` is Ray's, unused here)."""
        return cls(jobs=jobs, timeout=timeout)

    def slots(self) -> int:
        """How many runs go at once."""
        return self.jobs

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None,
            tracking: TrackingConfig | None = None) -> Iterator[RunRecord]:
        """Run ``specs``; yield each record as its run ends. Interruption kills the runs."""
        pending = list(specs)
        zygote = self._zygote_for_runs()
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
                                         threads=threads_per_run(self.jobs),
                                         zygote=zygote, tracking=tracking)
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
        """Stop the fork server, if one was started."""
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None

    def _zygote_for_runs(self) -> Zygote | None:
        """The fork server for this executor's runs (None: start them cold)."""
        if not self.warm or os.environ.get(COLD_WORKERS_ENV, "") not in ("", "0"):
            return None
        if self._zygote is None:
            threads = threads_per_run(self.jobs)
            self._zygote = Zygote(threads, _worker_env(threads))
            weakref.finalize(self, self._zygote.close)
        return self._zygote
