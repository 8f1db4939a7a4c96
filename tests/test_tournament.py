"""The tournament's rules: plan, fairness, selection on validation only, halving, the table.

These run the tournament's logic in-process (`InlineExecutor`) on tiny models; the process-
level guarantees (containment, timeouts, resume after SIGKILL, Ray) are in
`test_tournament_processes.py`.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from peftbench.engine.results import read_result
from peftbench.engine.spec import TrainParams
from peftbench.errors import UserError
from peftbench.tournament import (
    Tournament,
    TournamentConfig,
    final_spec,
    make_plan,
    resolve_methods,
    search_spec,
)
from peftbench.tournament.executors import InlineExecutor

TINY_TRAIN = {"max_steps": 6, "batch_size": 8, "eval_every": 3, "max_new_tokens": 8,
              "forgetting_samples": 0, "eval_batch_size": 16, "max_seq_length": 64,
              "measure_inference": False}
ARITH_SMALL = {"n_train": 48, "n_valid": 8, "n_test": 8}


def tiny_config(**overrides) -> TournamentConfig:
    fields = {"model": "tiny-llama", "task": "arith", "task_options": dict(ARITH_SMALL),
              "methods": ["lora", "ia3"], "lr_points": 2, "train": TrainParams(**TINY_TRAIN),
              "lr_extend": 0}  # the grid extension has its own test
    fields.update(overrides)
    return TournamentConfig(**fields)


def run_tournament(cfg: TournamentConfig, out: Path, kind: str = "causal-lm"):
    return Tournament(make_plan(cfg, kind), out, InlineExecutor(), save_adapters=False).run()


# ------------------------------------------------------------------------------ the plan


def test_auto_grid_is_log_spaced_around_each_default():
    cfg = tiny_config(lr_points=3)
    grid = cfg.learning_rates(1e-3)
    assert grid[1] == pytest.approx(1e-3)
    assert grid[2] / grid[1] == pytest.approx(10 ** 0.5, rel=1e-2)
    assert grid[1] / grid[0] == pytest.approx(10 ** 0.5, rel=1e-2)
    plan = make_plan(cfg, "causal-lm")
    assert plan.grids["ia3"] != plan.grids["lora"]  # each around its own default
    assert tiny_config(lr_grid=[3e-4, 1e-4, 3e-4]).learning_rates(1e-3) == [1e-4, 3e-4]


def test_methods_presets_and_exclusions():
    names, excluded = resolve_methods("preset:quick", "causal-lm")
    assert "lora" in names and len(names) >= 4 and not excluded
    every, _ = resolve_methods("all", "causal-lm")
    assert len(every) >= 35
    # a technique that cannot apply to encoders is set aside with its reason
    names, excluded = resolve_methods("lora,adaption_prompt", "seq-cls")
    assert names == ["lora"] and "adaption_prompt" in excluded and excluded["adaption_prompt"]
    with pytest.raises(UserError, match="unknown method"):
        resolve_methods("lora,nope", "causal-lm")
    with pytest.raises(UserError, match="unknown preset"):
        resolve_methods("preset:huge", "causal-lm")


def test_specs_share_everything_but_technique_rate_and_seed():
    cfg = tiny_config()
    a, b = search_spec(cfg, "lora", 1e-3, None), search_spec(cfg, "ia3", 5e-3, None)
    fields_a = a.train.model_dump(exclude={"lr"})
    assert fields_a == b.train.model_dump(exclude={"lr"})
    assert (a.model, a.task, a.task_options) == (b.model, b.task, b.task_options)
    # search runs never score test; finals do, with fresh seeds
    assert a.train.eval_test is False and a.train.seed == cfg.search_seed
    final = final_spec(cfg, "lora", 1e-3, cfg.final_seeds()[0])
    assert final.train.eval_test is True and final.train.seed not in (cfg.search_seed,)
    assert cfg.final_seeds() == [1] and tiny_config(seeds=3).final_seeds() == [1, 2, 3]


def test_halving_rungs_and_budget():
    cfg = tiny_config(halving=True, lr_points=9, eta=3, min_rung_steps=2,
                      train=TrainParams(**{**TINY_TRAIN, "max_steps": 90}))
    assert cfg.rungs() == [10, 30, 90]
    plan = make_plan(cfg, "causal-lm")
    # per technique: 9 rates x 10 steps, 3 x 30, 1 x 90 = 270 steps instead of 9 x 90 = 810
    assert plan.search_steps() == 2 * 270
    assert plan.search_runs() == 2 * (9 + 3 + 1)
    assert tiny_config().rungs() == [6]


# ------------------------------------------------------------------------------ fairness


@pytest.mark.parametrize("bucket_batches", [0, 3])
def test_same_data_order_for_every_technique_and_rate(tmp_path, bucket_batches):
    cfg = tiny_config(methods=["lora", "prompt_tuning"],
                      train=TrainParams(**TINY_TRAIN, bucket_batches=bucket_batches))
    outcome = run_tournament(cfg, tmp_path)
    search = [r for t in outcome.techniques.values() for r in t.search]
    finals = [r for t in outcome.techniques.values() for r in t.finals]
    assert len(search) == 4 and len(finals) == 2
    assert all(r.status == "success" for r in search + finals), [r.error for r in search]
    orders = {r.train_info["data_order"] for r in search}
    assert len(orders) == 1 and orders != {""}
    # the finals use a fresh seed: one shared order among them, different from the search's
    final_orders = {r.train_info["data_order"] for r in finals}
    assert len(final_orders) == 1 and final_orders != orders
    # identical schedule and budget: same steps, samples and validation points for all
    steps = {tuple(m["step"] for m in r.train_info["metrics"]) for r in search}
    assert steps == {(3, 6)}
    samples = {r.train_info["metrics"][-1]["train samples"] for r in search}
    assert samples == {48}


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _sentiment_rows(n: int, seed: int) -> list[dict]:
    """A learnable classification task: the label is whether a 'good' word appears."""
    rng = random.Random(seed)
    good, bad = ["great", "lovely", "superb", "fine"], ["awful", "poor", "dull", "bad"]
    filler = ["the", "film", "was", "plot", "and", "very", "acting", "story"]
    rows = []
    for _ in range(n):
        label = rng.randint(0, 1)
        words = rng.sample(filler, 4) + [rng.choice(good if label else bad)]
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": label})
    return rows


def test_corrupting_the_test_split_does_not_change_the_chosen_rates(tmp_path):
    train = _write_jsonl(tmp_path / "train.jsonl", _sentiment_rows(96, 1))
    valid = _write_jsonl(tmp_path / "valid.jsonl", _sentiment_rows(32, 2))
    test_rows = _sentiment_rows(32, 3)
    good_test = _write_jsonl(tmp_path / "test.jsonl", test_rows)
    flipped = [{"text": r["text"], "label": 1 - r["label"]} for r in test_rows]
    bad_test = _write_jsonl(tmp_path / "test_flipped.jsonl", flipped)
    params = TrainParams(max_steps=12, batch_size=16, eval_every=6, eval_batch_size=32,
                         max_seq_length=32, measure_inference=False)
    chosen, finals = {}, {}
    for name, test in (("clean", good_test), ("corrupt", bad_test)):
        cfg = TournamentConfig(model="tiny-bert", task=f"jsonl:{train}",
                               task_options={"validation": valid, "test": test},
                               methods=["lora"], lr_grid=[1e-4, 3e-3, 1e-1],
                               train=params)
        outcome = run_tournament(cfg, tmp_path / name, kind="seq-cls")
        chosen[name] = {m: t.chosen_lr for m, t in outcome.techniques.items()}
        finals[name] = {m: t.finals[0].train_info["test_score"]
                        for m, t in outcome.techniques.items()}
        for tech in outcome.techniques.values():
            # search runs never scored test
            assert all(r.train_info.get("test_score") is None for r in tech.search)
            valid_scores = [r.train_info["valid_score"] for r in tech.search]
            assert len(set(valid_scores)) > 1, valid_scores  # the choice is not a tie
    assert chosen["clean"] == chosen["corrupt"]
    # the corruption did reach the test scores: flipped labels give 1 - accuracy
    for method in finals["clean"]:
        assert finals["corrupt"][method] == pytest.approx(1 - finals["clean"][method])


def test_halving_stops_weak_rates_early_and_the_choice_is_on_full_runs(tmp_path):
    cfg = tiny_config(methods=["lora"], halving=True, eta=3, min_rung_steps=2,
                      lr_grid=[1e-5, 1e-3, 3e-2],
                      train=TrainParams(**{**TINY_TRAIN, "max_steps": 6, "eval_every": 2}))
    outcome = run_tournament(cfg, tmp_path)
    tech = outcome.techniques["lora"]
    rung_steps = sorted(r.spec.train.steps_to_run() for r in tech.search)
    assert rung_steps == [2, 2, 2, 6]  # three rates to the rung, one to the end
    full = [r for r in tech.search if r.spec.train.steps_to_run() == 6]
    assert tech.chosen_lr == full[0].spec.train.lr
    # a rung run is the start of the full run: same data, same first steps
    rung_same_lr = [r for r in tech.search if r.spec.train.steps_to_run() == 2
                    and r.spec.train.lr == tech.chosen_lr][0]
    assert rung_same_lr.train_info["metrics"][0]["train loss"] == pytest.approx(
        full[0].train_info["metrics"][0]["train loss"], rel=1e-4)


def test_manifest_records_grid_choice_and_runs(tmp_path):
    outcome = run_tournament(tiny_config(), tmp_path)
    manifest = json.loads((tmp_path / "tournament.json").read_text())
    assert set(manifest["techniques"]) == {"lora", "ia3"}
    for method, entry in manifest["techniques"].items():
        assert entry["chosen_lr"] == outcome.techniques[method].chosen_lr
        assert entry["chosen_lr"] in entry["grid"] and entry["selected_on"] == "validation"
        assert len(entry["search"]) == 2 and len(entry["finals"]) == 1
        assert all(s["test_score"] is None for s in entry["search"])
        assert all(math.isfinite(f["test_score"]) for f in entry["finals"])
        for run in entry["search"] + entry["finals"]:
            read_result(tmp_path / run["file"])


def test_nan_rate_is_a_failed_run_and_the_technique_keeps_its_good_rate(tmp_path):
    cfg = tiny_config(methods=["lora"], lr_grid=[1e-3, 1e30])
    outcome = run_tournament(cfg, tmp_path)
    tech = outcome.techniques["lora"]
    status = {r.spec.train.lr: r.status for r in tech.search}
    assert status == {1e-3: "success", 1e30: "failed"}
    bad = [r for r in tech.search if r.status == "failed"][0]
    assert "loss" in bad.error.lower() or "nan" in bad.error.lower()
    assert tech.chosen_lr == 1e-3 and tech.finals[0].status == "success"
    # a resume keeps the failure; --retry-failed runs it again
    again = Tournament(make_plan(cfg, "causal-lm"), tmp_path, InlineExecutor(),
                       save_adapters=False).run()
    assert all(r.reused for r in again.all_records())
    retried = Tournament(make_plan(cfg, "causal-lm"), tmp_path, InlineExecutor(),
                         save_adapters=False, retry_failed=True).run()
    assert [r.spec.train.lr for r in retried.all_records() if not r.reused] == [1e30]


def test_analysis_reports_the_final_runs_not_the_tuning_runs(tmp_path):
    from peftbench.analysis import aggregate, load_results
    from peftbench.analysis.report import write_report

    outcome = run_tournament(tiny_config(seeds=2), tmp_path)
    write_report([tmp_path], tmp_path / "report")  # a tournament folder is a report input
    table = (tmp_path / "report" / "report.md").read_text()
    assert "lora" in table and "(tuning)" in table
    runs = load_results([tmp_path]).runs
    per_technique = {a.technique: a for a in aggregate(runs, level="technique")}
    for method, tech in outcome.techniques.items():
        agg = per_technique[method]
        scores = [r.train_info["test_score"] for r in tech.finals]
        assert agg.n == 2 and agg.value("test_score") == pytest.approx(sum(scores) / 2)
        assert {r.seed for r in agg.runs} == {1, 2}
        assert all(r.lr == tech.chosen_lr for r in agg.runs)
    from peftbench.analysis import recommend

    lines = recommend(runs, max_memory="1MB").explain()  # every configuration ruled out
    assert not any("(tuning)" in line for line in lines), lines


def test_results_table_marks_the_pareto_optimal(tmp_path):
    from rich.console import Console

    from peftbench.cli.display import results_table

    cfg = tiny_config(methods=["lora", "ia3", "prompt_tuning"],
                      train=TrainParams(**TINY_TRAIN, eval_base=True))
    outcome = run_tournament(cfg, tmp_path)
    console = Console(record=True, width=200)
    console.print(results_table(outcome))
    text = console.export_text()
    for method in ("lora", "ia3", "prompt_tuning"):
        assert method in text
    assert "★" in text and "best lr" in text
    # the base model is scored in the finals only: tuning runs never see test
    assert "base model test score" in " ".join(text.split())
    assert all(not r.train_info.get("base_test_score") and r.spec.train.eval_base is False
               for t in outcome.techniques.values() for r in t.search)


def test_time_estimate_adds_up_the_calibrated_parts():
    from peftbench.tournament import (
        Calibration,
        estimate_record,
        estimate_seconds,
        extension_seconds,
    )

    cal = Calibration(startup=1.0, step=2.0, validation=3.0, test_ratio=2.0, final_probes=0.5,
                      base_probes=7.0)
    cfg = tiny_config()  # 6 steps, validation every 3
    search = search_spec(cfg, "lora", 1e-3, None)
    assert cal.estimate(search) == 1 + 6 * 2 + 2 * 3
    final = final_spec(cfg, "lora", 1e-3, 1)
    assert cal.estimate(final) == 19 + 3 * 2 + 0.5  # test at validation speed, the probes
    plan = make_plan(cfg, "causal-lm")  # 2 techniques x (2 search + 1 final)
    # the base model's probes: once per final seed, not once per run
    assert estimate_seconds(plan, cal) == 2 * (2 * 19 + 25.5) + 7
    two_seeds = make_plan(tiny_config(seeds=2), "causal-lm")
    assert estimate_seconds(two_seeds, cal) == 2 * (2 * 19 + 2 * 25.5) + 2 * 7
    # those the calibration measured are left for the finals: not counted again
    kept = Calibration(1.0, 2.0, 3.0, 2.0, 0.5, 7.0, base_probes_kept=1)
    assert estimate_seconds(two_seeds, kept) == 2 * (2 * 19 + 2 * 25.5) + 7
    # grid extensions are the upper end: lr_extend more search runs per technique
    assert extension_seconds(plan, cal) == 0  # tiny_config: lr_extend=0
    extended = make_plan(tiny_config(lr_extend=2), "causal-lm")
    assert extension_seconds(extended, cal) == 2 * 2 * 19
    record = estimate_record(extended, cal)
    assert record["planned_seconds"] == estimate_seconds(extended, cal)
    assert record["extension_run_seconds"] == {"lora": 19, "ia3": 19}


def test_calibration_times_warm_runs_and_leaves_the_base_probes_for_the_finals(tmp_path):
    from peftbench.tournament import calibrate, estimate_record, estimate_seconds

    cfg = tiny_config(methods=["lora"], train=TrainParams(**TINY_TRAIN, eval_base=True))
    plan = make_plan(cfg, "causal-lm")
    cal = calibrate(cfg, plan, tmp_path, InlineExecutor())
    assert cal.step > 0 and cal.validation > 0 and cal.startup >= 0
    assert cal.test_ratio == ARITH_SMALL["n_test"] / ARITH_SMALL["n_valid"]
    assert cal.base_probes > 0 and cal.base_probes_kept == 1
    assert not (tmp_path / ".calibration").exists()
    assert calibrate(cfg, plan, tmp_path, InlineExecutor()) == cal  # cached
    outcome = Tournament(plan, tmp_path, InlineExecutor(), save_adapters=False,
                         estimate=estimate_record(plan, cal)).run()
    kept = json.loads((tmp_path / "tournament.json").read_text())["estimate"]
    assert kept["planned_seconds"] == estimate_seconds(plan, cal) and kept["step"] == cal.step
    finals = [r for t in outcome.techniques.values() for r in t.finals]
    assert [r.train_info["base_probes"] for r in finals] == ["reused"]
    phases = finals[0].train_info["phase_seconds"]
    assert {"prepare", "base_probes", "test"} <= set(phases)


def test_a_best_rate_at_the_grid_edge_extends_the_grid(tmp_path):
    # on a tiny random model validation ties at 0, so the lower training loss decides: the
    # larger of two tiny rates wins, at the top edge, and the grid grows upwards
    cfg = tiny_config(methods=["lora"], lr_grid=[1e-6, 1e-5], lr_extend=1)
    outcome = run_tournament(cfg, tmp_path)
    lora = outcome.techniques["lora"]
    assert lora.extended == [pytest.approx(1e-4)]
    assert sorted(r.spec.train.lr for r in lora.search) == pytest.approx([1e-6, 1e-5, 1e-4])
    manifest = json.loads((tmp_path / "tournament.json").read_text())
    assert manifest["techniques"]["lora"]["extended"] == pytest.approx([1e-4])
    # capped: no more than lr_extend extra rates, and none when the cap is 0
    none = run_tournament(tiny_config(methods=["lora"], lr_grid=[1e-6, 1e-5], lr_extend=0),
                          tmp_path / "capped")
    assert none.techniques["lora"].extended == []


def test_a_validation_tie_goes_to_the_lower_final_training_loss(tmp_path):
    # two real runs of a tiny random model tie at 0 on validation; the rate nearer the
    # default (5e-4 for lora's 1e-3) is not the one that trained to the lower loss
    cfg = tiny_config(methods=["lora"], lr_grid=[5e-4, 3e-2])
    outcome = run_tournament(cfg, tmp_path)
    search = outcome.techniques["lora"].search
    assert len({r.train_info["valid_score"] for r in search}) == 1
    final_loss = {r.spec.train.lr: r.train_info["train_loss_curve"][-1][1] for r in search}
    assert final_loss[3e-2] < final_loss[5e-4]
    assert outcome.techniques["lora"].chosen_lr == 3e-2
    # the same choice from the files a resumed tournament reads back
    again = run_tournament(cfg, tmp_path)
    assert all(r.reused for r in again.all_records())
    assert again.techniques["lora"].chosen_lr == 3e-2
