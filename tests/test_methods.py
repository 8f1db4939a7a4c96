"""The catalog's interface: names, capabilities, overrides, configs and the `methods` verb."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from peftbench.engine.models import load_model
from peftbench.errors import UserError
from peftbench.methods import (
    all_methods,
    capabilities,
    get_method,
    method_names,
    parse_overrides,
)
from peftbench.methods.capabilities import CAPABILITY_KEYS, derive_peft_capabilities, peft_types

PEFTBENCH = str(Path(sys.executable).with_name("peftbench"))


def test_every_peft_technique_is_an_entry() -> None:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    in_peft = {str(getattr(t, "value", t)).lower() for t in PEFT_TYPE_TO_CONFIG_MAPPING}
    assert in_peft == set(peft_types())
    assert in_peft | {"rslora", "dora", "pissa", "olora", "lora_plus", "lora_fa", "qlora",
                      "delta_lora", "full", "galore", "galore_layerwise", "galore_8bit",
                      "apollo", "apollo_mini", "badam", "adam_mini", "lomo", "adalomo",
                      "freeze"} == set(method_names())


def test_shipped_snapshot_matches_the_installed_peft() -> None:
    from peftbench.methods.capabilities import SNAPSHOT

    assert json.loads(SNAPSHOT.read_text()) == json.loads(json.dumps(derive_peft_capabilities()))


def test_capabilities_shape_and_known_facts() -> None:
    for name in method_names():
        caps = capabilities(name)
        assert set(caps) == set(CAPABILITY_KEYS)
        assert set(caps["layers"]) <= {"Linear", "Conv", "Embedding"}
    assert capabilities("lora")["merge"] and capabilities("lora")["multi_adapter"]
    assert "bnb-4bit" in capabilities("lora")["quantized"]
    assert capabilities("lora")["lora_convertible"]
    assert not capabilities("lily")["merge"]  # Lily's merge raises in PEFT
    assert not capabilities("shadow")["merge"]
    assert capabilities("prompt_tuning")["prompt_only"]
    assert not capabilities("ia3")["lora_convertible"]
    assert capabilities("delta_lora") == {"merge": True, "multi_adapter": False,
                                          "layers": ["Linear"], "quantized": [],
                                          "lora_convertible": False, "prompt_only": False}
    assert capabilities("qlora")["quantized"] == ["bnb-4bit"]
    assert capabilities("trainable_tokens")["layers"] == ["Embedding"]


def test_unknown_names_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown method 'nope'"):
        get_method("nope")
    with pytest.raises(UserError, match="unknown method"):
        capabilities("nope")


def test_aliases_find_entries() -> None:
    assert get_method("LoRA-FA").name == "lora_fa"
    assert get_method("Bone").name == "miss"
    assert get_method("full-finetuning").name == "full"
    assert get_method("prefixtuning").name == "prefix_tuning"


def test_every_entry_says_where_its_learning_rate_comes_from() -> None:
    for method in all_methods():
        assert method.default_lr > 0 and method.lr_source, method.name
        assert method.description, method.name


def test_suite_learning_rates_match_the_suite_files(peft_reference: Path) -> None:
    root = peft_reference / "MetaMathQA"
    default = json.loads((root / "default_training_params.json").read_text())
    checked = 0
    for method in all_methods():
        marker = "experiments/"
        if marker not in method.lr_source or method.lr_source.startswith("as "):
            continue
        experiment = method.lr_source.split(marker, 1)[1].split(" ")[0]
        experiment = experiment.removesuffix("/training_params.json")
        params = root / "experiments" / experiment / "training_params.json"
        lr = (json.loads(params.read_text()) if params.exists() else default)[
            "optimizer_kwargs"].get("lr", default["optimizer_kwargs"]["lr"])
        assert method.default_lr == pytest.approx(lr), method.name
        checked += 1
    assert checked >= 35


def test_parse_overrides() -> None:
    assert parse_overrides(["r=8", 'target_modules=["q_proj"]', "init_lora_weights=pissa",
                            "use_dora=true", "lora_alpha=16.5"]) == {
        "r": 8, "target_modules": ["q_proj"], "init_lora_weights": "pissa", "use_dora": True,
        "lora_alpha": 16.5}
    for bad in (["r"], ["=3"], ["r=1", "r=2"], ["a b=1"]):
        with pytest.raises(UserError):
            parse_overrides(bad)


@pytest.mark.parametrize("item, message", [
    ("rank=8", "unknown lora config field 'rank'"),
    ("r=eight", "r='eight' is not int"),
    ("lora_dropout=high", "lora_dropout='high' is not float"),
    ("loraplus_lr_ratio=x", None),
])
def test_bad_set_is_one_clear_line(item: str, message: str | None) -> None:
    model = load_model("tiny-llama").model
    method = get_method("lora_plus" if message is None else "lora")
    with pytest.raises(UserError) as info:
        method.build(model, "causal-lm", None, parse_overrides([item]))
    assert "\n" not in str(info.value)
    assert message is None or message in str(info.value)


def test_overrides_and_full_adapter_config_apply() -> None:
    model = load_model("tiny-llama").model
    config = get_method("lora").peft_config("causal-lm", None, {
        "peft_type": "LORA", "r": 4, "target_modules": ["q_proj"], "peft_version": "0.1"},
        model)
    assert config.r == 4 and set(config.target_modules) == {"q_proj"}
    wide = get_method("lora").peft_config("causal-lm", "all-linear", {}, model)
    assert wide.target_modules == "all-linear"


def test_defaults_fit_small_layers() -> None:
    model = load_model("tiny-llama").model  # k/v projections are 64 -> 32
    assert get_method("c3a").peft_config("causal-lm", None, {}, model).block_size == 32
    assert get_method("road").peft_config("causal-lm", None, {}, model).group_size == 32
    assert get_method("vblora").peft_config("causal-lm", None, {}, model).vector_length == 32
    shira = get_method("shira").peft_config("causal-lm", None, {}, model)
    assert shira.r * (64 + 32) <= 64 * 32
    # a value the user set is never changed
    assert get_method("c3a").peft_config("causal-lm", None, {"block_size": 16},
                                         model).block_size == 16


def test_qlora_says_clearly_when_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from peftbench.methods import quantized

    quantized.bnb_4bit_problem.cache_clear()
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    try:
        reason = get_method("qlora").why_not("causal-lm")
        assert reason and reason.startswith("not supported here")
        with pytest.raises(UserError, match="not supported here"):
            get_method("qlora").build(load_model("tiny-llama").model, "causal-lm", None, {})
    finally:
        quantized.bnb_4bit_problem.cache_clear()


@pytest.mark.parametrize("error, unsupported", [
    (NotImplementedError("Could not run 'bitsandbytes::quantize_4bit' with arguments from the "
                         "'CPU' backend."), True),
    (RuntimeError("CUDA Setup failed despite GPU being available"), False),
    (ImportError("libbitsandbytes_cpu.so: cannot open shared object file"), False),
    (AttributeError("module 'bitsandbytes' has no attribute 'nn'"), False),
])
def test_qlora_probe_calls_only_a_missing_kernel_unsupported(
        error: Exception, unsupported: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken bitsandbytes install is not "not supported here": QLoRA stays a contestant
    and fails with the real error (the probe's failure is never swallowed as a skip)."""
    from peftbench.methods import quantized

    def probe() -> bool:
        raise error

    quantized.bnb_4bit_problem.cache_clear()
    monkeypatch.setattr(quantized, "_probe_4bit_layer", probe)
    try:
        reason = quantized.bnb_4bit_problem()
    finally:
        quantized.bnb_4bit_problem.cache_clear()
    assert (reason is not None) == unsupported
    assert reason is None or reason.startswith("not supported here: bitsandbytes has no 4-bit")


def test_qlora_quantization_failure_is_not_a_user_error(monkeypatch: pytest.MonkeyPatch) -> None:
    method = get_method("qlora")
    if method.why_not("causal-lm"):
        pytest.skip(method.why_not("causal-lm"))
    model = load_model("tiny-llama").model

    def broken(*_a: object, **_k: object) -> None:
        raise ImportError("bitsandbytes is broken")

    monkeypatch.setattr(type(model), "from_pretrained", broken)
    with pytest.raises(ImportError, match="bitsandbytes is broken"):
        method.build(model, "causal-lm", None, {})


def test_peft_refusal_is_a_user_error_and_a_bug_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    from peft.tuners.lora import model as lora_model

    from peftbench.methods.base import is_peft_refusal

    method = get_method("lora")
    with pytest.raises(UserError, match="cannot be applied to this model: Target modules"):
        method.build(load_model("tiny-llama").model, "causal-lm", "nothing_here", {})
    for bug in (KeyError("q_proj"), RuntimeError("shape mismatch"), ValueError("torch's own"),
                AttributeError("'NoneType' object has no attribute 'weight'")):
        def create(*_a: object, _bug: Exception = bug, **_k: object) -> None:
            raise _bug  # raised here, not by PEFT: a bug whatever its type

        monkeypatch.setattr(lora_model.LoraModel, "_create_and_replace", create)
        with pytest.raises(type(bug)) as info:
            method.build(load_model("tiny-llama").model, "causal-lm", None, {})
        assert not isinstance(info.value, UserError) and not is_peft_refusal(info.value)
    from peft.tuners import tuners_utils

    with pytest.raises(AttributeError) as info:  # Python's own error inside PEFT's code
        tuners_utils.check_target_module_exists(None, "q_proj")
    assert not is_peft_refusal(info.value)


def test_methods_verb_filters() -> None:
    # its speed (< 2 s on an idle machine) is measured by benchmarks/bench_cli.py
    out = subprocess.run([PEFTBENCH, "methods", "--json"], capture_output=True, text=True,
                         check=True)
    rows = json.loads(out.stdout)
    assert {r["name"] for r in rows} == set(method_names())
    merged = json.loads(subprocess.run(
        [PEFTBENCH, "methods", "--json", "--no-merge", "--layer", "Linear"],
        capture_output=True, text=True, check=True).stdout)
    assert merged and all(not r["merge"] and "Linear" in r["layers"] for r in merged)
    assert "lily" in {r["name"] for r in merged}
    table = subprocess.run([PEFTBENCH, "methods", "--prompt-only"], capture_output=True,
                           text=True, check=True).stdout
    assert "| prefix_tuning |" in table and "| lora |" not in table  # Markdown when piped


def test_methods_verb_reports_applicability_on_a_model() -> None:
    rows = json.loads(subprocess.run(
        [PEFTBENCH, "methods", "--json", "--model", "tiny-bert", "--prompt-only"],
        capture_output=True, text=True, check=True).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["prompt_tuning"]["applicable"]
    assert by_name["prompt_tuning"]["trainable_parameters"] > 0
    assert not by_name["cpt"]["applicable"] and by_name["cpt"]["why_not"]["seq-cls"]


def test_generated_technique_table_lists_the_whole_catalog() -> None:
    text = (Path(__file__).parent.parent / "docs" / "methods.md").read_text()
    block = text.split("<!-- methods-table:start -->", 1)[1].split("<!-- methods-table:end -->")[0]
    for name in method_names():
        assert f"`{name}`" in block, name


def test_trainable_counts_after_the_optimizer_and_failures_not_cached(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from peftbench.engine.counts import trainable_counts

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    counts = trainable_counts("tiny-llama", "causal-lm", names=["lora", "lora_fa", "ia3"])
    assert counts == {"lora": 14336, "lora_fa": 6144, "ia3": 384}  # LoRA-FA: B only
    assert isinstance(trainable_counts("tiny-bert", "seq-cls",
                                       names=["trainable_tokens"])["trainable_tokens"], str)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(get_method("vera"), "build", broken)
    failed = trainable_counts("tiny-llama", "causal-lm", names=["vera"])["vera"]
    assert failed == "failed to build: RuntimeError: a bug"
    cached = [json.loads(p.read_text()) for p in tmp_path.rglob("*.json")]
    assert cached and all("vera" not in c for c in cached)
