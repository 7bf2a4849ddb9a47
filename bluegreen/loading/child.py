"""The loader child: ``python -m bluegreen.loading.child REQUEST_FD ANSWER_FD``.

Spawned by `supervisor.LoaderChild`, never forked from the server, and kept alive between
loads so that its imports (mlflow, numba) are paid once. For each request line (JSON) it
downloads a version, verifies it, prepares it into the host's version cache and answers one
JSON line. It runs at low CPU priority: on a small machine it competes with the server's
requests for the cores. Whatever it does, the server can kill it at any moment; nothing it
leaves half-done is ever used (entries are published by one rename, stages are swept).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from bluegreen.heap import malloc_trim
from bluegreen.loading.cache import VersionCache
from bluegreen.loading.fetch import Pace, fetch_bundle
from bluegreen.loading.pipe import Lines, send
from bluegreen.logging import configure_logging, event

log = logging.getLogger("bluegreen.loader")
MLMODEL = "MLmodel"


class Refused(Exception):
    """The version itself is bad: answered with ``error`` = the kind (``integrity``...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    try:
        body = yaml.safe_load(path.read_text(encoding="utf-8"))  # data only, no YAML tags
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise Refused("integrity", f"{MLMODEL} is unreadable: {exc}") from None
    return body if isinstance(body, dict) else {}


def handle(request: dict[str, Any], cache: VersionCache) -> dict[str, Any]:
    """Fetch → verify → prepare one version; the answer says where it lies, or why not."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    from bluegreen.model import bundle

    version = int(request["version"])
    expected = request.get("manifest_sha256") or None
    repo: Any = get_artifact_repository(request["uri"])
    with cache.stage(version) as stage:
        (stage / "head").mkdir()
        (stage / "src").mkdir()
        mlmodel = Path(repo.download_artifacts(MLMODEL, str(stage / "head")))
        metadata = _read_mlmodel(mlmodel).get("metadata") or {}
        bundle_path = metadata.get(bundle.BUNDLE_PATH_KEY)
        fmt = metadata.get(bundle.FORMAT_KEY)
        if fmt not in bundle.FORMATS or not isinstance(bundle_path, str):
            if expected:
                raise Refused(
                    "integrity", f"the registry records a bundle, but {MLMODEL} names none"
                )
            return {"kind": "pyfunc"}
        expected = expected or metadata.get(bundle.MANIFEST_TAG)
        manifest = Path(
            repo.download_artifacts(f"{bundle_path}/{bundle.MANIFEST}", str(stage / "head"))
        )
        try:
            body = bundle.read_manifest(manifest, expected)
        except bundle.IntegrityError as exc:
            raise Refused("integrity", str(exc)) from None
        listed = body["format"]
        if listed != fmt:
            raise Refused("integrity", f"{MLMODEL} says {fmt}, its manifest {listed}")
        entry = cache.entry(version, bundle.file_sha256(manifest))
        with cache.preparing(version):
            if not cache.is_ready(entry):
                _prepare(
                    repo,
                    bundle_path,
                    manifest,
                    body,
                    stage=stage,
                    entry=entry,
                    cache=cache,
                    pace=Pace(float(request.get("max_mib_per_s") or 0) * 2**20),
                )
        return {"kind": "bundle", "path": str(entry)}


def _prepare(
    repo: Any, bundle_path: str, manifest: Path, body: dict[str, Any], *, stage: Path,
    entry: Path, cache: VersionCache, pace: Pace,
) -> None:  # fmt: skip
    """Format 2 is published where it was downloaded, once its tables are built beside it;
    format 1 is decompressed and packed into a new directory first."""
    from bluegreen.model import bundle
    from bluegreen.model.inference import CompiledEnsemble

    started = time.perf_counter()
    try:
        source = fetch_bundle(repo, bundle_path, manifest, body, dst=stage / "src", pace=pace)
    except bundle.IntegrityError as exc:
        raise Refused("integrity", str(exc)) from None
    fmt = body["format"]
    fetched = time.perf_counter()
    try:
        if fmt == bundle.FORMAT:
            compiled = CompiledEnsemble.map_prepared(source, untrusted=True, serve=False)
            compiled.save_tables(source)
            prepared = source
        else:
            compiled = CompiledEnsemble.load(source)
            prepared = compiled.save_prepared(stage / "prepared")
            if (source / bundle.SMOKE_SET).is_file():
                shutil.copyfile(source / bundle.SMOKE_SET, prepared / bundle.SMOKE_SET)
        _check_smoke_set(prepared)
    except (ValueError, KeyError, OSError) as exc:
        raise Refused("prepare", f"{type(exc).__name__}: {exc}") from None
    del compiled
    # Not mapped here: the files are in the page cache already (just written), and each
    # worker warms its read-only-array kernels at start (`loader.warm_mapped_kernels`).
    cache.publish(prepared, entry)
    event(log, "loader.prepared", path=entry.name, format=fmt,
          mib=round(sum(f["size"] for f in body["files"].values()) / 2**20, 1),
          fetch_s=round(fetched - started, 3), paced_s=round(pace.slept_s, 3),
          prepare_s=round(time.perf_counter() - fetched, 3))  # fmt: skip


def _check_smoke_set(prepared: Path) -> None:
    """The version's own smoke set (verified with the bundle) travels in the cache entry, where
    every worker that maps the version reads it; parsed here first, so that an unreadable one
    refuses the version instead of being skipped."""
    from bluegreen.model import bundle

    if (prepared / bundle.SMOKE_SET).is_file():
        bundle.read_smoke_set(prepared / bundle.SMOKE_SET)


def serve(requests: Lines, answers: int, cache: VersionCache, idle_exit_s: float = 0.0) -> None:
    """Answer requests until the server closes the pipe (it stopped, or died: either way this
    process ends with it) or nothing came for ``idle_exit_s`` (0: wait forever): an idle child
    gives its memory back, and the server spawns a new one for the next load."""
    while True:
        try:
            request = requests.receive(idle_exit_s or None)
        except EOFError:
            return
        if request is None:
            event(log, "loader.idle_exit", idle_s=idle_exit_s)
            return
        started = time.perf_counter()
        try:
            answer = handle(request, cache)
        except Refused as exc:
            answer = {"error": exc.kind, "detail": str(exc)[:1000]}
        except Exception as exc:
            answer = {"error": "fetch", "detail": f"{type(exc).__name__}: {str(exc)[:1000]}"}
        answer["id"] = request.get("id")
        answer["duration_s"] = round(time.perf_counter() - started, 3)
        event(log, "loader.answer", version=request.get("version"), **{
            k: v for k, v in answer.items() if k in {"kind", "error", "duration_s"}
        })  # fmt: skip
        send(answers, answer)
        malloc_trim()  # the version's arrays are freed: give the pages back
        # Versions no process maps any more go now, not at the next restart: a long-running
        # fleet that swaps often would otherwise fill the state volume.
        removed = cache.sweep()
        if removed:
            event(log, "cache.swept", removed=removed)


def _sched_idle() -> bool:
    """SCHED_IDLE where the platform has it (Linux): any runnable thread of normal priority
    preempts this process at once, so a load never delays a request by a time slice."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return False
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return False
    return True


def main(argv: list[str]) -> int:
    """``argv``: the request and answer pipe fds. The first line on the request pipe is the
    parent's settings (the child reads no environment of its own: the typed settings of the
    server are the one source)."""
    requests = Lines(int(argv[1]))
    try:
        config = requests.receive()
    except EOFError:
        return 0  # the server went away before it said anything
    assert config is not None  # no timeout: a message or EOF
    configure_logging(config["log_level"])
    if config["nice"]:
        os.nice(config["nice"])
    sched_idle = bool(config.get("sched_idle")) and _sched_idle()
    from bluegreen.registry import configure_mlflow_client_env

    configure_mlflow_client_env(config["tracking_uri"])
    from bluegreen.model.inference import warm_table_kernels

    started = time.perf_counter()
    warm_table_kernels()
    event(log, "loader.started", nice=config["nice"], sched_idle=sched_idle,
          warm_s=round(time.perf_counter() - started, 3))  # fmt: skip
    cache = VersionCache(Path(config["cache_dir"]))
    serve(requests, int(argv[2]), cache, config["idle_exit_s"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
