"""Typed settings, read from the environment once and validated at start.

Every variable uses the `BLUEGREEN_` prefix except `MLFLOW_TRACKING_URI`, which MLflow's own
tools share. Names listed in DESIGN.md section 6a are a stable contract.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from bluegreen.model.labels import MAX_TEXT_CHARS as MODEL_MAX_TEXT_CHARS

ENV_PREFIX = "BLUEGREEN_"


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; raised at start, never at request time."""


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:  # also rejects NaN, which every comparison lets through
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be > 0, got {value}")


def _non_negative(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be >= 0, got {value}")


def _nice(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 19:
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be in 0..19, got {value}")


def _percent(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 100:
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be in 0..100, got {value}")


def _model_reads_whole(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    # a longer limit would let the model silently drop the end of what it was sent
    if value > MODEL_MAX_TEXT_CHARS:
        raise SettingsError(
            f"{ENV_PREFIX}{attribute.name.upper()} must be at most {MODEL_MAX_TEXT_CHARS}, the "
            f"longest text the model reads whole, got {value}"
        )


def _holds_longest_text(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < instance.max_text_chars:
        raise SettingsError(
            f"{ENV_PREFIX}{attribute.name.upper()} must be at least "
            f"{ENV_PREFIX}MAX_TEXT_CHARS ({instance.max_text_chars}), got {value}"
        )


def _fraction(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be in 0..1, got {value}")


def _canary_key(_: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    # The value is a secret: the message names the setting, never what it was set to.
    if value is not None and len(value) < 16:
        raise SettingsError(f"{ENV_PREFIX}{attribute.name.upper()} must be at least 16 characters")


def _networks(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    # strict: uvicorn would take a network with host bits set ("10.0.0.1/8") as a literal
    # name that never matches, silently trusting nobody.
    for item in value:
        try:
            if "/" in item:
                ipaddress.ip_network(item)
            else:
                ipaddress.ip_address(item)
        except ValueError:
            raise SettingsError(
                f"{ENV_PREFIX}{attribute.name.upper()} must be comma-separated IP addresses or "
                f"CIDR networks, got {item!r}"
            ) from None


@attrs.frozen(kw_only=True)
class Settings:
    """All configuration of one bluegreen process."""

    state_dir: Path = attrs.field(default=Path(".bluegreen"), converter=Path)
    """Project-local directory for the embedded registry (sqlite) and artifacts."""
    tracking_uri: str = ""
    """MLflow tracking/registry URI (`MLFLOW_TRACKING_URI`); empty means the embedded default."""
    model_name: str = "ensemble-sentiment-model"
    model_alias: str = "production"
    """Alias to follow; when absent, the latest version in `fallback_stages` serves."""
    fallback_stages: tuple[str, ...] = ("Production", "Staging")

    poll_interval_s: float = attrs.field(default=300.0, validator=_positive)
    """Full registry reconcile interval (alias, then stage fallback)."""
    control_interval_s: float = attrs.field(default=15.0, validator=_non_negative)
    """Cheap alias-only check between full polls; 0 disables it. Bounds fleet convergence."""
    registry_backoff_base_s: float = attrs.field(default=1.0, validator=_positive)
    registry_backoff_max_s: float = attrs.field(default=60.0, validator=_positive)
    registry_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    """Deadline of each registry call: past it the call is abandoned, reconciling backs off
    and an admin route answers 504 instead of hanging."""
    history_max: int = attrs.field(default=100, validator=_positive)
    """Promotion-history entries kept in the registry (the oldest are pruned beyond it)."""

    canary_percent: float = attrs.field(default=0.0, validator=_percent)
    """Share of prediction traffic a smoke-tested candidate answers; 0 promotes at once."""
    canary_min_requests: int = attrs.field(default=200, validator=_non_negative)
    canary_min_seconds: float = attrs.field(default=30.0, validator=_non_negative)
    canary_max_seconds: float = attrs.field(default=900.0, validator=_positive)
    """A canary that never meets `canary_min_requests` is decided after this long."""
    canary_max_error_rate_delta: float = attrs.field(default=0.01, validator=_fraction)
    """Candidate error rate may exceed live's by at most this much."""
    canary_max_p95_ratio: float = attrs.field(default=2.0, validator=_positive)
    """Candidate p95 latency may be at most this multiple of live's on the same inputs (the
    paired latencies, plus 1 ms slack)."""
    canary_shadow_fraction: float = attrs.field(default=0.05, validator=_fraction)
    """Share of live-answered requests also scored by the candidate to measure disagreement."""
    canary_min_pairs: int = attrs.field(default=50, validator=_non_negative)
    """Paired latencies (the same texts timed on live and candidate) a canary needs before its
    latency is judged; never more than `canary_min_requests`. 0 does not judge latency."""
    canary_pair_cpu_share: float = attrs.field(default=0.1, validator=_fraction)
    """Most of one core the paired timing may use; requests beyond it are not paired (never
    queued). 0 turns paired timing off, and with it the latency test."""
    canary_pair_max_texts: int = attrs.field(default=16, validator=_positive)
    """A batch is paired on its first this many texts."""
    canary_key: str | None = attrs.field(default=None, repr=False, validator=_canary_key)
    """Secret of the keyed hash that assigns client keys to the canary; a fleet sets the same
    value everywhere. Unset: a random key per host (`<state dir>/canary.key`). Never logged."""

    retain_previous: bool = False
    """Keep the previous version warm in the idle slot for instant rollback."""
    drain_timeout_s: float = attrs.field(default=30.0, validator=_positive)

    admin_token: str | None = attrs.field(default=None, repr=False)
    """Bearer token for /admin/*; unset disables admin (403). Never logged."""
    admin_auth_max_failures: int = attrs.field(default=10, validator=_positive)
    """Failed admin logins one peer may make within `admin_auth_window_s`; then 429."""
    admin_auth_window_s: float = attrs.field(default=60.0, validator=_positive)
    webhook_secret: str | None = attrs.field(default=None, repr=False)
    """HMAC secret for MLflow registry webhooks; unset disables the webhook route."""

    max_text_chars: int = attrs.field(
        default=MODEL_MAX_TEXT_CHARS, validator=[_positive, _model_reads_whole]
    )
    """Longest accepted text, in characters; never above what the model reads whole."""
    max_batch: int = attrs.field(default=64, validator=_positive)
    max_batch_chars: int = attrs.field(default=100_000, validator=[_positive, _holds_longest_text])
    """Characters of all the texts of one batch together; bounds one request's scoring time."""
    max_body_bytes: int = attrs.field(default=1_048_576, validator=_positive)
    max_pending_requests: int = attrs.field(default=512, validator=_positive)
    """Prediction requests admitted at once per worker; beyond it, 503 + Retry-After."""
    request_timeout_s: float = attrs.field(default=10.0, validator=_positive)
    body_timeout_s: float = attrs.field(default=15.0, validator=_positive)
    """Longest time to receive a whole request body; a slower client (slowloris) gets 408."""
    max_header_bytes: int = attrs.field(default=32_768, validator=_positive)
    """Request line plus headers; a larger head gets 431 and the connection is closed."""
    header_timeout_s: float = attrs.field(default=5.0, validator=_positive)
    """A connection must complete a request head this long after its accept, or after the
    first byte of a later request on it; else it is closed (idle sockets, slowloris heads)."""
    max_connections: int = attrs.field(default=4096, validator=_positive)
    """Open connections per worker, lowered to fit the open-file limit. At the cap a new
    connection closes the least recently active one that has no request in flight."""
    trusted_proxies: tuple[str, ...] = attrs.field(default=(), validator=_networks)
    """Peers (IP addresses, CIDR networks) whose X-Forwarded-For/-Proto are believed. Empty:
    forwarded headers are ignored and the client is always the TCP peer."""
    predict_threads: int = attrs.field(default=2, validator=_positive)
    inline_predict_max_chars: int = attrs.field(default=300, validator=_non_negative)
    """Single texts up to this length are scored on the event loop (tens of µs; a thread hop
    costs more than the model). Longer texts and batches go to the prediction executor."""

    smoke_latency_budget_ms: float = attrs.field(default=250.0, validator=_positive)
    smoke_min_golden_accuracy: float = attrs.field(default=0.6, validator=_fraction)
    load_timeout_s: float = attrs.field(default=300.0, validator=_positive)
    """Deadline of one load (download, verify, prepare, map). A load past it is killed and
    retried with backoff: transient, never a rejection of the version."""
    trust_model_code: bool = False
    """Also serve MLflow pyfunc models that are not bluegreen bundles. Loading one unpickles
    and imports code from the artifact store in this process: only turn it on when everyone
    who can write the registry and the artifact store may run code on the servers."""
    loader_nice: int = attrs.field(default=10, validator=_nice)
    """CPU niceness of the loader child, so a load yields the cores to requests."""
    loader_idle_exit_s: float = attrs.field(default=600.0, validator=_non_negative)
    """An idle loader child exits after this long and gives its memory back; the next load
    spawns a new one (its imports take seconds). 0 keeps it for the life of the worker."""

    bootstrap: bool | None = None
    """Train and register a small default model when the registry is empty. None means: only
    for the embedded default registry."""
    data_dir: Path | None = attrs.field(default=None, converter=attrs.converters.optional(Path))
    """Training data for bootstrap (train.tsv.gz/test.tsv.gz); None uses the shipped sample."""

    log_level: str = "INFO"
    request_log_sample: float = attrs.field(default=0.0, validator=_fraction)
    """Share of requests logged at INFO (all of them at DEBUG)."""
    tracing: bool = False
    """OpenTelemetry spans for requests and swaps, exported over OTLP/HTTP as the standard
    `OTEL_*` variables say (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`...)."""

    host: str = "127.0.0.1"
    port: int = attrs.field(default=8000, validator=_non_negative)
    workers: int = attrs.field(default=1, validator=_positive)
    url: str = ""
    """Server address the `bluegreen` client commands (status, rollback...) call, e.g.
    `http://bluegreen:8000`; empty: `http://<host>:<port>` of a local `bluegreen serve`."""

    @property
    def embedded(self) -> bool:
        return not self.tracking_uri

    @property
    def effective_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.state_dir / 'mlflow.db').resolve()}"

    @property
    def cache_dir(self) -> Path:
        """Prepared versions, shared by every worker on the host (memory-mapped)."""
        return (self.state_dir / "models").resolve()

    @property
    def artifact_root(self) -> Path:
        return (self.state_dir / "artifacts").resolve()

    @property
    def should_bootstrap(self) -> bool:
        return self.embedded if self.bootstrap is None else self.bootstrap

    @property
    def admin_enabled(self) -> bool:
        return bool(self.admin_token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `BLUEGREEN_*` variables; unknown `BLUEGREEN_*` names are errors,
        because a typo that silently falls back to a default is worse than a failed start."""
        env = os.environ if environ is None else environ
        fields = {f.name: f for f in attrs.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(ENV_PREFIX):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in fields or name == "tracking_uri":
                raise SettingsError(f"unknown setting {key}")
            values[name] = _parse(key, raw, fields[name].type)
        if env.get("MLFLOW_TRACKING_URI"):
            values["tracking_uri"] = env["MLFLOW_TRACKING_URI"]
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise SettingsError(str(exc)) from exc


def _parse(key: str, raw: str, annotation: Any) -> Any:
    text = raw.strip()
    kind = str(annotation)
    try:
        if kind in {"bool", "bool | None"}:
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            if kind == "bool | None" and text.lower() in {"", "auto"}:
                return None
            raise ValueError(text)
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind in {"Path", "Path | None"}:
            return Path(text) if text else None
        if kind == "tuple[str, ...]":
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if kind == "str | None":
            return text or None
        return text
    except ValueError as exc:
        raise SettingsError(f"{key}={raw!r} is not a valid {kind}") from exc
