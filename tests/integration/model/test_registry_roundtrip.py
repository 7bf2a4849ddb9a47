"""Train a small ensemble against a real `mlflow server`, register it, and load the version in
fresh Python processes (with and without an importable `bluegreen`).

Uses the session `mlflow_server` and per-test `model_name` fixtures of tests/integration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bluegreen.model import LABELS, data

pytestmark = pytest.mark.integration

LOADER = r"""
import json, sys

class BlockBluegreen:
    def find_spec(self, name, path=None, target=None):
        if name == "bluegreen" or name.startswith("bluegreen."):
            raise ImportError("bluegreen is blocked in this process")
        return None

uri, mode = sys.argv[1], sys.argv[2]
if mode == "without-bluegreen":
    sys.meta_path.insert(0, BlockBluegreen())
else:
    import bluegreen.model  # an installed bluegreen must not disturb the logged code
import mlflow.pyfunc, pandas as pd

texts = ["정말 최고의 영화 강력 추천", "최악이다 돈 아까워", "", "🙂"]
model = mlflow.pyfunc.load_model(uri)
frame = model.predict(pd.DataFrame({"text": texts}))
python_model = model.unwrap_python_model()
fast = python_model.predict_texts(texts)
print(json.dumps({
    "columns": list(frame.columns),
    "pyfunc": frame.to_numpy().tolist(),
    "fast": fast.tolist(),
    "labels": list(python_model.labels),
    "module": type(python_model).__module__,
    "bluegreen_loaded": "bluegreen" in sys.modules,
    "tier": getattr(python_model.compiled, "accurate", None) is not None,
}, ensure_ascii=False))
"""


def _write_subset(src: Path, dst: Path, n: int) -> Path:
    import gzip

    with gzip.open(src, "rt", encoding="utf-8") as f:
        lines = f.read().splitlines()
    dst.write_text("\n".join(lines[: n + 1]) + "\n", encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def small_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("data")
    src = data.default_data_dir()
    return (
        _write_subset(src / data.SAMPLE_TRAIN_FILE, d / "train.tsv", 4000),
        _write_subset(src / data.SAMPLE_TEST_FILE, d / "test.tsv", 800),
    )


def _load_in_fresh_process(uri: str, tracking_uri: str, mode: str, cwd: Path) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [sys.executable, "-c", LOADER, uri, mode],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_train_register_and_load_in_fresh_process(
    mlflow_server, model_name: str, small_files, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    from bluegreen.model import train_and_log

    result = train_and_log(
        small_files, seed=1, tracking_uri=mlflow_server.url, register=True,
        model_name=model_name, alias="production", profile="small",
    )  # fmt: skip
    assert result.version == 1
    assert result.promoted
    assert result.metrics["test_macro_f1"] > 0.4
    client = MlflowClient(mlflow_server.url)
    assert client.get_model_version_by_alias(model_name, "production").version == "1"
    arts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"smoke.tsv", "model_card.md", "confusion_matrix.png"} <= arts

    uri = f"models:/{model_name}/{result.version}"
    for mode in ("without-bluegreen", "with-bluegreen"):
        got = _load_in_fresh_process(uri, mlflow_server.url, mode, tmp_path)
        assert got["columns"] == list(LABELS) == got["labels"]
        assert got["module"].startswith("bluegreen_sentiment_rt_")
        assert got["bluegreen_loaded"] is (mode == "with-bluegreen")
        for row_p, row_f in zip(got["pyfunc"], got["fast"], strict=True):
            assert abs(sum(row_p) - 1) < 1e-9
            assert all(abs(a - b) < 1e-6 for a, b in zip(row_p, row_f, strict=True))
        assert got["fast"][0][2] > got["fast"][0][0]  # clear positive beats negative
        assert got["fast"][1][0] > got["fast"][1][2]


def test_a_cascade_model_serves_its_accurate_tier_from_plain_pyfunc(
    mlflow_server, model_name: str, small_files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The full profile's shape (CNN + cascade), trained small: plain ``mlflow.pyfunc`` in a
    process without bluegreen returns the cascade, not the fast path alone."""
    pytest.importorskip("torch")
    import attrs
    import mlflow.pyfunc

    from bluegreen.model import train_and_log, training
    from bluegreen.model.cascade_fit import CascadeConfig
    from bluegreen.model.charcnn_train import CNNConfig

    cnn = CNNConfig(dim=8, widths=(2, 3), filters=8, hidden=8, epochs=1, threads=1)
    profile = attrs.evolve(training.PROFILES["small"], cnn=cnn,
                           cascade=CascadeConfig(folds=3, share=0.5))  # fmt: skip
    monkeypatch.setitem(training.PROFILES, "small", profile)
    result = train_and_log(small_files, seed=1, tracking_uri=mlflow_server.url, register=True,
                           model_name=model_name, profile="small")  # fmt: skip
    assert result.metrics["cascade_share"] == 0.5
    uri = f"models:/{model_name}/{result.version}"
    got = _load_in_fresh_process(uri, mlflow_server.url, "without-bluegreen", tmp_path)
    assert got["tier"] is True
    texts = ["정말 최고의 영화 강력 추천", "최악이다 돈 아까워", "", "🙂"]
    here = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    tier = here.compiled.accurate
    assert tier is not None
    assert tier.threshold > 0.0
    expected = here.predict_texts(texts)
    for row_p, row_f, row_e in zip(got["pyfunc"], got["fast"], expected, strict=True):
        assert all(abs(a - b) < 1e-6 for a, b in zip(row_p, row_f, strict=True))
        assert all(abs(a - b) < 1e-6 for a, b in zip(row_p, row_e, strict=True))


@pytest.mark.slow
def test_promote_if_better_keeps_alias_when_not_better(
    mlflow_server, model_name: str, small_files
) -> None:
    from bluegreen.model import train_and_log

    kw = {"seed": 1, "tracking_uri": mlflow_server.url, "register": True, "model_name": model_name,
              "alias": "production", "profile": "small"}  # fmt: skip
    first = train_and_log(small_files, **kw)  # type: ignore[arg-type]
    second = train_and_log(small_files, promote_if_better=True, **kw)  # type: ignore[arg-type]
    assert first.metrics["test_macro_f1"] == second.metrics["test_macro_f1"]  # reproducible
    assert second.version == first.version + 1
    assert not second.promoted
