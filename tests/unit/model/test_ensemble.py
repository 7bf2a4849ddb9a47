from __future__ import annotations

import numpy as np

from bluegreen.model.ensemble import tune_prior
from bluegreen.model.evaluate import binary_accuracy, three_class_metrics, tune_binary_offset


def test_ensemble_beats_members_on_validation(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    _, members, params, metrics = tiny_fit
    ens = metrics["val_macro_f1"]
    for m in members:
        assert ens > metrics[f"member_{m.config.name}_val_macro_f1"], m.config.name
    assert params["n_val"] > 0
    assert params["n_char_features"] > 0


def test_compiled_equals_stacker_over_member_logits(tiny_fit, tiny_test) -> None:  # type: ignore[no-untyped-def]
    compiled, members, _, _ = tiny_fit
    counts = compiled.counts(tiny_test.texts[:200])
    stacked = np.hstack([m.logits(counts) for m in members])
    # the folded model is affine in the stacked member logits: recover it by least squares
    folded = compiled.logits_batch(tiny_test.texts[:200])
    design = np.hstack([stacked, np.ones((len(stacked), 1))])
    coef, *_ = np.linalg.lstsq(design, folded, rcond=None)
    # weights are held as float32 (as stored), so the fit is exact only to ~1e-6
    assert np.allclose(design @ coef, folded, atol=1e-5)


def test_tune_prior_never_hurts() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=600)
    logits = rng.normal(size=(600, 3)) + np.eye(3)[y] * 0.8 + np.array([0.0, -1.0, 0.5])
    prior = tune_prior(logits, y, 1.0)
    assert prior[2] == 0.0
    before = three_class_metrics(logits, y)["macro_f1"]
    assert three_class_metrics(logits + prior, y)["macro_f1"] >= before


def test_members_sharing_a_transform_are_folded_into_one_group(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    compiled, members, _, _ = tiny_fit
    # nb_lr and the presence ridge weight the counts identically: one feature vector.
    assert len(members) == 4
    assert compiled.member_names == ("char_tfidf_lr", "word_tfidf_lr", "nb_lr+rating_ridge")
    assert compiled.weights.shape[0] == 3


def test_binary_offset_is_tuned_on_validation_and_shipped(tiny_fit) -> None:  # type: ignore[no-untyped-def]
    compiled, _, _, metrics = tiny_fit
    assert compiled.meta["binary_offset"] == metrics["binary_offset"]
    assert metrics["val_binary_acc"] >= metrics["val_binary_acc_uncorrected"]


def test_tune_binary_offset_recovers_a_skewed_prior() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice([0, 2], size=4000)
    margin = np.where(y == 2, 1.0, -1.0) + rng.normal(scale=1.0, size=y.size)
    logits = np.zeros((y.size, 3))
    logits[:, 2] = margin + 1.2  # a model trained on mostly positive data: shifted by +1.2
    off = tune_binary_offset(logits, y, seed=0)
    assert 0.8 <= off <= 1.6
    assert binary_accuracy(logits, y, 0, off) > binary_accuracy(logits, y, 0) + 0.05


def test_tune_binary_offset_prefers_no_correction_on_ties() -> None:
    y = np.array([0, 2] * 50)
    logits = np.zeros((100, 3))
    logits[:, 2] = np.where(y == 2, 5.0, -5.0)
    assert tune_binary_offset(logits, y, seed=0) == 0.0
