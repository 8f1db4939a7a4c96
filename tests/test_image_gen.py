"""The image-generation track on a much smaller tiny-flux2 (seconds of pretraining): the
model and its cache, the dreambooth task and its errors, the flow-matching run through the
engine, its result file in the suite's layout, which techniques compete, and the diffusers
recipe on a random tiny Flux 2 transformer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from peftbench.engine import tiny_flux2 as tf
from peftbench.errors import UserError

SMALL = tf.TinyFluxConfig(heads=2, head_dim=8, single_layers=1, steps=20, batch_size=16)


@pytest.fixture
def small_model(monkeypatch, tmp_path):
    """tiny-flux2 at the small config, cached under a fresh folder."""
    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tf, "DEFAULT_CONFIG", SMALL)
    return SMALL


# ------------------------------------------------------------------------------ model


def test_pretraining_is_deterministic_and_cached(small_model, tmp_path):
    a, b = tf.pretrain(small_model), tf.pretrain(small_model)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    folder = tf.cached_folder()
    assert folder.parent == tmp_path / "cache" / "models" and (folder / "config.json").is_file()
    stamp = (folder / "config.json").stat().st_mtime_ns
    assert tf.cached_folder() == folder and (folder / "config.json").stat().st_mtime_ns == stamp
    model, pipe, info = tf.load_tiny_flux2()
    assert type(model).__name__ == "Flux2Transformer2DModel"
    assert info["pretraining"]["held_out_digit"] == tf.SUBJECT_DIGIT
    for name, p in model.state_dict().items():
        assert torch.equal(p, a.state_dict()[name]), name


def test_pretraining_never_sees_the_subject_digit():
    _, labels = tf.load_digits_data()
    seen = tf.pretraining_indices(labels)
    assert tf.SUBJECT_DIGIT not in set(labels[seen].tolist())
    assert len(seen) + len(tf.subject_indices(labels)) == len(labels)


def test_patches_round_trip_and_the_word_encoder_is_fixed():
    pipe = tf.TinyFluxPipeline(16)
    pixels = torch.rand(3, 1, 8, 8) * 2 - 1
    tokens = pipe.encode_images(pixels)
    assert tokens.shape == (3, 16, 4)
    assert torch.allclose(pipe.decode(tokens, 8), (pixels + 1) / 2)
    a = pipe.encode_prompts(["a photo of sks digit", ""])
    b = tf.TinyFluxPipeline(16).encode_prompts(["a photo of sks digit"])
    assert torch.equal(a.embeds[:1], b.embeds) and not a.embeds[1].any()


def test_flow_matching_target_is_noise_minus_latents():
    from peftbench.engine.diffusion import Conditioning, ImagePipeline, flow_matching_loss

    class Oracle(torch.nn.Module):  # predicts the velocity exactly from a known x and noise
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, hidden_states, timestep, **_):
            sigma = timestep[:, None, None]
            noise = (hidden_states - (1 - sigma) * x) / sigma
            return (noise - x + self.w,)

    x = torch.randn(2, 4, 3)
    pipe = ImagePipeline(resolution=4, channels=1, scorer="digit")
    cond = Conditioning(torch.zeros(2, 1, 2), torch.zeros(2, 1, 4))
    loss = flow_matching_loss(pipe, Oracle(), x, cond, torch.zeros(2, 4, 4),
                              torch.Generator().manual_seed(0))
    assert loss.item() < 1e-8


# ------------------------------------------------------------------------------ task


def test_builtin_subject_split_is_seeded_and_disjoint():
    from peftbench.tasks import get_task

    task = get_task("dreambooth")
    splits = {s: task.load_split(s) for s in ("train", "validation", "test")}
    assert [len(v) for v in splits.values()] == [16, 8, 16]
    hashes = [e.answer for v in splits.values() for e in v]
    assert len(set(hashes)) == len(hashes)
    assert all("sks" in e.prompt for v in splits.values() for e in v)
    again = get_task("dreambooth").load_split("test")
    assert [e.answer for e in again] == [e.answer for e in splits["test"]]
    other = get_task("dreambooth", {"seed": 1}).load_split("test")
    assert [e.answer for e in other] != [e.answer for e in splits["test"]]
    assert task.images("train")[0].shape == (8, 8, 1)


def _folder(tmp_path, sizes=((16, 16),) * 7, prompts=True):
    from PIL import Image

    folder = tmp_path / "subject"
    folder.mkdir()
    rows = []
    for k, (w, h) in enumerate(sizes):
        Image.fromarray(np.full((h, w, 3), k * 20, np.uint8)).save(folder / f"img{k}.png")
        rows.append({"file_name": f"img{k}.png", "prompt": f"sks toy number {k}"})
    if prompts:
        (folder / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return folder


def test_folder_in_the_suite_layout(tmp_path):
    from peftbench.tasks import get_task

    task = get_task(f"dreambooth:{_folder(tmp_path)}")
    assert [len(task.load_split(s)) for s in ("train", "validation", "test")] == [1, 2, 4]
    assert all(e.prompt.startswith("sks toy") for e in task.load_split("test"))
    info = task.describe()
    assert info["source"] == "folder" and info["sizes"]["test"] == 4


@pytest.mark.parametrize("problem, message", [
    ("mixed", "images of different sizes (img0.png 16x16, img6.png 20x16); set --task-opt "
              "resolution=N"),
    ("prompt", "img0.png: no prompt for this image"),
    ("broken", "img3.png: not a readable image"),
    ("few", "has 7 images; need at least 11"),
])
def test_folder_mistakes_are_one_line(tmp_path, problem, message):
    from peftbench.tasks import get_task

    sizes = ((16, 16),) * 6 + ((20, 16),) if problem == "mixed" else ((16, 16),) * 7
    folder = _folder(tmp_path, sizes, prompts=problem != "prompt")
    if problem == "broken":
        (folder / "img3.png").write_bytes(b"not a png")
    options = {"test_size": 8} if problem == "few" else {}
    with pytest.raises(UserError) as err:
        get_task(f"dreambooth:{folder}", options)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_mixed_sizes_are_fine_with_a_resolution(tmp_path):
    from peftbench.tasks import get_task

    folder = _folder(tmp_path, ((16, 16),) * 6 + ((20, 16),))
    assert get_task(f"dreambooth:{folder}", {"resolution": 8}).resolution == 8


def test_cli_run_stops_on_bad_data_before_training(tmp_path, capsys):
    from peftbench.cli import main

    folder = _folder(tmp_path, prompts=False)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as code:
        main(["run", "--model", "tiny-flux2", "--task", f"dreambooth:{folder}",
              "--out", str(out), "--no-progress"])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no prompt for this image" in err
    assert len(err.splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------------------ contestants


def test_contestants_are_the_techniques_that_adapt_layers():
    from peftbench.methods import applicable_methods, get_method

    names = {m.name for m in applicable_methods("image-gen")}
    assert {"lora", "loha", "lokr", "ia3", "oft", "boft", "vera", "full"} <= names
    assert not names & {"prompt_tuning", "prefix_tuning", "p_tuning", "qlora", "cpt"}
    assert "prompt-based" in get_method("prompt_tuning").why_not("image-gen")
    assert get_method("lora").peft_config("image-gen", None, {}).task_type is None


# ------------------------------------------------------------------------------ runs


def _run(method, tmp_path, **train):
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    params = {"max_steps": 4, "batch_size": 4, "eval_batch_size": 16, "dtype": "float32",
              **train}
    spec = ExperimentSpec(model="tiny-flux2", task="dreambooth", method=method,
                          task_options={"n_train": 8, "valid_size": 2, "test_size": 4},
                          train=TrainParams(**params))
    return run_experiment(spec, tmp_path / "out", progress=False)


def test_lora_run_writes_the_suite_image_gen_layout(small_model, tmp_path):
    from peftbench.engine.image_models import FLUX_TARGETS
    from peftbench.engine.results import summarize

    outcome = _run("lora", tmp_path, eval_base=True)
    assert outcome.ok, outcome.error
    info = outcome.result["train_info"]
    final = info["metrics"][-1]
    assert final["test digit_similarity"] == info["test_score"]
    assert 0 <= final["drift"] <= 1 and final["drift"] == info["drift"]
    assert len(info["test_items"]) == 4
    assert np.isclose(np.mean(info["test_items"]), info["test_score"])
    assert "valid digit_similarity" in info["metrics"][0]
    config = outcome.result["run_info"]["train_config"]
    assert config["resolution"] == 8 and config["similarity_metric"] == "digit_similarity"
    assert config["drift_image_prompts"] and config["sample_image_prompts"]
    applied = outcome.result["run_info"]["peft_config"]
    assert applied["task_type"] is None and set(applied["target_modules"]) <= set(FLUX_TARGETS)
    samples = info["sample_images"]
    assert {s["model"] for s in samples} == {"base", "adapted"}
    for sample in samples:
        assert (outcome.path.parent / sample["file"]).is_file()
    assert any("sks letter" in s["prompt"] for s in samples)  # the leakage check
    summary = summarize(outcome.result, str(outcome.path))
    assert summary.metric_name == "digit_similarity" and summary.forgetting == final["drift"]
    _exports_to_plain_lora(outcome.path, tmp_path / "export", info["test_score"])
    _report_shows_the_samples(outcome.path.parent, tmp_path / "report", len(samples) // 2)


def _exports_to_plain_lora(result, out, recorded):
    from peftbench.export import export_lora, export_merged

    report = export_lora(result, out, 4, progress=False)
    assert report.ok and report.score_before == pytest.approx(recorded, abs=1e-6)
    assert abs(report.score_after - report.score_before) < 0.1
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["task_type"] is None and "to_out.0" in config["target_modules"]
    assert "0" not in config["target_modules"]  # a bare index would match whole blocks
    with pytest.raises(UserError, match="--merge of an image-generation run") as err:
        export_merged(result, out.with_name("merged"), progress=False)
    assert "\n" not in str(err.value) and not out.with_name("merged").exists()


def _report_shows_the_samples(results, folder, prompts):
    from peftbench.analysis.report import write_report

    written = {p.name for p in write_report([results], folder)}
    pictures = {n for n in written if n.startswith("sample-")}
    assert len(pictures) == 2 * prompts  # base and lora, one per sample prompt
    markdown = (folder / "report.md").read_text()
    assert "### Sample images" in markdown and "| prompt | base | lora |" in markdown
    assert all(f"]({name})" in markdown for name in pictures)
    page = (folder / "report.html").read_text()
    assert page.count("<img alt=") == 2 * prompts
    from peftbench import analysis as an
    from peftbench.analysis.app import Dashboard

    board = Dashboard(an.load_results([results]))
    assert board.samples_html(board.default_group()).count("<img alt=") == 2 * prompts


def test_same_seed_same_image_run(small_model, tmp_path):
    a = _run("ia3", tmp_path / "a", measure_inference=False)
    b = _run("ia3", tmp_path / "b", measure_inference=False)
    assert a.ok and b.ok
    assert a.result["train_info"]["test_items"] == b.result["train_info"]["test_items"]
    assert a.result["train_info"]["train_loss_curve"] == b.result["train_info"]["train_loss_curve"]


def test_image_model_on_a_text_task_is_a_user_error(small_model):
    from peftbench.engine.models import load_model

    with pytest.raises(UserError, match="image model; use it with an image task"):
        load_model("tiny-flux2", "causal-lm")


# ------------------------------------------------------------------------------ scores


def test_digit_encoder_is_cached_and_tells_digits_apart(monkeypatch, tmp_path):
    from peftbench.engine import image_scores

    monkeypatch.setenv("PEFTBENCH_CACHE", str(tmp_path))
    monkeypatch.setitem(image_scores._DIGIT_TRAINING, "epochs", 60)
    encoder = image_scores.digit_encoder()
    assert list((tmp_path / "models").glob("digit-encoder-*.safetensors"))
    images, labels = tf.load_digits_data()
    x = torch.from_numpy(images[:200]).unsqueeze(1)
    assert np.mean(np.array(encoder.classify(x)) == labels[:200]) > 0.8
    again = image_scores.digit_encoder()
    assert torch.equal(again.embed(x), encoder.embed(x))
    same = image_scores.paired_similarity(encoder, x[:5], x[:5])
    assert np.allclose(same, 1.0, atol=1e-5)
    assert image_scores.drift(encoder, x[:5], x[:5]) == pytest.approx(0.0, abs=1e-6)


def test_dino_encoder_wiring_on_a_tiny_random_dinov2():
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from peftbench.engine.image_scores import DINO_METRIC, DinoEncoder

    config = Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                          intermediate_size=64, image_size=28, patch_size=14)
    processor = BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 28,
                                                                         "width": 28})
    encoder = DinoEncoder(processor, Dinov2Model(config))
    images = torch.rand(3, 3, 40, 40)
    out = encoder.embed(images)
    assert encoder.metric == DINO_METRIC and out.shape == (3, 32)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert encoder.embed(torch.rand(2, 1, 40, 40)).shape == (2, 32)  # grey to RGB


# ------------------------------------------------------------------------------ diffusers recipe


def test_flux2_recipe_builds_its_adapter_on_a_random_tiny_flux2():
    from diffusers import Flux2Transformer2DModel

    from peftbench.engine.image_models import (
        FLUX_TARGETS,
        KLEIN_ID,
        DiffusersPipeline,
        default_targets,
        is_image_model,
    )
    from peftbench.engine.image_run import build_adapter
    from peftbench.methods import get_method

    class Pipeline:  # the parts of a Flux2KleinPipeline the recipe touches
        def __init__(self, transformer):
            self.transformer, self.vae, self.text_encoder = transformer, None, None

        def set_progress_bar_config(self, **_):
            pass

    config = tf.transformer_config(SMALL) | {"guidance_embeds": True}
    transformer = Flux2Transformer2DModel(**config)
    recipe = DiffusersPipeline(Pipeline(transformer))
    assert recipe.guidance_embeds and recipe.scorer == "dino" and recipe.resolution is None
    assert transformer.gradient_checkpointing
    assert default_targets("lora") == FLUX_TARGETS
    assert default_targets("ln_tuning") == ["norm_q", "norm_k"]
    assert is_image_model("flux2-klein") and is_image_model(KLEIN_ID)
    for name in ("lora", "ln_tuning", "delta_lora"):
        model = build_adapter(get_method(name), Flux2Transformer2DModel(**config), None, {})
        assert sum(p.numel() for p in model.parameters() if p.requires_grad) > 0, name
    lora = build_adapter(get_method("lora"), Flux2Transformer2DModel(**config), None, {})
    adapted = {n.rsplit(".lora_A", 1)[0].split(".")[-1] for n, _ in lora.named_parameters()
               if ".lora_A" in n}
    assert adapted == {"to_q", "to_k", "to_v", "0", "add_q_proj", "add_k_proj", "add_v_proj",
                       "to_add_out", "to_qkv_mlp_proj", "linear_in", "linear_out"}


# ------------------------------------------------------------------------------ tournament


def test_quick_image_preset_plans_tiny_flux2_on_dreambooth(capsys):
    from peftbench.cli import main
    from peftbench.tournament.plan import PRESETS

    try:
        main(["tournament", "--preset", "quick-image", "--dry-run", "--no-calibrate",
              "--out", "unused"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "tiny-flux2 on dreambooth" in out
    for name in PRESETS["quick-image"]:
        assert f"| {name} |" in out


def test_tournament_kind_and_methods_table_know_image_models():
    from peftbench.cli.methods import _model_kind
    from peftbench.engine.experiment import model_kind
    from peftbench.methods.table import catalog_rows
    from peftbench.tasks import get_task
    from peftbench.tournament import TournamentConfig
    from peftbench.tournament.plan import make_plan

    assert model_kind(get_task("dreambooth"), "tiny-flux2") == "image-gen"
    assert _model_kind("tiny-flux2") == "image-gen"
    plan = make_plan(TournamentConfig(model="tiny-flux2", task="dreambooth",
                                      methods=["lora", "prompt_tuning"]), "image-gen")
    assert plan.methods == ["lora"] and "prompt-based" in plan.excluded["prompt_tuning"]
    rows = {r["name"]: r for r in catalog_rows(None, probe=False)}
    assert rows["lora"]["applies"]["image-gen"] and not rows["prefix_tuning"]["applies"][
        "image-gen"]


def test_suite_image_gen_results_read_with_their_metric_and_drift():
    from peftbench.engine.results import summarize

    data = {"run_info": {"experiment_name": "lora/flux2-klein-default",
                         "train_config": {"model_id": "black-forest-labs/FLUX.2-klein-base-4B"}},
            "train_info": {"status": "success", "metrics": [
                {"step": 100, "valid dino_similarity": 0.6},
                {"step": 750, "test dino_similarity": 0.7, "drift": 0.26}]}}
    summary = summarize(data, "image-gen/results/lora--flux2-klein-default.json")
    assert summary.metric_name == "dino_similarity" and summary.test_score == 0.7
    assert summary.forgetting == 0.26
    data["train_info"]["metrics"][-1]["drift"] = float("nan")  # full fine-tuning
    assert summarize(data, "x.json").forgetting is None


def _tiny_klein_folder(folder):
    """A Flux2KleinPipeline of random tiny parts (Qwen3 text encoder with the 31 layers the
    recipe reads, a two-block Flux 2 VAE, a one-block transformer), saved as a folder."""
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from peftbench.engine.models import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    torch.manual_seed(0)
    text = Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=31,
        num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=600))
    vae = AutoencoderKLFlux2(block_out_channels=(8, 8), layers_per_block=1, latent_channels=4,
                             down_block_types=("DownEncoderBlock2D",) * 2, norm_num_groups=4,
                             up_block_types=("UpDecoderBlock2D",) * 2)
    transformer = Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32,
        axes_dims_rope=(2, 2, 2, 2), guidance_embeds=False)
    Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text,
                       tokenizer=tokenizer, transformer=transformer).save_pretrained(folder)
    return folder


def test_diffusers_pipeline_folder_trains_with_the_suite_recipe(monkeypatch, tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    from peftbench.engine import image_run
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.image_scores import DinoEncoder
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    dino = DinoEncoder(BitImageProcessor(size={"shortest_edge": 28},
                                         crop_size={"height": 28, "width": 28}),
                       Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=1,
                                                num_attention_heads=2, intermediate_size=32,
                                                image_size=28, patch_size=14)))
    monkeypatch.setattr(image_run, "encoder_for", lambda scorer: dino)
    model = _tiny_klein_folder(tmp_path / "klein")
    spec = ExperimentSpec(
        model=str(model), task=f"dreambooth:{_folder(tmp_path)}", method="lora",
        task_options={"resolution": 16, "valid_size": 1, "test_size": 1},
        train=TrainParams(max_steps=2, batch_size=2, eval_batch_size=2, measure_inference=False))
    outcome = run_experiment(spec, tmp_path / "out", progress=False)
    assert outcome.ok, outcome.error
    info, config = outcome.result["train_info"], outcome.result["run_info"]["train_config"]
    assert "test dino_similarity" in info["metrics"][-1] and 0 <= info["drift"] <= 1
    assert config["resolution"] == 16 and config["pipeline"] == "Flux2KleinPipeline"
    assert config["text_encoder_out_layers"] == [10, 20, 30]
    assert config["max_sequence_length"] == 512
    assert outcome.result["run_info"]["peft_config"]["target_modules"]


def test_hub_data_set_with_the_suite_prompts(monkeypatch):
    from PIL import Image

    from peftbench.tasks import dreambooth, get_task, hub

    rows = [{"image": Image.new("RGB", (12, 12), (k, k, k))} for k in range(20)]
    monkeypatch.setattr(hub, "load_hub_rows", lambda repo, config, split, columns: rows)
    task = get_task(f"dreambooth:{dreambooth.SUITE_DATASET}")
    assert [len(task.load_split(s)) for s in ("train", "validation", "test")] == [14, 2, 4]
    assert {e.prompt for e in task.load_split("train")} <= set(dreambooth.SUITE_PROMPTS)
    np.random.seed(0)  # the suite's split: the global generator seeded 0 shuffles the indices
    order = np.arange(20)
    np.random.shuffle(order)
    assert [e.prompt for e in task.load_split("test")] == [
        dreambooth.SUITE_PROMPTS[i] for i in order[16:20]]
    assert task.sample_prompts == dreambooth.SUITE_SAMPLE_PROMPTS
    with pytest.raises(UserError, match="no prompt for each"):
        get_task("dreambooth:someone/photos")
    other = get_task("dreambooth:someone/photos", {"instance_prompt": "a photo of sks mug"})
    assert other.load_split("test")[0].prompt == "a photo of sks mug"


def test_a_config_peft_refuses_leaves_no_file(small_model, tmp_path):
    from peftbench.engine.experiment import run_experiment
    from peftbench.engine.spec import ExperimentSpec, TrainParams

    spec = ExperimentSpec(model="tiny-flux2", task="dreambooth", method="lora",
                          adapter_config={"target_modules": ["no_such_layer"]},
                          task_options={"n_train": 8, "valid_size": 2, "test_size": 2},
                          train=TrainParams(max_steps=2, batch_size=4, eval_batch_size=8))
    with pytest.raises(UserError, match="no_such_layer"):
        run_experiment(spec, tmp_path / "out", progress=False)
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
