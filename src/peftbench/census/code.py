"""Code: which techniques source files use, through the PEFT config classes they import from
peft (``from peft import XxxConfig``) or call (``peft.XxxConfig(``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from pathlib import Path

from peftbench.census.report import Tally
from peftbench.errors import UserError
from peftbench.methods.aliases import EXTRA_CONFIG_CLASSES, GENERIC_CONFIG_CLASSES

CODE_SUFFIXES = (".py", ".ipynb")
_PEFT_IMPORT = re.compile(r"\bfrom[ \t]+peft(?:\.[\w.]+)?[ \t]+import[ \t]+(\([^)]*\)|[^\n#]*)")
_PEFT_CALL = re.compile(r"\bpeft\.(?:\w+\.)*?(\w+Config)[ \t]*\(")
_CONFIG_NAME = re.compile(r"\b([A-Za-z_]\w*Config)\b")


@lru_cache(maxsize=1)
def config_classes() -> dict[str, str]:
    """PEFT config class name -> technique ("LoraConfig" -> "lora"), from PEFT's own mapping."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    classes = dict(EXTRA_CONFIG_CLASSES)
    for peft_type, config in PEFT_TYPE_TO_CONFIG_MAPPING.items():
        classes[config.__name__] = str(getattr(peft_type, "value", peft_type)).lower()
    return classes


def peft_config_names(code: str) -> dict[str, set[str]]:
    """The ``...Config`` names a source text imports from peft ("import") or calls ("call")."""
    imported: set[str] = set()
    for match in _PEFT_IMPORT.finditer(code):
        imported.update(_CONFIG_NAME.findall(match.group(1)))
    return {"import": imported, "call": set(_PEFT_CALL.findall(code))}


def detect_code(code: str) -> tuple[dict[str, set[str]], set[str]]:
    """Techniques a source text uses through PEFT configs, per form; and unmapped config names."""
    classes = config_classes()
    found: dict[str, set[str]] = {}
    unmapped: set[str] = set()
    for form, names in peft_config_names(code).items():
        found[form] = {classes[n] for n in names if n in classes}
        unmapped.update(n for n in names if n not in classes and n not in GENERIC_CONFIG_CLASSES)
    return found, unmapped


def code_files(
    folder: str | os.PathLike[str], suffixes: Iterable[str] = CODE_SUFFIXES
) -> Iterator[Path]:
    """Source files under ``folder`` with one of ``suffixes``, skipping hidden folders."""
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"no such folder: {root}")
    suffixes = tuple(s.lower() for s in suffixes)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.lower().endswith(suffixes):
                yield Path(dirpath) / name


def census_code(
    folder: str | os.PathLike[str],
    *,
    suffixes: Iterable[str] = CODE_SUFFIXES,
    on_item: Callable[[], None] | None = None,
) -> Tally:
    """Count the techniques used through PEFT config classes in the source files of ``folder``."""
    tally = Tally(unit="files")
    for path in code_files(folder, suffixes):
        found, unmapped = detect_code(path.read_text(encoding="utf-8", errors="replace"))
        tally.add(found)
        tally.unmapped.update(unmapped)
        if on_item:
            on_item()
    return tally

