"""`benchmarks/gpu_check.py` without CUDA (as CI runs it): one line, exit 0, its plumbing run on
the CPU, nothing written; and the README's GPU table made from its JSON."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_tables():
    spec = importlib.util.spec_from_file_location("gen_readme_tables",
                                                  ROOT / "scripts" / "gen_readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_mode_says_no_cuda_in_one_line_and_checks_its_plumbing(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no CUDA: nothing measured"), lines
    assert "plumbing ran on CPU (3 runs, tournament, memory-only" in lines[0]
    assert not out.exists()


def test_gpu_table_from_a_report_and_the_honest_line_without_one():
    tables = load_tables()
    assert tables.gpu_table({"environment": {"gpu": None}, "runs": []}) == tables.NOT_ON_GPU
    run = {"model": "config:llama-3.2-1b", "method": "lora", "status": "success",
           "peak_memory": 8 * 2**30, "bare_max_allocated": 8 * 2**30, "memory_ratio": 1.0,
           "step_ratio": 1.02, "tokens_per_sec": 50_000.0, "peak_share": 0.31}
    report = {"environment": {"gpu": {"name": "NVIDIA H200", "memory": 141 * 2**30},
                              "versions": {"torch": "2.11.0"}},
              "matmul_peak_tflops": {"bfloat16": 790.0}, "runs": [run],
              "tournament": {"exit_code": 0, "seconds": 60},
              "memory_only": {"exit_code": 0, "seconds": 40},
              "checks": {"every run succeeded": True}, "created_at": "2026-11-28T12:00:00"}
    lines = tables.gpu_table(report)
    assert "| config:llama-3.2-1b | lora | 8,192 MiB | 8,192 MiB | 1.000 | 1.020 | 50,000 | " \
           "31.00% |" in lines
    assert "NVIDIA H200 (141 GiB), bf16 matmul peak 790 TFLOP/s" in lines[-1]
    assert "every check passed" in lines[-1]
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- gpu-table:start -->\n")[1].split("\n<!-- gpu-table:end -->")[0]
    assert block.splitlines() == tables.NOT_ON_GPU or "| model | technique |" in block
