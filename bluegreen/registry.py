"""The MLflow registry as bluegreen sees it: which version should serve, and the marks we leave.

Blocking (HTTP or sqlite); callers run these methods in an executor. Errors that mean "the
registry is not reachable right now" become `RegistryUnavailable`, so the caller can back off
without touching the live slot; "no such thing" is an ordinary answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import time
from typing import Any

import attrs

REJECTED_TAG = "bluegreen.rejected"
REJECTED_AT_TAG = "bluegreen.rejected_at"
PROMOTED_BY_TAG = "bluegreen.promoted_by"
ALIAS_RESTORED_TAG = "bluegreen.alias_restored_from"
CANARY_PERCENT_TAG = "bluegreen.canary_percent"
MANIFEST_TAG = "bluegreen.manifest_sha256"
"""Also `bluegreen.model.bundle.MANIFEST_TAG`; spelled here so the registry view needs no
import of the model package."""
UNREJECTED_TAG = "bluegreen.unrejected"
"""Version tag: who cleared a rejection, when, and what the rejection said (the audit trail)."""
HISTORY_TAG_PREFIX = "bluegreen.history."
"""Registered-model tags `bluegreen.history.<seq>-<nonce>`, one JSON entry each: the fleet's
promotion history, read in the control check's own `get_registered_model` call."""
HISTORY_SEQ_DIGITS = 10


class RegistryUnavailable(Exception):
    pass


class RegistryDeadlineExceeded(RegistryUnavailable):
    """A registry call ran past `BLUEGREEN_REGISTRY_TIMEOUT_S`; it was abandoned, not awaited."""


class UnknownVersion(LookupError):
    pass


@attrs.frozen
class Target:
    """A registry version and why it was chosen."""

    version: int
    run_id: str | None
    source: str
    """`alias:production`, `stage:Production`, `pinned`..."""
    rejected: str | None = None
    """The reason another process rejected it, if any."""
    promoted_by: str | None = None
    """Set when an admin action or a canary decision already vetted this version: every
    process then promotes it directly instead of running its own canary."""
    manifest_sha256: str | None = None
    """The bundle manifest's sha256 recorded at registration (`bluegreen.manifest_sha256`)."""


@attrs.frozen
class ControlView:
    """The cheap per-interval view: alias target and fleet-wide control tags."""

    alias_version: int | None
    canary_percent: float | None
    history: tuple[tuple[str, str], ...] = ()
    """The raw `bluegreen.history.*` tags (key, JSON), in key order: oldest first."""


@attrs.frozen
class VersionInfo:
    version: int
    rejected: str | None
    created_at: float
    """Unix seconds."""


def _is_not_found(exc: BaseException) -> bool:
    code = getattr(exc, "error_code", "")
    return code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}


def configure_mlflow_client_env(tracking_uri: str, timeout_s: float = 10.0) -> None:
    """Point every MLflow API in this process at our registry.

    `models:/` downloads resolve through MLflow's global registry URI, not through our
    client, so the embedded default (no MLFLOW_TRACKING_URI set) would otherwise look in
    ./mlruns. MLflow's REST client also retries for minutes by default; we back off ourselves.
    One retry and a per-attempt timeout of half the call deadline: both attempts fit inside
    the deadline, so a thread abandoned at the deadline ends soon after on its own (a server
    that trickles bytes can still hold it longer, which is why the deadline does not rely on
    this timeout).
    """
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, math.floor(timeout_s / 2))))
    import mlflow
    import mlflow.artifacts
    import mlflow.pyfunc  # imported now, not on the first swap, so app start-up freezes it

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)


class Registry:
    def __init__(
        self, tracking_uri: str, model_name: str, alias: str, stages: tuple[str, ...]
    ) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.alias = alias
        self.stages = stages
        self._client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)

    @property
    def alias_name(self) -> str:
        return self.alias

    def model_uri(self, version: int) -> str:
        return f"models:/{self.model_name}/{version}"

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if _is_not_found(exc):
                raise UnknownVersion(str(exc)) from exc
            raise RegistryUnavailable(f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    def _target(self, mv: Any, source: str) -> Target:
        tags = dict(getattr(mv, "tags", {}) or {})
        return Target(
            int(mv.version), mv.run_id, source, tags.get(REJECTED_TAG), tags.get(PROMOTED_BY_TAG),
            tags.get(MANIFEST_TAG) or None,
        )  # fmt: skip

    def resolve(self) -> Target | None:
        """The version that should serve: alias first, then the latest in each fallback stage."""
        try:
            mv = self._call(self._client.get_model_version_by_alias, self.model_name, self.alias)
            return self._target(mv, f"alias:{self.alias}")
        except UnknownVersion:
            pass
        if not self.stages:
            return None
        try:
            versions = self._call(self._client.search_model_versions, f"name='{self.model_name}'")
        except UnknownVersion:
            return None
        for stage in self.stages:
            in_stage = [
                self._target(mv, f"stage:{stage}")
                for mv in versions
                if (mv.current_stage or "").lower() == stage.lower()
            ]
            usable = [t for t in in_stage if not t.rejected]
            if usable:
                return max(usable, key=lambda t: t.version)
        return None

    def control_view(self) -> ControlView:
        try:
            model = self._call(self._client.get_registered_model, self.model_name)
        except UnknownVersion:
            return ControlView(None, None)
        aliases = dict(getattr(model, "aliases", {}) or {})
        tags = dict(getattr(model, "tags", {}) or {})
        raw = aliases.get(self.alias)
        percent = tags.get(CANARY_PERCENT_TAG)
        try:
            canary = float(percent) if percent not in (None, "") else None
        except ValueError:
            canary = None
        history = tuple(sorted((k, v) for k, v in tags.items() if k.startswith(HISTORY_TAG_PREFIX)))
        return ControlView(int(raw) if raw is not None else None, canary, history)

    def list_versions(self) -> list[VersionInfo]:
        """Every version of the model, newest first, with its rejection if any."""
        try:
            found = self._call(self._client.search_model_versions, f"name='{self.model_name}'")
        except UnknownVersion:
            return []
        infos = [
            VersionInfo(
                int(mv.version),
                dict(getattr(mv, "tags", {}) or {}).get(REJECTED_TAG),
                (mv.creation_timestamp or 0) / 1000,
            )
            for mv in found
        ]
        return sorted(infos, key=lambda i: i.version, reverse=True)

    def append_history(
        self,
        entry_json: str,
        keep: int,
        current: tuple[tuple[str, str], ...] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Add one history entry after the newest, then drop the oldest beyond `keep`.

        Each entry is a tag of its own, so writers never rewrite each other's entries. The
        sequence number orders them; the nonce keeps two processes that append at the same
        moment (same sequence number) from overwriting each other. `event_id` names an event
        that several processes record on their own (every worker that follows one alias
        move): in place of the nonce, its digest makes them all write the same key when they
        append at the same moment, so the log keeps one entry, not one per process. `current`
        is the history as just read (saves reading it again). Returns the tag's key."""
        history = self.control_view().history if current is None else current
        seqs = [_seq_of(key) for key, _ in history]
        seq = max(seqs, default=0) + 1
        nonce = (
            hashlib.sha256(event_id.encode()).hexdigest()[:6] if event_id else secrets.token_hex(3)
        )
        key = f"{HISTORY_TAG_PREFIX}{seq:0{HISTORY_SEQ_DIGITS}d}-{nonce}"
        self._call(self._client.set_registered_model_tag, self.model_name, key, entry_json)
        for old, _ in history[: max(0, len(history) + 1 - keep)]:
            with contextlib.suppress(UnknownVersion):
                self._call(self._client.delete_registered_model_tag, self.model_name, old)
        return key

    def get(self, version: int) -> Target:
        mv = self._call(self._client.get_model_version, self.model_name, str(version))
        return self._target(mv, "pinned")

    def has_versions(self) -> bool:
        try:
            found = self._call(
                self._client.search_model_versions, f"name='{self.model_name}'", max_results=1
            )
        except UnknownVersion:
            return False
        return bool(found)

    def tag_rejected(self, version: int, reason: str) -> None:
        self._call(
            self._client.set_model_version_tag,
            self.model_name, str(version), REJECTED_TAG, reason[:4000],
        )  # fmt: skip
        self._call(
            self._client.set_model_version_tag,
            self.model_name, str(version), REJECTED_AT_TAG, str(int(time.time())),
        )  # fmt: skip

    def clear_rejected(self, version: int, *, audit: str) -> None:
        """Remove the rejection; `audit` (who, why, what it said) stays as a version tag."""
        self._call(
            self._client.set_model_version_tag,
            self.model_name, str(version), UNREJECTED_TAG, audit[:4000],
        )  # fmt: skip
        for tag in (REJECTED_TAG, REJECTED_AT_TAG):
            with contextlib.suppress(UnknownVersion):
                self._call(
                    self._client.delete_model_version_tag, self.model_name, str(version), tag
                )

    def set_alias(self, version: int, *, who: str, why: str) -> None:
        # Tag first: a process that sees the new alias must also see that it was vetted.
        self.mark_promoted(version, who=who, why=why)
        self._call(
            self._client.set_registered_model_alias, self.model_name, self.alias, str(version)
        )

    def mark_promoted(self, version: int, *, who: str, why: str) -> None:
        self._call(
            self._client.set_model_version_tag,
            self.model_name, str(version), PROMOTED_BY_TAG, f"{who}: {why}"[:4000],
        )  # fmt: skip

    def alias_version(self) -> int | None:
        return self.control_view().alias_version

    def set_canary_percent(self, percent: float) -> None:
        self._call(
            self._client.set_registered_model_tag,
            self.model_name, CANARY_PERCENT_TAG, f"{percent:g}",
        )  # fmt: skip

    def restore_alias(self, good_version: int, rejected_version: int) -> None:
        """Point the alias back at a servable version, recording what was rejected."""
        self.set_alias(
            good_version, who="bluegreen", why=f"version {rejected_version} was rejected"
        )
        self._call(
            self._client.set_model_version_tag,
            self.model_name, str(good_version), ALIAS_RESTORED_TAG, str(rejected_version),
        )  # fmt: skip


def _seq_of(key: str) -> int:
    try:
        return int(key[len(HISTORY_TAG_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return 0
