"""``train`` and ``fit`` commands of the model package.

train [--data DIR] [--sample N] [--seed S] [--register] [--alias NAME]
      [--promote-if-better] [--profile small|full] [--model-name NAME]
      [--tracking-uri URI] [--test-sample N] [--from-fit DIR]

``bluegreen train`` (``bluegreen/cli/train.py``) parses with :func:`build_parser`, giving the
server's settings as defaults (registry, model name, data), and calls :func:`run`; this module
itself knows nothing of the server, so ``python -m bluegreen.model.cli`` works without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def build_parser(train_defaults: Mapping[str, Any] | None = None) -> argparse.ArgumentParser:
    """`train_defaults`: defaults of the ``train`` options, by destination name
    (``tracking_uri``, ``model_name``, ``data``), over the ones below."""
    ap = argparse.ArgumentParser(prog="bluegreen", description="bluegreen model tools")
    sub = ap.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train the ensemble, log it to MLflow, optionally register")
    t.add_argument(
        "--data",
        type=Path,
        default=None,
        help="directory with train.tsv.gz/test.tsv.gz (default: the shipped sample)",
    )
    t.add_argument("--sample", type=int, default=None, help="stratified number of train rows")
    t.add_argument("--test-sample", type=int, default=None, help="number of test rows")
    t.add_argument("--seed", type=int, default=42)
    t.add_argument("--profile", choices=("small", "full"), default="full")
    t.add_argument("--register", action="store_true")
    t.add_argument("--alias", default=None, help="registry alias to point at the new version")
    t.add_argument(
        "--promote-if-better",
        action="store_true",
        help="move --alias only if test macro-F1 beats the current alias holder",
    )
    t.add_argument("--model-name", default="ensemble-sentiment-model")
    t.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (bluegreen train: the registry bluegreen serve follows; "
        "python -m bluegreen.model.cli: MLFLOW_TRACKING_URI / MLflow's default)",
    )
    t.add_argument(
        "--from-fit",
        type=Path,
        default=None,
        help="log a directory written by `fit` instead of training again",
    )
    t.set_defaults(**(train_defaults or {}))
    f = sub.add_parser("fit", help="train + evaluate without MLflow; write the result to --out")
    f.add_argument("--data", type=Path, default=None)
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--sample", type=int, default=None)
    f.add_argument("--test-sample", type=int, default=None)
    f.add_argument("--seed", type=int, default=42)
    f.add_argument("--profile", choices=("small", "full"), default="full")
    f.add_argument("--jobs", type=int, default=1, help="members fitted in parallel threads")
    return ap


_SUMMARY = (
    "test_binary_acc",
    "test_macro_f1",
    "test_acc3",
    "val_macro_f1",
    "train_seconds",
    "infer_single_us_median",
    "infer_batch_us_per_text",
    "artifact_mb",
)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``train`` or ``fit`` command."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "fit":
        from .training import fit_and_evaluate

        fit = fit_and_evaluate(
            args.data,
            args.out,
            sample=args.sample,
            seed=args.seed,
            profile=args.profile,
            test_sample=args.test_sample,
            n_jobs=args.jobs,
        )
        print(json.dumps({k: round(v, 4) for k, v in sorted(fit.metrics.items())}, indent=1))
        return 0
    if args.command == "train":
        if (args.alias or args.promote_if_better) and not args.register:
            print("--alias/--promote-if-better need --register", file=sys.stderr)
            return 2
        from .training import load_fit_output, log_fit_output, retime_inference, train_and_log

        if args.from_fit is not None:
            result = log_fit_output(
                retime_inference(load_fit_output(args.from_fit)), tracking_uri=args.tracking_uri,
                register=args.register, model_name=args.model_name, alias=args.alias,
                promote_if_better=args.promote_if_better,
            )  # fmt: skip
        else:
            result = train_and_log(
                args.data,
                sample=args.sample,
                seed=args.seed,
                tracking_uri=args.tracking_uri,
                register=args.register,
                model_name=args.model_name,
                alias=args.alias,
                promote_if_better=args.promote_if_better,
                profile=args.profile,
                test_sample=args.test_sample,
            )
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "version": result.version,
                    "promoted": result.promoted,
                    "model_uri": result.model_uri,
                    "metrics": {
                        k: round(result.metrics[k], 4) for k in _SUMMARY if k in result.metrics
                    },
                },
                indent=1,
            )
        )
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    raise SystemExit(main())
