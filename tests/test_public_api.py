"""The public API: lazy (no torch on import) and the README's Python example runs as shown."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import peftbench

ROOT = Path(__file__).resolve().parent.parent


def test_public_names_resolve() -> None:
    for name in peftbench.__all__:
        assert getattr(peftbench, name) is not None, name


def test_readme_python_example_runs(tmp_path, monkeypatch) -> None:
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## From Python.*?```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    # the same code on the tiny random model, a short budget and a small task
    code = code.replace('model="smollm2-135m"', 'model="tiny-llama"')
    code = code.replace("max_steps=50", "max_steps=2, eval_every=2, max_new_tokens=4, "
                        "forgetting_samples=0, measure_inference=False")
    code = code.replace('method="lora",', 'method="lora", task_options={"n_test": 4, '
                        '"n_valid": 4, "n_train": 16},')
    code = code.replace('max_memory="3GB"', 'max_memory="100GB"')
    monkeypatch.chdir(tmp_path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Recommendation on arith / tiny-llama" in result.stdout
    assert (tmp_path / "results").is_dir()
