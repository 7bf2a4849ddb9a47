"""The loader child as the server drives it: a real spawned `bluegreen.loading.child` process,
real pipes and a real local artifact store (``file://``), so nothing here is faked."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from bluegreen.loading.supervisor import ChildConfig, LoaderChild
from bluegreen.model import bundle
from bluegreen.model.inference import CompiledEnsemble
from bluegreen.serving.lifecycle import TransientLoadError

SMOKE = (("정말 최고의 영화", "긍정"), ("최악의 영화", "부정"))


def _tiny(word_keys: tuple[str, ...] = ("준비",)) -> CompiledEnsemble:
    n = 2 + len(word_keys)  # two char n-grams, then the words
    return CompiledEnsemble(
        char_hashes=np.array([1, 2], dtype=np.uint64), char_range=(1, 2),
        word_keys=list(word_keys), word_n=1, member_names=["m"], idf=np.ones((1, n)),
        weights=np.zeros((1, n, 3)), bias=np.array([0.1, 0.2, 0.3]), binary=[False],
        sublinear=[True], l2=[True],
    )  # fmt: skip


def _model_dir(
    root: Path, *, as_bundle: bool = True, smoke: tuple[tuple[str, str], ...] = (),
    fmt: str = bundle.FORMAT, label: str | None = None,
) -> tuple[Path, str]:  # fmt: skip
    """An MLflow model directory holding a tiny bundle, as `registry_io.log_ensemble` lays
    it out (``MLmodel`` metadata naming ``artifacts/ensemble``; ``smoke.tsv`` inside).
    ``fmt``: the bundle's format (1: what versions registered before format 2 hold);
    ``label``: the format the ``MLmodel`` metadata claims, when it is to differ."""
    model = root / "model"
    where = model / "artifacts" / "ensemble"
    if fmt == bundle.FORMAT:
        ensemble = _tiny().save_prepared(where, tables=False)
    else:
        ensemble = _tiny().save(where)
    if smoke:
        bundle.write_smoke_set(ensemble, smoke)
    sha = bundle.write_manifest(ensemble, fmt)
    metadata = {
        bundle.FORMAT_KEY: label or fmt, bundle.BUNDLE_PATH_KEY: "artifacts/ensemble",
        bundle.MANIFEST_TAG: sha,
    }  # fmt: skip
    spec = {"flavors": {"python_function": {}}, "metadata": metadata if as_bundle else None}
    (model / "MLmodel").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return model, sha


def _loader(tmp_path: Path, idle_exit_s: float = 0) -> LoaderChild:
    return LoaderChild(
        ChildConfig(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            cache_dir=tmp_path / "cache",
            nice=0,
            idle_exit_s=idle_exit_s,
        )
    )


@pytest.fixture
def child(tmp_path: Path):  # type: ignore[no-untyped-def]
    loader = _loader(tmp_path)
    yield loader
    loader.close()


def _request(model: Path, version: int = 1, sha: str | None = None) -> dict[str, object]:
    return {"version": version, "uri": model.as_uri(), "manifest_sha256": sha}


def test_a_bundle_is_verified_prepared_and_published(child: LoaderChild, tmp_path: Path) -> None:
    model, sha = _model_dir(tmp_path)
    answer = child.prepare(_request(model, 3, sha), timeout_s=120)
    assert answer["kind"] == "bundle"
    entry = Path(str(answer["path"]))
    assert entry.name == f"v3-{sha[:16]}"
    assert (entry / "READY").is_file()
    mapped = CompiledEnsemble.map_prepared(entry)
    np.testing.assert_allclose(mapped.bias, [0.1, 0.2, 0.3])
    assert [p.name for p in (tmp_path / "cache").iterdir() if p.name.startswith(".stage")] == []
    # format 2 is published as downloaded: the bundle's own files, its manifest among them,
    # and the tables the child built beside them
    assert {"packed.npy", bundle.MANIFEST, "char_table.npy", "tables.json"} <= {
        p.name for p in entry.iterdir()
    }
    assert mapped._table_args is not None
    np.testing.assert_array_equal(mapped._table_args[0], _tiny()._table_args[0])  # type: ignore[index]


def test_a_format_1_bundle_is_still_decompressed_and_prepared(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, sha = _model_dir(tmp_path, fmt=bundle.FORMAT_V1, smoke=SMOKE)
    answer = child.prepare(_request(model, 4, sha), timeout_s=120)
    assert answer["kind"] == "bundle"
    entry = Path(str(answer["path"]))
    assert not (entry / "arrays.npz").exists()
    mapped = CompiledEnsemble.map_prepared(entry)
    np.testing.assert_allclose(mapped.bias, [0.1, 0.2, 0.3])
    assert mapped._table_args is not None
    assert bundle.read_smoke_set(entry / bundle.SMOKE_SET) == SMOKE


def test_tables_a_bundle_ships_are_replaced_by_ones_built_from_its_keys(
    child: LoaderChild, tmp_path: Path
) -> None:
    """A kernel follows a table's values into the packed rows unchecked: they must never
    come from the artifact store, even in a bundle whose manifest covers them."""
    model, _ = _model_dir(tmp_path)
    ensemble = model / "artifacts" / "ensemble"
    forged = np.full((2, 8), np.uint64(2**40), dtype=np.uint64)
    np.save(ensemble / "char_table.npy", forged)
    np.save(ensemble / "word_table.npy", forged)
    (ensemble / "tables.json").write_text('{"char_shift": 63, "word_shift": 63}', "utf-8")
    sha = bundle.write_manifest(ensemble)
    answer = child.prepare(_request(model, 5, sha), timeout_s=120)
    entry = Path(str(answer["path"]))
    built = _tiny()._table_args
    assert built is not None
    np.testing.assert_array_equal(np.load(entry / "char_table.npy"), built[0])


def test_a_bundle_whose_arrays_do_not_fit_its_shape_is_refused(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, _ = _model_dir(tmp_path)
    ensemble = model / "artifacts" / "ensemble"
    np.save(ensemble / "packed.npy", np.zeros((1, 16), dtype=np.float32))  # 3 features
    sha = bundle.write_manifest(ensemble)
    answer = child.prepare(_request(model, 6, sha), timeout_s=120)
    assert answer["error"] == "prepare"
    assert "packed.npy shape" in str(answer["detail"])


def test_a_bundle_with_a_repeated_word_key_is_refused(child: LoaderChild, tmp_path: Path) -> None:
    """A repeated key would leave a column unreachable: the child refuses the bundle."""
    model, _ = _model_dir(tmp_path)
    ensemble = model / "artifacts" / "ensemble"
    shutil.rmtree(ensemble)
    _tiny(("준비", "가다")).save_prepared(ensemble, tables=False)
    (ensemble / "words.txt").write_text("준비\n준비", encoding="utf-8")  # same count
    sha = bundle.write_manifest(ensemble)
    answer = child.prepare(_request(model, 8, sha), timeout_s=120)
    assert answer["error"] == "prepare"
    assert "duplicate" in str(answer["detail"])


def test_a_bundle_whose_mlmodel_and_manifest_disagree_on_the_format_is_integrity(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, sha = _model_dir(tmp_path, fmt=bundle.FORMAT_V1, label=bundle.FORMAT)
    answer = child.prepare(_request(model, 7, sha), timeout_s=120)
    assert answer["error"] == "integrity"
    assert "manifest" in str(answer["detail"])


def test_an_altered_file_is_answered_as_integrity(child: LoaderChild, tmp_path: Path) -> None:
    model, sha = _model_dir(tmp_path)
    (model / "artifacts" / "ensemble" / "words.txt").write_text("x", encoding="utf-8")
    answer = child.prepare(_request(model, 1, sha), timeout_s=120)
    assert answer["error"] == "integrity"
    assert "words.txt" in str(answer["detail"])


def test_a_registry_hash_that_does_not_match_is_integrity(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, _ = _model_dir(tmp_path)
    answer = child.prepare(_request(model, 1, "0" * 64), timeout_s=120)
    assert answer["error"] == "integrity"


def test_the_version_smoke_set_is_verified_and_travels_in_the_prepared_entry(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, sha = _model_dir(tmp_path, smoke=SMOKE)
    answer = child.prepare(_request(model, 2, sha), timeout_s=120)
    assert answer["kind"] == "bundle"
    assert bundle.read_smoke_set(Path(str(answer["path"])) / bundle.SMOKE_SET) == SMOKE


def test_an_altered_smoke_set_is_answered_as_integrity(child: LoaderChild, tmp_path: Path) -> None:
    model, sha = _model_dir(tmp_path, smoke=SMOKE)
    smoke_tsv = model / "artifacts" / "ensemble" / bundle.SMOKE_SET
    smoke_tsv.write_text(bundle.format_smoke_set([(SMOKE[0][0], "부정")]), encoding="utf-8")
    answer = child.prepare(_request(model, 1, sha), timeout_s=120)
    assert answer["error"] == "integrity"
    assert bundle.SMOKE_SET in str(answer["detail"])


def test_an_unreadable_smoke_set_refuses_the_version(child: LoaderChild, tmp_path: Path) -> None:
    model, _ = _model_dir(tmp_path)
    ensemble = model / "artifacts" / "ensemble"
    (ensemble / bundle.SMOKE_SET).write_text("text\texpected_label\n좋다\tpositive\n", "utf-8")
    sha = bundle.write_manifest(ensemble)  # consistent manifest: the content itself is bad
    answer = child.prepare(_request(model, 1, sha), timeout_s=120)
    assert answer["error"] == "prepare"
    assert "smoke.tsv line 2" in str(answer["detail"])


def test_a_model_without_a_bundle_is_a_pyfunc(child: LoaderChild, tmp_path: Path) -> None:
    model, _ = _model_dir(tmp_path, as_bundle=False)
    assert child.prepare(_request(model), timeout_s=120) == {
        "kind": "pyfunc", "id": 1, "duration_s": pytest.approx(0, abs=60),
    }  # fmt: skip


def test_past_the_deadline_the_child_is_killed_and_the_load_is_transient(
    child: LoaderChild, tmp_path: Path
) -> None:
    model, _ = _model_dir(tmp_path)
    child.start()
    pid = child.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a load that never answers
    with pytest.raises(TransientLoadError, match="exceeded 1s"):
        child.prepare(_request(model), timeout_s=1)
    assert child.pid is None
    assert child.prepare(_request(model), timeout_s=120)["kind"] == "bundle"  # a new child
    assert child.pid != pid


def test_abort_ends_a_load_in_progress(child: LoaderChild, tmp_path: Path) -> None:
    model, _ = _model_dir(tmp_path)
    child.start()
    assert child.pid is not None
    os.kill(child.pid, signal.SIGSTOP)
    errors: list[BaseException] = []

    def load() -> None:
        try:
            child.prepare(_request(model), timeout_s=120)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.3)
    child.abort()
    thread.join(10)
    assert not thread.is_alive()
    assert len(errors) == 1
    assert isinstance(errors[0], TransientLoadError)
    assert "aborted" in str(errors[0])


def test_an_idle_child_exits_and_the_next_load_spawns_another(tmp_path: Path) -> None:
    model, _ = _model_dir(tmp_path)
    loader = _loader(tmp_path, idle_exit_s=0.5)
    try:
        assert loader.prepare(_request(model), timeout_s=120)["kind"] == "bundle"
        first = loader.pid
        deadline = time.monotonic() + 30
        while loader.pid is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert loader.pid is None, "the idle child should have exited"
        shutil.rmtree(tmp_path / "cache")
        assert loader.prepare(_request(model, 2), timeout_s=120)["kind"] == "bundle"
        assert loader.pid not in (None, first)
    finally:
        loader.close()


def test_the_settings_travel_down_the_pipe_not_the_command_line(
    child: LoaderChild, tmp_path: Path
) -> None:
    child.start()
    assert child.pid is not None
    with open(f"/proc/{child.pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert not any(b"sqlite" in a or b"tracking_uri" in a for a in argv)


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux's")
@pytest.mark.parametrize("sched_idle", [True, False])
def test_the_child_runs_under_sched_idle_unless_told_not_to(
    tmp_path: Path, sched_idle: bool
) -> None:
    loader = LoaderChild(
        ChildConfig(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            cache_dir=tmp_path / "cache",
            nice=0,
            sched_idle=sched_idle,
        )
    )
    try:
        model, _ = _model_dir(tmp_path, as_bundle=False)
        # an answered request: the child has read its settings and applied them
        assert loader.prepare(_request(model), timeout_s=120)["kind"] == "pyfunc"
        assert loader.pid is not None
        want = os.SCHED_IDLE if sched_idle else os.SCHED_OTHER
        assert os.sched_getscheduler(loader.pid) == want
    finally:
        loader.close()
