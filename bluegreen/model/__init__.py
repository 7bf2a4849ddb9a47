"""The sentiment ensemble: a plain MLflow model + training package (imports nothing from the
server). Importing this package is cheap; heavy names load on first use.

Public API::

    LABELS                       # ("부정", "중립/복합", "긍정"): output column order
    EnsembleSentimentModel       # mlflow.pyfunc.PythonModel; predict_texts() fast path
    CompiledEnsemble             # the folded linear ensemble behind it
    train_and_log(...)           # -> TrainResult(run_id, version, metrics, ...)
    bootstrap_default_model(tracking_uri, model_name, alias, data_path=None) -> int
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .labels import LABELS

if TYPE_CHECKING:
    from .inference import CompiledEnsemble, EnsembleSentimentModel
    from .training import TrainResult, bootstrap_default_model, train_and_log

__all__ = [
    "LABELS",
    "CompiledEnsemble",
    "EnsembleSentimentModel",
    "TrainResult",
    "bootstrap_default_model",
    "train_and_log",
]

_LAZY = {
    "CompiledEnsemble": "inference",
    "EnsembleSentimentModel": "inference",
    "TrainResult": "training",
    "bootstrap_default_model": "training",
    "train_and_log": "training",
}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{mod}"), name)
