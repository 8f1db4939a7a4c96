"""Length-bucketed training batches: the same examples per window and epoch as plain shuffled
batches, regrouped by length; off by default, with spec hashes unchanged."""

from __future__ import annotations

from collections import Counter

import pytest

from peftbench.engine.batching import Encoded, batch_order, collate, training_order
from peftbench.engine.spec import ExperimentSpec, TrainParams


def features(n: int, seed: int = 0) -> list[Encoded]:
    lengths = [5 + (i * 37 + seed) % 23 for i in range(n)]
    return [Encoded(list(range(1, k + 1)), list(range(1, k + 1))) for k in lengths]


def padding(feats: list[Encoded], order: list[list[int]]) -> int:
    return sum(collate([feats[i] for i in b], 0)["attention_mask"].eq(0).sum().item()
               for b in order)


@pytest.mark.parametrize(("n", "batch", "batches", "window"),
                         [(40, 8, 15, 5), (37, 8, 20, 4), (30, 8, 7, 3), (5, 8, 6, 4)])
def test_bucketed_batches_hold_the_plain_order_s_examples_window_by_window(
        n, batch, batches, window):
    feats = features(n)
    plain = list(batch_order(n, batch, batches, seed=3))
    bucketed = list(training_order(feats, batch, batches, seed=3, bucket_window=window))
    assert [len(b) for b in bucketed] == [len(b) for b in plain]
    for start in range(0, batches, window):  # every window: the same multiset of examples
        assert (Counter(i for b in plain[start:start + window] for i in b)
                == Counter(i for b in bucketed[start:start + window] for i in b))
    # hence every epoch (a whole number of windows here) sees every example equally often
    assert Counter(i for b in plain for i in b) == Counter(i for b in bucketed for i in b)
    # deterministic: a pure function of the seed, the lengths and the window
    assert bucketed == list(training_order(feats, batch, batches, seed=3, bucket_window=window))


def test_bucketing_cuts_padding_and_is_off_by_default():
    feats = features(64)
    plain = list(training_order(feats, 8, 16, seed=0))
    assert plain == list(batch_order(64, 8, 16, seed=0))
    assert plain == list(training_order(feats, 8, 16, seed=0, bucket_window=1))
    bucketed = list(training_order(feats, 8, 16, seed=0, bucket_window=8))
    assert padding(feats, bucketed) < padding(feats, plain) / 2
    # the same data whatever technique trains: the order depends on nothing else
    assert bucketed == list(training_order(features(64), 8, 16, seed=0, bucket_window=8))
    assert bucketed != list(training_order(feats, 8, 16, seed=1, bucket_window=8))


def test_bucketing_is_a_recorded_training_parameter_that_leaves_old_hashes_alone():
    old = ExperimentSpec(train=TrainParams(max_steps=7))
    assert '"bucket_batches"' not in old.canonical_json()
    on = ExperimentSpec(train=TrainParams(max_steps=7, bucket_batches=8))
    assert '"bucket_batches":8' in on.canonical_json()
    assert on.content_hash() != old.content_hash()
    assert ExperimentSpec.model_validate_json(on.model_dump_json()) == on
