"""Training entry points: ``train_and_log`` and ``bootstrap_default_model``."""

from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import numpy as np
import numpy.typing as npt

from . import bundle
from . import data as data_mod
from .cascade_fit import CascadeConfig, fit_cascade
from .charcnn_train import CNNConfig
from .ensemble import StackerConfig, compile_ensemble, fit_stacker
from .evaluate import (
    ASCII_LABELS,
    all_metrics,
    confusion,
    log_proba,
    plot_confusion,
    tune_binary_offset,
)
from .features import FeatureConfig, build_feature_space
from .inference import CompiledEnsemble, EnsembleSentimentModel
from .labels import LABELS
from .members import FittedMember, MemberConfig, fit_member
from .progress import Progress

log = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "ensemble-sentiment-model"
EXPERIMENT = "bluegreen-sentiment"
Profile = Literal["small", "full"]
F64 = npt.NDArray[np.float64]


@attrs.frozen
class ProfileConfig:
    features: FeatureConfig
    members: tuple[MemberConfig, ...]
    stacker: StackerConfig = attrs.field(factory=StackerConfig)
    val_fraction: float = 0.1
    max_train_rows: int | None = None
    max_test_rows: int | None = None
    cnn: CNNConfig | None = None
    """The accurate tier's character CNN (needs torch: the ``train`` extra); None: fast path
    only."""
    cascade: CascadeConfig = attrs.field(factory=CascadeConfig)
    expected_seconds: dict[str, float] = attrs.field(factory=dict)
    """Rough stage durations on 2 cores, for the progress log's estimates."""


PROFILES: dict[str, ProfileConfig] = {
    "small": ProfileConfig(
        features=FeatureConfig(
            char_range=(1, 4),
            char_max_features=50_000,
            char_min_count=2,
            word_n=2,
            word_max_features=30_000,
            word_min_count=2,
        ),
        members=(
            MemberConfig("char_tfidf_lr", "tfidf_lr", "char", C=4.0, max_iter=40, tol=1e-3),
            MemberConfig("word_tfidf_lr", "tfidf_lr", "word", C=4.0, max_iter=40, tol=1e-3),
            MemberConfig("nb_lr", "nbsvm", "both", C=4.0, max_iter=40, tol=1e-3),
            MemberConfig(
                "rating_ridge", "rating_ridge", "both", C=1.0, max_iter=100, presence=True
            ),
        ),
        stacker=StackerConfig(C=1.0, folds=3),
        val_fraction=0.15,
        max_train_rows=20_000,
        max_test_rows=4_000,
    ),
    "full": ProfileConfig(
        features=FeatureConfig(
            char_range=(1, 5),
            char_max_features=600_000,
            char_min_count=3,
            word_n=2,
            word_max_features=300_000,
            word_min_count=2,
        ),
        members=(
            MemberConfig("char_tfidf_lr", "tfidf_lr", "char", C=4.0, max_iter=200),
            MemberConfig("word_tfidf_lr", "tfidf_lr", "word", C=4.0, max_iter=200),
            MemberConfig("nb_lr", "nbsvm", "both", C=4.0, max_iter=200),
            # Shares nb_lr's presence transform, so it adds no inference cost (compile_ensemble
            # folds the two into one group); +0.008 macro-F1 on 150k rows, where tf-idf
            # ridge, C in {0.3, 3, 10} and a pos-vs-neg binary LR member did no better.
            MemberConfig(
                "rating_ridge", "rating_ridge", "both", C=1.0, max_iter=200, presence=True
            ),
        ),
        stacker=StackerConfig(C=1.0, folds=5),
        val_fraction=0.08,
        cnn=CNNConfig(dim=32, widths=(2, 3, 4), filters=64, hidden=96, epochs=2, lr=3e-3),
        expected_seconds={
            "features": 150.0,
            "members": 1500.0,
            "stacker": 30.0,
            "charcnn": 2400.0,
            "cascade": 60.0,
        },
    ),
}


@attrs.frozen
class TrainResult:
    run_id: str
    version: int | None
    metrics: dict[str, float]
    model_uri: str = ""
    promoted: bool = False
    alias: str | None = None


def _time_inference(model: EnsembleSentimentModel, texts: Sequence[str]) -> dict[str, float]:
    """Single-text median µs (uncached: distinct texts) and batched µs per text."""
    sample = list(texts[:300])
    single = []
    compiled = model.compiled
    for t in sample:
        t0 = time.perf_counter()
        compiled.predict_proba([t])
        single.append(time.perf_counter() - t0)
    batch = list(texts[:5000])
    t0 = time.perf_counter()
    compiled.predict_proba(batch)
    per_text = (time.perf_counter() - t0) / max(len(batch), 1)
    return {
        "infer_single_us_median": statistics.median(single) * 1e6 if single else 0.0,
        "infer_batch_us_per_text": per_text * 1e6,
    }


def _member_params(members: Sequence[MemberConfig]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for m in members:
        for k, v in attrs.asdict(m).items():
            if k != "name":
                out[f"member.{m.name}.{k}"] = v
    return out


def _model_card(
    *,
    profile: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    member_names: Sequence[str],
    train_seconds: float,
) -> str:
    rows = ["ensemble", *member_names]
    lines = [
        "# ensemble-sentiment-model",
        "",
        "Korean movie-review sentiment, three classes in this column order: "
        + ", ".join(f"`{lab}`" for lab in LABELS)
        + " (NSMC ratings 1-4, 5-8, 9-10).",
        "",
        f"- profile: `{profile}`; trained in {train_seconds:.1f} s on "
        f"{params['n_fit']} rows (+{params['n_val']} validation rows for the stacker)",
        f"- train data sha256: `{params['train_sha256'][:16]}…`, seed {params['seed']}",
        "- members: " + ", ".join(f"`{n}`" for n in member_names) + " (see `members.py`: "
        "tf-idf + LR over char or word n-grams, NB-weighted LR, ridge on the star rating); "
        "combined by a logistic-regression stacker over member logits with tuned class priors, "
        "folded into one linear model (see `ensemble/meta.json`).",
        f"- binary (NSMC protocol) decision: logit(긍정) - logit(부정) > "
        f"{metrics.get('binary_offset', 0.0):+.2f}, a prior correction for the 50/50 protocol "
        "sample tuned on the validation split; uncorrected (offset 0) figures are logged as "
        "`*_binary_acc_uncorrected`.",
        "",
    ]
    if "cascade_share" in metrics:
        rows.insert(1, "charcnn")
        lines += [
            f"- accurate tier: a syllable CNN (`charcnn`) and a second stacker over the fast "
            f"logits and the CNN's class and ordinal-rating outputs; the "
            f"{metrics['cascade_share']:.0%} of texts (on validation) with the smallest fast "
            f"top-two margin are scored by it (`cascade.py`). Fast path alone on test: "
            f"macro-F1 {metrics.get('fast_test_macro_f1', float('nan')):.4f}, binary "
            f"{metrics.get('fast_test_binary_acc', float('nan')):.4f}.",
        ]
    lines += [
        "",
        "| model | test macro-F1 | test acc (3-class) | binary acc (NSMC-style) | val macro-F1 |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        p = "" if r == "ensemble" else f"member_{r}_"
        lines.append(
            f"| {r} | {metrics.get(p + 'test_macro_f1', float('nan')):.4f} "
            f"| {metrics.get(p + 'test_acc3', float('nan')):.4f} "
            f"| {metrics.get(p + 'test_binary_acc', float('nan')):.4f} "
            f"| {metrics.get(p + 'val_macro_f1', float('nan')):.4f} |"
        )
    lines += [
        "",
        f"Inference (one core, this build machine): single text median "
        f"{metrics.get('infer_single_us_median', float('nan')):.0f} µs, batched "
        f"{metrics.get('infer_batch_us_per_text', float('nan')):.1f} µs/text.",
        "",
        "Limitations: bag of n-grams, no context beyond 5 characters / word pairs; sarcasm and "
        "mixed reviews are hard; neutral (5-8) is the weakest class. Texts are cut to 2000 "
        "characters. Trained on movie reviews only.",
        "",
    ]
    return "\n".join(lines)


def _smoke_rows() -> list[tuple[str, str]]:
    path = Path(__file__).resolve().parent / "golden.tsv"
    out = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            text, label = line.split("\t")
            out.append((text, label))
    return out


def _stages(cfg: ProfileConfig) -> list[tuple[str, float]]:
    names = ["features", "members", "stacker"]
    if cfg.cnn is not None:
        names += ["charcnn", "cascade"]
    return [(n, cfg.expected_seconds.get(n, 60.0)) for n in names]


def fit_ensemble(
    train: data_mod.Dataset,
    cfg: ProfileConfig,
    seed: int,
    n_jobs: int = 1,
    progress: Progress | None = None,
) -> tuple[CompiledEnsemble, list[FittedMember], dict[str, Any], dict[str, float]]:
    """Fit members on train minus a validation split, the stacker on the validation split,
    and (when the profile has a CNN) the CNN on the fit rows and the cascade on validation.

    Returns the compiled ensemble (not yet float32-rounded), the members, params and the
    validation metrics (members: their own; ensemble: out-of-fold stacker predictions).
    """
    progress = progress or Progress(_stages(cfg))
    fit_idx, val_idx = data_mod.train_val_split(train.labels, cfg.val_fraction, seed)
    fit, val = train.subset(fit_idx), train.subset(val_idx)
    t0 = time.perf_counter()
    with progress.stage("features"):
        space = build_feature_space(fit.texts, cfg.features)
        c_fit, c_val = space.counts(fit.texts), space.counts(val.texts)
    log.info(
        "features: %d char + %d word in %.1fs",
        space.n_char,
        len(space.word_keys),
        time.perf_counter() - t0,
    )
    members: list[FittedMember] = []
    val_logits: list[F64] = []
    metrics: dict[str, float] = {}

    def fit_one(mc: MemberConfig) -> FittedMember:
        return fit_member(mc, space, c_fit, fit.labels, seed, ratings=fit.ratings)

    with progress.stage("members"):
        if n_jobs > 1:  # members are independent; scipy/numpy release the GIL in the heavy parts
            import warnings
            from concurrent.futures import ThreadPoolExecutor

            from sklearn.exceptions import ConvergenceWarning

            # warnings filters are process-wide: set once here rather than racing the per-call
            # catch_warnings inside fit_member from several threads.
            with ThreadPoolExecutor(max_workers=n_jobs) as pool, warnings.catch_warnings():
                warnings.filterwarnings("ignore", category=ConvergenceWarning)
                fitted = list(pool.map(fit_one, cfg.members))
        else:
            fitted = [fit_one(mc) for mc in cfg.members]
    for mc, fm in zip(cfg.members, fitted, strict=True):
        members.append(fm)
        z = fm.logits(c_val)
        val_logits.append(z)
        # Each member gets its own validation-tuned binary offset: a fair comparison.
        offset = tune_binary_offset(z, val.labels, seed)
        metrics[f"member_{mc.name}_binary_offset"] = offset
        for k, v in all_metrics(z, val.labels, seed, offset).items():
            metrics[f"member_{mc.name}_val_{k}"] = v
        metrics[f"member_{mc.name}_fit_seconds"] = fm.fit_seconds
        log.info(
            "member %s: %.1fs val macro-F1 %.4f",
            mc.name,
            fm.fit_seconds,
            metrics[f"member_{mc.name}_val_macro_f1"],
        )
    with progress.stage("stacker"):
        stacker = fit_stacker(val_logits, val.labels, cfg.stacker, seed)
    for k, v in all_metrics(stacker.oof_logits, val.labels, seed, stacker.binary_offset).items():
        metrics[f"val_{k}"] = v
    metrics["binary_offset"] = stacker.binary_offset
    params: dict[str, Any] = {
        "n_fit": len(fit),
        "n_val": len(val),
        "n_char_features": space.n_char,
        "n_word_features": len(space.word_keys),
        "stacker_prior": json.dumps([round(float(x), 4) for x in stacker.prior]),
    }
    compiled = compile_ensemble(space, members, stacker, meta={"seed": seed})
    if cfg.cnn is not None:
        compiled = _fit_accurate_tier(
            compiled,
            fit=fit,
            val=val,
            cfg=cfg,
            seed=seed,
            progress=progress,
            metrics=metrics,
            params=params,
        )
    return compiled, members, params, metrics


def _fit_accurate_tier(
    compiled: CompiledEnsemble,
    *,
    fit: data_mod.Dataset,
    val: data_mod.Dataset,
    cfg: ProfileConfig,
    seed: int,
    progress: Progress,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> CompiledEnsemble:
    """Train the CNN on the fit rows, then the cascade on the validation rows."""
    from .charcnn_train import train_charcnn
    from .inference import _load_kernels

    assert cfg.cnn is not None
    with progress.stage("charcnn"):
        trained = train_charcnn(fit.texts, fit.labels, fit.ratings, cfg.cnn, seed,
                                progress=lambda _s, f, eta: progress.report(f, eta))  # fmt: skip
    cnn = trained.model
    cnn.use_kernels(_load_kernels())
    with progress.stage("cascade"):
        fast_val = compiled.fast_logits(val.texts)
        cnn_val = cnn.outputs_of(val.texts).astype(np.float64)
        cf = fit_cascade(fast_val, cnn_val, val.labels, cnn=cnn, cfg=cfg.cascade, seed=seed)
    z = cnn_val[:, :3]
    for k, v in all_metrics(z, val.labels, seed, tune_binary_offset(z, val.labels, seed)).items():
        metrics[f"member_charcnn_val_{k}"] = v
    metrics["member_charcnn_binary_offset"] = tune_binary_offset(z, val.labels, seed)
    metrics["member_charcnn_fit_seconds"] = trained.seconds
    for point in cf.frontier:
        tag = f"cascade_share{round(point['share'] * 100):03d}_val"
        for k in ("macro_f1", "binary_acc", "acc3"):
            metrics[f"{tag}_{k}"] = point[k]
    metrics["cascade_share"] = cf.share
    chosen = next(p for p in cf.frontier if p["share"] == cf.share)
    for k in ("macro_f1", "binary_acc", "acc3"):
        metrics[f"val_{k}"] = chosen[k]
    metrics["val_binary_acc_uncorrected"] = chosen["binary_acc"]
    metrics["binary_offset"] = 0.0  # the cascade's priors are tuned for the offset-free reading
    params["cascade_share"] = cf.share
    params["cascade_threshold"] = cf.tier.threshold
    params["cascade_frontier"] = json.dumps(
        [{k: round(v, 4) for k, v in p.items()} for p in cf.frontier]
    )
    params.update({f"cnn.{k}": v for k, v in attrs.asdict(cfg.cnn).items()})
    params.update({f"cascade.{k}": v for k, v in attrs.asdict(cfg.cascade).items()})
    served = compiled.with_accurate(cf.tier, cf.fast_prior_shift)
    # Both tiers' priors are tuned for the offset-free reading of the probabilities (what a
    # client does), so no separate binary offset is shipped or applied in the reports.
    served.meta["binary_offset"] = 0.0
    return served


def _member_test_metrics(
    members: Sequence[FittedMember],
    compiled: CompiledEnsemble,
    test: data_mod.Dataset,
    seed: int,
    offsets: dict[str, float],
) -> dict[str, float]:
    counts = compiled.counts(test.texts)
    out: dict[str, float] = {}
    for fm in members:
        name = fm.config.name
        for k, v in all_metrics(fm.logits(counts), test.labels, seed, offsets[name]).items():
            out[f"member_{name}_test_{k}"] = v
    return out


def _cascade_test_metrics(
    compiled: CompiledEnsemble,
    test: data_mod.Dataset,
    seed: int,
    params: dict[str, Any],
    metrics: dict[str, float],
) -> dict[str, float]:
    """Test figures of the fast path alone, the CNN alone and the cascade at every share of
    the validation frontier (each share's threshold as chosen on validation)."""
    from .cascade import margins
    from .textfeat import code_points

    tier = compiled.accurate
    assert tier is not None
    out: dict[str, float] = {}
    fast = compiled.fast_logits(test.texts)
    cp, offsets = code_points(test.texts)
    every = np.arange(len(test), dtype=np.int64)
    accurate = tier.logits(fast, cp, offsets, every)
    cnn = tier.cnn.outputs(cp, offsets).astype(np.float64)[:, :3]
    for k, v in all_metrics(fast, test.labels, seed).items():
        out[f"fast_test_{k}"] = v
    offset = metrics.get("member_charcnn_binary_offset", 0.0)
    for k, v in all_metrics(cnn, test.labels, seed, offset).items():
        out[f"member_charcnn_test_{k}"] = v
    m = margins(fast)
    for point in json.loads(params["cascade_frontier"]):
        z = np.where((m < point["threshold"])[:, None], accurate, fast)
        tag = f"cascade_share{round(point['share'] * 100):03d}_test"
        for k, v in all_metrics(z, test.labels, seed).items():
            out[f"{tag}_{k}"] = v
        out[f"{tag}_routed"] = float(np.mean(m < point["threshold"]))
    return out


@attrs.frozen
class FitOutput:
    """Result of :func:`fit_and_evaluate`: everything except the MLflow side."""

    directory: Path
    metrics: dict[str, float]
    params: dict[str, Any]
    confusion: list[list[int]]

    @property
    def ensemble_dir(self) -> Path:
        return self.directory / "ensemble"


def _resolve(
    data_dir_or_files: str | Path | tuple[str | Path, str | Path] | None,
) -> tuple[Path, Path]:
    if isinstance(data_dir_or_files, tuple):
        return Path(data_dir_or_files[0]), Path(data_dir_or_files[1])
    return data_mod.resolve_files(data_dir_or_files)


def fit_and_evaluate(
    data_dir_or_files: str | Path | tuple[str | Path, str | Path] | None,
    out_dir: str | Path,
    *,
    sample: int | None = None,
    seed: int = 42,
    profile: Profile = "full",
    test_sample: int | None = None,
    n_jobs: int = 1,
) -> FitOutput:
    """Train and evaluate without MLflow; writes ``ensemble/``, ``metrics.json``,
    ``params.json`` and ``confusion.json`` under ``out_dir``."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    cfg = PROFILES[profile]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    train_path, test_path = _resolve(data_dir_or_files)
    train = data_mod.read_dataset(train_path)
    test = data_mod.read_dataset(test_path)
    n_train = sample if sample is not None else cfg.max_train_rows
    if n_train is not None and n_train < len(train):
        train = train.subset(data_mod.stratified_sample(train.ratings, n_train, seed))
    n_test = test_sample if test_sample is not None else cfg.max_test_rows
    if n_test is not None and n_test < len(test):
        test = test.subset(data_mod.stratified_sample(test.ratings, n_test, seed + 1))

    with Progress(_stages(cfg)) as progress:
        compiled, members, params, metrics = fit_ensemble(
            train, cfg, seed, n_jobs=n_jobs, progress=progress
        )
    train_seconds = time.perf_counter() - t_start
    metrics["train_seconds"] = train_seconds

    ens_dir = compiled.save(out / "ensemble")
    served = EnsembleSentimentModel(CompiledEnsemble.load(ens_dir))  # float32-rounded
    proba = served.compiled.predict_proba(test.texts)
    offset = float(served.compiled.meta.get("binary_offset", 0.0))
    for k, v in all_metrics(log_proba(proba), test.labels, seed, offset).items():
        metrics[f"test_{k}"] = v
    offsets = {m.config.name: metrics[f"member_{m.config.name}_binary_offset"] for m in members}
    metrics.update(_member_test_metrics(members, served.compiled, test, seed, offsets))
    if served.compiled.accurate is not None:
        metrics.update(_cascade_test_metrics(served.compiled, test, seed, params, metrics))
    metrics.update(_time_inference(served, test.texts))
    metrics["artifact_mb"] = sum(p.stat().st_size for p in ens_dir.iterdir()) / 2**20
    smoke = _smoke_rows()
    smoke_pred = served.predict_texts([t for t, _ in smoke]).argmax(axis=1)
    metrics["smoke_accuracy"] = float(
        np.mean([LABELS[int(p)] == lab for p, (_, lab) in zip(smoke_pred, smoke, strict=True)])
    )
    params.update(
        {
            "profile": profile,
            "seed": seed,
            "train_file": str(train_path),
            "train_sha256": data_mod.file_sha256(train_path),
            "test_file": str(test_path),
            "test_sha256": data_mod.file_sha256(test_path),
            "n_train_rows": len(train),
            "n_test_rows": len(test),
            "sample": sample,
            "labels": json.dumps(list(LABELS), ensure_ascii=False),
            "members": json.dumps([m.config.name for m in members]),
            **{f"features.{k}": v for k, v in attrs.asdict(cfg.features).items()},
            **{f"stacker.{k}": v for k, v in attrs.asdict(cfg.stacker).items()},
            **_member_params(cfg.members),
        }
    )
    cm = confusion(proba, test.labels).tolist()
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    (out / "params.json").write_text(json.dumps(params, indent=1, default=str), encoding="utf-8")
    (out / "confusion.json").write_text(json.dumps(cm), encoding="utf-8")
    return FitOutput(out, metrics, params, cm)


def load_fit_output(directory: str | Path) -> FitOutput:
    """Read back what :func:`fit_and_evaluate` wrote (e.g. on another machine)."""
    d = Path(directory)
    return FitOutput(
        d,
        json.loads((d / "metrics.json").read_text(encoding="utf-8")),
        json.loads((d / "params.json").read_text(encoding="utf-8")),
        json.loads((d / "confusion.json").read_text(encoding="utf-8")),
    )


def retime_inference(fit: FitOutput) -> FitOutput:
    """``fit`` with its inference cost measured again, by this runtime on this machine.

    A fit directory records the cost measured when it was trained, possibly elsewhere and by an
    older runtime (a fit from before the compiled kernels logged ~240 µs per text for a model
    that now serves in ~50). Timed on the shipped sample's test texts: no dataset needed."""
    served = EnsembleSentimentModel(CompiledEnsemble.load(fit.ensemble_dir))
    texts = data_mod.read_dataset(data_mod.default_data_dir() / data_mod.SAMPLE_TEST_FILE).texts
    return attrs.evolve(fit, metrics={**fit.metrics, **_time_inference(served, texts)})


def log_fit_output(
    fit: FitOutput,
    *,
    tracking_uri: str | None = None,
    register: bool = False,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = None,
    promote_if_better: bool = False,
) -> TrainResult:
    """Log a fitted ensemble (params, metrics, confusion matrix PNG, model card, smoke set,
    pyfunc model) to MLflow; optionally register it and move ``alias``."""
    import mlflow

    from . import registry_io

    if (alias or promote_if_better) and not register:
        raise ValueError("alias / promote_if_better need register=True")
    metrics, params = dict(fit.metrics), dict(fit.params)
    profile = str(params.get("profile", "?"))
    member_names = json.loads(params.get("members", "[]"))
    smoke = _smoke_rows()
    with tempfile.TemporaryDirectory(prefix="bg-log-") as tmp_s:
        tmp = Path(tmp_s)
        cm = np.array(fit.confusion, dtype=np.int64)
        png = plot_confusion(
            cm,
            tmp / "confusion_matrix.png",
            f"test, {profile} profile, macro-F1 {metrics['test_macro_f1']:.3f}",
        )
        card = tmp / "model_card.md"
        card.write_text(
            _model_card(
                profile=profile,
                params=params,
                metrics=metrics,
                member_names=member_names,
                train_seconds=metrics["train_seconds"],
            ),
            encoding="utf-8",
        )
        smoke_file = tmp / "smoke.tsv"
        smoke_file.write_text(
            "text\texpected_label\n" + "".join(f"{t}\t{lab}\n" for t, lab in smoke),
            encoding="utf-8",
        )
        if tracking_uri is not None:
            # Both: registration and alias moves go through the registry URI, which a caller
            # may have pointed elsewhere earlier in the process.
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT)
        t_log = time.perf_counter()
        with mlflow.start_run(run_name=f"ensemble-{profile}-seed{params.get('seed')}") as run:
            mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})
            mlflow.log_metrics(metrics)
            mlflow.log_dict(
                {
                    "confusion_matrix": fit.confusion,
                    "labels": list(LABELS),
                    "ascii_labels": list(ASCII_LABELS),
                },
                "confusion_matrix.json",
            )
            for f in (png, card, smoke_file):
                mlflow.log_artifact(str(f))
            info = registry_io.log_ensemble(
                fit.ensemble_dir, [t for t, _ in smoke[:3]], smoke_set=smoke
            )
            run_id = run.info.run_id
            mlflow.log_metric("log_seconds", time.perf_counter() - t_log)
        metrics["log_seconds"] = time.perf_counter() - t_log

    version: int | None = None
    promoted = False
    if register:
        prev = registry_io.current_alias_metric(model_name, alias) if alias else None
        version = registry_io.register(
            info.model_uri,
            model_name,
            tags={
                "test_macro_f1": f"{metrics['test_macro_f1']:.6f}",
                "test_binary_acc": f"{metrics['test_binary_acc']:.6f}",
                "profile": profile,
                "run_id": run_id,
                # the anchor of the bundle's integrity: a loader compares the manifest with it
                bundle.MANIFEST_TAG: str((info.metadata or {})[bundle.MANIFEST_TAG]),
            },
        )
        if alias is not None:
            # The alias holder's score comes back from a tag written with 6 decimals: compare
            # at that precision, or an identical retrain looks better by rounding noise.
            better = prev is None or round(metrics["test_macro_f1"], 6) > prev
            if better or not promote_if_better:
                registry_io.set_alias(model_name, alias, version)
                promoted = True
            else:
                log.info(
                    "version %s not promoted: macro-F1 %.4f <= %.4f",
                    version,
                    metrics["test_macro_f1"],
                    prev,
                )
    return TrainResult(
        run_id=run_id,
        version=version,
        metrics=metrics,
        model_uri=info.model_uri,
        promoted=promoted,
        alias=alias if promoted else None,
    )


def train_and_log(
    data_dir_or_files: str | Path | tuple[str | Path, str | Path] | None = None,
    *,
    sample: int | None = None,
    seed: int = 42,
    tracking_uri: str | None = None,
    register: bool = False,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str | None = None,
    promote_if_better: bool = False,
    profile: Profile = "full",
    test_sample: int | None = None,
) -> TrainResult:
    """Train the ensemble, evaluate on the test split, log everything to MLflow.

    ``data_dir_or_files``: a directory holding ``train.tsv.gz``/``test.tsv.gz`` (or the
    shipped ``nsmc_sample_*`` files), a ``(train, test)`` pair, or None for the shipped sample.
    ``sample``: stratified number of training rows (default: the profile's limit, none for
    ``full``). ``alias``: set on the new version (requires ``register``); with
    ``promote_if_better`` only when its test macro-F1 beats the version holding the alias.
    """
    if (alias or promote_if_better) and not register:
        raise ValueError("alias / promote_if_better need register=True")
    with tempfile.TemporaryDirectory(prefix="bg-train-") as tmp:
        fit = fit_and_evaluate(
            data_dir_or_files,
            tmp,
            sample=sample,
            seed=seed,
            profile=profile,
            test_sample=test_sample,
        )
        return log_fit_output(
            fit,
            tracking_uri=tracking_uri,
            register=register,
            model_name=model_name,
            alias=alias,
            promote_if_better=promote_if_better,
        )


def bootstrap_default_model(
    tracking_uri: str,
    model_name: str = DEFAULT_MODEL_NAME,
    alias: str = "production",
    data_path: Path | None = None,
) -> int:
    """Train the small profile on the shipped sample (or ``data_path``), register it, point
    ``alias`` at it and return the version. What the server runs when the registry is empty."""
    result = train_and_log(
        data_path if data_path is not None else os.environ.get("BLUEGREEN_DATA_DIR") or None,
        seed=42,
        tracking_uri=tracking_uri,
        register=True,
        model_name=model_name,
        alias=alias,
        profile="small",
    )
    assert result.version is not None
    return result.version
