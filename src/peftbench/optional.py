"""Heavy packages that only some features need, imported by those features alone.

Training and measuring a run needs torch, transformers, peft, pydantic, typer and rich; the
report's charts need plotly and matplotlib, the dashboard Gradio and pandas, hub data sets the
``datasets`` package, QLoRA bitsandbytes, the Ray executor Ray. Where one of those is missing
(a GPU image with only the core stack installed), its feature stops with one line naming the
package, and everything else works: nothing imports them at start-up.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

from peftbench.errors import UserError, first_line

#: what to install for a module, where it differs from the module's name
INSTALL = {"sklearn": "scikit-learn", "ray": "'peftbench[ray]'",
           "bitsandbytes": "'peftbench[quant]'"}


def require(modules: Sequence[str], feature: str) -> None:
    """Import each of ``modules``; the first that cannot be imported is a `UserError`:
    '<feature> needs the package X (not importable: …); pip install X'."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            package = INSTALL.get(module, module)
            raise UserError(f"{feature} needs the package {module} (not importable here: "
                            f"{first_line(exc)}); pip install {package}") from None
