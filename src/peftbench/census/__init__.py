"""The adoption census: which PEFT techniques do model cards and code actually use?

peftbench exists because nearly everyone picks LoRA by habit. This module makes that claim a
reproducible measurement:

- **cards**: stream Hub model cards (the data set `librarian-bots/model_cards_with_metadata`, or
  a local Parquet/JSONL copy in its schema: ``card``, ``tags``, ``library_name``, ...) and find
  the techniques each card names, in its tags, ``library_name``, base model fields and text;
- **code**: scan a folder of source files for ``from peft import XxxConfig`` and
  ``peft.XxxConfig(`` and map the config classes to techniques.

Both give counts and shares in two views: "exactly one technique" (items naming one technique,
after folding a variant into its parent: QLoRA + LoRA is QLoRA) and "any mention". Cards are
read in fixed-size batches and only counters are kept, so memory stays flat as the input grows.
Names and aliases come from `peftbench.methods.aliases`, matched on word boundaries: "LoRA"
matches in "lora_alpha" and "LoRA-based" but not in "Flora" or "LoRaWAN".

Its modules, each importing only those listed above it: `names` (the name matcher and variant
folding), `cards` (reading cards and finding their techniques), `report` (the tally, the card
census, the JSON report and the chart), `code` (the census of source files).
"""

from __future__ import annotations

from peftbench.census.cards import (
    BATCH_ROWS,
    CARD_SOURCES,
    HUB_DATASET,
    Card,
    CardColumns,
    base_models,
    card_files,
    count_cards,
    detect_card,
    is_adapter,
    is_hub_id,
    iter_cards,
    split_front_matter,
)
from peftbench.census.code import (
    CODE_SUFFIXES,
    census_code,
    code_files,
    config_classes,
    detect_code,
    peft_config_names,
)
from peftbench.census.names import NameMatcher, fold_variants, name_matcher
from peftbench.census.report import (
    Tally,
    census_cards,
    census_report,
    chart_format,
    plot_census,
)

__all__ = [
    "BATCH_ROWS",
    "CARD_SOURCES",
    "CODE_SUFFIXES",
    "HUB_DATASET",
    "Card",
    "CardColumns",
    "NameMatcher",
    "Tally",
    "base_models",
    "card_files",
    "census_cards",
    "census_code",
    "census_report",
    "chart_format",
    "code_files",
    "config_classes",
    "count_cards",
    "detect_card",
    "detect_code",
    "fold_variants",
    "is_adapter",
    "is_hub_id",
    "iter_cards",
    "name_matcher",
    "peft_config_names",
    "plot_census",
    "split_front_matter",
]
