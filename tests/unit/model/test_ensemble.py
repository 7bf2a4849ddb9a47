from __future__ import annotations

import numpy as np

from bluegreen.model.ensemble import tune_prior
from bluegreen.model.evaluate import three_class_metrics


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
    assert np.allclose(design @ coef, folded, atol=1e-8)


def test_tune_prior_never_hurts() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=600)
    logits = rng.normal(size=(600, 3)) + np.eye(3)[y] * 0.8 + np.array([0.0, -1.0, 0.5])
    prior = tune_prior(logits, y, 1.0)
    assert prior[2] == 0.0
    before = three_class_metrics(logits, y)["macro_f1"]
    assert three_class_metrics(logits + prior, y)["macro_f1"] >= before
