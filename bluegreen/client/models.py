"""Typed results of the client's calls (msgspec Structs, decoded strictly from the server's
JSON; fields a newer server adds are ignored, fields an older one lacks take their default)."""

from __future__ import annotations

import msgspec


# --- /predict, /predict/batch, /healthz, /readyz ------------------------------------------
class SentimentResult(msgspec.Struct, frozen=True):
    sentiment: str
    """One of 부정, 중립/복합, 긍정."""
    score: float
    """Probability of `sentiment`."""
    details: dict[str, float]
    """Probability per label."""


class Prediction(msgspec.Struct, frozen=True):
    sentiment: str
    score: float
    details: dict[str, float]
    model_version: int
    model_slot: str


class BatchPrediction(msgspec.Struct, frozen=True):
    results: list[SentimentResult]
    model_version: int
    """Every text of a batch is answered by one version."""
    model_slot: str


class Health(msgspec.Struct, frozen=True):
    """`/healthz` and `/readyz`. `ready` is True only while a version serves."""

    status: str
    version: int | None = None
    slot: str | None = None
    reason: str | None = None

    @property
    def ready(self) -> bool:
        return self.status == "ready"


# --- Open Inference Protocol (V2) ----------------------------------------------------------
class ServerMetadata(msgspec.Struct, frozen=True):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(msgspec.Struct, frozen=True):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, object] | None = None


class ModelMetadata(msgspec.Struct, frozen=True):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, object] = msgspec.field(default_factory=dict)


class Inference(msgspec.Struct, frozen=True):
    """A V2 inference answer, its tensors decoded (JSON or binary alike)."""

    model_name: str
    model_version: int
    id: str | None
    slot: str | None
    labels: list[str]
    """The most probable label of each text."""
    probabilities: list[list[float]]
    """One row per text, in the label order of the model metadata (`parameters.labels`)."""


# --- /admin --------------------------------------------------------------------------------
class SlotInfo(msgspec.Struct, frozen=True):
    slot: str
    state: str
    version: int | None = None
    run_id: str | None = None
    loaded_at: float | None = None
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    last_failure: str | None = None


class Readiness(msgspec.Struct, frozen=True):
    ready: bool
    reason: str | None = None
    detail: str | None = None


class Slots(msgspec.Struct, frozen=True):
    """`GET /admin/slots`: this process's two slots and what it knows of the registry."""

    model: str
    slots: list[SlotInfo]
    live: str | None = None
    """Name of the live slot (blue/green), None while nothing serves."""
    candidate: str | None = None
    canary_share: float = 0.0
    canary_percent: float = 0.0
    previous_version: int | None = None
    last_failure: str | None = None
    readiness: Readiness | None = None
    registry: RegistryState | None = None

    def slot(self, name: str | None) -> SlotInfo | None:
        return next((s for s in self.slots if s.slot == name), None) if name else None

    @property
    def live_version(self) -> int | None:
        live = self.slot(self.live)
        return live.version if live else None

    @property
    def candidate_version(self) -> int | None:
        candidate = self.slot(self.candidate)
        return candidate.version if candidate else None


class AliasInfo(msgspec.Struct, frozen=True):
    name: str
    version: int | None = None


class HistoryEntry(msgspec.Struct, frozen=True):
    version: int
    action: str
    """promote, pin, rollback, canary, repair or bootstrap."""
    from_version: int | None = None
    who: str = ""
    why: str = ""
    at: float = 0.0
    """Unix seconds."""


class RegistryState(msgspec.Struct, frozen=True):
    last_poll_ok: float | None = None
    last_error: str | None = None
    rejected_versions: dict[int, str] = msgspec.field(default_factory=dict)
    last_history_entry: HistoryEntry | None = None
    """The newest entry of the fleet-wide promotion history."""


class VersionInfo(msgspec.Struct, frozen=True):
    version: int
    rejected: str | None = None
    """The rejection reason, None when the version is not rejected."""
    created_at: float = 0.0
    in_history: bool = False


class Versions(msgspec.Struct, frozen=True):
    """`GET /admin/versions`: the alias, the fleet-wide history (newest first) and every
    registered version (newest first)."""

    model: str
    alias: AliasInfo
    live_version: int | None = None
    history: list[HistoryEntry] = msgspec.field(default_factory=list)
    versions: list[VersionInfo] = msgspec.field(default_factory=list)


class PromoteResult(msgspec.Struct, frozen=True):
    version: int
    outcome: str | None = None
    from_version: int | None = None
    alias_error: str | None = None
    """Set when this process switched but could not move the registry alias (the fleet will
    not follow)."""


class RollbackResult(msgspec.Struct, frozen=True):
    version: int
    """The version now serving."""
    from_version: int | None = None
    mode: str | None = None
    alias_error: str | None = None


class ReloadResult(msgspec.Struct, frozen=True):
    status: str
    """deployed, unchanged, no_target, skipped_rejected, repaired, failed, or in_progress
    (202: the reconcile outlasted the server's wait and goes on)."""
    version: int | None = None
    source: str | None = None
    detail: str = ""


class CanaryResult(msgspec.Struct, frozen=True):
    percent: float
    fleet_error: str | None = None


class AbortResult(msgspec.Struct, frozen=True):
    aborted_version: int


class RejectResult(msgspec.Struct, frozen=True):
    version: int
    rejected: str | None = None
    """The reason as the registry now records it (with who rejected it)."""
    live_version: int | None = None
    """What this process serves after the fleet moved off the version (if it was live)."""


class UnrejectResult(msgspec.Struct, frozen=True):
    version: int
    was: str | None = None
    """The rejection that was cleared."""
