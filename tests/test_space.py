"""`peftbench space`: a folder Hugging Face Spaces runs as it is, started here with its own
app.py and checked in a real browser as the dashboard is (test_app_browser.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import test_app_browser as browser_tests
from cli_helpers import peftbench
from huggingface_hub import SpaceCard
from result_fixtures import suite_memory_accuracy_frontier, write_our_results

from peftbench import analysis as an
from peftbench.analysis.app import free_port
from peftbench.analysis.pareto import TIE_TOLERANCE
from peftbench.analysis.space import SPACE_PACKAGES
from peftbench.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
# the dashboard test's browser and its offline page (requests outside localhost blocked)
browser, offline_page = browser_tests.browser, browser_tests.offline_page
TIMEOUT_MS = browser_tests.TIMEOUT_MS



@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, peft_reference: Path) -> list[Path]:
    return [peft_reference / "MetaMathQA" / "results",
            write_our_results(tmp_path_factory.mktemp("ours"))]


@pytest.fixture(scope="module")
def space(tmp_path_factory: pytest.TempPathFactory, inputs: list[Path]) -> Path:
    out = tmp_path_factory.mktemp("spaces") / "my-space"
    main_args = ["space", *map(str, inputs), "--out", str(out)]
    try:
        main(main_args)
    except SystemExit as exc:
        assert not exc.code
    return out


def test_the_folder_is_a_space_with_pinned_requirements_and_the_results(space, inputs) -> None:
    import importlib.metadata

    assert {p.name for p in space.iterdir()} == {"app.py", "requirements.txt", "README.md",
                                                  "results", "peftbench"}
    pins = space.joinpath("requirements.txt").read_text().split()
    assert pins == [f"{n}=={importlib.metadata.version(n)}" for n in SPACE_PACKAGES]
    card = SpaceCard.load(space / "README.md")
    assert card.data.sdk == "gradio" and card.data.app_file == "app.py"
    assert card.data.sdk_version == importlib.metadata.version("gradio")
    copied = an.load_results([space / "results"])
    assert len(copied.runs) == len(an.load_results(inputs).runs)


def test_the_space_runs_its_own_app_and_shows_the_dashboard(space, offline_page,
                                                            peft_reference) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([sys.executable, "-c", "import peftbench; print(peftbench.__file__)"],
                           cwd=space, env=env, capture_output=True, text=True, timeout=60)
    assert Path(where.stdout.strip()).parent == space / "peftbench"  # its own copy
    port = free_port()
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port),
               GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = _wait_for(f"http://127.0.0.1:{port}/", proc)
        page = offline_page
        page.goto(url)
        page.wait_for_selector("#pareto-plot .js-plotly-plot .ytitle", timeout=TIMEOUT_MS)
        assert browser_tests._axis_titles(page) == ("peak memory ↓", "test score ↑")
        expected = suite_memory_accuracy_frontier(peft_reference / "MetaMathQA" / "results",
                                                  memory_tie=TIE_TOLERANCE["peak_memory"])
        page.wait_for_selector("#status:has-text('Frontier')", timeout=TIMEOUT_MS)
        assert browser_tests._frontier_text(page) == expected
        assert page.external == []
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(url: str, proc: subprocess.Popen, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"app.py exited: {proc.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"app.py did not answer on {url}")


DASHBOARD_IMPORTS = """
import json, sys
before = set(sys.modules)
import app
from peftbench import analysis as an
from peftbench.analysis.app import Dashboard, build_app
results = an.load_results([app.RESULTS])
board = Dashboard(results)
group = board.default_group()
board.view(group, "peak_memory", "test_score", capabilities=["mergeable"], text="")
board.recommendation(group, "test_score", "20GB", ["mergeable"], "")
build_app(results)
loaded = set(sys.modules) - before
files = [m.__file__ for name, m in list(sys.modules.items())
         if name.split(".")[0] == "peftbench" and getattr(m, "__file__", None)]
print(json.dumps({"loaded": sorted({n.split(".")[0] for n in loaded}), "files": files}))
"""


def imported_by(files: list[str], loaded: set[str]) -> set[str]:
    """The top-level modules that the code in ``files`` imports (anywhere in it) and that were
    imported by the time the dashboard had run: what peftbench itself needed."""
    import ast

    names: set[str] = set()
    for file in files:
        for node in ast.walk(ast.parse(Path(file).read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names & loaded if n not in sys.stdlib_module_names} - {"peftbench"}


def test_requirements_cover_everything_the_app_imports(space) -> None:
    import importlib.metadata as md

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", DASHBOARD_IMPORTS], cwd=space, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads(proc.stdout.splitlines()[-1])
    assert all(Path(f).is_relative_to(space) for f in run["files"])  # the Space's own copy
    modules = imported_by(run["files"], set(run["loaded"]))
    assert {"gradio", "pandas", "plotly", "numpy"} <= modules
    pending = [canonicalize_name(p.split("==")[0])
               for p in (space / "requirements.txt").read_text().split()]
    covered: set[str] = set()
    while pending:  # the requirements and everything they require
        name = pending.pop()
        if name in covered:
            continue
        covered.add(name)
        for line in md.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                pending.append(canonicalize_name(req.name))
    owners = md.packages_distributions()
    missing = {m for m in modules
               if not {canonicalize_name(d) for d in owners.get(m, [])} & covered}
    assert not missing, missing


def test_push_without_a_login_is_one_line_and_writes_nothing(capsys, monkeypatch, tmp_path,
                                                            inputs) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    out = tmp_path / "space"
    code, stdout, err = peftbench(capsys, "space", str(inputs[1]), "--out", str(out),
                                  "--push", "me/tournament")
    lines = err.strip().splitlines()
    assert code == 2 and not stdout and len(lines) == 1, err
    assert "not logged in" in lines[0] and "hf auth login" in lines[0]
    assert not out.exists()


def test_an_earlier_space_is_replaced_but_no_other_folder(capsys, tmp_path, inputs) -> None:
    out = tmp_path / "space"
    assert peftbench(capsys, "space", str(inputs[1]), "--out", str(out))[0] == 0
    (out / "results" / "stale.json").write_text("{}")
    code, stdout, _ = peftbench(capsys, "space", str(inputs[1]), "--out", str(out))
    assert code == 0 and stdout.strip() == str(out)
    assert not (out / "results" / "stale.json").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    code, _, err = peftbench(capsys, "space", str(inputs[1]), "--out", str(other))
    assert code == 2 and "other files" in err and (other / "todo.txt").read_text() == "mine"
    code, _, err = peftbench(capsys, "space", str(inputs[1]), "--out", str(inputs[1] / "s"))
    assert code == 2 and "apart from the results" in err
