"""Inference cost of the sentiment ensemble, pinned to one CPU core.

Sources (one of):
  --model-uri URI      a registered version (``models:/name/1``, ``models:/name@production``)
                       or an MLflow model directory: measures download + load too
  --ensemble-dir DIR   a saved ``CompiledEnsemble`` directory (no MLflow round trip)
  --synthetic          a full-size ensemble (600k char + 300k word features) with random
                       weights built from the shipped sample: cost does not depend on weights

Measures single-text latency of the served path (median / p99 over distinct texts, so the LRU
cache never hits; cached latency separately), the pyfunc DataFrame path (``--model-uri``), and
batched throughput. A model with an accurate tier is measured as it serves (the cascade); with
``--shares 0,0.2,0.5`` also with the tier routing each share of the measured texts (the
quality/cost frontier's cost side). ``--synthetic-tier`` gives the synthetic model a random
tier of the full profile's CNN size. Prints a markdown table.

    python bench/model_bench.py --tracking-uri sqlite:///db \\
        --model-uri models:/ensemble-sentiment-model/1
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

US = 1e6


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _read_texts(path: Path) -> list[str]:
    import csv
    import gzip

    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [r[4] for r in rows if len(r) == 5]


def _data_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "bluegreen" / "data"


def _texts(n: int) -> list[str]:
    texts = list(dict.fromkeys(_read_texts(_data_dir() / "nsmc_sample_test.tsv.gz")))
    k = 0
    while len(texts) < n:  # distinct variants if more are asked for than the sample has
        texts.append(f"{texts[k]} {k}")
        k += 1
    return texts[:n]


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _cold_load(local: Path) -> str:
    """pyfunc.load_model in a fresh process with an empty numba cache: the first load of a new
    kernel version on a machine (compiles); later loads read the cache."""
    import subprocess
    import sys

    code = (
        "import sys, time, mlflow; t0 = time.perf_counter(); "
        "mlflow.pyfunc.load_model(sys.argv[1]); print(time.perf_counter() - t0)"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        out = subprocess.run(
            [sys.executable, "-c", code, str(local)],
            env=env, capture_output=True, text=True, check=True, timeout=600,
        )  # fmt: skip
    return f"{float(out.stdout.strip().splitlines()[-1]):.2f} s"


def synthetic(seed: int = 0) -> Any:
    """Full-size ensemble with random weights; vocabulary from the shipped training sample."""
    import numpy as np

    from bluegreen.model import textfeat
    from bluegreen.model.inference import CompiledEnsemble

    norms = [textfeat.normalize(t) for t in _read_texts(_data_dir() / "nsmc_sample_train.tsv.gz")]
    _, hashes = textfeat.char_ngram_hashes(norms, 1, 5)
    uniq, cnt = np.unique(hashes, return_counts=True)
    char = np.sort(uniq[np.argsort(-cnt, kind="stable")[:600_000]])
    char = char[char != 0]
    words = sorted({g for t in norms for g in textfeat.word_ngrams(t, 2)})[:300_000]
    n_feat = len(char) + len(words)
    rng = np.random.default_rng(seed)
    return CompiledEnsemble(
        char_hashes=char, char_range=(1, 5), word_keys=words, word_n=2,
        member_names=["char_tfidf_lr", "word_tfidf_lr", "nb_lr"],
        idf=rng.random((3, n_feat)) + 1.0, weights=rng.normal(size=(3, n_feat, 3)),
        bias=np.zeros(3), binary=[False, False, True], sublinear=[True, True, False],
        l2=[True, True, True],
    )  # fmt: skip


def synthetic_tier(compiled: Any, share: float, seed: int = 0) -> Any:
    """``compiled`` with a random accurate tier of the full profile's CNN size that routes
    ``share`` of the benchmark texts."""
    import numpy as np

    from bluegreen.model.cascade import AccurateTier
    from bluegreen.model.charcnn import CharCNN, char_vocabulary
    from bluegreen.model.training import PROFILES

    cfg = PROFILES["full"].cnn
    assert cfg is not None
    rng = np.random.default_rng(seed)
    table, n_vocab = char_vocabulary(_read_texts(_data_dir() / "nsmc_sample_train.tsv.gz"), 1,
                                     cfg.vocab_max)  # fmt: skip
    k, n_f, n_h = max(cfg.widths), cfg.filters * len(cfg.widths), cfg.hidden
    cnn = CharCNN(
        char_ids=table, proj=rng.normal(size=(n_vocab, k, n_f)) * 0.1,
        conv_bias=np.zeros(n_f), hidden_w=rng.normal(size=(2 * n_f, n_h)) * 0.1,
        hidden_b=np.zeros(n_h), head_w=rng.normal(size=(n_h, 4)), head_b=np.zeros(4),
        thresholds=np.linspace(-2, 2, 9),
    )  # fmt: skip
    tier = AccurateTier(cnn, fast_w=np.eye(3), hidden_w=rng.normal(size=(n_h, 3)) * 0.1,
                        bias=np.zeros(3), threshold=0.0)  # fmt: skip
    return _routing(compiled.with_accurate(tier), share)


def _routing(compiled: Any, share: float) -> Any:
    """``compiled`` with its tier's threshold set to route ``share`` of the benchmark texts."""
    import numpy as np

    from bluegreen.model.cascade import margins
    from bluegreen.model.cascade_fit import with_threshold

    m = margins(compiled.fast_logits(_texts(3000)))
    thr = 0.0 if share <= 0 else 2.0 if share >= 1 else float(np.quantile(m, share))
    return compiled.with_accurate(with_threshold(compiled.accurate, thr, share))


def _share_rows(pm: Any, shares: list[float], texts: list[str], batch: int) -> list[Any]:
    """Kernel path, single median and batched texts/s, with the tier routing each share."""
    from bluegreen.model.cascade import margins
    from bluegreen.model.inference import EnsembleSentimentModel

    out = []
    for share in shares:
        model = EnsembleSentimentModel(_routing(pm.compiled, share), cache_size=0)
        routed = float(
            (margins(model.compiled.fast_logits(texts)) < model.compiled.accurate.threshold).mean()
        )
        for t in texts[-200:]:
            model.predict_texts([t])
        single = []
        for t in texts[:2000]:
            t1 = time.perf_counter()
            model.predict_texts([t])
            single.append(time.perf_counter() - t1)
        t1 = time.perf_counter()
        for i in range(0, len(texts), batch):
            model.predict_texts(texts[i : i + batch])
        rate = len(texts) / (time.perf_counter() - t1)
        out.append((f"cascade, share {share:.2f} (routed {routed:.2f}): single median / batched",
                    f"{statistics.median(single) * US:.0f} µs · {rate:,.0f} texts/s"))  # fmt: skip
    return out


def _swap_kernel_paths(order: list[str]) -> list[str]:
    """``order`` with "kernel" and "mapped" in each other's place (when both are there)."""
    if "kernel" not in order or "mapped" not in order:
        return order
    i, j = order.index("kernel"), order.index("mapped")
    order[i], order[j] = order[j], order[i]
    return order


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-uri")
    src.add_argument("--ensemble-dir", type=Path)
    src.add_argument("--synthetic", action="store_true")
    ap.add_argument("--tracking-uri", default=None)
    ap.add_argument("--core", type=int, default=None, help="CPU to pin to (default: first allowed)")
    ap.add_argument("--single", type=int, default=3000, help="single-text calls")
    ap.add_argument("--batch", type=int, default=1000, help="batch size")
    ap.add_argument("--batch-texts", type=int, default=20000, help="texts through the batch path")
    ap.add_argument("--shares", default="", help="comma-separated tier shares to measure too")
    ap.add_argument(
        "--synthetic-tier", type=float, default=None, help="(--synthetic) add a random tier"
    )
    args = ap.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {args.core if args.core is not None else allowed[0]})

    from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel

    rows: list[tuple[str, str]] = []
    pyfunc_model: Any = None
    if args.model_uri:
        t0 = time.perf_counter()
        import mlflow

        rows.append(("import mlflow", f"{time.perf_counter() - t0:.2f} s"))
        if args.tracking_uri:
            mlflow.set_tracking_uri(args.tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            if Path(args.model_uri).is_dir():
                local = Path(args.model_uri)
            else:
                local = Path(mlflow.artifacts.download_artifacts(args.model_uri, dst_path=tmp))
            rows.append(("download", f"{time.perf_counter() - t0:.2f} s"))
            rows.append(("artifact size (model dir)", f"{_dir_size(local) / 2**20:.1f} MiB"))
            t0 = time.perf_counter()
            pyfunc_model = mlflow.pyfunc.load_model(str(local))
            rows.append(
                ("load (pyfunc.load_model), first in process", f"{time.perf_counter() - t0:.2f} s")
            )
            t0 = time.perf_counter()
            mlflow.pyfunc.load_model(str(local))
            rows.append(("load again, same process", f"{time.perf_counter() - t0:.2f} s"))
            rows.append(("load, fresh process, cold kernel cache", _cold_load(local)))
        pm = pyfunc_model.unwrap_python_model()
    else:
        t0 = time.perf_counter()
        if args.ensemble_dir:
            compiled = CompiledEnsemble.open_bundle(args.ensemble_dir)
            rows.append(
                ("artifact size (ensemble dir)", f"{_dir_size(args.ensemble_dir) / 2**20:.1f} MiB")
            )
        else:
            compiled = synthetic()
            if args.synthetic_tier is not None:
                compiled = synthetic_tier(compiled, args.synthetic_tier)
        rows.append(("load / build", f"{time.perf_counter() - t0:.2f} s"))
        pm = EnsembleSentimentModel(compiled)
    rows.append(("features", f"{pm.compiled.n_features:,}"))
    tier = pm.compiled.accurate
    if tier is not None:
        from bluegreen.model.cascade import margins

        routed = margins(pm.compiled.fast_logits(_texts(3000))) < tier.threshold
        rows.append(("accurate tier: share routed (these texts) / chosen on validation",
                     f"{routed.mean():.2f} / {tier.meta.get('share', float('nan'))}"))  # fmt: skip

    texts = _texts(200 + max(args.single, args.batch_texts))
    models = {"kernel": pm, "numpy": pm}
    if pm.compiled.compiled_kernels:
        # What the server serves: the same model prepared by the loader child and memory-mapped
        # read-only (`CompiledEnsemble.map_prepared`), measured alternately with the others.
        prepared = Path(tempfile.mkdtemp(prefix="bench-prepared-"))
        pm.compiled.save_prepared(prepared)
        t0 = time.perf_counter()
        models["mapped"] = EnsembleSentimentModel(CompiledEnsemble.map_prepared(prepared))
        rows.append(
            (
                "map the prepared arrays (server's swap path)",
                f"{(time.perf_counter() - t0) * 1000:.1f} ms",
            )
        )
    for model in models.values():
        for t in texts[-200:]:
            model.predict_texts([t])  # warm-up on texts not measured below
    paths = (
        {"kernel": True, "numpy": False, "mapped": True}
        if pm.compiled.compiled_kernels
        else {"numpy": False}
    )
    single: dict[str, list[float]] = {p: [] for p in paths}
    rounds = 4  # the paths alternate on fresh texts, so drift hits each alike
    chunk = max(args.single // rounds, 1)
    for r in range(rounds):
        # The numpy path sweeps the caches: the two kernel paths take turns to follow it
        order = list(paths) if r % 2 == 0 else _swap_kernel_paths(list(paths))
        for path in order:
            on = paths[path]
            model = models[path]
            model.compiled.use_kernels(on)
            model.clear_cache()
            for t in texts[r * chunk : (r + 1) * chunk]:
                t1 = time.perf_counter()
                model.predict_texts([t])
                single[path].append(time.perf_counter() - t1)
    pm.compiled.use_kernels(True)
    cached = []
    for t in texts[: min(chunk, 1000)]:
        pm.predict_texts([t])  # fill the cache, then time the hits
    for t in texts[: min(chunk, 1000)]:
        t1 = time.perf_counter()
        pm.predict_texts([t])
        cached.append(time.perf_counter() - t1)
    batch_texts = texts[: args.batch_texts]
    batch_time = dict.fromkeys(paths, 0.0)
    for n, i in enumerate(range(0, len(batch_texts), args.batch)):
        order = list(paths) if n % 2 == 0 else _swap_kernel_paths(list(paths))
        for path in order:
            on = paths[path]
            models[path].compiled.use_kernels(on)
            t1 = time.perf_counter()
            models[path].predict_texts(batch_texts[i : i + args.batch])
            batch_time[path] += time.perf_counter() - t1
    pm.compiled.use_kernels(True)

    def by_path(fmt: str, values: dict[str, float], faster: str = "lower") -> str:
        """``kernel X · numpy Y · mapped Z · ratios``: how many times faster the kernel is than
        numpy, and the mapped model's speed relative to the in-memory one (1.00 = the same)."""
        shown = [f"{p} {fmt.format(v)}" for p, v in values.items()]
        if "kernel" in values:
            ratio = values["numpy"] / values["kernel"]
            shown.append(f"kernel/numpy {ratio if faster == 'lower' else 1 / ratio:.1f}x")
            mapped = values["kernel"] / values["mapped"]
            shown.append(f"mapped/in-memory {mapped if faster == 'lower' else 1 / mapped:.2f}x")
        return " · ".join(shown)

    rows += [
        (
            "single text, served path, median",
            by_path("{:.0f} µs", {p: statistics.median(v) * US for p, v in single.items()}),
        ),
        (
            "single text, served path, p99",
            by_path("{:.0f} µs", {p: _pct(v, 0.99) * US for p, v in single.items()}),
        ),
        ("single text, LRU-cached, median", f"{statistics.median(cached) * US:.1f} µs"),
    ]
    if pyfunc_model is not None:
        import pandas as pd

        slow = []
        for t in texts[-200:]:
            frame = pd.DataFrame({"text": [t]})
            t1 = time.perf_counter()
            pyfunc_model.predict(frame)
            slow.append(time.perf_counter() - t1)
        rows.append(
            ("single text, pyfunc DataFrame path, median", f"{statistics.median(slow) * US:.0f} µs")
        )
    rows.append(
        (
            f"batched throughput (batch={args.batch}), texts/s",
            by_path("{:,.0f}", {p: len(batch_texts) / t for p, t in batch_time.items()}, "higher"),
        )
    )

    if args.shares and tier is not None:
        shares = [float(s) for s in args.shares.split(",")]
        pm.compiled.use_kernels(True)
        rows += _share_rows(pm, shares, batch_texts, args.batch)

    print("| measure (1 core) | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
