"""Combining members: a multinomial logistic-regression stacker over the members' logits,
fitted on a validation split carved out of train, plus class-prior offsets tuned on the same
split for macro-F1 (out-of-fold), all folded into one :class:`CompiledEnsemble`."""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .evaluate import three_class_metrics, tune_binary_offset
from .features import FeatureSpace
from .inference import CompiledEnsemble
from .labels import LABELS
from .members import FittedMember

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@attrs.frozen
class StackerConfig:
    C: float = 1.0
    folds: int = 5
    tune_priors: bool = True
    prior_grid: float = 1.0
    """Offsets for the neg and neutral logits are searched within ±prior_grid."""


@attrs.frozen
class Stacker:
    coef: F64  # (3 * n_members, 3)
    intercept: F64  # (3,)
    prior: F64  # (3,) offsets added to the logits
    oof_logits: F64  # out-of-fold stacker logits on the validation split (incl. prior)
    binary_offset: float = 0.0  # NSMC-protocol decision offset, tuned on oof_logits


def _fit_lr(z: F64, y: I64, cfg: StackerConfig, seed: int) -> LogisticRegression:
    return LogisticRegression(C=cfg.C, max_iter=1000, random_state=seed).fit(z, y)


def tune_prior(logits: F64, y: I64, span: float) -> F64:
    """Coordinate grid search of logit offsets (neg, neutral; pos fixed at 0) for macro-F1."""
    best = np.zeros(len(LABELS))
    best_f1 = three_class_metrics(logits, y)["macro_f1"]
    for step in (span / 10, span / 50):
        for _ in range(3):
            for c in (0, 1):
                grid = best[c] + np.arange(-10, 11) * step
                for v in grid:
                    cand = best.copy()
                    cand[c] = v
                    f1 = three_class_metrics(logits + cand, y)["macro_f1"]
                    if f1 > best_f1 + 1e-9:
                        best, best_f1 = cand, f1
    return best


def fit_stacker(member_logits: Sequence[F64], y: I64, cfg: StackerConfig, seed: int) -> Stacker:
    z = np.hstack(member_logits)
    oof = np.zeros((len(y), len(LABELS)))
    skf = StratifiedKFold(n_splits=cfg.folds, shuffle=True, random_state=seed)
    for tr, te in skf.split(z, y):
        oof[te] = _fit_lr(z[tr], y[tr], cfg, seed).decision_function(z[te])
    prior = tune_prior(oof, y, cfg.prior_grid) if cfg.tune_priors else np.zeros(len(LABELS))
    lr = _fit_lr(z, y, cfg, seed)
    return Stacker(
        coef=np.asarray(lr.coef_.T, dtype=np.float64),
        intercept=np.asarray(lr.intercept_, dtype=np.float64),
        prior=prior,
        oof_logits=oof + prior,
        binary_offset=tune_binary_offset(oof + prior, y, seed),
    )


def _transform_key(mem: FittedMember) -> tuple[bytes, bool, bool, bool]:
    return (mem.idf.tobytes(), mem.binary, mem.sublinear, mem.l2)


def compile_ensemble(
    space: FeatureSpace,
    members: Sequence[FittedMember],
    stacker: Stacker,
    meta: dict[str, object] | None = None,
) -> CompiledEnsemble:
    """Fold members and stacker: ``W_m = coef_m @ A_m``, bias = c + prior + Σ b_m @ A_m.

    Members that weight the counts identically (same idf vector and tf/norm flags) share one
    feature vector, so their folded weights are summed into one group: inference cost grows
    with the number of distinct feature transforms, not with the number of members."""
    k = len(LABELS)
    groups: dict[tuple[bytes, bool, bool, bool], list[int]] = {}
    for m, mem in enumerate(members):
        groups.setdefault(_transform_key(mem), []).append(m)
    weights = np.zeros((len(groups), space.n_features, k))
    bias = stacker.intercept + stacker.prior
    names, firsts = [], []
    for g, idxs in enumerate(groups.values()):
        for m in idxs:
            a = stacker.coef[m * k : (m + 1) * k, :]
            weights[g] += members[m].coef @ a
            bias = bias + members[m].intercept @ a
        names.append("+".join(members[m].config.name for m in idxs))
        firsts.append(members[idxs[0]])
    return CompiledEnsemble(
        char_hashes=space.char_hashes,
        char_range=space.config.char_range,
        word_keys=space.word_keys,
        word_n=space.config.word_n,
        member_names=names,
        idf=np.stack([m.idf for m in firsts]),
        weights=weights,
        bias=bias,
        binary=[m.binary for m in firsts],
        sublinear=[m.sublinear for m in firsts],
        l2=[m.l2 for m in firsts],
        meta={"binary_offset": stacker.binary_offset, **(meta or {})},
    )
