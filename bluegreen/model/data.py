"""Reading the NSMC TSV files, labels, splits and the NSMC-comparable binary sample."""

from __future__ import annotations

import csv
import gzip
import hashlib
from collections.abc import Sequence
from pathlib import Path

import attrs
import numpy as np
import numpy.typing as npt

from .labels import label_for_rating

COLUMNS = ("id", "movie_id", "date", "rating", "text")
TRAIN_FILE = "train.tsv.gz"
TEST_FILE = "test.tsv.gz"
SAMPLE_TRAIN_FILE = "nsmc_sample_train.tsv.gz"
SAMPLE_TEST_FILE = "nsmc_sample_test.tsv.gz"

I64 = npt.NDArray[np.int64]

csv.field_size_limit(1 << 24)


def default_data_dir() -> Path:
    """The sample shipped in the repository (``bluegreen/data``)."""
    return Path(__file__).resolve().parent.parent / "data"


@attrs.frozen
class Dataset:
    texts: list[str]
    ratings: I64
    labels: I64
    ids: list[str] = attrs.field(factory=list)
    movie_ids: list[str] = attrs.field(factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: Sequence[int] | I64) -> Dataset:
        idx = np.asarray(index, dtype=np.int64)
        return Dataset(
            texts=[self.texts[i] for i in idx],
            ratings=self.ratings[idx],
            labels=self.labels[idx],
            ids=[self.ids[i] for i in idx] if self.ids else [],
            movie_ids=[self.movie_ids[i] for i in idx] if self.movie_ids else [],
        )


def read_rows(path: str | Path) -> list[list[str]]:
    """Raw rows (header checked and dropped) of an NSMC TSV(.gz) file, quoting disabled."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise ValueError(f"{p}: header {header!r} != {COLUMNS!r}")
        return [row for row in reader if len(row) == len(COLUMNS)]


def read_dataset(path: str | Path, limit: int | None = None) -> Dataset:
    rows = read_rows(path)
    if limit is not None:
        rows = rows[:limit]
    ratings = np.array([int(r[3]) for r in rows], dtype=np.int64)
    labels = np.array([label_for_rating(int(r)) for r in ratings], dtype=np.int64)
    return Dataset(
        texts=[r[4] for r in rows],
        ratings=ratings,
        labels=labels,
        ids=[r[0] for r in rows],
        movie_ids=[r[1] for r in rows],
    )


def resolve_files(data: str | Path | None) -> tuple[Path, Path]:
    """``(train, test)`` paths from a directory (full or sample file names) or ``None``."""
    d = Path(data) if data is not None else default_data_dir()
    if d.is_file():
        raise ValueError(f"--data must be a directory, got file {d}")
    for train, test in ((TRAIN_FILE, TEST_FILE), (SAMPLE_TRAIN_FILE, SAMPLE_TEST_FILE)):
        if (d / train).exists() and (d / test).exists():
            return d / train, d / test
    raise FileNotFoundError(
        f"{d} has neither {TRAIN_FILE}/{TEST_FILE} nor {SAMPLE_TRAIN_FILE}/{SAMPLE_TEST_FILE}"
    )


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def stratified_sample(strata: I64, n: int, seed: int) -> I64:
    """Indices of a stratified random sample of size ~``n`` (proportional per stratum), sorted."""
    if n >= len(strata):
        return np.arange(len(strata), dtype=np.int64)
    rng = np.random.default_rng(seed)
    values, counts = np.unique(strata, return_counts=True)
    quotas = np.floor(counts * n / len(strata)).astype(np.int64)
    # distribute the remainder to the largest fractional parts, deterministically
    frac = counts * n / len(strata) - quotas
    for j in np.argsort(-frac, kind="stable")[: n - int(quotas.sum())]:
        quotas[j] += 1
    picked = [
        rng.choice(np.flatnonzero(strata == v), size=int(q), replace=False)
        for v, q in zip(values, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def train_val_split(labels: I64, val_fraction: float, seed: int) -> tuple[I64, I64]:
    """Stratified split of the training rows into (fit, validation) indices."""
    n_val = max(round(len(labels) * val_fraction), len(np.unique(labels)) * 2)
    val = stratified_sample(labels, n_val, seed)
    mask = np.ones(len(labels), dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask).astype(np.int64), val


def binary_balanced_index(labels: I64, seed: int) -> I64:
    """NSMC-comparable subset: negative (1-4) and positive (9-10) rows, equal counts of each."""
    rng = np.random.default_rng(seed)
    neg = np.flatnonzero(labels == 0)
    pos = np.flatnonzero(labels == 2)
    k = min(len(neg), len(pos))
    pick = np.concatenate(
        [rng.choice(neg, size=k, replace=False), rng.choice(pos, size=k, replace=False)]
    )
    return np.sort(pick).astype(np.int64)
