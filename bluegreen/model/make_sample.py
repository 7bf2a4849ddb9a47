"""Write the small NSMC sample shipped in the repo (``bluegreen/data/nsmc_sample_*.tsv.gz``).

Stratified by rating, fixed seed, byte-reproducible (gzip mtime 0)::

    python -m bluegreen.model.make_sample --src /work/shared/data/nsmc --out bluegreen/data
"""

from __future__ import annotations

import argparse
import gzip
import io
from pathlib import Path

import numpy as np

from .data import (
    COLUMNS,
    SAMPLE_TEST_FILE,
    SAMPLE_TRAIN_FILE,
    TEST_FILE,
    TRAIN_FILE,
    default_data_dir,
    read_rows,
    stratified_sample,
)

DEFAULT_SEED = 20240611


def write_sample(src: Path, dst: Path, n: int, seed: int) -> int:
    rows = read_rows(src)
    strata = np.array([int(r[3]) for r in rows], dtype=np.int64)
    keep = stratified_sample(strata, n, seed)
    buf = io.StringIO()
    buf.write("\t".join(COLUMNS) + "\n")
    for i in keep:
        buf.write("\t".join(rows[i]) + "\n")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return len(keep)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data/nsmc"))
    ap.add_argument("--out", type=Path, default=default_data_dir())
    ap.add_argument("--train-rows", type=int, default=60_000)
    ap.add_argument("--test-rows", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = ap.parse_args(argv)
    n_train = write_sample(
        args.src / TRAIN_FILE, args.out / SAMPLE_TRAIN_FILE, args.train_rows, args.seed
    )
    n_test = write_sample(
        args.src / TEST_FILE, args.out / SAMPLE_TEST_FILE, args.test_rows, args.seed + 1
    )
    print(f"wrote {n_train} train and {n_test} test rows to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
