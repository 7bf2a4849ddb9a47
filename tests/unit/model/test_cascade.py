"""The cascade: routing by the fast path's margin, and the accurate tier through every on-disk
form (bundle, prepared mapping) and the pyfunc wrapper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bluegreen.model.cascade import AccurateTier, margins
from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel
from bluegreen.model.textfeat import code_points

from .test_charcnn import random_cnn


def _tier(threshold: float, n_h: int = 6) -> AccurateTier:
    rng = np.random.default_rng(5)
    return AccurateTier(
        random_cnn(n_h=n_h), fast_w=rng.normal(size=(3, 3)), hidden_w=rng.normal(size=(n_h, 3)),
        bias=rng.normal(size=3), threshold=threshold, meta={"share": 0.3},
    )  # fmt: skip


@pytest.fixture(scope="module")
def fast(tiny_fit) -> CompiledEnsemble:  # type: ignore[no-untyped-def]
    compiled: CompiledEnsemble = tiny_fit[0]
    return compiled


@pytest.fixture(scope="module")
def texts(tiny_test) -> list[str]:  # type: ignore[no-untyped-def]
    return list(tiny_test.texts[:200])


def test_margins_are_top_two_probability_gaps() -> None:
    z = np.log(np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]]))
    np.testing.assert_allclose(margins(z), [0.5, 0.05])


def test_threshold_zero_keeps_every_fast_answer(fast: CompiledEnsemble, texts: list[str]) -> None:
    cascade = fast.with_accurate(_tier(0.0))
    np.testing.assert_allclose(cascade.logits(texts), fast.logits(texts))


def test_routes_exactly_the_low_margin_texts(fast: CompiledEnsemble, texts: list[str]) -> None:
    z_fast = fast.logits(texts)
    m = margins(z_fast)
    threshold = float(np.quantile(m, 0.3))
    tier = _tier(threshold)
    cascade = fast.with_accurate(tier)
    cp, offsets = code_points(texts)
    every = np.arange(len(texts), dtype=np.int64)
    accurate = tier.logits(z_fast, cp, offsets, every)
    routed = m < threshold
    assert 0 < routed.sum() < len(texts)
    expected = np.where(routed[:, None], accurate, z_fast)
    np.testing.assert_allclose(cascade.logits(texts), expected, rtol=1e-6, atol=1e-6)
    # one text at a time (the latency path) gives the same answers
    single = np.vstack([cascade.logits([t]) for t in texts[:40]])
    np.testing.assert_allclose(single, expected[:40], rtol=1e-5, atol=1e-5)


def test_threshold_above_one_routes_everything(fast: CompiledEnsemble, texts: list[str]) -> None:
    tier = _tier(2.0)
    z_fast = fast.logits(texts)
    cp, offsets = code_points(texts)
    every = np.arange(len(texts), dtype=np.int64)
    got = fast.with_accurate(tier).logits(texts)
    np.testing.assert_allclose(got, tier.logits(z_fast, cp, offsets, every), rtol=1e-6)


def test_cascade_survives_bundle_and_prepared_forms(
    fast: CompiledEnsemble, texts: list[str], tmp_path: Path
) -> None:
    threshold = float(np.quantile(margins(fast.logits(texts)), 0.5))
    cascade = fast.with_accurate(_tier(threshold), bias_shift=np.array([0.1, -0.2, 0.0]))
    saved = cascade.save(tmp_path / "bundle")
    meta = json.loads((saved / "meta.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 2
    assert meta["accurate"]["threshold"] == threshold
    assert (saved / "accurate.npz").is_file()
    loaded = CompiledEnsemble.load(saved)
    assert loaded.accurate is not None
    expected = loaded.logits(texts)
    mapped = CompiledEnsemble.map_prepared(loaded.save_prepared(tmp_path / "prepared"))
    assert mapped.accurate is not None
    np.testing.assert_allclose(mapped.logits(texts), expected, rtol=1e-6, atol=1e-6)
    # the fast path's shifted bias travels too
    shifted = fast.fast_logits(texts) + np.array([0.1, -0.2, 0.0])
    np.testing.assert_allclose(loaded.fast_logits(texts), shifted, rtol=1e-4, atol=1e-4)
    served = EnsembleSentimentModel(mapped)
    proba = served.predict_texts(texts)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(served.predict_texts([texts[3]])[0], proba[3], rtol=1e-5)


def test_a_model_without_tier_stays_format_one(fast: CompiledEnsemble, tmp_path: Path) -> None:
    meta = json.loads((fast.save(tmp_path / "b") / "meta.json").read_text(encoding="utf-8"))
    assert meta["format_version"] == 1
    assert not (tmp_path / "b" / "accurate.npz").exists()


def test_tier_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="hidden_w"):
        AccurateTier(random_cnn(n_h=6), fast_w=np.eye(3), hidden_w=np.zeros((5, 3)),
                     bias=np.zeros(3), threshold=0.1)  # fmt: skip
