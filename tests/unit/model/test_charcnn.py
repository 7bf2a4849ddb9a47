"""The character CNN's serving forward (numpy, numba) and its equality with torch's."""

from __future__ import annotations

import numpy as np
import pytest

from bluegreen.model.charcnn import TABLE_SIZE, CharCNN, char_vocabulary
from bluegreen.model.inference import _load_kernels
from bluegreen.model.textfeat import code_points

TEXTS = ["정말 재밌어요 ㅋㅋ", "", "최악", "a", "😀 이모지와 한자 映畫", "이 영화는 " * 40]


def random_cnn(seed: int = 0, n_vocab: int = 50, k: int = 3, n_f: int = 8, n_h: int = 6) -> CharCNN:
    rng = np.random.default_rng(seed)
    table, _ = char_vocabulary(TEXTS, 1, n_vocab)
    return CharCNN(
        char_ids=table, proj=rng.normal(size=(n_vocab, k, n_f)),
        conv_bias=rng.normal(size=n_f), hidden_w=rng.normal(size=(2 * n_f, n_h)),
        hidden_b=rng.normal(size=n_h), head_w=rng.normal(size=(n_h, 4)),
        head_b=rng.normal(size=4), thresholds=np.linspace(-2, 2, 9),
    )  # fmt: skip


def test_vocabulary_keeps_frequent_characters_and_maps_the_rest_to_unk() -> None:
    table, n = char_vocabulary(["가가가 나", "가 다"], 2, 100)
    assert table[ord("가")] >= 2
    assert table[ord(" ")] >= 2
    assert table[ord("나")] == 1  # seen once: unknown
    assert table[ord("다")] == 1
    assert n == 4
    assert table.shape == (TABLE_SIZE,)


def test_kernel_equals_numpy_path() -> None:
    kernels = _load_kernels()
    if kernels is None:
        pytest.skip("numba unavailable")
    cnn = random_cnn()
    cp, offsets = code_points(TEXTS)
    reference = cnn.outputs(cp, offsets)
    cnn.use_kernels(kernels)
    np.testing.assert_allclose(cnn.outputs(cp, offsets), reference, rtol=1e-4, atol=1e-4)
    rows = np.array([4, 0], dtype=np.int64)  # a subset, out of order: the cascade's rows
    np.testing.assert_allclose(
        cnn.outputs(cp, offsets, rows), reference[rows], rtol=1e-4, atol=1e-4
    )


def test_pooling_reads_every_window_of_a_text() -> None:
    """A single character: K windows, each sees it at one tap; max/mean as computed by hand."""
    cnn = random_cnn(k=2, n_f=3)
    cp, offsets = code_points(["가"])  # " 가 " padded: 3 code points, 4 windows
    ids = cnn.char_ids[cp]
    padded = np.concatenate([[0], ids, [0]])
    h = np.stack([cnn.conv_bias + cnn.proj[padded[i], 0] + cnn.proj[padded[i + 1], 1]
                  for i in range(4)])  # fmt: skip
    h = np.maximum(h, 0)
    pooled = cnn.pooled(cp, offsets)[0]
    np.testing.assert_allclose(pooled, np.concatenate([h.max(0), h.mean(0)]), rtol=1e-5)


def test_shapes_are_checked() -> None:
    good = random_cnn().arrays()
    with pytest.raises(ValueError, match="missing"):
        CharCNN(**{k: v for k, v in good.items() if k != "proj"})
    with pytest.raises(ValueError, match="head_w"):
        CharCNN(**{**good, "head_w": np.zeros((6, 3))})
    with pytest.raises(ValueError, match="outside"):
        CharCNN(**{**good, "char_ids": np.full(TABLE_SIZE, 10_000, dtype=np.int32)})


def test_numpy_forward_equals_torch_forward() -> None:
    torch = pytest.importorskip("torch")
    from bluegreen.model.charcnn_train import CNNConfig, _ids_of, _pad, _torch_model, export

    cfg = CNNConfig(dim=8, widths=(2, 3, 5), filters=4, hidden=5)
    table, n_vocab = char_vocabulary(TEXTS, 1, 60)
    torch.manual_seed(0)
    net = _torch_model(cfg, n_vocab)
    net.eval()
    ids, lengths = _pad(_ids_of(TEXTS, table, 10_000))
    with torch.no_grad():
        logits, score = net(torch.as_tensor(ids), torch.as_tensor(lengths))
    cnn = export(net, table, cfg)
    out = cnn.outputs_of(TEXTS)
    np.testing.assert_allclose(out[:, :3], logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out[:, 3], score.numpy(), rtol=1e-4, atol=1e-5)
