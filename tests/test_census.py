"""The adoption census on a fixture set of cards and code written to exercise every rule."""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from peftbench import census
from peftbench.errors import UserError
from peftbench.methods import aliases

# (rule, card row, techniques any source names, the one technique it names or None)
CARDS: list[tuple[str, dict, set[str], str | None]] = [
    ("plain text", {"card": "Fine-tuned with LoRA on Alpaca."}, {"lora"}, "lora"),
    ("LoRaWAN is not LoRA", {"card": "Anomaly detection for LoRaWAN gateways."}, set(), None),
    ("no match inside words", {"card": "Flora species classifier, explorable."}, set(), None),
    ("variant folds parent", {"card": "QLoRA: LoRA on a 4-bit base."}, {"qlora", "lora"},
     "qlora"),
    ("two techniques", {"card": "We compare LoRA and LoHa adapters."}, {"lora", "loha"}, None),
    ("tags", {"card": "A model.", "tags": ["peft", "lora", "license:mit"],
              "library_name": "peft"}, {"lora"}, "lora"),
    ("tag words", {"card": "Pictures.", "tags": ["template:sd-lora", "text-to-image"]},
     {"lora"}, "lora"),
    ("prefixed tags skipped", {"card": "x", "tags": ["dataset:org/lora-data", "arxiv:1"]},
     set(), None),
    ("base model tag", {"card": "x", "tags": ["base_model:adapter:org/llama-loha"]},
     {"loha"}, "loha"),
    ("front-matter base model", {"card": "---\nlicense: mit\nbase_model:\n- org/t5-ia3\n"
                                 "tags:\n- vera-like\n---\nNothing here."}, {"ia3"}, "ia3"),
    ("library_name", {"card": "x", "library_name": "LoKr"}, {"lokr"}, "lokr"),
    ("exact case: DoRA", {"card": "Trained with DoRA."}, {"dora"}, "dora"),
    ("exact case: Dora", {"card": "Dora the explorer, fan art."}, set(), None),
    ("hyperparameter names", {"card": "lora_alpha: 16\nlora_dropout: 0.05"}, {"lora"}, "lora"),
    ("non-ASCII neighbours", {"card": "LoRAで学習しました"}, {"lora"}, "lora"),
    ("separators", {"card": "Soft prompt-tuning of T5."}, {"prompt_tuning"}, "prompt_tuning"),
    ("symbols", {"card": "(IA)^3 rescales activations."}, {"ia3"}, "ia3"),
    ("longest alias wins", {"card": "rank-stabilized LoRA"}, {"rslora"}, "rslora"),
    ("exact case inside words", {"card": "SuperVeRA on MyRoAd; PVeRA-style."}, {"pvera"},
     "pvera"),
    ("ambiguous alias", {"card": "Bone fracture classifier, oft-cited."}, set(), None),
    ("empty card", {"card": None}, set(), None),
]


def _rows() -> list[dict]:
    rows = []
    for i, (_, row, _, _) in enumerate(CARDS):
        rows.append({"modelId": f"org/m{i}", "author": "org", "library_name": None,
                     "tags": [], "pipeline_tag": None, **row})
    return rows


def _write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def _expected() -> tuple[Counter, Counter]:
    any_mention = Counter(t for _, _, found, _ in CARDS for t in found)
    exactly_one = Counter(one for _, _, _, one in CARDS if one)
    return any_mention, exactly_one


@pytest.fixture()
def cards_parquet(tmp_path: Path) -> Path:
    return _write_parquet(tmp_path / "cards.parquet", _rows())


@pytest.mark.parametrize("rule,row,found,one", CARDS, ids=[c[0] for c in CARDS])
def test_each_rule(rule: str, row: dict, found: set[str], one: str | None) -> None:
    card = census.Card(row.get("card") or "", row.get("tags", []), row.get("library_name"))
    by_source = census.detect_card(card)
    techniques = set().union(*by_source.values())
    assert techniques == found
    folded = census.fold_variants(techniques)
    assert (folded.pop() if len(folded) == 1 else None) == one


def test_parquet_and_jsonl_give_the_known_counts(cards_parquet: Path, tmp_path: Path) -> None:
    any_mention, exactly_one = _expected()
    jsonl = _write_jsonl(tmp_path / "cards.jsonl", _rows())
    for source in (cards_parquet, jsonl):
        summary = census.census_cards(str(source)).summary()
        assert summary["scanned"] == len(CARDS)
        assert summary["with_any"] == sum(1 for c in CARDS if c[2])
        assert {r["technique"]: r["count"] for r in summary["any_mention"]} == any_mention
        assert {r["technique"]: r["count"] for r in summary["exactly_one"]} == exactly_one
        assert summary["peft_adapters"] == 2  # library_name peft; adapter base-model tag
    assert exactly_one["lora"] == 5 and summary["exactly_one_total"] == 14


def test_shares(cards_parquet: Path) -> None:
    summary = census.census_cards(str(cards_parquet)).summary()
    assert sum(r["share"] for r in summary["exactly_one"]) == pytest.approx(1.0)
    lora = next(r for r in summary["exactly_one"] if r["technique"] == "lora")
    assert lora["share"] == pytest.approx(5 / 14)
    assert summary["exactly_one"][0]["technique"] == "lora"  # sorted by count
    assert summary["any_mention"][0]["share_of_scanned"] == pytest.approx(7 / len(CARDS))


def test_sources_and_limit(cards_parquet: Path, tmp_path: Path) -> None:
    text_only = census.census_cards(str(cards_parquet), sources=["text"]).summary()
    assert set(text_only["by_source"]) == {"text"}
    assert {r["technique"] for r in text_only["any_mention"]} == {
        "lora", "qlora", "loha", "dora", "prompt_tuning", "ia3", "rslora", "pvera"}
    assert census.census_cards(str(cards_parquet), limit=3).scanned == 3
    folder = tmp_path / "shards"
    folder.mkdir()
    _write_parquet(folder / "a.parquet", _rows())
    _write_jsonl(folder / "b.jsonl", _rows())
    assert census.census_cards(str(folder)).scanned == 2 * len(CARDS)


def test_hub_ids_and_local_paths(cards_parquet: Path) -> None:
    assert census.is_hub_id(census.HUB_DATASET)
    assert not census.is_hub_id(str(cards_parquet))
    assert not census.is_hub_id("missing/cards.parquet")


@pytest.mark.parametrize("make,message", [
    (lambda d: d / "absent.parquet", "no such file"),
    (lambda d: (d / "x.csv").write_text("a,b\n") and d / "x.csv", "expected a .parquet"),
    (lambda d: (d / "x.parquet").write_text("not parquet") and d / "x.parquet",
     "not a readable Parquet"),
    (lambda d: (d / "x.jsonl").write_text('{"card": "a"}\n{oops\n') and d / "x.jsonl",
     "x.jsonl:2: not valid JSON"),
    (lambda d: (d / "x.jsonl").write_text('{"body": "a"}\n') and d / "x.jsonl",
     "unknown column 'card'"),
])
def test_user_errors(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(UserError, match=message):
        census.census_cards(str(make(tmp_path)))


def test_named_columns(cards_parquet: Path, tmp_path: Path) -> None:
    rows = [{"body": r["card"], "labels": r["tags"]} for r in _rows()]
    renamed = _write_parquet(tmp_path / "renamed.parquet", rows)
    columns = census.CardColumns(text="body", tags="labels")
    assert census.census_cards(str(renamed), columns=columns).with_any == 14
    with pytest.raises(UserError, match="unknown column 'labels'"):
        census.census_cards(str(cards_parquet), columns=census.CardColumns(tags="labels"))
    with pytest.raises(UserError, match="unknown source"):
        census.census_cards(str(cards_parquet), sources=["readme"])


def _code_folder(root: Path) -> Path:
    files = {
        "train.py": "from peft import LoraConfig, get_peft_model\n",
        "multi.py": "from peft import (\n    LoHaConfig,\n    TaskType,\n)\n",
        "call.py": "import peft\ncfg = peft.AdaLoraConfig(r=8)\n",
        "both.py": "from peft import LoraConfig\nfrom peft import IA3Config as C\n",
        "submodule.py": "from peft.tuners.lora import LoraConfig\n",
        "quant.py": "from transformers import BitsAndBytesConfig\n",
        "generic.py": "from peft import PeftConfig, FancyConfig\n",
        "commented.py": "from peft import get_peft_model  # LoraConfig later\n",
        "nb.ipynb": json.dumps({"cells": [{"source": ["from peft import PromptEncoderConfig\n"]}]}),
        "notes.txt": "from peft import LoraConfig\n",
        ".venv/lib/peft.py": "from peft import LoraConfig\n",
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_code_census(tmp_path: Path) -> None:
    summary = census.census_code(_code_folder(tmp_path)).summary()
    assert summary["scanned"] == 9  # .py and .ipynb outside hidden folders
    assert {r["technique"]: r["count"] for r in summary["any_mention"]} == {
        "lora": 2 + 1, "loha": 1, "adalora": 1, "ia3": 1, "p_tuning": 1}
    assert {r["technique"]: r["count"] for r in summary["exactly_one"]} == {
        "lora": 2, "loha": 1, "adalora": 1, "p_tuning": 1}
    assert summary["by_source"]["call"] == {"adalora": 1}
    assert summary["unmapped_configs"] == {"FancyConfig": 1}
    with pytest.raises(UserError, match="no such folder"):
        census.census_code(tmp_path / "absent")


def test_alias_table_covers_peft() -> None:
    classes = census.config_classes()
    assert classes["LoraConfig"] == "lora" and classes["PromptEncoderConfig"] == "p_tuning"
    assert classes["BoneConfig"] == "miss"
    assert set(classes.values()) <= set(aliases.ALIASES), "every PEFT technique has aliases"
    assert aliases.aliases_for("LoRA")[0] == "LoRA" and aliases.aliases_for("nope") == []
    assert aliases.technique_for_alias("bone") == "miss"
    assert aliases.technique_for_alias("Prompt-Tuning") == "prompt_tuning"
    assert set(aliases.VARIANT_OF) | set(aliases.VARIANT_OF.values()) <= set(aliases.ALIASES)
    every = {a for names in aliases.ALIASES.values() for a in names}
    assert aliases.EXACT_CASE <= every and aliases.AMBIGUOUS <= every


def test_memory_stays_flat(tmp_path: Path) -> None:
    def peak(copies: int) -> int:
        path = _write_parquet(tmp_path / f"m{copies}.parquet", _rows() * copies)
        tracemalloc.start()
        try:
            census.census_cards(str(path))
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    census.census_cards(str(_write_parquet(tmp_path / "warm.parquet", _rows())))
    small, large = peak(50), peak(200)
    assert large / small < 1.5, (small, large)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from peftbench.cli import main

    monkeypatch.setattr(sys, "argv", ["peftbench", "census", *args])
    with pytest.raises(SystemExit) as exc:
        main()
        raise SystemExit(0)
    captured = capsys.readouterr()
    return exc.value.code or 0, captured.out, captured.err


def test_cli_writes_json_and_chart(monkeypatch, capsys, cards_parquet: Path,
                                   tmp_path: Path) -> None:
    out, chart = tmp_path / "out" / "census.json", tmp_path / "out" / "census.png"
    code, stdout, _ = _cli(monkeypatch, capsys, "--cards", str(cards_parquet), "--code",
                           str(_code_folder(tmp_path / "src")), "--out", str(out),
                           "--chart", str(chart))
    assert code == 0
    report = json.loads(out.read_text())
    assert report["cards"]["exactly_one"][0] == {
        "technique": "lora", "name": "LoRA", "count": 5, "share": pytest.approx(5 / 14)}
    assert report["code"]["scanned"] == 9
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "LoRA" in stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["census.json", "census.png"]


def test_cli_user_error_leaves_nothing(monkeypatch, capsys, cards_parquet: Path,
                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, err = _cli(monkeypatch, capsys, "--cards", str(cards_parquet), "--text-column",
                        "body", "--out", str(out / "c.json"), "--chart", str(out / "c.png"))
    assert code == 2
    assert "unknown column 'body'" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())
    code, _, err = _cli(monkeypatch, capsys, "--cards", str(cards_parquet), "--chart",
                        str(out / "c.gif"))
    assert code == 2 and "chart file must end in" in err


def test_svg_chart_names_techniques(cards_parquet: Path, tmp_path: Path) -> None:
    report = census.census_report(census.census_cards(str(cards_parquet)), None, {})
    svg = census.plot_census(report, tmp_path / "c.svg").read_text()
    assert "<svg" in svg and "QLoRA" in svg
