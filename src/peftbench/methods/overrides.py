"""``--set key=value`` overrides of a technique's config fields."""

from __future__ import annotations

import json
from typing import Any

from peftbench.errors import UserError


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into config fields.

    Values are JSON literals when they parse (``r=8`` → 8, ``target_modules=["q_proj"]`` → a
    list, ``use_dora=true`` → True), else plain strings (``init_lora_weights=pissa``). A malformed
    item or a repeated key is a `UserError`; whether the key exists is checked when the
    technique builds its config.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set '{item}' is not of the form key=value")
        if not key.replace("_", "").isalnum():
            raise UserError(f"--set '{item}': '{key}' is not a config field name")
        if key in out:
            raise UserError(f"--set gives '{key}' twice")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw.strip()
        out[key] = value
    return out
