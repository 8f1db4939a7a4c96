"""Batched greedy generation: what a causal LM answers to a list of prompts.

Generation is greedy, in batches with left padding and the KV cache; prompts are sorted by
length first so that a batch carries little padding, and answers are returned in the original
order. Plain causal LMs (bare or with weight-side adapters) decode with our own loop,
`greedy_decode`, which drops finished rows from the batch and refills it with the next prompts;
everything else goes through transformers' ``model.generate``. Both return, for every prompt,
what decoding it alone would return.
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Callable, Sequence
from itertools import groupby
from typing import Any

import torch
from torch import nn

from peftbench.engine.batching import Encoded, collate
from peftbench.engine.train import autocast_context

Progress = Callable[[int], None] | None


@torch.no_grad()
def generate(
    model: nn.Module, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int,
    batch_size: int, device: torch.device, amp_dtype: torch.dtype | None = None,
    max_prompt_tokens: int = 512, advance: Progress = None, stop_strings: Sequence[str] = (),
    use_hf_generate: bool = False,
) -> list[str]:
    """Greedy continuations of ``prompts`` (decoded, special tokens dropped), in input order.

    Each sequence ends at EOS, at ``max_new_tokens``, or at the first of ``stop_strings``
    (the text is cut there, so batched and one-by-one decoding return the same strings).
    Plain causal LMs decode with `greedy_decode`; prompt-learning PEFT models and anything
    else unusual (see `own_loop_fits`), or any model with ``use_hf_generate=True``, decode
    with transformers' ``model.generate`` (`hf_generate`).
    """
    model.eval()
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"][-max_prompt_tokens:]
               for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    kwargs = {"max_new_tokens": max_new_tokens, "stop_strings": stop_strings}
    with autocast_context(device, amp_dtype):
        if not use_hf_generate and own_loop_fits(model):
            rows = greedy_decode(model, tokenizer, [encoded[i] for i in order],
                                 batch_size=batch_size, device=device, advance=advance, **kwargs)
        else:
            rows = []
            for chunk in _batches(order, encoded, batch_size, _has_virtual_tokens(model)):
                batch = collate([Encoded(encoded[i], 0) for i in chunk],
                                tokenizer.pad_token_id, left=True)
                rows += hf_generate(model, tokenizer, batch["input_ids"].to(device),
                                    batch["attention_mask"].to(device), **kwargs)
                if advance:
                    advance(len(chunk))
    answers: list[str] = [""] * len(prompts)
    for i, row in zip(order, rows, strict=True):
        answers[i] = _cut(tokenizer.decode(row, skip_special_tokens=True), stop_strings)
    return answers


def hf_generate(
    model: nn.Module, tokenizer: Any, ids: torch.Tensor, mask: torch.Tensor, *,
    max_new_tokens: int, stop_strings: Sequence[str],
) -> list[list[int]]:
    """The new tokens of each row of a left-padded batch, from ``model.generate`` (greedy).

    The fallback for every model that `greedy_decode` does not take.
    """
    out = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
        num_beams=1, use_cache=True, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **({"stop_strings": list(stop_strings), "tokenizer": tokenizer} if stop_strings else {}),
    )
    return out[:, ids.shape[1]:].tolist()


def _batches(order: list[int], encoded: list[list[int]], batch_size: int,
             same_length: bool) -> list[list[int]]:
    """``order`` cut into batches of at most ``batch_size``; with ``same_length``, each batch
    holds prompts of one length only, so that it needs no padding."""
    groups = [list(g) for _, g in groupby(order, key=lambda i: len(encoded[i]))] \
        if same_length else [order]
    return [g[s:s + batch_size] for g in groups for s in range(0, len(g), batch_size)]


def _has_virtual_tokens(model: nn.Module) -> bool:
    """Whether ``model`` is a PEFT prompt-learning model (virtual tokens before the input).

    PEFT ignores the position ids that left padding needs and puts the virtual tokens before
    the padding, so a padded prompt would not decode as it does alone.
    """
    return any(getattr(config, "is_prompt_learning", False) for config in _peft_configs(model))


def greedy_decode(
    model: nn.Module, tokenizer: Any, prompts: Sequence[list[int]], *, max_new_tokens: int,
    stop_strings: Sequence[str], batch_size: int, device: torch.device,
    advance: Progress = None,
) -> list[list[int]]:
    """The new tokens of each of the tokenized ``prompts``, decoded greedily with the KV cache,
    at most ``batch_size`` rows at a time (only for models where `own_loop_fits`).

    A row leaves the batch, and the cache, as soon as it ends: at EOS (kept, as
    ``model.generate`` keeps it), once its text holds one of ``stop_strings``, or at
    ``max_new_tokens``. Once half the rows have left, the next prompts are prefilled and join
    the batch, so that the few long rows of one batch decode alongside the next instead of
    alone. Positions follow the attention mask as in ``model.generate``, so a row decodes the
    same tokens in a batch as alone.
    """
    lm = _causal_lm(model)
    cache_arg = "cache" if "cache" in _forward_params(lm) else "past_key_values"

    def forward(ids: torch.Tensor, batch: _Batch) -> None:
        logits = model(input_ids=ids, attention_mask=batch.mask, position_ids=batch.positions,
                       use_cache=True, logits_to_keep=1, **{cache_arg: batch.cache}).logits
        batch.tokens = logits[:, -1].argmax(-1)

    rows = [_Row(tokenizer, stop_strings, max_new_tokens) for _ in prompts]
    pending = deque(range(len(prompts)))
    batch: _Batch | None = None
    while pending or batch is not None:
        if pending and (batch is None or len(batch.rows) <= batch_size // 2):
            room = batch_size - (len(batch.rows) if batch else 0)
            new = _Batch.of([pending.popleft() for _ in range(min(room, len(pending)))],
                            prompts, tokenizer.pad_token_id, lm.config, device)
            forward(new.ids, new)
            batch = _join(batch, new.settle(rows, advance))
        else:
            batch.mask = torch.cat([batch.mask, batch.mask.new_ones(len(batch.rows), 1)], 1)
            batch.positions = batch.positions[:, -1:] + 1
            forward(batch.tokens[:, None], batch)
            batch = batch.settle(rows, advance)
    return [row.tokens for row in rows]


class _Batch:
    """Rows decoded together: their KV cache, attention mask and positions (those of the last
    forward pass), and the token each has just generated (not yet in the cache)."""

    def __init__(self, rows: list[int], ids: torch.Tensor, mask: torch.Tensor,
                 cache: Any) -> None:
        self.rows, self.ids, self.mask, self.cache = rows, ids, mask, cache
        self.positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        self.tokens = ids[:, -1]  # replaced by each forward pass

    @classmethod
    def of(cls, rows: list[int], prompts: Sequence[list[int]], pad_id: int, config: Any,
           device: torch.device) -> _Batch:
        """The prompts of ``rows``, left-padded, with an empty cache."""
        from transformers import DynamicCache

        batch = collate([Encoded(prompts[i], 0) for i in rows], pad_id, left=True)
        return cls(rows, batch["input_ids"].to(device), batch["attention_mask"].to(device),
                   DynamicCache(config=config))

    def settle(self, rows: list[_Row], advance: Progress) -> _Batch | None:
        """Give each row its new token; drop the rows that ended (None when all did)."""
        keep = [j for j, token in enumerate(self.tokens.tolist())
                if not rows[self.rows[j]].add(token)]
        if advance and len(keep) < len(self.rows):
            advance(len(self.rows) - len(keep))
        if not keep:
            return None
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, device=self.mask.device)
            self.cache.batch_select_indices(index)
            self.rows = [self.rows[j] for j in keep]
            self.mask, self.positions = self.mask[index], self.positions[index]
            self.tokens = self.tokens[index]
        return self


def _join(a: _Batch | None, b: _Batch | None) -> _Batch | None:
    """The rows of ``a`` and then ``b`` as one batch; the shorter side is padded on the left
    (zeros in the cache, masked)."""
    if a is None or b is None:
        return b if a is None else a
    width = max(a.mask.shape[1], b.mask.shape[1])
    for mine, theirs in zip(a.cache.layers, b.cache.layers, strict=True):
        mine.keys = torch.cat([_pad_left(mine.keys, width, 2), _pad_left(theirs.keys, width, 2)])
        mine.values = torch.cat([_pad_left(mine.values, width, 2),
                                 _pad_left(theirs.values, width, 2)])
    a.mask = torch.cat([_pad_left(a.mask, width, 1), _pad_left(b.mask, width, 1)])
    a.positions = torch.cat([a.positions[:, -1:], b.positions[:, -1:]])
    a.tokens = torch.cat([a.tokens, b.tokens])
    a.rows = a.rows + b.rows
    return a


def _pad_left(tensor: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """``tensor`` with zeros prepended along ``dim`` up to ``width``."""
    shape = list(tensor.shape)
    shape[dim] = width - tensor.shape[dim]
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


class _Row:
    """The tokens one sequence has generated so far, and whether it has ended."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str], max_new_tokens: int) -> None:
        self.tokenizer, self.max_new_tokens = tokenizer, max_new_tokens
        self.stops = [s for s in stop_strings if s]
        self.longest = max((len(s) for s in self.stops), default=0)
        self.tokens: list[int] = []
        self.checked = 0  # characters of text already searched for stop strings

    def add(self, token: int) -> bool:
        """Append ``token``; True when the sequence ends with it (EOS, a stop string, length).

        Only text that is new since the last call (and the few characters before it that a
        stop string may start in) is searched; an unfinished UTF-8 character at the end,
        decoded as U+FFFD, is searched again once complete.
        """
        self.tokens.append(token)
        if token == self.tokenizer.eos_token_id or len(self.tokens) >= self.max_new_tokens:
            return True
        if not self.stops:
            return False
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        fresh = text[max(0, self.checked - self.longest + 1):]
        self.checked = len(text.rstrip("\ufffd"))
        return any(stop in fresh for stop in self.stops)


# generation-config fields that add a logits processor when set to anything but these values
_NEUTRAL_GENERATION = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0,
    "guidance_scale": 1.0, "remove_invalid_values": False, "bad_words_ids": None,
    "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "sequence_bias": None, "exponential_decay_length_penalty": None,
    "watermarking_config": None, "stop_strings": None,
}
# non-prompt-learning PEFT types whose forward needs more than the tokens (task ids, offsets)
_SPECIAL_PEFT_TYPES = {"POLY", "XLORA"}


def own_loop_fits(model: nn.Module) -> bool:
    """Whether `greedy_decode` decodes ``model`` exactly as ``model.generate`` would.

    True for a decoder-only transformers causal LM, bare or with weight-side adapters (LoRA
    and kin, our own wrappers). False for PEFT prompt learning (prompt tuning, prefix tuning,
    p-tuning, CPT, cartridges), adaption prompt, aLoRA, Poly and X-LoRA; for models with
    their own generation inputs, cache or forward arguments; and for generation configs that
    add logits processors (repetition penalty, suppressed tokens, ...).
    """
    from transformers import DynamicCache, GenerationMixin
    from transformers.cache_utils import DynamicLayer

    if any(_special_peft(config) for config in _peft_configs(model)):
        return False
    lm = _causal_lm(model)
    if lm is None or getattr(lm.config, "is_encoder_decoder", False):
        return False
    params = _forward_params(lm)
    if not {"position_ids", "logits_to_keep"} <= params or not {"cache", "past_key_values"} \
            & params:
        return False
    supports_cache = getattr(lm, "_supports_default_dynamic_cache", None)
    if supports_cache is None or not supports_cache():
        return False
    if getattr(type(lm), "prepare_inputs_for_generation", None) is not \
            GenerationMixin.prepare_inputs_for_generation:
        return False
    if any(type(layer) is not DynamicLayer for layer in DynamicCache(config=lm.config).layers):
        return False  # `_join` pads full-attention layers only
    config = lm.generation_config
    return all(getattr(config, name, None) in (None, neutral)
               for name, neutral in _NEUTRAL_GENERATION.items())


def _peft_configs(model: nn.Module) -> list[Any]:
    configs = getattr(model, "peft_config", None)
    if isinstance(configs, dict):
        return list(configs.values())
    return [] if configs is None else [configs]


def _special_peft(config: Any) -> bool:
    peft_type = getattr(config, "peft_type", None)
    return bool(getattr(config, "is_prompt_learning", False)
                or getattr(config, "is_adaption_prompt", False)
                or getattr(config, "alora_invocation_tokens", None) is not None
                or str(getattr(peft_type, "value", peft_type)).upper() in _SPECIAL_PEFT_TYPES)


def _causal_lm(model: nn.Module) -> Any:
    """The transformers model inside ``model`` (PEFT or our own wrappers), or None."""
    from transformers import PreTrainedModel

    inner: Any = model
    for _ in range(4):
        if isinstance(inner, PreTrainedModel):
            return inner
        unwrap = getattr(inner, "get_base_model", None)
        inner = unwrap() if callable(unwrap) else getattr(inner, "model", None)
    return None


def _forward_params(lm: nn.Module) -> set[str]:
    return set(inspect.signature(lm.forward).parameters)


def _cut(text: str, stop_strings: Sequence[str]) -> str:
    """``text`` up to (excluding) the first stop string."""
    for stop in stop_strings:
        at = text.find(stop)
        if at >= 0:
            text = text[:at]
    return text
