"""Batched generation returns exactly what one-by-one generation returns, on both paths: our
own greedy loop (plain and LoRA models) and the ``model.generate`` fallback (prompt tuning)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from peftbench.engine import generation
from peftbench.engine.evaluate import generate, own_loop_fits
from peftbench.engine.models import load_model

PROMPTS = [
    "x", "?!", "0123", "fox dog", "Review: dull", "The quick brown fox",
    "Answer: 12 + 7 =", "Sentiment: positive\n", "Question: Tom has 12 apples.",
    "Review: a warm, funny and moving film. Sentiment:",
    "The lazy dog jumps over the quick brown fox. 0123456789",
    "Question: Tom has 12 apples and buys 7 more. How many apples does he have?\nAnswer:",
]
CPU = {"device": torch.device("cpu"), "max_new_tokens": 12}


def both(model, tokenizer, **kwargs) -> tuple[list[str], list[str]]:
    """Generations of PROMPTS batched (uneven batches of 5) and one by one."""
    batched = generate(model, tokenizer, PROMPTS, batch_size=5, **CPU, **kwargs)
    single = generate(model, tokenizer, PROMPTS, batch_size=1, **CPU, **kwargs)
    return batched, single


@pytest.fixture
def tiny():
    return load_model("tiny-llama", "causal-lm", seed=0)


def make_eos(model, tokenizer, token: int) -> None:
    """Make the model end where it would have generated ``token``: EOS takes over its logit."""
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        head[tokenizer.eos_token_id] = head[token]
        head[token] = 0.0


def test_batched_equals_one_by_one_with_stop_strings_and_eos(tiny, monkeypatch):
    model, tok = tiny.model, tiny.tokenizer
    rows = []  # the token ids our own loop returns
    real = generation.greedy_decode

    def recorded(*args, **kwargs):
        out = real(*args, **kwargs)
        rows.extend(out)
        return out

    monkeypatch.setattr(generation, "greedy_decode", recorded)
    joins = Counter()  # refills: rows still decoding joined by newly prefilled ones
    real_join = generation._join

    def join(a, b):
        joins[a is not None and b is not None] += 1
        return real_join(a, b)

    monkeypatch.setattr(generation, "_join", join)
    assert own_loop_fits(model)
    plain, plain_single = both(model, tok)
    assert plain == plain_single and all(plain)
    # stop strings found inside some generations; EOS where a common token came before
    stops = ["\n", plain[0][3:5], plain[5][2:4]]
    common = Counter(t for row in rows for t in set(row[1:])).most_common(1)[0][0]
    make_eos(model, tok, common)
    rows.clear()
    batched, single = both(model, tok, stop_strings=stops)
    assert batched == single
    assert sum(row[-1] == tok.eos_token_id for row in rows) >= 4  # >= 2 rows, twice
    assert joins[True] >= 1
    ended = [b for b, p in zip(batched, plain, strict=True) if len(b) < len(p)]
    assert len(ended) >= 4  # EOS and stop strings did end some rows early
    assert not any(stop in text for stop in stops for text in batched)
    # the model.generate fallback agrees with our own loop
    assert generate(model, tok, PROMPTS, batch_size=5, use_hf_generate=True,
                    stop_strings=stops, **CPU) == batched


def test_prompt_tuning_falls_back_to_model_generate(tiny, monkeypatch):
    from peft import PromptTuningConfig, get_peft_model

    model = get_peft_model(tiny.model, PromptTuningConfig(task_type="CAUSAL_LM",
                                                          num_virtual_tokens=4))
    assert not own_loop_fits(model)
    padded = []
    real = generation.hf_generate

    def counted(model, tokenizer, ids, mask, **kwargs):
        padded.append(not bool(mask.all()))
        return real(model, tokenizer, ids, mask, **kwargs)

    monkeypatch.setattr(generation, "hf_generate", counted)
    monkeypatch.setattr(generation, "greedy_decode", None)  # must not be reached
    batched, single = both(model, tiny.tokenizer, stop_strings=["\n"])
    assert batched == single and any(batched)
    # PEFT puts the virtual tokens before any padding: batches hold prompts of one length
    assert len(padded) < 2 * len(PROMPTS) and not any(padded)


def test_lora_takes_the_own_loop_and_matches_model_generate(tiny):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(tiny.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                                  init_lora_weights=False))
    assert own_loop_fits(model)
    batched, single = both(model, tiny.tokenizer, stop_strings=["o"])
    assert batched == single
    assert generate(model, tiny.tokenizer, PROMPTS, batch_size=5, use_hf_generate=True,
                    stop_strings=["o"], **CPU) == batched


def test_generation_configs_with_logits_processors_fall_back(tiny):
    tiny.model.generation_config.repetition_penalty = 1.3
    assert not own_loop_fits(tiny.model)
    tiny.model.generation_config.repetition_penalty = 1.0
    assert own_loop_fits(tiny.model)
