"""Training-side helpers that do not need an MLflow server."""

from __future__ import annotations

from pathlib import Path

from bluegreen.model.training import FitOutput, retime_inference


def test_logging_an_old_fit_measures_inference_with_this_runtime(saved_dir: Path) -> None:
    stale = {"infer_single_us_median": 1e9, "infer_batch_us_per_text": 1e9, "test_macro_f1": 0.5}
    fit = FitOutput(saved_dir.parent, stale, {}, [])
    again = retime_inference(fit)
    assert 0 < again.metrics["infer_single_us_median"] < 1e5
    assert 0 < again.metrics["infer_batch_us_per_text"] < 1e5
    assert again.metrics["test_macro_f1"] == 0.5  # quality is the fit's, not re-measured
    assert fit.metrics["infer_single_us_median"] == 1e9  # the loaded fit is left as it was
