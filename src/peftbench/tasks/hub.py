"""Loading a split from the Hugging Face hub as a list of rows, with a clear error offline.

Before the first download the hub's address is tried once (a few seconds at most): when it
cannot be reached, that is one `UserError` line at once, instead of the hub client's minute of
retries and its log. Offline mode (``HF_HUB_OFFLINE=1``) skips the probe: the client then reads
its cache only, failing fast.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

from peftbench.errors import UserError, first_line

#: seconds the reachability probe waits for the hub
PROBE_TIMEOUT = 5.0


def load_hub_rows(
    repo: str, config: str | None, split: str, columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of ``repo``/``config``/``split`` holding ``columns`` (column-wise read: fast).

    An unreachable hub or a failed download becomes a one-line `UserError` that suggests the
    local ``data`` option.
    """
    where = f"{repo} ({config or 'default'}, {split})"
    problem = hub_problem()
    if problem:
        raise UserError(f"could not load {where}: {problem}; pass a local copy with --data or "
                        "the task option data=PATH")
    from peftbench.optional import require

    require(["datasets"], f"loading {repo} from the hub")
    import datasets

    try:
        with quiet_hub_clients():
            dataset = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # network, auth or missing-dataset errors of many kinds
        raise UserError(
            f"could not load {where} from the hub: {type(exc).__name__}: {first_line(exc)}; "
            "pass a local copy with --data or the task option data=PATH"
        ) from None
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserError(f"{repo} {split}: missing column '{missing[0]}'")
    data = {c: list(dataset[c]) for c in columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*data.values(), strict=True)]


def _offline() -> bool:
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"))


@functools.lru_cache(maxsize=1)
def hub_problem() -> str | None:
    """Why the hub cannot be reached (None when it can, or in offline mode, where the client
    reads its cache): one TCP connection to the endpoint, tried once per process."""
    if _offline():
        return None
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        return f"the Hugging Face hub ({host}) is unreachable ({exc.strerror or exc})"
    return None


@contextlib.contextmanager
def quiet_hub_clients() -> Iterator[None]:
    """The hub clients' loggers (retries, progress notices) held at ERROR for the block."""
    loggers = [logging.getLogger(name) for name in ("huggingface_hub", "datasets", "fsspec")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
