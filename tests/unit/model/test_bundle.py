"""The data-only bundle: a manifest over every file, and what verification refuses."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bluegreen.model import bundle
from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel


@pytest.fixture
def bundle_dir(saved_dir: Path, tmp_path: Path) -> tuple[Path, str]:
    """A format 2 bundle, as `registry_io.log_ensemble` writes it."""
    d = CompiledEnsemble.load(saved_dir).save_prepared(tmp_path / "ensemble", tables=False)
    return d, bundle.write_manifest(d)


def test_the_manifest_lists_every_file_and_verifies(bundle_dir: tuple[Path, str]) -> None:
    d, sha = bundle_dir
    body = bundle.verify(d, sha)
    assert set(body["files"]) == {
        "packed.npy", "char_hashes.npy", "bias.npy", "words.txt", "prepared.json",
    }  # fmt: skip
    assert sha == bundle.manifest_sha256(d)
    assert bundle.verify(d)["format"] == bundle.FORMAT  # without a registry anchor too


def test_a_format_1_bundle_verifies_as_format_1(saved_dir: Path, tmp_path: Path) -> None:
    d = Path(shutil.copytree(saved_dir, tmp_path / "v1"))
    sha = bundle.write_manifest(d, bundle.FORMAT_V1)
    assert bundle.verify(d, sha)["format"] == bundle.FORMAT_V1
    assert set(bundle.verify(d)["files"]) == {"arrays.npz", "meta.json", "words.txt"}


def test_either_format_opens_to_the_same_answers(
    saved_dir: Path, bundle_dir: tuple[Path, str]
) -> None:
    """What plain ``mlflow.pyfunc.load_model`` runs (``load_context``), on both formats."""
    texts = ["정말 재밌어요 최고", "지루하고 최악", "", "그냥 그랬다 " * 40]
    v1 = CompiledEnsemble.open_bundle(saved_dir)
    v2 = CompiledEnsemble.open_bundle(bundle_dir[0])
    assert isinstance(v2.packed, np.memmap)
    assert v2.compiled_kernels == v1.compiled_kernels
    np.testing.assert_allclose(v2.predict_proba(texts), v1.predict_proba(texts))


def test_an_unknown_manifest_format_is_refused(bundle_dir: tuple[Path, str]) -> None:
    d, _ = bundle_dir
    manifest = json.loads((d / bundle.MANIFEST).read_text())
    manifest["format"] = "bluegreen-ensemble-bundle/9"
    (d / bundle.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle.IntegrityError, match="is not a manifest of"):
        bundle.verify(d)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("flip", "does not match its sha256"),
        ("truncate", "bytes, the manifest says"),
        ("delete", "is missing"),
    ],
)
def test_an_altered_file_is_refused(
    bundle_dir: tuple[Path, str], damage: str, message: str
) -> None:
    d, sha = bundle_dir
    arrays = d / "packed.npy"
    data = bytearray(arrays.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        arrays.write_bytes(bytes(data))
    elif damage == "truncate":
        arrays.write_bytes(bytes(data[:-10]))
    else:
        arrays.unlink()
    with pytest.raises(bundle.IntegrityError, match=message):
        bundle.verify(d, sha)


def test_a_rewritten_manifest_is_refused_against_the_registered_hash(
    bundle_dir: tuple[Path, str],
) -> None:
    d, sha = bundle_dir
    (d / "words.txt").write_text("tampered", encoding="utf-8")
    forged = bundle.write_manifest(d)  # consistent with the altered files
    assert bundle.verify(d)  # passes on its own...
    with pytest.raises(bundle.IntegrityError, match="is not the registered"):
        bundle.verify(d, sha)  # ...but not against the hash the registry recorded
    assert forged != sha


def test_a_manifest_naming_files_outside_the_bundle_is_refused(
    bundle_dir: tuple[Path, str],
) -> None:
    d, _ = bundle_dir
    manifest = json.loads((d / bundle.MANIFEST).read_text())
    manifest["files"]["../outside"] = {"sha256": "0" * 64, "size": 1}
    (d / bundle.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(bundle.IntegrityError, match="outside the bundle"):
        bundle.verify(d)


def test_prepared_arrays_map_read_only_and_answer_like_the_loaded_model(
    saved_dir: Path, tmp_path: Path
) -> None:
    loaded = CompiledEnsemble.load(saved_dir)
    loaded.save_prepared(tmp_path / "prepared")
    mapped = CompiledEnsemble.map_prepared(tmp_path / "prepared")
    assert isinstance(mapped.packed, np.memmap)
    assert not mapped.packed.flags.writeable
    assert mapped.packed.ctypes.data % 64 == 0  # the kernel's one-row-per-cache-line layout
    texts = ["정말 재밌어요 최고", "지루하고 최악", "", "🙂", "그냥 그랬다 " * 40]
    np.testing.assert_allclose(mapped.predict_proba(texts), loaded.predict_proba(texts))
    served = EnsembleSentimentModel(mapped)
    np.testing.assert_allclose(served.predict_texts(texts[:1]), loaded.predict_proba(texts[:1]))
    mapped.use_kernels(False)  # the numpy path reads the word keys from the file on first use
    np.testing.assert_allclose(mapped.predict_proba(texts), loaded.predict_proba(texts), atol=1e-12)


def test_a_model_without_char_ngrams_maps_with_its_empty_table(tmp_path: Path) -> None:
    words_only = CompiledEnsemble(
        char_hashes=np.zeros(0, dtype=np.uint64), char_range=(1, 2), word_keys=["준비"],
        word_n=1, member_names=["m"], idf=np.ones((1, 1)), weights=np.zeros((1, 1, 3)),
        bias=np.array([0.1, 0.2, 0.3]), binary=[False], sublinear=[True], l2=[True],
    )  # fmt: skip
    mapped = CompiledEnsemble.map_prepared(words_only.save_prepared(tmp_path / "prepared"))
    assert mapped._table_args is not None
    assert mapped._table_args[0].shape == (0, 8)
    np.testing.assert_allclose(mapped.predict_proba(["준비"]), words_only.predict_proba(["준비"]))
