from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from bluegreen.model import data
from bluegreen.model.evaluate import all_metrics
from bluegreen.model.features import FeatureConfig, build_feature_space
from bluegreen.model.inference import weight_rows
from bluegreen.model.members import MemberConfig, fit_member


@pytest.fixture(scope="module")
def space_and_counts(tiny_train: data.Dataset):  # type: ignore[no-untyped-def]
    cfg = FeatureConfig(
        char_range=(1, 3),
        char_max_features=5000,
        char_min_count=2,
        word_n=2,
        word_max_features=3000,
        word_min_count=2,
    )
    space = build_feature_space(tiny_train.texts, cfg)
    return space, space.counts(tiny_train.texts)


@pytest.mark.parametrize(
    "cfg",
    [
        MemberConfig("c", "tfidf_lr", "char", max_iter=50),
        MemberConfig("w", "tfidf_lr", "word", max_iter=50),
        MemberConfig("nb", "nbsvm", "both", max_iter=50),
    ],
    ids=lambda c: c.name,
)
def test_member_learns_and_respects_its_block(space_and_counts, tiny_train, cfg) -> None:  # type: ignore[no-untyped-def]
    space, counts = space_and_counts
    fm = fit_member(cfg, space, counts, tiny_train.labels, seed=0)
    z = fm.logits(counts)
    assert z.shape == (len(tiny_train), 3)
    m = all_metrics(z, tiny_train.labels, 0)
    assert m["acc3"] > 0.6
    assert m["binary_acc"] > 0.75
    outside = ~space.block_mask(cfg.block)
    assert np.all(fm.idf[outside] == 0)
    assert np.all(fm.coef[outside] == 0)


@pytest.mark.parametrize("presence", [False, True])
def test_rating_ridge_orders_texts_by_stars(space_and_counts, tiny_train, presence) -> None:  # type: ignore[no-untyped-def]
    space, counts = space_and_counts
    cfg = MemberConfig("r", "rating_ridge", "both", C=1.0, max_iter=100, presence=presence)
    fm = fit_member(cfg, space, counts, tiny_train.labels, 0, ratings=tiny_train.ratings)
    z = fm.logits(counts)
    # One score s enters as (-s, 0, s): the neutral column is constant zero.
    assert np.all(z[:, 1] == 0)
    assert np.allclose(z[:, 0], -z[:, 2])
    score = z[:, 2]
    corr = np.corrcoef(score, tiny_train.ratings)[0, 1]
    assert corr > 0.6
    assert fm.binary is presence


def test_rating_ridge_needs_ratings(space_and_counts, tiny_train) -> None:  # type: ignore[no-untyped-def]
    space, counts = space_and_counts
    with pytest.raises(ValueError, match="ratings"):
        fit_member(MemberConfig("r", "rating_ridge", "both"), space, counts, tiny_train.labels, 0)


def test_binary_member_separates_negative_from_positive(space_and_counts, tiny_train) -> None:  # type: ignore[no-untyped-def]
    space, counts = space_and_counts
    cfg = MemberConfig("b", "binary_lr", "both", max_iter=50)
    fm = fit_member(cfg, space, counts, tiny_train.labels, 0)
    z = fm.logits(counts)
    assert np.all(z[:, 1] == 0)
    assert all_metrics(z, tiny_train.labels, 0)["binary_acc"] > 0.8


def test_nbsvm_folding_equals_explicit_scaling(space_and_counts, tiny_train) -> None:  # type: ignore[no-untyped-def]
    space, counts = space_and_counts
    fm = fit_member(
        MemberConfig("nb", "nbsvm", "both", max_iter=30), space, counts, tiny_train.labels, seed=0
    )
    x = weight_rows(counts, fm.idf, binary=True, sublinear=False, l2=True)
    # rows are l2-normalised binary presence vectors
    assert np.allclose(np.asarray(x.multiply(x).sum(axis=1)).ravel()[counts.getnnz(axis=1) > 0], 1)
    assert np.allclose(fm.logits(counts), x @ fm.coef + fm.intercept)


def test_weight_rows_matches_sklearn_tfidf() -> None:
    from sklearn.feature_extraction.text import TfidfTransformer

    counts = sp.csr_matrix(
        np.array([[1, 0, 3, 0], [0, 2, 1, 0], [0, 0, 0, 0], [4, 1, 0, 1]], dtype=np.float64)
    )
    ref = TfidfTransformer(sublinear_tf=True, smooth_idf=True).fit(counts)
    from bluegreen.model.members import smooth_idf

    idf = smooth_idf(counts, np.ones(4, dtype=bool))
    assert np.allclose(idf, ref.idf_)
    ours = weight_rows(counts, idf, binary=False, sublinear=True, l2=True).toarray()
    assert np.allclose(ours, ref.transform(counts).toarray())
