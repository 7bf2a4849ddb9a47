"""Training the CNN member with torch (skipped where the train extra is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from bluegreen.model import data


def test_trains_exports_and_reports_progress() -> None:
    pytest.importorskip("torch")
    from bluegreen.model.charcnn_train import CNNConfig, train_charcnn

    ds = data.read_dataset(data.default_data_dir() / data.SAMPLE_TRAIN_FILE, limit=600)
    cfg = CNNConfig(dim=8, widths=(2, 3), filters=4, hidden=6, epochs=2, batch=64,
                    vocab_min_count=2, threads=1)  # fmt: skip
    calls: list[tuple[str, float, float]] = []
    res = train_charcnn(ds.texts, ds.labels, ds.ratings, cfg, 0,
                        progress=lambda *a: calls.append(a), report_every=0.0)  # fmt: skip
    assert len(res.history) == 2
    assert res.history[1]["train_loss"] < res.history[0]["train_loss"]
    assert calls
    assert calls[-1][0] == "charcnn epoch 2/2"
    assert calls[-1][1] == pytest.approx(1.0)
    out = res.model.outputs_of(ds.texts[:20])
    assert out.shape == (20, 4)
    assert np.isfinite(out).all()
