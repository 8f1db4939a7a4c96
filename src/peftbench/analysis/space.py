"""A Hugging Face Space from result folders: the dashboard of `peftbench app`, as a folder that
Spaces runs as it is.

    SPACE/
      app.py            serves the dashboard over results/ (Gradio, port 7860)
      requirements.txt  the dashboard's packages, pinned to the versions installed here
      README.md         the Space's YAML header (sdk: gradio, its version, app_file) and text
      results/          the result files and their test answers, one folder per input
      peftbench/        peftbench's own source, as installed here (the app imports it)

peftbench's source travels with the Space rather than as a requirement: the dashboard needs
only its pure-Python analysis (no torch), and the Space then runs exactly the code that made
the results. `push_space` uploads the folder with `huggingface_hub` when the user is logged in.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from peftbench.errors import UserError

#: the distributions the dashboard imports (peftbench's own source travels with the Space)
SPACE_PACKAGES = ("gradio", "plotly", "pandas", "numpy")
APP_FILE, RESULTS_DIR, PACKAGE_DIR = "app.py", "results", "peftbench"
#: what marks a folder as written by `build_space` (so that it may be written again)
MARKER = "# written by `peftbench space`"

APP_SOURCE = f'''{MARKER}
"""The peftbench dashboard over this Space's result files (the same as `peftbench app`)."""

import os
from pathlib import Path

from peftbench.analysis.app import serve

RESULTS = Path(__file__).resolve().parent / "{RESULTS_DIR}"


def main() -> None:
    """Serve the dashboard where Spaces expects it (0.0.0.0:7860 unless told otherwise)."""
    serve([RESULTS], host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"),
          port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))


if __name__ == "__main__":
    main()
'''


@dataclass
class SpaceFolder:
    """What `build_space` wrote."""

    folder: Path
    results: int  # result files copied
    requirements: list[str]


def requirements() -> list[str]:
    """``name==version`` for each package the dashboard imports, as installed here."""
    pins = []
    for name in SPACE_PACKAGES:
        try:
            pins.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            raise UserError(f"{name} is not installed here; the dashboard needs it") from None
    return pins


def readme(title: str, pins: list[str], count: int) -> str:
    """The Space's README: its YAML header, then what it shows and how it was made."""
    from huggingface_hub import SpaceCardData

    gradio = next(p.split("==")[1] for p in pins if p.startswith("gradio=="))
    data = SpaceCardData(
        title=title, sdk="gradio", sdk_version=gradio, app_file=APP_FILE,
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        tags=["peftbench", "peft"], emoji="📊", colorFrom="indigo", colorTo="green",
        pinned=False, short_description="Which fine-tuning technique? A peftbench comparison")
    return (f"---\n{data.to_yaml()}\n---\n\n# {title}\n\nThe peftbench dashboard over "
            f"{count} result files (in `{RESULTS_DIR}/`): Pareto plots of any two measured "
            "figures, filters, a recommendation under constraints, the wrong answers, and "
            "run-by-run comparisons. Written by `peftbench space`; run it locally with "
            f"`pip install -r requirements.txt && python {APP_FILE}`.\n")


def build_space(inputs: list[Path], out: Path, title: str | None = None) -> SpaceFolder:
    """Write the Space for the result folders ``inputs`` into ``out`` (created, or a folder
    an earlier `build_space` wrote, replaced whole)."""
    from peftbench.analysis.aggregation import load_results

    results = load_results(inputs)  # no result at all is a UserError, before any write
    _check_target(out, inputs)
    pins = requirements()
    tmp = out.parent / f".{out.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        count = _copy_results([Path(r.path) for r in results.runs], inputs, tmp / RESULTS_DIR)
        _copy_package(tmp / PACKAGE_DIR)
        (tmp / APP_FILE).write_text(APP_SOURCE)
        (tmp / "requirements.txt").write_text("\n".join(pins) + "\n")
        (tmp / "README.md").write_text(readme(title or _title(inputs), pins, count))
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SpaceFolder(out, count, pins)


def _check_target(out: Path, inputs: list[Path]) -> None:
    """``out`` must be new, empty, or an earlier Space; never inside or around an input."""
    target = out.resolve()
    for given in inputs:
        source = given.resolve()
        if target.is_relative_to(source) or source.is_relative_to(target):
            raise UserError(f"--out {out}: must be apart from the results {given}")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: is a file")
    app = out / APP_FILE
    if out.is_dir() and any(out.iterdir()) and not (
            app.is_file() and app.read_text(errors="replace").startswith(MARKER)):
        raise UserError(f"--out {out}: a folder with other files in it; give a new or empty "
                        "folder (or one `peftbench space` wrote)")


def _copy_results(files: list[Path], inputs: list[Path], target: Path) -> int:
    """Copy each result file (and its answers file) under ``target``, one folder per input,
    keeping its path inside that input."""
    from peftbench.engine.answers import answers_path

    count = 0
    for file in files:
        where = _place(file, inputs)
        for source in (file, answers_path(file)):
            if source.is_file():
                dest = target / where.parent / source.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
        count += 1
    return count


def _place(file: Path, inputs: list[Path]) -> Path:
    """Where a result file goes under results/: ``<input's name>/<its path in the input>``."""
    for index, given in enumerate(inputs):
        root = given.resolve()
        if root.is_file() and root == file.resolve():
            return Path(f"{index}-{root.parent.name or 'results'}") / file.name
        if root.is_dir() and file.resolve().is_relative_to(root):
            return Path(f"{index}-{root.name or 'results'}") / file.resolve().relative_to(root)
    return Path(file.name)


def _copy_package(target: Path) -> None:
    """peftbench's source as installed here, without caches."""
    import peftbench

    source = Path(peftbench.__file__).resolve().parent
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _title(inputs: list[Path]) -> str:
    names = [p.resolve().name for p in inputs]
    return "peftbench: " + ", ".join(names)[:60]


def push_space(folder: Path, repo_id: str) -> str:
    """Upload ``folder`` to the Space ``repo_id`` (created when missing); its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="space",
                          commit_message="peftbench space")
    except Exception as exc:  # network, permissions, a bad id: the user's to fix
        message = " ".join(str(exc).split())[:300]
        raise UserError(f"--push {repo_id}: the upload failed ({type(exc).__name__}: "
                        f"{message}); the Space is in {folder}") from None
    return f"https://huggingface.co/spaces/{repo_id}"


def check_logged_in(repo_id: str) -> None:
    """A `UserError` in one line when no Hugging Face token is configured (nothing is
    written then), or when ``repo_id`` is not of the form OWNER/NAME."""
    from huggingface_hub import get_token

    if "/" not in repo_id.strip("/") or repo_id.count("/") != 1:
        raise UserError(f"--push {repo_id}: give the Space as OWNER/NAME")
    if not (os.environ.get("HF_TOKEN") or get_token()):
        raise UserError(f"--push {repo_id}: not logged in to the Hugging Face Hub; run "
                        "`hf auth login` (or set HF_TOKEN), then this command again")
