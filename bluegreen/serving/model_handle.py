"""A loaded model version behind one uniform `predict(list[str]) -> probabilities` call."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from bluegreen.serving.contract import LABELS, ContractViolation, check_probabilities


@attrs.frozen
class ModelRef:
    """Which version to load and from where; decided by the control layer, not by serving."""

    model_name: str
    version: int
    uri: str
    run_id: str | None = None
    smoke_set: tuple[tuple[str, str], ...] = ()
    """The version's own (text, expected label) cases, from its `smoke.tsv`: checked on load in
    addition to the golden set."""
    manifest_sha256: str | None = None
    """The bundle manifest's hash the registry recorded (tag): the anchor of its integrity."""


PredictFn = Callable[[Sequence[str]], Any]


@attrs.define(eq=False, weakref_slot=True)
class LoadedModel:
    """One model in memory. `predict` is safe to call from several threads at once."""

    ref: ModelRef
    _predict_fn: PredictFn
    _column_order: tuple[int, ...] | None
    """Permutation from the model's columns to LABELS; None when already in order."""
    fast_path: bool
    keepalive: object = None
    """The object that owns the model's memory; freeing drops it and a weakref proves it."""
    collect_on_free: bool = True
    """Run `gc.collect()` after freeing: a generic pyfunc's load leaves cycles behind (MLflow's
    per-download thread pools), a mapped bundle only reference-counted arrays."""
    uncached_fn: PredictFn | None = None
    """The model without its per-text cache, for timing two versions on the same texts (the
    canary's paired latencies); None when the model has no such entry point."""

    def predict(self, texts: Sequence[str]) -> NDArray[np.float64]:
        return self._finish(self._predict_fn(texts), len(texts))

    def predict_uncached(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Like `predict`, bypassing the model's result cache where it has one."""
        fn = self.uncached_fn if self.uncached_fn is not None else self._predict_fn
        return self._finish(fn(texts), len(texts))

    def _finish(self, raw: Any, n: int) -> NDArray[np.float64]:
        if self._column_order is not None:
            raw = np.asarray(raw)[:, self._column_order]
        return check_probabilities(raw, n)


def _column_order(labels: Sequence[str]) -> tuple[int, ...] | None:
    labels = tuple(str(label) for label in labels)
    if labels == LABELS:
        return None
    if sorted(labels) != sorted(LABELS):
        raise ContractViolation(f"model labels {labels!r} are not {LABELS!r}")
    return tuple(labels.index(label) for label in LABELS)


def wrap_pyfunc(ref: ModelRef, pyfunc_model: Any) -> LoadedModel:
    """Prefer the ensemble's pandas-free fast path; fall back to the generic pyfunc path."""
    python_model: Any = None
    try:
        python_model = pyfunc_model.unwrap_python_model()
    except Exception:
        python_model = None
    fast = getattr(python_model, "predict_texts", None)
    if callable(fast):
        labels = getattr(python_model, "labels", LABELS)
        return LoadedModel(ref, fast, _column_order(labels), True, keepalive=pyfunc_model)

    import pandas as pd  # type: ignore[import-untyped]

    def generic(texts: Sequence[str]) -> NDArray[np.float64]:
        frame = pyfunc_model.predict(pd.DataFrame({"text": list(texts)}))
        if not isinstance(frame, pd.DataFrame):
            raise ContractViolation(f"pyfunc returned {type(frame).__name__}, not a DataFrame")
        order = _column_order(list(frame.columns))
        values: NDArray[np.float64] = frame.to_numpy(dtype=np.float64)
        return values if order is None else values[:, order]

    return LoadedModel(ref, generic, None, False, keepalive=pyfunc_model)


def load_from_registry(ref: ModelRef, scratch_dir: Path) -> LoadedModel:
    """The generic pyfunc path: download `ref.uri` into a private scratch directory, load it
    with `mlflow.pyfunc.load_model` (which unpickles and imports code from the artifact: a
    trust boundary, see `bluegreen.loading.loader`), then delete the files.

    MLflow's own `load_model("models:/...")` downloads into a temp dir that is never removed,
    which leaks disk on every swap; our models read their artifacts into memory in
    `load_context`, so the files are not needed after loading. Blocking: run off the loop.
    """
    import mlflow

    from bluegreen.model.bundle import SMOKE_SET, read_smoke_set

    scratch_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f"v{ref.version}-", dir=scratch_dir))
    # MLflow prepends a model's code_paths dir to sys.path and never removes it: restore it,
    # or sys.path grows on every swap and points into directories we delete below.
    saved_path = list(sys.path)
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(workdir))
        pyfunc_model = mlflow.pyfunc.load_model(local)
        smoke_file = next(Path(local).rglob(SMOKE_SET), None)
        if smoke_file is not None:
            ref = attrs.evolve(ref, smoke_set=read_smoke_set(smoke_file))
        return wrap_pyfunc(ref, pyfunc_model)
    finally:
        sys.path[:] = saved_path
        shutil.rmtree(workdir, ignore_errors=True)
