"""Shared fixtures: where the real data lives, and the rule that CI never skips for lack of it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No hub is reachable from the test machines: fail hub look-ups at once instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


def _require(path: Path) -> Path:
    """Return ``path``; when it is missing, fail under CI (never skip silently) else skip."""
    if path.exists():
        return path
    message = f"real data missing: {path}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: GSM8K, SST-2, WikiText-2 copies (see its README)."""
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def peft_reference() -> Path:
    """``../shared/reference/peft-method-comparison``: the PEFT suite's results and configs."""
    return _require(SHARED / "reference" / "peft-method-comparison")
