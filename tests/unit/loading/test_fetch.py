"""`fetch_bundle` on a real local artifact store (``file://``), and `Pace` on a fake clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from bluegreen.loading.fetch import Pace, fetch_bundle
from bluegreen.model import bundle


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pace_holds_the_rate_chunk_by_chunk() -> None:
    clock = _Clock()
    pace = Pace(1000.0, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pace(500)  # each half-second's worth arrives at once
    assert clock.slept == [0.5, 0.5, 0.5]
    assert pace.slept_s == pytest.approx(1.5)


def test_pace_does_not_pay_back_a_stall_with_a_burst() -> None:
    clock = _Clock()
    pace = Pace(1000.0, clock=clock, sleep=clock.sleep)
    pace(500)
    clock.now += 10.0  # upstream stalled for ten seconds
    pace(500)
    pace(500)
    assert clock.slept == [0.5, 0.5, 0.5]


def test_rate_zero_never_sleeps() -> None:
    clock = _Clock()
    pace = Pace(0.0, clock=clock, sleep=clock.sleep)
    pace(10**9)
    assert clock.slept == []


def _store(tmp_path: Path) -> tuple[object, Path, dict[str, object]]:
    model = tmp_path / "store" / "model"
    ensemble = model / "artifacts" / "ensemble"
    ensemble.mkdir(parents=True)
    (ensemble / "a.bin").write_bytes(b"a" * 3000)
    (ensemble / "sub").mkdir()
    (ensemble / "sub" / "b.txt").write_text("둘", encoding="utf-8")
    bundle.write_manifest(ensemble)
    (ensemble / "extra.bin").write_bytes(b"not in the manifest")
    manifest = ensemble / bundle.MANIFEST
    return get_artifact_repository(model.as_uri()), manifest, bundle.read_manifest(manifest)


def test_the_files_the_manifest_lists_arrive_verified_and_nothing_else(tmp_path: Path) -> None:
    repo, manifest, body = _store(tmp_path)
    clock = _Clock()
    root = fetch_bundle(
        repo, "artifacts/ensemble", manifest, body, dst=tmp_path / "dst",
        pace=Pace(1000.0, clock=clock, sleep=clock.sleep),
    )  # fmt: skip
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "a.bin", bundle.MANIFEST, "sub/b.txt",
    ]  # fmt: skip
    assert bundle.verify(root)["format"] == bundle.FORMAT
    assert sum(clock.slept) == pytest.approx(3.003)  # 3003 bytes hashed at 1000 B/s


def test_an_altered_file_is_refused(tmp_path: Path) -> None:
    repo, manifest, body = _store(tmp_path)
    (manifest.parent / "a.bin").write_bytes(b"b" * 3000)
    with pytest.raises(bundle.IntegrityError, match=r"a\.bin does not match"):
        fetch_bundle(repo, "artifacts/ensemble", manifest, body, dst=tmp_path / "d", pace=Pace(0))


def test_a_file_larger_than_its_entry_is_refused(tmp_path: Path) -> None:
    repo, manifest, body = _store(tmp_path)
    (manifest.parent / "a.bin").write_bytes(b"a" * 3001)
    with pytest.raises(bundle.IntegrityError, match="larger than the 3000 bytes"):
        fetch_bundle(repo, "artifacts/ensemble", manifest, body, dst=tmp_path / "d", pace=Pace(0))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    repo, manifest, body = _store(tmp_path)
    (manifest.parent / "sub" / "b.txt").unlink()
    with pytest.raises(bundle.IntegrityError, match="missing"):
        fetch_bundle(repo, "artifacts/ensemble", manifest, body, dst=tmp_path / "d", pace=Pace(0))


@pytest.mark.parametrize("name", ["../escape.bin", "/etc/passwd", "sub/../../x", "a\\b"])
def test_a_name_that_leaves_the_bundle_is_refused_before_any_download(
    tmp_path: Path, name: str
) -> None:
    repo, manifest, body = _store(tmp_path)
    forged = {**body, "files": {name: {"size": 1, "sha256": "0" * 64}}}
    manifest.write_text(json.dumps(forged), encoding="utf-8")
    with pytest.raises(bundle.IntegrityError, match="outside the bundle"):
        fetch_bundle(repo, "artifacts/ensemble", manifest, forged, dst=tmp_path / "d", pace=Pace(0))
    assert not (tmp_path / "escape.bin").exists()
