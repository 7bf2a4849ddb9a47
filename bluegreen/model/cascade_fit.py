"""Fitting the accurate tier's stacker and the cascade's threshold on the validation split.

The stacker is a multinomial logistic regression over ``[fast logits, CNN class logits, CNN
ordinal score]``; its class priors are tuned (out of fold) for macro-F1 plus the binary
accuracy *without* an offset, since that is how a client reads the served probabilities
(argmax, and positive vs negative by probability). The CNN block folds into the CNN's head:
``hidden @ (head_w @ A) + head_b @ A``.

The share routed to the accurate tier is chosen on the same out-of-fold logits: the smallest
share whose score is within ``tolerance`` of routing every text, capped by ``max_share`` (the
cost budget). The frontier over all shares is returned for the model card and the benchmark.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .cascade import AccurateTier, margins
from .charcnn import CharCNN
from .evaluate import binary_accuracy, three_class_metrics
from .labels import LABELS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SHARES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@attrs.frozen
class CascadeConfig:
    C: float = 1.0
    folds: int = 5
    prior_span: float = 1.5
    max_share: float = 0.5
    """The cost budget: at most this share of texts go to the accurate tier."""
    tolerance: float = 0.002
    """The chosen share's score may be this far below routing every text."""
    share: float | None = None
    """A fixed share (one of :data:`SHARES`) instead of the chosen one."""
    retune_fast_prior: bool = True
    """Tune the fast path's class priors for the same joint objective (its stacker tuned them
    for macro-F1 alone)."""


def joint_score(logits: F64, y: I64, seed: int) -> float:
    """What the priors and the share are tuned for: macro-F1 + uncorrected binary accuracy."""
    return three_class_metrics(logits, y)["macro_f1"] + binary_accuracy(logits, y, seed)


def tune_prior_joint(logits: F64, y: I64, seed: int, span: float) -> F64:
    """Coordinate grid search of the (neg, neutral) logit offsets for :func:`joint_score`."""
    best = np.zeros(len(LABELS))
    best_s = joint_score(logits, y, seed)
    for step in (span / 10, span / 50):
        for _ in range(2):
            for c in (0, 1):
                for v in best[c] + np.arange(-10, 11) * step:
                    cand = best.copy()
                    cand[c] = v
                    s = joint_score(logits + cand, y, seed)
                    if s > best_s + 1e-9:
                        best, best_s = cand, s
    return best


@attrs.frozen
class CascadeFit:
    tier: AccurateTier
    fast_prior_shift: F64
    """Added to the fast path's bias (the joint-objective retune)."""
    share: float
    frontier: list[dict[str, float]]
    oof_accurate: F64


def _features(fast: F64, cnn_out: F64) -> F64:
    return np.hstack([fast - fast.mean(axis=1, keepdims=True), cnn_out])


def fit_cascade(
    fast: F64,
    cnn_out: F64,
    y: I64,
    *,
    cnn: CharCNN,
    cfg: CascadeConfig,
    seed: int,
) -> CascadeFit:
    """``fast``: the fast path's validation logits; ``cnn_out``: the CNN's (n, 4) outputs."""
    shift = tune_prior_joint(fast, y, seed, cfg.prior_span) if cfg.retune_fast_prior else (
        np.zeros(len(LABELS))
    )  # fmt: skip
    fast = fast + shift
    x = _features(fast, cnn_out.astype(np.float64))
    oof = np.zeros((len(y), len(LABELS)))
    for tr, te in StratifiedKFold(cfg.folds, shuffle=True, random_state=seed).split(x, y):
        lr = LogisticRegression(C=cfg.C, max_iter=2000).fit(x[tr], y[tr])
        oof[te] = lr.decision_function(x[te])
    prior = tune_prior_joint(oof, y, seed, cfg.prior_span)
    oof = oof + prior
    lr = LogisticRegression(C=cfg.C, max_iter=2000).fit(x, y)
    coef = lr.coef_.T.astype(np.float64)  # (7, 3)
    # fast - mean(fast) is linear in fast: fold the centring into its block
    centre = np.eye(3) - np.full((3, 3), 1.0 / 3.0)
    fast_w = centre @ coef[:3]
    a_cnn = coef[3:]
    hidden_w = cnn.head_w.astype(np.float64) @ a_cnn
    bias = lr.intercept_ + cnn.head_b.astype(np.float64) @ a_cnn + prior

    m = margins(fast)
    frontier = []
    for s in SHARES:
        thr = _threshold(m, s)
        z = np.where((m < thr)[:, None], oof, fast)
        met = three_class_metrics(z, y)
        frontier.append({
            "share": s, "threshold": thr, "macro_f1": met["macro_f1"], "acc3": met["acc3"],
            "binary_acc": binary_accuracy(z, y, seed), "score": joint_score(z, y, seed),
        })  # fmt: skip
    full = frontier[-1]["score"]
    affordable = [f for f in frontier if f["share"] <= cfg.max_share + 1e-9]
    good = [f for f in affordable if f["score"] >= full - cfg.tolerance]
    chosen = good[0] if good else max(affordable, key=lambda f: f["score"])
    if cfg.share is not None:
        chosen = min(frontier, key=lambda f: abs(f["share"] - float(cfg.share or 0.0)))
    tier = AccurateTier(
        cnn, fast_w=fast_w, hidden_w=hidden_w, bias=bias, threshold=chosen["threshold"],
        meta={"share": chosen["share"], "prior": [float(v) for v in prior]},
    )  # fmt: skip
    return CascadeFit(tier, shift, float(chosen["share"]), frontier, oof)


def _threshold(m: F64, share: float) -> float:
    """The margin below which ``share`` of the rows fall (0: none; above 1: all)."""
    if share <= 0.0:
        return 0.0
    if share >= 1.0:
        return 2.0
    return float(np.quantile(m, share))


def with_threshold(tier: AccurateTier, threshold: float, share: float) -> AccurateTier:
    """The same tier routing a different share (benchmarks of the frontier)."""
    return AccurateTier(tier.cnn, fast_w=tier.fast_w, hidden_w=tier.hidden_w, bias=tier.bias,
                        threshold=threshold, meta={**tier.meta, "share": share})  # fmt: skip


def shares_of(frontier: Sequence[dict[str, float]]) -> list[tuple[float, float]]:
    return [(f["share"], f["threshold"]) for f in frontier]
