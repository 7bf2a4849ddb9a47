"""Inference runtime: the compact ensemble representation and the MLflow pyfunc model.

Shipped inside every logged model (``code_paths``), so it imports only the standard library,
numpy, scipy, cachetools, mlflow and its two sibling modules (relative imports), and never
sklearn, pandas (except lazily for the generic pyfunc path) or matplotlib.

Representation (all members are linear, and so is the stacker over member logits, so the whole
ensemble folds into one weight tensor):

* ``vocab``: feature key → column (char n-grams and ``WORD_PREFIX``-ed word n-grams);
* per member ``m``: ``idf[m]`` (V,) — zero outside the member's feature block — and the flags
  ``binary`` (presence instead of counts), ``sublinear`` (1 + log tf) and ``l2`` (row norm);
* ``weights[m]`` (V, 3): the member's coefficients already multiplied by the stacker's block for
  that member; ``bias`` (3,): every intercept folded together (+ the tuned class priors).

``logits(text) = bias + Σ_m  x_m(text) @ weights[m]`` where ``x_m`` is the member's weighted,
normalised feature vector; probabilities are its softmax.

A full-profile model may add an accurate tier (:mod:`cascade`: a character CNN and a second
stacker): the texts whose fast answer has a small top-two margin are scored again by it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from cachetools import LRUCache
from mlflow.pyfunc.model import PythonModel

from .cascade import AccurateTier
from .labels import LABELS
from .pages import populate
from .textfeat import Extractor, WordKeys, code_points, prepare, word_char_table

FORMAT_VERSION = 1
ACCURATE_FORMAT_VERSION = 2
"""A model with an accurate tier is format 2: a runtime that knows only format 1 refuses it
instead of silently serving its fast path alone."""
_ARRAYS = "arrays.npz"
_ACCURATE = "accurate.npz"
_WORDS = "words.txt"
_META = "meta.json"
_PREPARED_META = "prepared.json"
_TABLES_META = "tables.json"
PREPARED_FORMAT = 1
_TABLES = ("char_table", "word_table")

_log = logging.getLogger(__name__)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


_KERNEL_MTIME = 1_600_000_000  # fixed, so numba's cache index (keyed by mtime) stays valid
_once_lock = threading.RLock()


def _kernel_cache_root() -> Path:
    root = os.environ.get("NUMBA_CACHE_DIR") or os.environ.get("XDG_CACHE_HOME")
    return Path(root) if root else Path.home() / ".cache"


def _stable_kernel_file(code: bytes, name: str) -> Path | None:
    """``kernels.py`` copied to a path that depends only on its content.

    numba caches compiled code beside the source file, keyed by its path and mtime; every
    model version arrives in a new directory, so without this each new version (and each new
    process) would compile for several seconds on the swap path."""
    try:
        directory = _kernel_cache_root() / "bluegreen-kernels" / name
        target = directory / f"{name}.py"
        if not target.is_file() or target.read_bytes() != code:
            directory.mkdir(parents=True, exist_ok=True)
            tmp = directory / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
            tmp.write_bytes(code)
            os.utime(tmp, (_KERNEL_MTIME, _KERNEL_MTIME))
            os.replace(tmp, target)
        return target
    except OSError:
        return None


def _import_kernels() -> Any:
    src = Path(__file__).with_name("kernels.py")
    try:
        code = src.read_bytes()
    except OSError:
        return None
    name = "bluegreen_kernels_" + hashlib.sha256(code).hexdigest()[:16]
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        importlib.import_module("numba")
    except ImportError:
        return None
    path = _stable_kernel_file(code, name) or src
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


_once_values: dict[str, Any] = {}


def _once(key: str, build: Callable[[], Any]) -> Any:
    """``build()`` once per process (under a lock: two slots may load at the same time)."""
    with _once_lock:
        if key not in _once_values:
            _once_values[key] = build()
        return _once_values[key]


def _word_chars() -> npt.NDArray[np.bool_]:
    table: npt.NDArray[np.bool_] = _once("word_chars", word_char_table)
    return table


def _load_kernels() -> Any:
    """The compiled kernels module, or None (numba missing or JIT disabled): numpy path.

    Imported under a content-hashed name, so model versions with identical kernels share one
    module (compiled once per process, and cached on disk across processes). Memoised, not
    re-imported: the model's directory may be gone after loading."""
    module = _once("kernels", _import_kernels)
    return module if module is not None and module.enabled() else None


def aligned_empty(shape: tuple[int, int], dtype: type[np.generic], align: int = 64) -> Any:
    """Zeroed C array whose first byte is ``align``-byte aligned, so fixed-size rows of
    ``align`` bytes each sit in exactly one cache line."""
    itemsize = np.dtype(dtype).itemsize
    n = shape[0] * shape[1]
    buf = np.zeros(n + align // itemsize, dtype=dtype)
    skip = (-buf.ctypes.data % align) // itemsize
    return buf[skip : skip + n].reshape(shape)


def line_table(kernels: Any, keys: npt.NDArray[np.uint64]) -> tuple[Any, np.uint64]:
    """The kernel's hash table for ``keys`` (non-zero; value = position in ``keys``):
    ``(2**bits, 8)`` uint64, 64-byte aligned, ~0.9-1.7 keys per 4-slot bucket, and the shift
    that gives a hash's home bucket. Filled in compiled code: fast, and off the GIL while a
    swap loads a model beside live traffic."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    if keys.size and not bool(np.all(keys)):
        raise ValueError("key 0 is reserved for empty slots")
    bits = max(1, math.ceil(math.log2(max(keys.size / 1.5, 2))))
    table = aligned_empty((1 << bits, 8), np.uint64)
    shift = np.uint64(64 - bits)
    if kernels.fill_line_table(keys, table, shift):
        raise ValueError("duplicate keys: a column would be unreachable")
    return table, shift


def warm_table_kernels() -> None:
    """Load (numba's disk cache, or compile) the kernels that build hash tables, with the
    argument types a bundle gives them (read-only mapped keys): the loader child's part, done
    when it starts instead of inside its first load."""
    kernels = _load_kernels()
    if kernels is None:
        return
    keys = np.array([1, 2], dtype=np.uint64)
    keys.flags.writeable = False
    line_table(kernels, keys)
    kernels.hash_strings(*WordKeys.of(["준비"]).code_points())


def _softmax(z: F64) -> F64:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: F64 = e / e.sum(axis=-1, keepdims=True)
    return out


def _softmax1(z: F64) -> F64:
    """Softmax of one logit vector without numpy call overhead (3 elements)."""
    vals = z.tolist()
    top = max(vals)
    exps = [math.exp(v - top) for v in vals]
    total = math.fsum(exps)
    return np.array([e / total for e in exps], dtype=np.float64)


def weight_rows(
    counts: sp.csr_matrix,
    idf: F64,
    *,
    binary: bool,
    sublinear: bool,
    l2: bool,
) -> sp.csr_matrix:
    """Member feature matrix from a CSR matrix of raw n-gram counts (duplicates summed).

    Used by training (to fit the member) and by batched inference, so both see the same
    numbers: ``tf`` (1, ``1 + log(count)`` or the count) times ``idf`` (zero outside the block),
    then each row scaled to unit l2 norm when ``l2``. Zero-weight entries are kept (harmless).
    """
    data = np.asarray(counts.data, dtype=np.float64)
    if binary:
        tf = np.ones_like(data)
    elif sublinear:
        tf = 1.0 + np.log(data)
    else:
        tf = data
    vals = tf * idf[counts.indices]
    if l2:
        n = counts.shape[0]
        row = np.repeat(np.arange(n), np.diff(counts.indptr))
        sq = np.bincount(row, weights=vals * vals, minlength=n)
        norm = np.sqrt(sq)
        norm[norm == 0.0] = 1.0
        vals = vals / norm[row]
    return sp.csr_matrix((vals, counts.indices, counts.indptr), shape=counts.shape)


def count_matrix(rows: I64, cols: I64, shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR count matrix from (row, column) occurrence pairs (duplicates summed)."""
    mat = sp.csr_matrix((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=shape)
    mat.sum_duplicates()
    return mat


class CompiledEnsemble:
    """The folded ensemble. Immutable after construction; safe to share between threads."""

    def __init__(
        self,
        *,
        char_hashes: npt.NDArray[np.uint64],
        char_range: tuple[int, int],
        word_keys: Sequence[str],
        word_n: int,
        member_names: Sequence[str],
        idf: F64,
        weights: F64,
        bias: F64,
        binary: Sequence[bool],
        sublinear: Sequence[bool],
        l2: Sequence[bool],
        meta: dict[str, Any] | None = None,
        accurate: AccurateTier | None = None,
    ) -> None:
        extractor = Extractor(char_hashes, char_range, word_keys, word_n)
        n_members = len(member_names)
        n_feat = extractor.n_features
        n_classes = len(LABELS)
        idf = np.asarray(idf)
        weights = np.asarray(weights)
        if idf.shape != (n_members, n_feat):
            raise ValueError(f"idf shape {idf.shape} != {(n_members, n_feat)}")
        if weights.shape != (n_members, n_feat, n_classes):
            raise ValueError(f"weights shape {weights.shape} is wrong")
        # One float32 row per feature, [idf of each member, then each member's K weights],
        # padded to 64 bytes and aligned: scoring a feature touches one cache line instead of
        # 2M scattered ones. float32 is what the artifact stores, so this loses nothing.
        width = n_members * (1 + n_classes)
        packed = aligned_empty((n_feat, -(-width // 16) * 16), np.float32)
        packed[:, :n_members] = idf.T
        packed[:, n_members:width] = weights.transpose(1, 0, 2).reshape(n_feat, -1)
        self._setup(
            extractor=extractor, member_names=member_names, packed=packed, bias=bias,
            binary=binary, sublinear=sublinear, l2=l2, meta=meta, accurate=accurate,
        )  # fmt: skip
        self._start_serving()

    def _start_serving(self) -> None:
        prepare()  # the normaliser's tables: built at the first load, never on a request
        self.use_kernels(True)
        if self._kernels is None:
            _ = self.extractor.word_vocab  # the numpy path's dict: validated at load, not later

    def _setup(
        self,
        *,
        extractor: Extractor,
        member_names: Sequence[str],
        packed: Any,
        bias: Any,
        binary: Sequence[bool],
        sublinear: Sequence[bool],
        l2: Sequence[bool],
        meta: dict[str, Any] | None,
        accurate: AccurateTier | None = None,
    ) -> None:
        """Everything but the kernel tables, from the packed feature rows (built or mapped)."""
        self.extractor = extractor
        self.member_names = tuple(member_names)
        n_members, n_classes = len(self.member_names), len(LABELS)
        n_feat = extractor.n_features
        width = n_members * (1 + n_classes)
        self.bias = np.asarray(bias, dtype=np.float64).reshape(n_classes)
        self.packed = packed
        self.idf = packed[:, :n_members].T  # (M, V) view
        self.weights = (
            packed[:, n_members:width].reshape(n_feat, n_members, n_classes).transpose(1, 0, 2)
        )  # (M, V, K) view
        self.binary = np.array(binary, dtype=bool)
        self.sublinear = np.array(sublinear, dtype=bool)
        self.l2 = np.array(l2, dtype=bool)
        self._tf_binary = self.binary[:, None]
        self._tf_sub = self.sublinear[:, None]
        self._tf_mode = np.where(self.binary, 1, np.where(self.sublinear, 2, 0)).astype(np.int8)
        self.meta: dict[str, Any] = dict(meta or {})
        self.accurate = accurate
        self._kernels: Any = None
        self._table_args: tuple[Any, ...] | None = None
        self._word_args: tuple[Any, ...] | None = None

    def _word_table(self, kernels: Any) -> tuple[Any, ...]:
        """Word n-gram keys as a hash table the kernel probes (it never builds the strings)."""
        ex = self.extractor
        keys = ex.word_keys
        cp, offsets = keys.code_points()
        # line_table rejects equal hashes: a repeated key, or a 64-bit collision (never seen)
        table, shift = line_table(kernels, kernels.hash_strings(cp, offsets))
        return (_word_chars(), ex.word_n if keys else 0, len(ex.char_hashes), table, shift)

    def _char_table(self, kernels: Any) -> tuple[Any, ...]:
        hashes = self.extractor.char_hashes
        if not hashes.size:
            return (np.zeros((0, 8), dtype=np.uint64), np.uint64(0))
        return line_table(kernels, hashes)

    @property
    def compiled_kernels(self) -> bool:
        """Whether inference runs the numba kernels (else the numpy reference path)."""
        return self._kernels is not None

    def use_kernels(self, on: bool) -> None:
        """Switch between the kernels and the numpy reference path (tests, benchmarks).

        Switching on compiles (or loads from numba's disk cache) and runs the kernel once
        here, so that cost lands on model load, never on a request; a kernel that fails to
        compile leaves the numpy path in place."""
        self._kernels = None
        if self.accurate is not None:
            self.accurate.cnn.use_kernels(None)
        if not on:
            return
        try:
            kernels = _load_kernels()
            if kernels is None:
                return
            self.build_tables()
            self._kernels = kernels
            self.logits(["warm-up 준비"])
            self.logits(["warm-up", "준비"])  # the batch path, whose normaliser has a table
            if self.accurate is not None:
                self.accurate.cnn.use_kernels(kernels)
                self.accurate.cnn.outputs(*code_points(["warm-up 준비"]))  # routed or not
        except Exception:
            _log.warning("compiled kernels unavailable; using the numpy path", exc_info=True)
            self._kernels = None

    def with_accurate(
        self, accurate: AccurateTier | None, bias_shift: F64 | None = None
    ) -> CompiledEnsemble:
        """This fast path (its bias shifted by ``bias_shift``) with ``accurate`` as its tier."""
        new = type(self).__new__(type(self))
        shift = np.zeros(len(LABELS)) if bias_shift is None else np.asarray(bias_shift)
        new._setup(
            extractor=self.extractor, member_names=self.member_names, packed=self.packed,
            bias=self.bias + shift, binary=self.binary.tolist(),
            sublinear=self.sublinear.tolist(), l2=self.l2.tolist(), meta=self.meta,
            accurate=accurate,
        )  # fmt: skip
        new._table_args, new._word_args = self._table_args, self._word_args
        new._start_serving()
        return new

    @property
    def n_features(self) -> int:
        return self.extractor.n_features

    # -- inference -------------------------------------------------------------------------

    def logits(self, texts: Sequence[str]) -> F64:
        """Logits ``(len(texts), K)``: the fast path's, with the texts it is least sure of
        scored again by the accurate tier when the model has one (:mod:`cascade`)."""
        if self.accurate is None:
            return self.fast_logits(texts)
        cp, offsets = code_points(texts)
        if self._kernels is None:
            z = self.fast_logits(texts)
        else:
            z = self._kernel_logits(cp, offsets, len(texts))
        return self.accurate.apply(z, cp, offsets)

    def fast_logits(self, texts: Sequence[str]) -> F64:
        """The fast path's logits: the compiled kernel, else the numpy path."""
        if self._kernels is None:
            if len(texts) == 1:
                return self.logits_one(texts[0])[None, :]
            return self.logits_batch(texts)
        return self._kernel_logits(*code_points(texts), len(texts))

    def _kernel_logits(self, cp: npt.NDArray[np.uint32], offsets: I64, n: int) -> F64:
        lo, hi = self.extractor.char_range
        out = np.empty((n, len(LABELS)), dtype=np.float64)
        self._kernels.ensemble_logits(
            cp,
            offsets,
            lo,
            hi,
            *self._table_args,  # type: ignore[misc]
            *self._word_args,
            self.packed,
            self._tf_mode,
            self.l2,
            self.bias,
            out,
        )
        return out

    def logits_one(self, text: str) -> F64:
        """Logits of one text on the numpy path with a dense gather."""
        cols = self.extractor.cols_one(text)
        n = cols.size
        if not n:
            return self.bias.copy()
        cols.sort()
        first = np.empty(n, dtype=bool)
        first[0] = True
        np.not_equal(cols[1:], cols[:-1], out=first[1:])
        starts = np.flatnonzero(first)
        uniq = cols[starts]
        tfc = np.empty(starts.size, dtype=np.float64)
        tfc[:-1] = starts[1:] - starts[:-1]
        tfc[-1] = n - starts[-1]
        tf = np.where(self._tf_binary, 1.0, np.where(self._tf_sub, 1.0 + np.log(tfc), tfc))
        f = tf * self.idf[:, uniq]  # (M, n)
        norm = np.sqrt(np.einsum("mn,mn->m", f, f))
        norm[~self.l2 | (norm == 0.0)] = 1.0
        z: F64 = self.bias + np.einsum("mn,mnk->k", f / norm[:, None], self.weights[:, uniq, :])
        return z

    def counts(self, texts: Sequence[str]) -> sp.csr_matrix:
        """CSR matrix of n-gram counts (rows = texts, duplicates summed)."""
        rows, cols = self.extractor.pairs(texts)
        return count_matrix(rows, cols, (len(texts), self.n_features))

    def member_matrix(self, counts: sp.csr_matrix, m: int) -> sp.csr_matrix:
        return weight_rows(
            counts,
            self.idf[m],
            binary=bool(self.binary[m]),
            sublinear=bool(self.sublinear[m]),
            l2=bool(self.l2[m]),
        )

    def logits_batch(self, texts: Sequence[str]) -> F64:
        """Logits of many texts: one sparse @ dense product per member."""
        c = self.counts(texts)
        z = np.tile(self.bias, (len(texts), 1))
        for m in range(len(self.member_names)):
            z += self.member_matrix(c, m) @ self.weights[m]
        return z

    def predict_proba(self, texts: Sequence[str]) -> F64:
        if len(texts) == 1:
            return _softmax1(self.logits(texts)[0])[None, :]
        if not texts:
            return np.zeros((0, len(LABELS)), dtype=np.float64)
        return _softmax(self.logits(texts))

    # -- persistence -----------------------------------------------------------------------

    def save(self, directory: str | Path) -> Path:
        """Write ``arrays.npz`` (float32 weights), ``words.txt`` and ``meta.json``.

        Weights are rounded to float32 on disk: :meth:`load` gives the model that serves, so
        reload before comparing paths or computing reported metrics.
        """
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        ex = self.extractor
        np.savez_compressed(
            d / _ARRAYS,
            char_hashes=ex.char_hashes,
            idf=self.idf.astype(np.float32),
            weights=self.weights.astype(np.float32),
            bias=self.bias,
        )
        (d / _WORDS).write_text(ex.word_keys.joined, encoding="utf-8")
        if self.accurate is not None:
            np.savez_compressed(d / _ACCURATE, **self.accurate.arrays())
        meta = {
            "format_version": FORMAT_VERSION if self.accurate is None else ACCURATE_FORMAT_VERSION,
            "labels": list(LABELS),
            **self._shape_meta(),
            "n_features": self.n_features,
        }
        (d / _META).write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> CompiledEnsemble:
        d = Path(directory)
        meta = json.loads((d / _META).read_text(encoding="utf-8"))
        if meta.get("format_version") not in (FORMAT_VERSION, ACCURATE_FORMAT_VERSION):
            raise ValueError(f"unsupported ensemble format {meta.get('format_version')!r}")
        if tuple(meta["labels"]) != LABELS:
            raise ValueError(f"label order {meta['labels']!r} != {LABELS!r}")
        try:
            words = WordKeys((d / _WORDS).read_text(encoding="utf-8"), meta["n_word_keys"])
        except ValueError as e:
            raise ValueError(f"words.txt does not match meta.json: {e}") from None
        with np.load(d / _ARRAYS) as z:
            char_hashes = z["char_hashes"]
            idf = z["idf"]
            weights = z["weights"]
            bias = z["bias"].astype(np.float64)
        accurate = None
        if meta.get("accurate") is not None:
            with np.load(d / _ACCURATE, allow_pickle=False) as a:
                accurate = AccurateTier.from_arrays(a, meta["accurate"])
        return cls(
            char_hashes=char_hashes,
            char_range=(meta["char_range"][0], meta["char_range"][1]),
            word_keys=words,
            word_n=meta["word_n"],
            member_names=meta["member_names"],
            idf=idf,
            weights=weights,
            bias=bias,
            binary=meta["binary"],
            sublinear=meta["sublinear"],
            l2=meta["l2"],
            meta=meta.get("extra", {}),
            accurate=accurate,
        )

    def _shape_meta(self) -> dict[str, Any]:
        """What, besides the arrays, rebuilds the model: shared by both on-disk forms."""
        ex = self.extractor
        return {
            "char_range": list(ex.char_range),
            "word_n": ex.word_n,
            "n_word_keys": len(ex.word_keys),
            "member_names": list(self.member_names),
            "binary": [bool(b) for b in self.binary],
            "sublinear": [bool(b) for b in self.sublinear],
            "l2": [bool(b) for b in self.l2],
            "extra": self.meta,
            "accurate": None if self.accurate is None else self.accurate.describe(),
        }

    # -- prepared (mapped) form -----------------------------------------------------------

    def save_prepared(self, directory: str | Path, *, tables: bool = True) -> Path:
        """Write the serving form: the packed rows (and, with ``tables``, the kernels' hash
        tables) as ``.npy`` files, ready to be memory-mapped by :meth:`map_prepared` with no
        parsing, decompression or packing.

        Without tables this is what training logs (the bundle, format 2): the loader child
        then builds the tables itself, so that no index a kernel follows ever comes from the
        artifact store. With them it is a host cache entry; every process on the host that
        maps the same directory shares one copy in the page cache."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "packed": self.packed,
            "char_hashes": self.extractor.char_hashes,
            "bias": self.bias,
        }
        if self.accurate is not None:
            for name, array in self.accurate.arrays().items():
                arrays[f"accurate_{name}"] = array
        for name, array in arrays.items():
            _save_npy(d / f"{name}.npy", array)
        (d / _WORDS).write_text(self.extractor.word_keys.joined, encoding="utf-8")
        meta = {"prepared_format": PREPARED_FORMAT, **self._shape_meta()}
        (d / _PREPARED_META).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        if tables:
            self.save_tables(d)
        return d

    def save_tables(self, directory: str | Path) -> None:
        """Add the kernels' hash tables (built at load) to a prepared directory; nothing when
        this model runs the numpy path, whose mapping builds none."""
        if self._table_args is None or self._word_args is None:
            return
        d = Path(directory)
        char_table, char_shift = self._table_args
        *_, word_table, word_shift = self._word_args
        _save_npy(d / "char_table.npy", char_table)
        _save_npy(d / "word_table.npy", word_table)
        shifts = {"char_shift": int(char_shift), "word_shift": int(word_shift)}
        (d / _TABLES_META).write_text(json.dumps(shifts), encoding="utf-8")

    @classmethod
    def map_prepared(
        cls, directory: str | Path, *, untrusted: bool = False, serve: bool = True
    ) -> CompiledEnsemble:
        """The model over read-only memory maps of :meth:`save_prepared`'s files.

        Costs the serving process milliseconds: no decompression and no table building;
        the page tables are filled here, off the request path. ``untrusted``: the files came
        from an artifact store (a verified bundle, still written by whoever registered it):
        also check that the char hashes are sorted and unique, and ignore any tables the
        directory holds (they are built here, from the keys). ``serve=False`` (the loader
        child, which prepares but never answers): build the tables and nothing else, so
        neither the scoring kernels nor the normaliser are loaded or run."""
        d = Path(directory)
        meta = json.loads((d / _PREPARED_META).read_text(encoding="utf-8"))
        if meta.get("prepared_format") != PREPARED_FORMAT:
            raise ValueError(f"unsupported prepared format {meta.get('prepared_format')!r}")

        def mapped(name: str) -> Any:
            array = np.load(d / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            # The page cache already holds the file (the loader child wrote it): this only
            # fills this process's page tables, off the request path and off the GIL.
            populate(array)
            return array

        char_hashes = mapped("char_hashes")
        words = WordKeys.from_file(d / _WORDS, int(meta["n_word_keys"]))
        extractor = Extractor(
            char_hashes, (meta["char_range"][0], meta["char_range"][1]), words, meta["word_n"],
            check=untrusted,
        )  # fmt: skip
        packed = mapped("packed")
        bias = np.array(mapped("bias"))
        _check_mapped_shapes(meta, extractor.n_features, packed, bias)
        self = cls.__new__(cls)
        accurate = None
        if meta.get("accurate") is not None:
            names = [p.name[len("accurate_") : -len(".npy")] for p in d.glob("accurate_*.npy")]
            accurate = AccurateTier.from_arrays(
                {name: mapped(f"accurate_{name}") for name in names}, meta["accurate"]
            )
        self._setup(
            extractor=extractor, member_names=meta["member_names"], packed=packed, bias=bias,
            binary=meta["binary"], sublinear=meta["sublinear"], l2=meta["l2"],
            meta=meta.get("extra", {}), accurate=accurate,
        )  # fmt: skip
        shifts = _read_shifts(d, meta)
        if shifts is not None and not untrusted:
            self._table_args = (_mapped_table(mapped("char_table"), shifts[0]), shifts[0])
            n_words = len(words)
            self._word_args = (
                _word_chars(), extractor.word_n if n_words else 0, len(char_hashes),
                _mapped_table(mapped("word_table"), shifts[1]), shifts[1],
            )  # fmt: skip
        if serve:
            self._start_serving()
        else:
            self.build_tables()
        return self

    def build_tables(self) -> None:
        """The kernels' hash tables, unless the numba kernels are unavailable (then the numpy
        path needs none). A repeated key raises ``ValueError``: a column would be unreachable."""
        kernels = _load_kernels()
        if kernels is None:
            return
        if self._table_args is None:
            self._table_args = self._char_table(kernels)
        if self._word_args is None:
            self._word_args = self._word_table(kernels)

    @classmethod
    def open_bundle(cls, directory: str | Path) -> CompiledEnsemble:
        """Either form a bundle's directory holds: the serving arrays (format 2, mapped as
        they are) or the compressed form of format 1 (:meth:`save`, decompressed and packed)."""
        d = Path(directory)
        if (d / _PREPARED_META).is_file():
            return cls.map_prepared(d, untrusted=True)
        return cls.load(d)


def _save_npy(path: Path, array: Any) -> None:
    # np.save pads its header to 64 bytes and mmap starts on a page: mapped rows stay
    # cache-line aligned, as the kernel's packed layout needs.
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)


def _check_mapped_shapes(meta: dict[str, Any], n_features: int, packed: Any, bias: Any) -> None:
    """The kernels index the packed rows without bounds checks: a file of the wrong shape or
    type must be refused here, not read past its end on a request."""
    width = len(meta["member_names"]) * (1 + len(LABELS))
    if packed.dtype != np.float32 or packed.ndim != 2 or not packed.flags.c_contiguous:
        raise ValueError(f"packed.npy is {packed.dtype} {packed.ndim}-d, not C float32 2-d")
    if packed.shape != (n_features, -(-width // 16) * 16):
        raise ValueError(f"packed.npy shape {packed.shape} does not fit {n_features} features")
    if packed.ctypes.data % 64:
        raise ValueError("packed.npy rows are not 64-byte aligned")
    if bias.shape != (len(LABELS),):
        raise ValueError(f"bias.npy shape {bias.shape} != ({len(LABELS)},)")
    for flags in ("binary", "sublinear", "l2"):
        if len(meta[flags]) != len(meta["member_names"]):
            raise ValueError(f"{flags} names {len(meta[flags])} members, not one per member")


def _read_shifts(d: Path, meta: dict[str, Any]) -> tuple[np.uint64, np.uint64] | None:
    """The tables' shifts: ``tables.json`` (or, in an entry an older server prepared, the
    prepared meta); None when the directory holds no tables."""
    source = meta
    if (d / _TABLES_META).is_file():
        source = json.loads((d / _TABLES_META).read_text(encoding="utf-8"))
    if "char_shift" not in source or not all((d / f"{t}.npy").is_file() for t in _TABLES):
        return None
    return np.uint64(source["char_shift"]), np.uint64(source["word_shift"])


def _mapped_table(table: Any, shift: np.uint64) -> Any:
    """A table as `line_table` builds it: 2**bits buckets (bits >= 1) and shift 64 - bits, or
    the empty table of a model without char n-grams (`_char_table`: no buckets, shift 0)."""
    rows = table.shape[0] if table.ndim == 2 else -1
    if table.dtype != np.uint64 or table.shape != (rows, 8) or rows == 1 or rows & (rows - 1):
        raise ValueError(f"a hash table of shape {table.shape} and type {table.dtype}")
    if int(shift) != (64 - (rows.bit_length() - 1) if rows else 0):
        raise ValueError(f"shift {int(shift)} does not fit a table of {rows} buckets")
    return table


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and np.isnan(v)


def _as_texts(model_input: Any) -> list[str]:
    """Accept a DataFrame with a ``text`` column, a Series, a dict of lists, a list or a str."""
    if isinstance(model_input, str):
        values: Any = [model_input]
    elif hasattr(model_input, "columns"):
        if "text" not in model_input.columns:
            raise ValueError("model input must have a 'text' column")
        values = model_input["text"].tolist()
    elif isinstance(model_input, dict):
        values = model_input["text"]
        values = [values] if isinstance(values, str) else list(values)
    elif hasattr(model_input, "tolist"):
        values = model_input.tolist()
    else:
        values = list(model_input)
    return [
        v if isinstance(v, str) else ("" if v is None or _is_nan(v) else str(v)) for v in values
    ]


CACHE_SIZE = 4096
CACHE_MAX_BYTES = 4 << 20


def _entry_bytes(entry: tuple[F64, int]) -> int:
    return entry[1]


class EnsembleSentimentModel(PythonModel):
    """MLflow pyfunc wrapper around :class:`CompiledEnsemble`.

    Logged without its arrays (they are artifacts read in :meth:`load_context`), so its pickle
    is a few hundred bytes. ``predict_texts`` is the server's pandas-free fast path.
    """

    ARTIFACT_KEY = "ensemble"
    _skip_type_hint_validation = True  # plain ``predict`` (no MLflow type-hint wrapping)

    def __init__(
        self,
        compiled: CompiledEnsemble | None = None,
        cache_size: int = CACHE_SIZE,
        cache_max_bytes: int = CACHE_MAX_BYTES,
    ) -> None:
        """Single-text answers are cached, at most ``cache_size`` of them and
        ``cache_max_bytes`` of keys and values together (0 turns the cache off): texts may be
        thousands of four-byte characters each, so a count alone does not bound memory."""
        self._compiled = compiled
        self._cache_size = cache_size
        self._cache_max_bytes = cache_max_bytes
        self._cache: LRUCache[str, tuple[F64, int]] = LRUCache(
            maxsize=max(cache_max_bytes, 1), getsizeof=_entry_bytes
        )
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"cache_size": self._cache_size, "cache_max_bytes": self._cache_max_bytes}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # a model logged before the byte bound existed gets the default bound
        self.__init__(  # type: ignore[misc]
            None,
            int(state.get("cache_size", CACHE_SIZE)),
            int(state.get("cache_max_bytes", CACHE_MAX_BYTES)),
        )

    def load_context(self, context: Any) -> None:
        self._compiled = CompiledEnsemble.open_bundle(context.artifacts[self.ARTIFACT_KEY])
        self.clear_cache()

    @property
    def labels(self) -> tuple[str, ...]:
        return LABELS

    @property
    def compiled(self) -> CompiledEnsemble:
        if self._compiled is None:
            raise RuntimeError("model not loaded: call load_context first")
        return self._compiled

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def predict_texts(self, texts: Sequence[str]) -> F64:
        """Probabilities, float64, shape ``(len(texts), 3)``, columns in :data:`LABELS` order."""
        compiled = self.compiled
        if isinstance(texts, str):
            texts = [texts]
        if len(texts) == 1 and self._cache_size > 0 and self._cache_max_bytes > 0:
            text = texts[0]
            with self._lock:
                entry = self._cache.get(text)
            if entry is not None:
                return entry[0][None, :].copy()
            hit = _softmax1(compiled.logits(texts)[0])
            hit.flags.writeable = False
            self._remember(text, hit)
            return hit[None, :].copy()
        return compiled.predict_proba(list(texts))

    def _remember(self, text: str, proba: F64) -> None:
        # the key's own size (its characters' width included) and the array with its header
        size = sys.getsizeof(text) + sys.getsizeof(proba)
        if size > self._cache_max_bytes:
            return
        with self._lock:
            while len(self._cache) >= self._cache_size:
                self._cache.popitem()  # the least recently used
            self._cache[text] = (proba, size)  # evicts by bytes as needed

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> Any:
        pd = importlib.import_module("pandas")
        proba = self.predict_texts(_as_texts(model_input))
        return pd.DataFrame(proba, columns=list(LABELS))
