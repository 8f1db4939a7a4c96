"""Where the experiment trackers' runs went, and how to look at them (run, tournament)."""

from __future__ import annotations

from typing import Any

from peftbench.engine.progress import console


def print_tracking(config: Any) -> None:
    """One line per tracker on stderr: its local store and the command that shows it
    (nothing when no tracker was asked for)."""
    if config is None:
        return
    from peftbench.trackers import viewing_hints

    for line in viewing_hints(config):
        console.print(f"tracked in {line}", highlight=False, soft_wrap=True)
