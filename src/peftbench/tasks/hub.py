"""Loading a split from the Hugging Face hub as a list of rows, with a clear error offline."""

from __future__ import annotations

from typing import Any

from peftbench.errors import UserError


def load_hub_rows(
    repo: str, config: str | None, split: str, columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Rows of ``repo``/``config``/``split`` holding ``columns`` (column-wise read: fast).

    A failed download becomes a `UserError` that suggests the local ``data`` option.
    """
    import datasets

    try:
        dataset = datasets.load_dataset(repo, config, split=split)
    except Exception as exc:  # network, auth or missing-dataset errors of many kinds
        raise UserError(
            f"could not load {repo} ({config or 'default'}, {split}) from the hub: "
            f"{type(exc).__name__}: {exc}; pass a local copy with the task option 'data'"
        ) from None
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise UserError(f"{repo} {split}: missing column '{missing[0]}'")
    data = {c: list(dataset[c]) for c in columns}
    return [dict(zip(columns, values, strict=True)) for values in zip(*data.values(), strict=True)]
