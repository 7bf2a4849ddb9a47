"""The loader the slot manager calls: a version from the registry to a `LoadedModel`.

Two paths, chosen by what the version is (the loader child looks at its ``MLmodel``):

* **bundle** (our ensemble, data only): the child downloads, verifies and prepares it into
  the host's version cache; this process memory-maps the prepared arrays. Nothing from the
  artifact is executed, and every worker on the host shares one copy of the pages.
* **pyfunc** (any other MLflow model): loaded in this process by ``mlflow.pyfunc.load_model``,
  which unpickles and imports code from the artifact store. Only with
  ``BLUEGREEN_TRUST_MODEL_CODE`` on; otherwise the version is refused (stage ``untrusted``).
"""

from __future__ import annotations

import logging
import weakref
from pathlib import Path

import attrs

from bluegreen.loading.cache import VersionCache
from bluegreen.loading.supervisor import ChildConfig, LoaderChild
from bluegreen.logging import event
from bluegreen.registry import Registry, RegistryUnavailable
from bluegreen.serving.lifecycle import LoadRefused, TransientLoadError
from bluegreen.serving.model_handle import LoadedModel, ModelRef, load_from_registry
from bluegreen.settings import Settings

log = logging.getLogger("bluegreen.loader")


def map_bundle(ref: ModelRef, entry: Path, cache: VersionCache) -> LoadedModel:
    """Map a prepared cache entry and hold its lease until the model is freed. The version's
    own smoke set, when its bundle ships one, rides on the ref for the smoke gate."""
    from bluegreen.model import bundle
    from bluegreen.model.inference import CompiledEnsemble, EnsembleSentimentModel

    lease = cache.lease(entry)
    try:
        model = EnsembleSentimentModel(CompiledEnsemble.map_prepared(entry))
        if (entry / bundle.SMOKE_SET).is_file():
            ref = attrs.evolve(ref, smoke_set=bundle.read_smoke_set(entry / bundle.SMOKE_SET))
    except BaseException:
        lease.release()
        raise
    weakref.finalize(model, lease.release)
    return LoadedModel(
        ref, model.predict_texts, None, True, keepalive=model, collect_on_free=False,
        uncached_fn=model.compiled.predict_proba,
    )  # fmt: skip


def warm_mapped_kernels(scratch_root: Path) -> None:
    import tempfile

    import numpy as np

    from bluegreen.model.inference import CompiledEnsemble

    tiny = CompiledEnsemble(
        char_hashes=np.array([1, 2], dtype=np.uint64), char_range=(1, 2), word_keys=["준비"],
        word_n=1, member_names=["m"], idf=np.ones((1, 3)), weights=np.zeros((1, 3, 3)),
        bias=np.zeros(3), binary=[False], sublinear=[True], l2=[True],
    )  # fmt: skip
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".warm-", dir=scratch_root) as tmp:
        CompiledEnsemble.map_prepared(tiny.save_prepared(Path(tmp)))


class VersionLoader:
    """Blocking; the manager calls it on its load thread, off the event loop."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self.settings = settings
        self.registry = registry
        self.cache = VersionCache(settings.cache_dir)
        self.child = LoaderChild(
            ChildConfig(
                tracking_uri=settings.effective_tracking_uri,
                cache_dir=settings.cache_dir,
                nice=settings.lifecycle.loader_nice,
                sched_idle=settings.lifecycle.loader_sched_idle,
                log_level=settings.observability.log_level,
                idle_exit_s=settings.lifecycle.loader_idle_exit_s,
            )
        )

    def __call__(self, ref: ModelRef) -> LoadedModel:
        request = {
            "version": ref.version,
            "uri": ref.uri,
            "manifest_sha256": ref.manifest_sha256,
            "max_mib_per_s": self.settings.lifecycle.loader_max_mib_per_s,
        }
        answer = self.child.prepare(request, self.settings.lifecycle.load_timeout_s)
        kind, error = answer.get("kind"), answer.get("error")
        if kind == "bundle":
            loaded = map_bundle(ref, Path(answer["path"]), self.cache)
            event(log, "loader.mapped", version=ref.version, path=Path(answer["path"]).name,
                  child_s=answer.get("duration_s"))  # fmt: skip
            return loaded
        if kind == "pyfunc":
            if not self.settings.lifecycle.trust_model_code:
                raise LoadRefused(
                    "untrusted",
                    "not a bluegreen bundle: loading it would run code from the artifact "
                    "store (set BLUEGREEN_TRUST_MODEL_CODE=true to allow generic pyfunc models)",
                )
            return self._generic(ref)
        detail = str(answer.get("detail", "no detail"))
        if error in {"integrity", "prepare"}:
            raise LoadRefused(str(error), detail)
        self._raise_transient_if_registry_down(detail)
        raise LoadRefused("load", detail)

    def _generic(self, ref: ModelRef) -> LoadedModel:
        """In-process: the pyfunc's own code must run here. A hang is abandoned by the
        manager (this thread is never reused); its stage stays locked until we exit."""
        try:
            with self.cache.stage(ref.version) as stage:
                return load_from_registry(ref, stage)
        except Exception as exc:
            self._raise_transient_if_registry_down(f"{type(exc).__name__}: {exc}")
            raise

    def _raise_transient_if_registry_down(self, detail: str) -> None:
        try:
            self.registry.control_view()
        except RegistryUnavailable as down:
            raise TransientLoadError(
                f"registry unreachable while loading: {down} ({detail[:200]})"
            ) from None

    def abort(self) -> None:
        self.child.abort()

    def start(self) -> None:
        """Spawn the child, then warm this process's kernels on a tiny mapped model: compiling
        (or reading numba's cache for) the read-only-array kernels holds the GIL for a few
        hundred ms, which belongs to start-up, not to the first swap beside live traffic."""
        self.child.start()
        warm_mapped_kernels(self.cache.root)

    def close(self) -> None:
        self.child.close()
