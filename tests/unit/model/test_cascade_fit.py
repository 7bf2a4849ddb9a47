"""Fitting the accurate tier's stacker and the cascade's share on validation logits."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from bluegreen.model.cascade import margins
from bluegreen.model.cascade_fit import (
    CascadeConfig,
    _features,
    fit_cascade,
    joint_score,
    tune_prior_joint,
)
from bluegreen.model.textfeat import code_points

from .test_charcnn import TEXTS, random_cnn


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    fast = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[y]
    cnn_out = rng.normal(size=(n, 4)) + np.hstack([2.0 * np.eye(3)[y], (y - 1.0)[:, None]])
    return fast, cnn_out, y


def test_prior_tuning_never_lowers_the_joint_score() -> None:
    fast, _, y = _data(600, 1)
    skewed = fast + np.array([-1.0, 0.5, 0.0])
    prior = tune_prior_joint(skewed, y, 0, 1.5)
    assert joint_score(skewed + prior, y, 0) >= joint_score(skewed, y, 0)
    assert prior[2] == 0.0


def test_folded_tier_equals_the_fitted_stacker_and_share_respects_budget() -> None:
    fast, cnn_out, y = _data(900, 2)
    cnn = random_cnn(n_h=6)
    cfg = CascadeConfig(folds=3, max_share=0.4, retune_fast_prior=False)
    fit = fit_cascade(fast, cnn_out, y, cnn=cnn, cfg=cfg, seed=0)
    assert fit.share <= 0.4
    assert fit.frontier[0]["share"] == 0.0
    assert fit.frontier[-1]["share"] == 1.0
    # the informative CNN makes routing everything better than routing nothing
    assert fit.frontier[-1]["score"] > fit.frontier[0]["score"]
    # the tier's folded arrays reproduce the stacker over [fast, CNN outputs] on real CNN
    # outputs: hidden @ hidden_w + bias == outputs @ A + intercept + prior
    cp, offsets = code_points(TEXTS)
    rows = np.arange(len(TEXTS), dtype=np.int64)
    real_out = cnn.outputs(cp, offsets).astype(np.float64)
    f = fast[: len(TEXTS)]
    lr = LogisticRegression(C=cfg.C, max_iter=2000).fit(_features(fast, cnn_out), y)
    prior = np.array(fit.tier.meta["prior"])
    expected = lr.decision_function(_features(f, real_out)) + prior
    got = fit.tier.logits(f, cp, offsets, rows)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    # the chosen threshold routes about the chosen share of the validation rows
    routed = float(np.mean(margins(fast) < fit.tier.threshold))
    assert abs(routed - fit.share) < 0.01
