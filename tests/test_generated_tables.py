"""Measured figures in the README and the pages under docs/ are the benchmarks' JSON, rendered:
every block between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->`` equals what
``scripts/gen_readme_tables.py`` makes of its JSON today, so no hand edit and no stale table
survives a benchmark rerun."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: blocks another generator owns (scripts/gen_methods_table.py, checked in test_methods.py)
OTHER_GENERATORS = {"methods-table"}


def generator() -> ModuleType:
    """scripts/gen_readme_tables.py, imported from its file (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_readme_tables",
                                                  ROOT / "scripts" / "gen_readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_marker_names_a_known_table(page):
    names = set(re.findall(r"<!-- ([\w-]+):start -->", page.read_text()))
    unknown = names - set(generator().TABLES) - OTHER_GENERATORS
    assert not unknown, f"{page.name}: markers with no generator: {sorted(unknown)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_generated_blocks_match_their_json(page):
    gen = generator()
    text = page.read_text()
    for name, (file, render) in gen.TABLES.items():
        path = gen.DOCS / file
        if f"<!-- {name}:start -->" not in text or not path.exists():
            continue
        fresh = gen.replace_block(text, name, render(json.loads(path.read_text())))
        assert fresh == text, (f"{page.name}: the '{name}' table differs from {file}; run "
                               "python scripts/gen_readme_tables.py")


def test_a_stale_block_is_caught():
    gen = generator()
    data = json.loads((gen.DOCS / "bench_verdict.json").read_text())
    text = "intro\n<!-- pairs-table:start -->\n| an old | table |\n<!-- pairs-table:end -->\n"
    fresh = gen.replace_block(text, "pairs-table", gen.pairs_table(data))
    assert fresh != text and "| an old |" not in fresh and fresh.startswith("intro\n")
