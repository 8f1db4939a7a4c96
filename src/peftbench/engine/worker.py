"""One tournament run in its own process: ``python -m peftbench.engine.worker SPEC.json OUT_DIR``.

A run in its own process has its memory measured cleanly (its peak RSS is its own), and a crash,
an out-of-memory kill or a hang takes down only that run. The worker reports progress on stdout
(`peftbench.engine.progress.EventProgress` lines) and exits with

- 0: the run succeeded and its result file is written;
- 1: the run failed (exception, NaN loss, out of memory) and its ``failed`` result is written;
- 2: the spec is the user's mistake (unknown method, a config the model rejects, bad data):
  the message is the last line on stderr and no file is written.

The worker dies with its parent (Linux ``PR_SET_PDEATHSIG``), so killing a tournament, even
with SIGKILL, never leaves orphan runs that would write results later.

``python -m peftbench.engine.worker --serve FD ...`` is the fork server of
`peftbench.engine.zygote` instead: it imports the engine once and forks one such worker per
run, each with the same command line, exit codes and output as a worker started on its own.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import signal
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USER_ERROR = 0, 1, 2

#: the module a worker runs as (``python -m``), the start of every worker's command line
WORKER_MODULE = "peftbench.engine.worker"


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(EXIT_FAILED)


def worker_args(spec_file: Path, out_dir: Path, *, save_adapter: bool = True,
                tracking: str | None = None) -> list[str]:
    """The arguments of a worker that runs ``spec_file`` into ``out_dir`` (``tracking``: the
    experiment trackers' settings, `peftbench.trackers.TrackingConfig.to_arg`)."""
    args = [str(spec_file), str(out_dir)]
    if tracking:
        args += ["--tracking", tracking]
    return args if save_adapter else [*args, "--no-adapter"]


def worker_command(args: list[str]) -> list[str]:
    """The command line of a worker with arguments ``args``."""
    return [sys.executable, "-m", WORKER_MODULE, *args]


def main(argv: list[str] | None = None) -> int:
    """Run the spec in ``SPEC.json`` and write its result under ``OUT_DIR``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        from peftbench.engine.zygote_server import serve_main

        return serve_main(argv)
    parser = argparse.ArgumentParser(prog=f"python -m {WORKER_MODULE}")
    parser.add_argument("spec_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--no-adapter", action="store_true", help="do not save the adapter")
    parser.add_argument("--tracking", metavar="JSON", help="experiment trackers' settings")
    args = parser.parse_args(argv)
    die_with_parent()
    return run_spec(args.spec_file, args.out_dir, save_adapter=not args.no_adapter,
                    tracking=args.tracking)


def run_spec(spec_file: Path, out_dir: Path, *, save_adapter: bool = True,
             tracking: str | None = None) -> int:
    """Run the spec in ``spec_file``, reporting progress on stdout (and to the trackers that
    ``tracking`` names, from this process); returns the exit code."""
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.progress import EventProgress
    from peftbench.engine.spec import parse_spec
    from peftbench.errors import UserError
    from peftbench.trackers import TrackingConfig

    try:
        spec = parse_spec(json.loads(spec_file.read_text()))
        outcome = run_experiment(spec, out_dir, progress=EventProgress(sys.stdout),
                                 save_adapter=save_adapter,
                                 tracking=TrackingConfig.from_arg(tracking) if tracking else None)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return EXIT_OK if outcome.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
