"""Heavy optional packages absent (as on a GPU image with only the core stack installed):
`import peftbench` and a tiny run still work, and each feature that needs one of them stops
with one line naming the package, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: not installed on the GPU image: blocked in the child (``sys.modules[name] = None``)
BLOCKED = ["gradio", "ray", "bitsandbytes", "diffusers", "plotly", "kaleido", "matplotlib",
           "datasets", "pyarrow", "pandas", "sklearn", "gguf"]

CHILD = textwrap.dedent("""
    import json, sys
    for name in {blocked!r}:
        sys.modules[name] = None
    import peftbench
    from peftbench.cli import main
    codes = {{}}
    for label, args in {commands!r}:
        print(f"=== {{label}}", file=sys.stderr, flush=True)
        try:
            main(args)
            codes[label] = 0
        except SystemExit as exc:
            codes[label] = exc.code
    loaded = sorted(n for n in {blocked!r} if sys.modules.get(n) is not None)
    print(json.dumps({{"codes": codes, "loaded": loaded}}))
""")


def run_blocked(commands: list[tuple[str, list[str]]]) -> tuple[dict, dict[str, str]]:
    """Run CLI ``commands`` in one child with `BLOCKED` unimportable: (summary, stderr by
    command)."""
    code = CHILD.format(blocked=BLOCKED, commands=commands)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    parts = done.stderr.split("=== ")[1:]
    errors = {p.split("\n", 1)[0]: p.split("\n", 1)[1] for p in parts}
    return json.loads(done.stdout.strip().splitlines()[-1]), errors


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_core_runs_without_the_heavy_packages_and_features_name_them(tmp_path):
    out = str(tmp_path / "results")
    small = ["--task-opt", "n_train=16", "--task-opt", "n_valid=4", "--task-opt", "n_test=4"]
    summary, errors = run_blocked([
        ("run", ["run", "--model", "tiny-llama", "--steps", "2", "--out", out,
                 "--no-progress", *small]),
        ("report", ["report", out, "--out", str(tmp_path / "report")]),
        ("app", ["app", out]),
        ("qlora", ["run", "--model", "tiny-llama", "--method", "qlora", "--steps", "1",
                   "--out", out, "--no-progress", *small]),
        ("ray", ["tournament", "--model", "tiny-llama", "--executor", "ray", "--methods",
                 "lora", "--steps", "1", "--out", str(tmp_path / "t"), "--no-calibrate"]),
    ])
    codes = summary["codes"]
    assert codes["run"] == 0, errors["run"]
    assert summary["loaded"] == []  # nothing imported them behind our back
    expected = {"report": "needs the package plotly", "app": "needs the package gradio",
                "qlora": "bitsandbytes", "ray": "needs Ray"}
    for label, words in expected.items():
        assert codes[label] == 2, (label, errors[label])
        assert words in errors[label] and "Traceback" not in errors[label], errors[label]
        assert errors[label].strip().count("\n") == 0, errors[label]  # one line
