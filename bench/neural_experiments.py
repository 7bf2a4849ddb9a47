"""Frontier experiments for the accurate tier (issue 14): the character CNN alone, and stacked
with the linear ensemble's logits, on the movie-disjoint test split.

Uses the full profile's fit/validation split (so a linear fit written by
``python -m bluegreen.model.cli fit --profile full`` holds out the same validation rows), trains
the CNN on (a sample of) the fit rows, and saves its validation and test outputs so stacking and
cascade choices can be tried without training again::

    nice -n 15 python bench/neural_experiments.py --rows 60000 --epochs 1 --out /tmp/nn/a
    nice -n 15 python bench/neural_experiments.py --stack /tmp/nn/a --linear-fit /tmp/linfit

Prints one JSON line per result (appended to ``--log``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import attrs
import numpy as np

from bluegreen.model import data as data_mod
from bluegreen.model.evaluate import all_metrics, tune_binary_offset

ROOT = Path(__file__).resolve().parent.parent


def _report(log_path: Path | None, **fields: object) -> None:
    line = json.dumps(fields, default=float)
    print(line, flush=True)
    if log_path is not None:
        with log_path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")


def _split(seed: int) -> tuple[data_mod.Dataset, data_mod.Dataset, data_mod.Dataset]:
    from bluegreen.model.training import PROFILES

    train_path, test_path = data_mod.resolve_files(ROOT.parent / "shared" / "data" / "nsmc")
    train = data_mod.read_dataset(train_path)
    test = data_mod.read_dataset(test_path)
    fit_idx, val_idx = data_mod.train_val_split(train.labels, PROFILES["full"].val_fraction, seed)
    return train.subset(fit_idx), train.subset(val_idx), test


def _metrics(
    z: np.ndarray, y: np.ndarray, z_val: np.ndarray, y_val: np.ndarray, seed: int
) -> dict[str, float]:
    off = tune_binary_offset(z_val, y_val, seed)
    m = all_metrics(z, y, seed, off)
    return {k: round(v, 4) for k, v in m.items()} | {"offset": off}


def train(args: argparse.Namespace) -> None:
    from bluegreen.model.charcnn_train import CNNConfig, train_charcnn

    fit, val, test = _split(args.seed)
    if args.rows and args.rows < len(fit):
        fit = fit.subset(data_mod.stratified_sample(fit.ratings, args.rows, args.seed))
    cfg = CNNConfig(
        dim=args.dim, widths=tuple(args.widths), filters=args.filters, hidden=args.hidden,
        epochs=args.epochs, batch=args.batch, lr=args.lr, dropout=args.dropout,
        rating_weight=args.rating_weight, threads=args.threads, max_len=args.max_len,
    )  # fmt: skip

    def progress(stage: str, done: float, eta: float) -> None:
        print(f"  {stage}: {done:.1%}, eta {eta:.0f}s", file=sys.stderr, flush=True)

    res = train_charcnn(fit.texts, fit.labels, fit.ratings, cfg, args.seed, progress=progress)
    model = res.model
    from bluegreen.model.inference import _load_kernels

    model.use_kernels(_load_kernels())
    t0 = time.perf_counter()
    o_val = model.outputs_of(val.texts)
    o_test = model.outputs_of(test.texts)
    infer_us = (time.perf_counter() - t0) / (len(val) + len(test)) * 1e6
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "outputs.npz", val=o_val, test=o_test)
    np.savez_compressed(out / "model.npz", **model.arrays())
    zv, zt = o_val[:, :3].astype(np.float64), o_test[:, :3].astype(np.float64)
    _report(
        args.log, kind="cnn", config=attrs.asdict(cfg), rows=len(fit),
        train_seconds=round(res.seconds, 1), history=res.history,
        infer_us_per_text=round(infer_us, 1),
        val=_metrics(zv, val.labels, zv, val.labels, args.seed),
        test=_metrics(zt, test.labels, zv, val.labels, args.seed),
    )  # fmt: skip


def stack(args: argparse.Namespace) -> None:
    from sklearn.linear_model import LogisticRegression

    from bluegreen.model.inference import CompiledEnsemble

    _, val, test = _split(args.seed)
    ens = CompiledEnsemble.load(Path(args.linear_fit) / "ensemble")
    fv, ft = ens.logits(val.texts), ens.logits(test.texts)
    o = np.load(Path(args.stack) / "outputs.npz")
    ov, ot = o["val"].astype(np.float64), o["test"].astype(np.float64)
    _report(args.log, kind="linear", val=_metrics(fv, val.labels, fv, val.labels, args.seed),
            test=_metrics(ft, test.labels, fv, val.labels, args.seed))  # fmt: skip
    for name, cols in (("cls", slice(0, 3)), ("cls+score", slice(0, 4))):
        xv = np.hstack([fv - fv.mean(1, keepdims=True), ov[:, cols]])
        xt = np.hstack([ft - ft.mean(1, keepdims=True), ot[:, cols]])
        lr = LogisticRegression(C=1.0, max_iter=2000).fit(xv, val.labels)
        zv, zt = lr.decision_function(xv), lr.decision_function(xt)
        _report(args.log, kind="stack", features=name,
                val_in_sample=_metrics(zv, val.labels, zv, val.labels, args.seed),
                test=_metrics(zt, test.labels, zv, val.labels, args.seed))  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/bg_nn/exp")
    p.add_argument("--log", type=Path, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rows", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--dim", type=int, default=48)
    p.add_argument("--widths", type=int, nargs="+", default=[2, 3, 4, 5])
    p.add_argument("--filters", type=int, default=96)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--rating-weight", type=float, default=1.0)
    p.add_argument("--max-len", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stack", default=None, help="an --out directory: stack its outputs")
    p.add_argument("--linear-fit", default="/tmp/bg_nn/linfit")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.stack:
        stack(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
