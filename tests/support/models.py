"""Put real versions into a real MLflow registry: good, misbehaving, corrupt or missing ones."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bluegreen.serving.smoke import GOLDEN_SET, ODD_INPUTS

SUPPORT = Path(__file__).resolve().parent
PYFUNC_MODULE = "pyfunc_models"
MODEL_NAME = "ensemble-sentiment-model"
SAFE_TEXTS = [text for text, _ in GOLDEN_SET] + list(ODD_INPUTS)
"""Texts the smoke gate uses; `traffic_*` test models behave on these only."""

WRONG_SMOKE_SET = (
    ("최고의 영화! 정말 감동적이고 재밌어요", "부정"),
    ("인생 영화입니다 강력 추천합니다", "부정"),
    ("정말 최악의 영화. 돈이 아깝다", "긍정"),
)
"""Unambiguous reviews with the opposite label: a smoke set no sensible model passes."""


def keyword_sentiment_class() -> Any:
    """The test pyfunc model's class, imported from its file under the top-level name
    ``pyfunc_models``: the name its ``code_paths`` copy has in the server, so the pickled model
    refers to a module the server can import. Loaded by file location, not by a sys.path edit."""
    module = sys.modules.get(PYFUNC_MODULE)
    if module is None:
        spec = importlib.util.spec_from_file_location(PYFUNC_MODULE, SUPPORT / "pyfunc_models.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[PYFUNC_MODULE] = module
        spec.loader.exec_module(module)
    return module.KeywordSentiment


class TestRegistry:
    """Registers versions of the test pyfunc model in a real tracking server."""

    __test__ = False  # not a pytest class

    def __init__(self, tracking_uri: str, model_name: str = MODEL_NAME) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        if mlflow.get_experiment_by_name("bluegreen-tests") is None:
            mlflow.create_experiment("bluegreen-tests")
        mlflow.set_experiment("bluegreen-tests")
        self._sources: dict[str, tuple[str, str, str | None]] = {}

    def _log(self, config: dict[str, Any]) -> tuple[str, str, str | None]:
        """Log (once per config) and return (source, run_id, model_id)."""
        import mlflow

        key = repr(sorted(config.items()))
        if key in self._sources:
            return self._sources[key]
        with mlflow.start_run() as run:
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=keyword_sentiment_class()(),
                code_paths=[str(SUPPORT / "pyfunc_models.py")],
                pip_requirements=["mlflow", "numpy", "pandas"],
                model_config=config,
            )
        self._sources[key] = (info.model_uri, run.info.run_id, info.model_id)
        return self._sources[key]

    def register(
        self, mode: str = "good", *, alias: str | None = "production", **config: Any
    ) -> int:
        """Register a new version of the keyword model; point `alias` at it."""
        config = {"mode": mode, "safe_texts": SAFE_TEXTS, **config}
        source, run_id, model_id = self._log(config)
        return self._create(source, run_id, alias, model_id)

    def _create(
        self, source: str, run_id: str | None, alias: str | None, model_id: str | None = None
    ) -> int:
        with _Quiet(), contextlib.suppress(Exception):  # already exists
            self.client.create_registered_model(self.model_name)
        mv = self.client.create_model_version(
            self.model_name, source=source, run_id=run_id, model_id=model_id
        )
        version = int(mv.version)
        if alias:
            self.set_alias(version, alias)
        return version

    def set_alias(self, version: int, alias: str = "production") -> None:
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def alias_version(self, alias: str = "production") -> int:
        return int(self.client.get_model_version_by_alias(self.model_name, alias).version)

    def tags(self, version: int) -> dict[str, str]:
        return dict(self.client.get_model_version(self.model_name, str(version)).tags)

    def register_corrupt(self, *, alias: str | None = "production") -> int:
        """A version whose pickled python model is garbage bytes."""
        import mlflow

        sys_path_model = Path(tempfile.mkdtemp()) / "model"
        mlflow.pyfunc.save_model(
            str(sys_path_model),
            python_model=keyword_sentiment_class()(),
            code_paths=[str(SUPPORT / "pyfunc_models.py")],
            pip_requirements=["mlflow"],
        )
        for pickled in sys_path_model.glob("*.pkl"):
            pickled.write_bytes(b"\x80\x05 this is not a pickle")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(sys_path_model), "model")
            source = f"{run.info.artifact_uri}/model"
        shutil.rmtree(sys_path_model.parent, ignore_errors=True)
        return self._create(source, run.info.run_id, alias)

    def register_altered_bundle(
        self, source: str, how: str, *, alias: str | None = "production"
    ) -> int:
        """Register (and point `alias` at) an altered copy of the ensemble at `source`."""
        new_source, run_id = self.log_altered_bundle(source, how)
        return self._create(new_source, run_id, alias)

    def log_altered_bundle(self, source: str, how: str) -> tuple[str, str]:
        """Log an altered copy of the ensemble version at `source`; return (source, run_id)
        for `_create`. ``tamper`` flips bytes of ``packed.npy`` after its manifest was written
        (an integrity failure); ``nan`` gives it a NaN bias, so NaN probabilities, behind a
        consistent manifest (it loads and fails smoke); ``wrong_smoke`` ships a smoke set of
        its own that the model fails (`WRONG_SMOKE_SET`), behind a consistent manifest: the
        golden set alone would pass it."""
        import mlflow
        import numpy as np
        import yaml

        from bluegreen.model import bundle

        with tempfile.TemporaryDirectory(prefix="altered-") as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=tmp))
            model_dir = next(p.parent for p in local.rglob("MLmodel"))
            ensemble = next(p.parent for p in model_dir.rglob(bundle.MANIFEST))
            if how == "tamper":
                packed = ensemble / "packed.npy"
                data = bytearray(packed.read_bytes())
                data[len(data) // 2] ^= 0xFF
                packed.write_bytes(bytes(data))
            elif how in {"nan", "wrong_smoke"}:
                if how == "nan":
                    bias = ensemble / "bias.npy"
                    np.save(bias, np.full_like(np.load(bias), np.nan), allow_pickle=False)
                else:
                    bundle.write_smoke_set(ensemble, WRONG_SMOKE_SET)
                manifest = bundle.write_manifest(ensemble)
                mlmodel = model_dir / "MLmodel"
                spec = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
                spec["metadata"][bundle.MANIFEST_TAG] = manifest
                mlmodel.write_text(yaml.safe_dump(spec), encoding="utf-8")
            else:
                raise ValueError(how)
            with mlflow.start_run() as run:
                mlflow.log_artifacts(str(model_dir), "model")
                return f"{run.info.artifact_uri}/model", run.info.run_id

    def register_missing(self, *, alias: str | None = "production") -> int:
        """A version whose artifacts do not exist."""
        import mlflow

        with mlflow.start_run() as run:
            source = f"{run.info.artifact_uri}/no-such-model"
        return self._create(source, run.info.run_id, alias)


class _Quiet:
    def __enter__(self) -> None:
        import logging

        self._level = logging.getLogger("mlflow").level
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)

    def __exit__(self, *exc: object) -> None:
        import logging

        logging.getLogger("mlflow").setLevel(self._level)


class EnsembleVersions:
    """Versions of the real ensemble (a data-only bundle), each logged as its own artifact
    copy, so a test may alter one version's files without touching any other."""

    def __init__(self, fit: Any, tracking_uri: str, model_name: str) -> None:
        self.fit = fit
        self.tracking_uri = tracking_uri
        self.model_name = model_name

    def register(self, *, alias: str | None = "production") -> int:
        from bluegreen.model.training import log_fit_output

        result = log_fit_output(
            self.fit, tracking_uri=self.tracking_uri, register=True,
            model_name=self.model_name, alias=alias,
        )  # fmt: skip
        assert result.version is not None
        return result.version

    def bundle_files(self, version: int, artifacts_root: Path) -> list[Path]:
        """The bundle's files of `version` as the server's artifact store holds them on disk
        (`mlflow server --artifacts-destination artifacts_root`)."""
        from mlflow import MlflowClient

        client = MlflowClient(self.tracking_uri, registry_uri=self.tracking_uri)
        mv = client.get_model_version(self.model_name, str(version))
        model_id = mv.model_id or str(mv.source).removeprefix("models:/")
        location = str(client.get_logged_model(model_id).artifact_location)
        relative = location.split("mlflow-artifacts:", 1)[1].lstrip("/")
        bundle_dir = artifacts_root / relative / "artifacts" / "ensemble"
        found = sorted(p for p in bundle_dir.iterdir() if p.is_file())
        assert found, f"no bundle files of version {version} in {bundle_dir}"
        return found
