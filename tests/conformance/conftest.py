"""The conformance runs, shared by the test modules of this folder (each run made once)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conformance_harness import STEPS, ConformanceRun, conformance_run  # noqa: E402


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., ConformanceRun]:
    """Conformance runs, each made once per session: ``runs(name, kind, overrides, steps)``."""
    cache: dict[tuple[str, str, str, int], ConformanceRun] = {}

    def get(name: str, kind: str, overrides: dict[str, Any] | None = None,
            steps: int = STEPS) -> ConformanceRun:
        key = (name, kind, repr(sorted((overrides or {}).items())), steps)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{name}-{kind}")
            cache[key] = conformance_run(name, kind, folder, overrides, steps)
        return cache[key]

    return get
