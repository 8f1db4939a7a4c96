"""One tournament run in its own process: ``python -m peftbench.worker SPEC.json OUT_DIR``.

A run in its own process has its memory measured cleanly (its peak RSS is its own), and a crash,
an out-of-memory kill or a hang takes down only that run. The worker reports progress on stdout
(`peftbench.progress.EventProgress` lines) and exits with

- 0: the run succeeded and its result file is written;
- 1: the run failed (exception, NaN loss, out of memory) and its ``failed`` result is written;
- 2: the spec is the user's mistake (unknown method, a config the model rejects, bad data):
  the message is the last line on stderr and no file is written.

The worker dies with its parent (Linux ``PR_SET_PDEATHSIG``), so killing a tournament, even
with SIGKILL, never leaves orphan runs that would write results later.
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


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent exits (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os._exit(EXIT_FAILED)


def main(argv: list[str] | None = None) -> int:
    """Run the spec in ``SPEC.json`` and write its result under ``OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m peftbench.worker")
    parser.add_argument("spec_file", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--no-adapter", action="store_true", help="do not save the adapter")
    args = parser.parse_args(argv)
    die_with_parent()

    from peftbench.errors import UserError
    from peftbench.experiment import run_experiment
    from peftbench.progress import EventProgress
    from peftbench.spec import parse_spec

    try:
        spec = parse_spec(json.loads(args.spec_file.read_text()))
        outcome = run_experiment(spec, args.out_dir, progress=EventProgress(sys.stdout),
                                 save_adapter=not args.no_adapter)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return EXIT_OK if outcome.ok else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
