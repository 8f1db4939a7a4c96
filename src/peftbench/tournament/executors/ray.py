"""The Ray executor: one run per GPU of a cluster (or per CPU slot on a cluster without GPUs).

Each Ray task runs its spec in a worker process on its node, as `LocalExecutor` does, so
failures are contained the same way; the result and adapter files come back to the driver and
are written into the tournament's folder.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from peftbench.engine.answers import answers_path
from peftbench.engine.record import ResultView
from peftbench.engine.results import STATUS_FAILED, atomic_write_json, atomic_write_text
from peftbench.engine.spec import ExperimentSpec
from peftbench.errors import UserError
from peftbench.tournament.executors.base import (
    EventHandler,
    RunRecord,
    record_failure,
    result_path,
)
from peftbench.tournament.executors.local import run_in_subprocess
from peftbench.trackers import TrackingConfig


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

    @classmethod
    def from_options(cls, *, jobs: int = 1, address: str | None = None,
                     timeout: float | None = None) -> RayExecutor:
        """The executor the CLI's options ask for (``jobs`` is local, unused: the cluster's
        GPUs or CPUs decide how many runs go at once)."""
        return cls(address=address, timeout=timeout)

    def slots(self) -> int:
        """How many runs the cluster takes at once."""
        return self.gpus or max(1, self.cpus)

    def run(self, specs: list[ExperimentSpec], out_dir: Path, *, save_adapter: bool = True,
            on_start: Callable[[ExperimentSpec], None] | None = None,
            on_event: EventHandler | None = None,
            tracking: TrackingConfig | None = None) -> Iterator[RunRecord]:
        """Submit every spec; yield each record as its run ends (files written locally).
        Trackers (``tracking``) write their local stores on the node that runs each spec."""
        ray = self.ray
        options = {"num_gpus": 1, "num_cpus": 0} if self.gpus else {"num_cpus": 1}
        remote = ray.remote(max_retries=0, **options)(run_remotely)
        refs = {}
        for spec in specs:
            if on_start:
                on_start(spec)
            refs[remote.remote(spec.model_dump_json(), self.timeout, save_adapter,
                               tracking.to_arg() if tracking else None)] = spec
        try:
            while refs:
                done, _ = ray.wait(list(refs), num_returns=1)
                spec = refs.pop(done[0])
                try:
                    payload = ray.get(done[0])
                except Exception as exc:  # the Ray task itself died (node lost, ...)
                    yield record_failure(spec, result_path(spec, out_dir), STATUS_FAILED,
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


def run_remotely(spec_json: str, timeout: float | None, save_adapter: bool,
                 tracking: str | None = None) -> dict[str, Any]:
    """The Ray task: run one spec in a worker process on this node; return its files' bytes."""
    spec = ExperimentSpec.model_validate_json(spec_json)
    config = TrackingConfig.from_arg(tracking) if tracking else None
    with tempfile.TemporaryDirectory(prefix="peftbench-ray-") as tmp:
        record = run_in_subprocess(spec, Path(tmp), timeout=timeout, save_adapter=save_adapter,
                                   tracking=config)
        files = {}
        adapter = record.view.adapter_path
        if adapter and Path(adapter).is_dir():
            for file in Path(adapter).rglob("*"):
                if file.is_file():
                    files[str(file.relative_to(adapter))] = file.read_bytes()
        answers = answers_path(record.path)
        return {"result": record.result, "seconds": record.seconds, "adapter_files": files,
                "answers": answers.read_text() if record.view.answers_file and answers.is_file()
                else None, "node": os.uname().nodename}


def write_payload(spec: ExperimentSpec, payload: dict[str, Any], out_dir: Path) -> RunRecord:
    """Write a Ray task's result (and its adapter files and test answers) into ``out_dir``;
    its adapter path is rewritten to where the files now are."""
    target = result_path(spec, out_dir)
    result = payload["result"]
    files: dict[str, bytes] = payload.get("adapter_files") or {}
    view = ResultView(result)
    if files:
        adapter_dir = out_dir / "adapters" / target.stem
        for rel, data in files.items():
            path = adapter_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        view.set_adapter_path(str(adapter_dir.resolve()))
    else:
        view.set_adapter_path(None)
    if payload.get("answers") is not None:  # beside the result, before it
        atomic_write_text(answers_path(target), payload["answers"])
    view.set_executed_on(payload.get("node"))
    atomic_write_json(target, result)
    return RunRecord.from_result(spec, target, result, payload.get("seconds", 0.0))
