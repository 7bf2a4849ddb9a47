"""Ensemble members: linear models over different views of the shared feature space.

* ``tfidf_lr``: sublinear tf-idf (l2-normalised over the member's block) + multinomial
  logistic regression;
* ``nbsvm``: binary presence (l2-normalised) scaled per class by the naive-Bayes log-count
  ratio, one-vs-rest logistic regression (Wang & Manning 2012). The per-class scaling folds into
  the coefficients (``coef[:, c] = r_c * w_c``), so at inference it is a plain linear member;
* ``binary_lr``: tf-idf + logistic regression on the negative (1-4) and positive (9-10) rows
  only, classes balanced. The three-class members spend capacity on the neutral class; this one
  puts all of it on the negative/positive boundary the NSMC protocol measures. Its log-odds
  ``b`` enters the stacker as ``(-b/2, 0, b/2)``;
* ``rating_ridge``: tf-idf + ridge regression on the centred star rating (1-10), an ordinal
  view the classifiers lack (a 4 and a 1 are both "negative" to them), entered as ``(-s, 0, s)``.

Every member exposes the same folded form: ``logits = weight_rows(counts, idf, flags) @ coef +
intercept``, which is exactly what :class:`bluegreen.model.inference.CompiledEnsemble` computes.
"""

from __future__ import annotations

import time
import warnings
from typing import Literal

import attrs
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge

from .features import FeatureSpace
from .inference import weight_rows
from .labels import LABELS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@attrs.frozen
class MemberConfig:
    name: str
    kind: Literal["tfidf_lr", "nbsvm", "binary_lr", "rating_ridge"]
    block: Literal["char", "word", "both"]
    C: float = 4.0
    max_iter: int = 300
    tol: float = 1e-4
    class_weight: Literal["balanced"] | None = None
    sublinear: bool = True
    nb_alpha: float = 1.0
    presence: bool = False
    """``binary_lr``/``rating_ridge``: l2-normalised presence features (the ``nbsvm`` member's
    transform, so the two share one feature vector at inference) instead of tf-idf."""


@attrs.frozen
class FittedMember:
    config: MemberConfig
    idf: F64
    coef: F64
    intercept: F64
    binary: bool
    sublinear: bool
    l2: bool
    fit_seconds: float

    def features(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        return weight_rows(
            counts, self.idf, binary=self.binary, sublinear=self.sublinear, l2=self.l2
        )

    def logits(self, counts: sp.csr_matrix) -> F64:
        out: F64 = np.asarray(self.features(counts) @ self.coef) + self.intercept
        return out


def smooth_idf(counts: sp.csr_matrix, mask: npt.NDArray[np.bool_]) -> F64:
    """sklearn's ``smooth_idf`` formula, zero outside ``mask``."""
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    idf = np.log((1.0 + n) / (1.0 + df)) + 1.0
    return np.where(mask, idf, 0.0)


def _lr(cfg: MemberConfig, seed: int) -> LogisticRegression:
    return LogisticRegression(
        C=cfg.C,
        max_iter=cfg.max_iter,
        tol=cfg.tol,
        class_weight=cfg.class_weight,
        solver="lbfgs",
        random_state=seed,
    )


def fit_member(
    cfg: MemberConfig,
    space: FeatureSpace,
    counts: sp.csr_matrix,
    y: I64,
    seed: int,
    *,
    ratings: I64 | None = None,
) -> FittedMember:
    """Fit one member on raw counts (``max_iter`` is a deliberate budget: no warning).

    ``ratings`` (1-10) are needed by ``rating_ridge`` only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=ConvergenceWarning)
        return _fit_member(cfg, space, counts, y, seed=seed, ratings=ratings)


def _antisymmetric(w: F64) -> F64:
    """A one-score member's weights as three logit columns: (-w/2, 0, w/2)."""
    out: F64 = np.stack([-w / 2, np.zeros_like(w), w / 2], axis=-1)
    return out


def _fit_member(
    cfg: MemberConfig,
    space: FeatureSpace,
    counts: sp.csr_matrix,
    y: I64,
    *,
    seed: int,
    ratings: I64 | None,
) -> FittedMember:
    t0 = time.perf_counter()
    mask = space.block_mask(cfg.block)
    n_labels = len(LABELS)
    if cfg.kind in ("binary_lr", "rating_ridge"):
        if cfg.presence:
            idf, binary, sublinear = mask.astype(np.float64), True, False
        else:
            idf, binary, sublinear = smooth_idf(counts, mask), False, cfg.sublinear
        x = weight_rows(counts, idf, binary=binary, sublinear=sublinear, l2=True)
        if cfg.kind == "binary_lr":
            polar = y != 1
            lr = _lr(cfg, seed).set_params(class_weight="balanced")
            lr.fit(x[polar], (y[polar] == 2).astype(np.int64))
            w, b = lr.coef_.ravel(), float(lr.intercept_[0])
        else:
            if ratings is None:
                raise ValueError("rating_ridge needs the star ratings")
            target = ratings.astype(np.float64) - 5.5
            ridge = Ridge(alpha=1.0 / cfg.C, solver="sparse_cg", max_iter=cfg.max_iter,
                          tol=cfg.tol, random_state=seed)  # fmt: skip
            ridge.fit(x, target)
            w, b = 2 * np.asarray(ridge.coef_).ravel(), 2 * float(ridge.intercept_)
        coef = np.ascontiguousarray(_antisymmetric(np.asarray(w, dtype=np.float64)))
        intercept = np.array([-b / 2, 0.0, b / 2])
        return FittedMember(
            cfg, idf, coef, intercept, binary, sublinear, True, time.perf_counter() - t0
        )
    if cfg.kind == "tfidf_lr":
        idf = smooth_idf(counts, mask)
        x = weight_rows(counts, idf, binary=False, sublinear=cfg.sublinear, l2=True)
        lr = _lr(cfg, seed).fit(x, y)
        coef = np.ascontiguousarray(lr.coef_.T, dtype=np.float64)
        intercept = np.asarray(lr.intercept_, dtype=np.float64)
        return FittedMember(
            cfg, idf, coef, intercept, False, cfg.sublinear, True, time.perf_counter() - t0
        )
    if cfg.kind == "nbsvm":
        idf = mask.astype(np.float64)
        x = weight_rows(counts, idf, binary=True, sublinear=False, l2=True)
        present = sp.csr_matrix(
            (np.ones_like(counts.data), counts.indices, counts.indptr), shape=counts.shape
        )
        coef = np.zeros((space.n_features, n_labels), dtype=np.float64)
        intercept = np.zeros(n_labels, dtype=np.float64)
        for c in range(n_labels):
            pos = y == c
            p = cfg.nb_alpha + np.asarray(present[pos].sum(axis=0)).ravel()
            q = cfg.nb_alpha + np.asarray(present[~pos].sum(axis=0)).ravel()
            r = np.where(mask, np.log((p / p.sum()) / (q / q.sum())), 0.0)
            xc = x @ sp.diags(r).tocsr()
            lr = _lr(cfg, seed).fit(xc, pos.astype(np.int64))
            coef[:, c] = r * lr.coef_.ravel()
            intercept[c] = float(lr.intercept_[0])
        return FittedMember(cfg, idf, coef, intercept, True, False, True, time.perf_counter() - t0)
    raise ValueError(f"unknown member kind {cfg.kind!r}")
