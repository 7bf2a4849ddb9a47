"""Logging the compiled ensemble to MLflow, registering it and moving aliases.

The pyfunc object is pickled by reference to a runtime package logged with the model
(``code_paths``): the runtime modules are copied into a package whose name carries a hash of
their source (``bluegreen_sentiment_rt_<hash>``), so

* loading needs no ``bluegreen`` install, and an installed ``bluegreen`` never shadows or is
  shadowed by the logged code (different top-level name);
* two versions with different runtime code can be loaded side by side in one process (blue and
  green slots); versions with identical code share one module.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import bundle
from .labels import LABELS

RUNTIME_MODULES = (
    "labels.py", "textfeat.py", "kernels.py", "charcnn.py", "cascade.py", "pages.py",
    "inference.py",
)  # fmt: skip
PACKAGE_PREFIX = "bluegreen_sentiment_rt_"
MODEL_ARTIFACT_PATH = "model"
PRODUCTION_METRIC = "test_macro_f1"


def runtime_requirements() -> list[str]:
    """Exact pins of what loading and serving the model needs (passed as ``pip_requirements``)."""
    from importlib.metadata import version

    runtime = ("mlflow", "numpy", "scipy", "cachetools", "pandas", "numba")
    return [f"{p}=={version(p)}" for p in runtime]


def runtime_package_name() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in RUNTIME_MODULES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return PACKAGE_PREFIX + h.hexdigest()[:12]


@contextmanager
def runtime_package() -> Iterator[tuple[Path, Any]]:
    """Copy the runtime modules into a content-hashed package; yield (its dir, runtime module)."""
    here = Path(__file__).resolve().parent
    name = runtime_package_name()
    with tempfile.TemporaryDirectory(prefix="bg-rt-") as tmp:
        pkg = Path(tmp) / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(
            '"""Inference runtime of bluegreen.model, logged with the model."""\n',
            encoding="utf-8",
        )
        for mod in RUNTIME_MODULES:
            shutil.copyfile(here / mod, pkg / mod)
        if f"{name}.inference" in sys.modules:
            module = sys.modules[f"{name}.inference"]
        else:
            sys.path.insert(0, tmp)
            try:
                module = importlib.import_module(f"{name}.inference")
            finally:
                sys.path.remove(tmp)
        yield pkg, module


def signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("double", label) for label in LABELS]),
    )


def log_ensemble(
    compiled_dir: Path, input_texts: list[str], smoke_set: Sequence[tuple[str, str]] = ()
) -> Any:
    """Log the pyfunc model (inside an active run). Returns MLflow's ``ModelInfo``.

    ``compiled_dir`` (``CompiledEnsemble.save``'s compressed form) is logged as a data-only
    bundle of format 2: its serving arrays, with a manifest (``bundle.write_manifest``). The
    ``MLmodel`` metadata names it, so bluegreen serves it without unpickling anything, and maps
    it as it lies, while plain ``mlflow.pyfunc.load_model`` still works for everyone else. The
    manifest's sha256 is on ``ModelInfo.metadata`` for :func:`register` to record in the
    registry. ``smoke_set`` ships inside the bundle (``smoke.tsv``, under the manifest): the
    server checks these cases on every load of this version, beside its own golden set."""
    import mlflow

    from .inference import CompiledEnsemble

    pd = importlib.import_module("pandas")
    with (
        tempfile.TemporaryDirectory(prefix="bg-bundle-") as tmp,
        runtime_package() as (pkg_dir, module),
        warnings.catch_warnings(),
    ):
        bundle_dir = CompiledEnsemble.load(compiled_dir).save_prepared(
            Path(tmp) / compiled_dir.name, tables=False
        )
        if smoke_set:
            bundle.write_smoke_set(bundle_dir, smoke_set)
        manifest = bundle.write_manifest(bundle_dir)
        # the type-hint based signature inference does not apply: we pass a signature
        warnings.filterwarnings("ignore", message=".*type hint.*", category=UserWarning)
        model = module.EnsembleSentimentModel()
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT_PATH,
            python_model=model,
            artifacts={module.EnsembleSentimentModel.ARTIFACT_KEY: str(bundle_dir)},
            code_paths=[str(pkg_dir)],
            pip_requirements=runtime_requirements(),
            signature=signature(),
            input_example=pd.DataFrame({"text": input_texts}),
            metadata={
                bundle.FORMAT_KEY: bundle.FORMAT,
                bundle.BUNDLE_PATH_KEY: f"artifacts/{bundle_dir.name}",
                bundle.MANIFEST_TAG: manifest,
            },
        )


def register(model_uri: str, model_name: str, tags: dict[str, str] | None = None) -> int:
    import mlflow
    from mlflow import MlflowClient

    mv = mlflow.register_model(model_uri, model_name, tags=tags or None)
    client = MlflowClient()
    version = int(mv.version)
    client.update_model_version(
        model_name, str(version), description="bluegreen ensemble (char/word tf-idf LR + NB-LR)"
    )
    return version


def set_alias(model_name: str, alias: str, version: int) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(model_name, alias, str(version))


def current_alias_metric(
    model_name: str, alias: str, metric: str = PRODUCTION_METRIC
) -> float | None:
    """The metric of the version the alias points at (None when no alias or no metric)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model_name, alias)
    except MlflowException:
        return None
    tag = (mv.tags or {}).get(metric)
    if tag is not None:
        return float(tag)
    if mv.run_id:
        value = client.get_run(mv.run_id).data.metrics.get(metric)
        return None if value is None else float(value)
    return None
