"""A full-size stand-in of the ensemble for load, swap and memory benchmarks.

Training the full model takes half an hour; what a swap costs depends on the model's size
(features, tables, bytes to download, hash and map), not on what its weights learned. So the
small bootstrap model is padded with random features up to the full model's vocabulary: random
64-bit char n-gram hashes and word keys that no text produces. Every answer is the small
model's, bit for bit, so the smoke gate passes, while every array is as large as the full
model's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

FULL_CHAR_FEATURES = 600_000
FULL_WORD_FEATURES = 300_000


def pad_to_full_size(
    small_dir: Path, out_dir: Path, *, n_char: int = FULL_CHAR_FEATURES,
    n_word: int = FULL_WORD_FEATURES, seed: int = 0,
) -> Path:  # fmt: skip
    from bluegreen.model.inference import CompiledEnsemble

    small = CompiledEnsemble.open_bundle(small_dir)
    ex = small.extractor
    rng = np.random.default_rng(seed)
    n_small_char = len(ex.char_hashes)
    extra_char = max(0, n_char - n_small_char)
    new_hashes = rng.integers(1, 2**63, size=extra_char, dtype=np.int64).astype(np.uint64)
    hashes = np.concatenate([ex.char_hashes, new_hashes])
    order = np.argsort(hashes, kind="stable")
    hashes = hashes[order]
    keep = np.concatenate([[True], hashes[1:] != hashes[:-1]])  # drop a (never seen) repeat
    order, hashes = order[keep], hashes[keep]

    words = list(ex.word_keys)
    extra_word = max(0, n_word - len(words))
    words += [f"\x01pad{i:07d}" for i in range(extra_word)]  # no text normalises to these

    n_members, n_classes = len(small.member_names), 3

    def padded(part: Any, extra_rows: tuple[int, ...], scale: float = 1.0) -> Any:
        """(M, V, ...) arrays: char block permuted with random rows, word block appended."""
        char_block = part[:, :n_small_char]
        word_block = part[:, n_small_char:]
        fill = scale * rng.uniform(0.1, 1.0, size=(n_members, extra_char, *extra_rows))
        chars = np.concatenate([char_block, fill.astype(part.dtype)], axis=1)[:, order]
        words_fill = scale * rng.uniform(0.1, 1.0, size=(n_members, extra_word, *extra_rows))
        return np.concatenate([chars, word_block, words_fill.astype(part.dtype)], axis=1)

    full = CompiledEnsemble(
        char_hashes=hashes,
        char_range=ex.char_range,
        word_keys=words,
        word_n=ex.word_n,
        member_names=small.member_names,
        idf=padded(np.asarray(small.idf, dtype=np.float32), ()),
        weights=padded(np.asarray(small.weights, dtype=np.float32), (n_classes,), 0.01),
        bias=small.bias,
        binary=small.binary,
        sublinear=small.sublinear,
        l2=small.l2,
        meta={**small.meta, "bench_padded_from": int(small.n_features)},
    )
    probe = ["정말 재밌어요 최고", "최악의 영화, 시간 아깝다", "그냥 그랬다"]
    # l2-normalised members see the random rows only through texts that contain them: none
    if not np.allclose(full.predict_proba(probe), small.predict_proba(probe), atol=1e-6):
        raise AssertionError("padding changed the model's answers")
    return full.save(out_dir)


def register_full_size(tracking_uri: str, model_name: str, small_source: str) -> int:
    """Log and register the padded model; returns its version (alias ``production``)."""
    import mlflow

    from bluegreen.model import bundle, registry_io
    from bluegreen.model.inference import CompiledEnsemble

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="bench-full-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=small_source, dst_path=tmp))
        small_dir = next(p.parent for p in local.rglob(bundle.MANIFEST))
        full_dir = pad_to_full_size(small_dir, Path(tmp) / "ensemble")
        assert CompiledEnsemble.load(full_dir).n_features >= FULL_CHAR_FEATURES
        with mlflow.start_run(run_name="bench-full-size"):
            info = registry_io.log_ensemble(full_dir, ["정말 재밌어요"])
        version = registry_io.register(
            info.model_uri, model_name,
            tags={bundle.MANIFEST_TAG: str(info.metadata[bundle.MANIFEST_TAG])},
        )  # fmt: skip
        registry_io.set_alias(model_name, "production", version)
        return version
