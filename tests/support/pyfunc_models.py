"""Small real pyfunc models for integration tests, logged with `code_paths` so the server
loads them from the artifact, not from the test tree.

Behaviour is chosen by `model_config`: mode good | raise | nan | swapped | slow |
traffic_error | traffic_slow, and `load_hang_s` makes `load_context` hang. The `traffic_*`
modes pass smoke (they behave on the smoke texts listed in `safe_texts`) and misbehave on
real traffic: the canary must catch them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

LABELS = ("부정", "중립/복합", "긍정")
POSITIVE = ("최고", "재밌", "재미있", "감동", "추천", "명작", "꿀잼", "훌륭")
NEGATIVE = ("최악", "지루", "재미없", "낭비", "쓰레기", "노잼", "엉망", "아깝")


class KeywordSentiment(mlflow.pyfunc.PythonModel):  # type: ignore[misc]
    labels = LABELS

    def load_context(self, context: Any) -> None:
        config = dict(context.model_config or {})
        self.mode = str(config.get("mode", "good"))
        self.delay_s = float(config.get("delay_s", 0.0))
        self.safe = frozenset(config.get("safe_texts", ()))
        self.ballast = np.ones(int(config.get("ballast_mb", 0)) * 131072)  # memory, for leaks
        time.sleep(float(config.get("load_hang_s", 0.0)))  # a load_context that never returns

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        traffic = any(t not in self.safe for t in texts)
        if self.mode == "raise" or (self.mode == "traffic_error" and traffic):
            raise RuntimeError("model exploded")
        if self.mode == "slow" or (self.mode == "traffic_slow" and traffic):
            time.sleep(self.delay_s)
        out = np.empty((len(texts), 3))
        for i, text in enumerate(texts):
            logits = np.array(
                [sum(w in text for w in NEGATIVE), 0.5, sum(w in text for w in POSITIVE)],
                dtype=np.float64,
            )
            e = np.exp(logits - logits.max())
            out[i] = e / e.sum()
        if self.mode == "nan":
            out[:, 0] = np.nan
        if self.mode == "swapped":
            out = out[:, ::-1].copy()
        return out

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        probs = self.predict_texts([str(t) for t in model_input["text"]])
        return pd.DataFrame(probs, columns=list(LABELS))
