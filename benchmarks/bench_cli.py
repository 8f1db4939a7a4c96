"""Speed of the first steps a user takes: the figures the tests used to bound with wall-clock
limits (which fail on a busy machine and pass on a fast one, whatever the code does).

- ``peftbench --help`` and ``peftbench methods --json`` as fresh processes (target: < 2 s each
  on an idle machine: neither may import torch);
- a cached reload of SmolLM2-135M (target: < 2 s; the first load converts the GGUF once);
- reading the local SST-2 copy, 67k sentences (target: < 3 s), when ``../shared/data/sst2`` is
  there.

Each is the median of ``--repeat`` tries. Figures are printed and written to
``docs/bench_cli.json``.

    .venv/bin/python benchmarks/bench_cli.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SST2 = ROOT.parent / "shared" / "data" / "sst2"


def median_seconds(work: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``work()`` over ``repeat`` tries."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def command(*args: str) -> Callable[[], object]:
    """A fresh `peftbench ARGS` process that must succeed."""
    return lambda: subprocess.run([sys.executable, "-m", "peftbench.cli", *args], check=True,
                                  capture_output=True)


def smollm2_reload() -> Callable[[], object]:
    """A reload of SmolLM2-135M from the safetensors cache (converted first if needed)."""
    from peftbench.engine.models import load_model

    load_model("smollm2-135m")
    return lambda: load_model("smollm2-135m")


def sst2_load() -> Callable[[], object]:
    """Reading and splitting the local SST-2 copy."""
    from peftbench.tasks import SPLITS, get_task

    return lambda: [get_task("sst2", {"data": str(SST2)}).load_split(s) for s in SPLITS]


def main() -> None:
    """Measure, print, write docs/bench_cli.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cases: dict[str, tuple[Callable[[], object], float]] = {
        "peftbench --help": (command("--help"), 2.0),
        "peftbench methods --json": (command("methods", "--json"), 2.0),
        "smollm2-135m cached reload": (smollm2_reload(), 2.0),
    }
    if SST2.is_dir():
        cases["sst2 local load (67k sentences)"] = (sst2_load(), 3.0)
    figures = {}
    for name, (work, target) in cases.items():
        seconds = median_seconds(work, args.repeat)
        figures[name] = {"seconds": seconds, "target_seconds": target}
        print(f"{name:<36} {seconds:8.2f} s   (target < {target:g} s)"
              f"{'' if seconds < target else '  MISSED'}")
    out = ROOT / "docs" / "bench_cli.json"
    out.write_text(json.dumps({
        "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "repeat": args.repeat, "cpus": os.cpu_count(),
        "load_average": os.getloadavg()[0], "figures": figures}, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
