from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bluegreen.model import data
from bluegreen.model.labels import LABELS, label_for_rating


def test_labels_contract() -> None:
    from bluegreen import model

    assert model.LABELS == ("부정", "중립/복합", "긍정") == LABELS
    assert [label_for_rating(r) for r in range(1, 11)] == [0] * 4 + [1] * 4 + [2] * 2
    with pytest.raises(ValueError):
        label_for_rating(0)


def test_shipped_sample_readable() -> None:
    train, test = data.resolve_files(None)
    ds = data.read_dataset(test, limit=500)
    assert len(ds) == 500
    assert set(np.unique(ds.labels)) == {0, 1, 2}
    assert train.name == data.SAMPLE_TRAIN_FILE


def test_read_rejects_bad_header(tmp_path: Path) -> None:
    p = tmp_path / "x.tsv.gz"
    with gzip.open(p, "wt", encoding="utf-8") as f:
        f.write("a\tb\n1\t2\n")
    with pytest.raises(ValueError):
        data.read_dataset(p)


def test_quotes_are_literal(tmp_path: Path) -> None:
    p = tmp_path / "q.tsv"
    p.write_text(
        'id\tmovie_id\tdate\trating\ttext\n1\t2\t2020-01-01\t10\t"좋다 "최고\n', encoding="utf-8"
    )
    assert data.read_dataset(p).texts == ['"좋다 "최고']


def test_stratified_sample_and_split_are_deterministic() -> None:
    strata = np.repeat(np.arange(1, 11), 100)
    a = data.stratified_sample(strata, 250, 1)
    assert np.array_equal(a, data.stratified_sample(strata, 250, 1))
    assert len(a) == 250
    assert set(np.bincount(strata[a])[1:]) == {25}
    labels = np.array([label_for_rating(int(r)) for r in strata])
    fit, val = data.train_val_split(labels, 0.2, 0)
    assert len(np.intersect1d(fit, val)) == 0
    assert len(fit) + len(val) == len(labels)


def test_binary_index_balanced() -> None:
    labels = np.array([0] * 10 + [1] * 50 + [2] * 30)
    idx = data.binary_balanced_index(labels, 0)
    assert (labels[idx] == 0).sum() == (labels[idx] == 2).sum() == 10
    assert (labels[idx] == 1).sum() == 0
