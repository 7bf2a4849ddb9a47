"""Typed settings, read from the environment once and validated at start.

One class per concern, each field declared once with its default and its documentation: the
slot manager, the canary judge and the README's settings table all read them from here.
Every variable uses the `BLUEGREEN_` prefix except `MLFLOW_TRACKING_URI`, which MLflow's own
tools share. Names listed in DESIGN.md section 6a are a stable contract, so a field's variable
is its section's prefix plus its name unless the field names its variable itself.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import attrs

from bluegreen.model.labels import MAX_TEXT_CHARS as MODEL_MAX_TEXT_CHARS

ENV_PREFIX = "BLUEGREEN_"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"


class SettingsError(ValueError):
    """A setting is missing, malformed or out of range; raised at start, never at request time."""


Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def setting(
    default: Any,
    doc: str,
    *,
    validator: Validator | list[Validator] | None = None,
    converter: Callable[[Any], Any] | None = None,
    env: str | None = None,
    secret: bool = False,
    shown: str | None = None,
) -> Any:
    """A field with its documentation. `env` names the variable when it is not the section's
    prefix plus the field's name; `shown` is the default as the README table prints it."""
    return attrs.field(
        default=default,
        validator=validator,
        converter=converter,
        repr=not secret,
        metadata={"doc": doc, "env": env, "secret": secret, "shown": shown},
    )


def env_name(section: type, attribute: attrs.Attribute[Any]) -> str:
    named = attribute.metadata.get("env")
    if named == TRACKING_URI_ENV:
        return str(named)
    prefix: str = getattr(section, "ENV_PREFIX", "")
    return ENV_PREFIX + (named or f"{prefix}{attribute.name}".upper())


def _named(instance: Any, attribute: attrs.Attribute[Any]) -> str:
    return env_name(type(instance), attribute)


def _positive(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:  # also rejects NaN, which every comparison lets through
        raise SettingsError(f"{_named(instance, attribute)} must be > 0, got {value}")


def _non_negative(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value >= 0:  # also rejects NaN
        raise SettingsError(f"{_named(instance, attribute)} must be >= 0, got {value}")


def _nice(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 19:
        raise SettingsError(f"{_named(instance, attribute)} must be in 0..19, got {value}")


def _percent(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 100:
        raise SettingsError(f"{_named(instance, attribute)} must be in 0..100, got {value}")


def _fraction(instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not 0 <= value <= 1:
        raise SettingsError(f"{_named(instance, attribute)} must be in 0..1, got {value}")


def _model_reads_whole(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    # a longer limit would let the model silently drop the end of what it was sent
    if value > MODEL_MAX_TEXT_CHARS:
        raise SettingsError(
            f"{_named(instance, attribute)} must be at most {MODEL_MAX_TEXT_CHARS}, the "
            f"longest text the model reads whole, got {value}"
        )


def _holds_longest_text(instance: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if value < instance.max_text_chars:
        raise SettingsError(
            f"{_named(instance, attribute)} must be at least "
            f"{ENV_PREFIX}MAX_TEXT_CHARS ({instance.max_text_chars}), got {value}"
        )


def _canary_key(instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    # The value is a secret: the message names the setting, never what it was set to.
    if value is not None and len(value) < 16:
        raise SettingsError(f"{_named(instance, attribute)} must be at least 16 characters")


def _networks(instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
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
                f"{_named(instance, attribute)} must be comma-separated IP addresses or "
                f"CIDR networks, got {item!r}"
            ) from None


@attrs.frozen(kw_only=True)
class RegistrySettings:
    """Which model to follow, and how often and how patiently to ask the registry."""

    ENV_PREFIX: ClassVar[str] = "REGISTRY_"
    TITLE: ClassVar[str] = "Registry"

    tracking_uri: str = setting(
        "",
        "MLflow tracking/registry URI; empty means the embedded default (sqlite and local "
        "artifacts under the state directory). Credentials only through MLflow's own variables.",
        env=TRACKING_URI_ENV,
        shown="sqlite under `.bluegreen/`",
    )
    model_name: str = setting(
        "ensemble-sentiment-model", "Registered model to serve.", env="MODEL_NAME"
    )
    model_alias: str = setting(
        "production",
        "Alias to follow; when absent, the latest version in the fallback stages serves.",
        env="MODEL_ALIAS",
    )
    fallback_stages: tuple[str, ...] = setting(
        ("Production", "Staging"), "Stage fallback order.", env="FALLBACK_STAGES"
    )
    poll_interval_s: float = setting(
        300.0,
        "Full reconcile interval (alias, then stage fallback).",
        validator=_positive,
        env="POLL_INTERVAL_S",
    )
    control_interval_s: float = setting(
        15.0,
        "Cheap alias-and-canary check between full polls; 0 disables it. Bounds how "
        "long the fleet takes to follow an alias move.",
        validator=_non_negative,
        env="CONTROL_INTERVAL_S",
    )
    backoff_base_s: float = setting(
        1.0,
        "First retry delay after a failed registry call (doubles, with jitter).",
        validator=_positive,
    )
    backoff_max_s: float = setting(60.0, "Longest retry delay.", validator=_positive)
    timeout_s: float = setting(
        10.0,
        "Deadline of each registry call: past it the call is abandoned, reconciling backs "
        "off and an admin route answers 504 instead of hanging.",
        validator=_positive,
    )
    history_max: int = setting(
        100,
        "Promotion-history entries kept in the registry (the oldest are pruned beyond it).",
        validator=_positive,
        env="HISTORY_MAX",
    )


@attrs.frozen(kw_only=True)
class CanarySettings:
    """How much traffic a candidate answers, and how it is judged (`serving/canary.py`)."""

    ENV_PREFIX: ClassVar[str] = "CANARY_"
    TITLE: ClassVar[str] = "Canary"

    percent: float = setting(
        0.0,
        "Share of prediction traffic a smoke-tested candidate answers; 0 promotes at once.",
        validator=_percent,
    )
    min_requests: int = setting(
        200, "Requests the candidate answers before it is judged.", validator=_non_negative
    )
    min_seconds: float = setting(30.0, "Shortest canary.", validator=_non_negative)
    max_seconds: float = setting(
        900.0,
        "A canary that never meets its minimum requests is decided after this long.",
        validator=_positive,
    )
    max_error_rate_delta: float = setting(
        0.01, "Candidate error rate may exceed live's by at most this much.", validator=_fraction
    )
    max_p95_ratio: float = setting(
        2.0,
        "Candidate p95 latency may be at most this multiple of live's on the same inputs "
        "(the paired latencies, plus 1 ms slack).",
        validator=_positive,
    )
    shadow_fraction: float = setting(
        0.05,
        "Share of live-answered requests also scored by the candidate, to measure disagreement.",
        validator=_fraction,
    )
    min_pairs: int = setting(
        50,
        "Paired latencies (the same texts timed on live and candidate) needed before "
        "latency is judged; never more than the minimum requests. 0: latency is not judged.",
        validator=_non_negative,
    )
    pair_cpu_share: float = setting(
        0.1,
        "Most of one core the paired timing may use; requests beyond it are not paired "
        "(never queued). 0 turns paired timing, and with it the latency test, off.",
        validator=_fraction,
    )
    pair_max_texts: int = setting(
        16, "A batch is paired on its first this many texts.", validator=_positive
    )
    fast_fail_min_requests: int = setting(
        20,
        "A candidate failing this many requests at the fast-fail rate is rejected at once.",
        validator=_positive,
    )
    fast_fail_error_rate: float = setting(
        0.5, "Error rate that rejects a candidate before its window ends.", validator=_fraction
    )
    key: str | None = setting(
        None,
        "Secret (16+ characters) of the keyed hash that assigns clients to the canary; a "
        "fleet sets the same value everywhere. Unset: a random key per host "
        "(`<state dir>/canary.key`). Never logged.",
        validator=_canary_key,
        secret=True,
        shown="per host",
    )

    @property
    def pairs_needed(self) -> int:
        # A canary its operator lets decide on N requests needs no more than N pairs.
        return min(self.min_pairs, self.min_requests)


@attrs.frozen(kw_only=True)
class LifecycleSettings:
    """Loading, smoke-testing and retiring versions."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "Versions: load, smoke, retire"

    load_timeout_s: float = setting(
        300.0,
        "Deadline of one load (download, verify, prepare, map). A load past it is killed "
        "and retried with backoff: transient, never a rejection of the version.",
        validator=_positive,
    )
    trust_model_code: bool = setting(
        False,
        "Also serve MLflow pyfunc models that are not bluegreen bundles. Loading one "
        "unpickles and imports code from the artifact store in this process: only turn it on "
        "when everyone who can write the registry and the artifact store may run code on the "
        "servers.",
    )
    loader_nice: int = setting(
        10,
        "CPU niceness of the loader child, so a load yields the cores to requests.",
        validator=_nice,
    )
    loader_sched_idle: bool = setting(
        True,
        "Run the loader child under Linux's SCHED_IDLE policy: it takes a core only when no "
        "serving thread wants one, and a waking request thread preempts it at once (niceness "
        "alone lets it finish its time slice first). On a host with no idle CPU at all, loads "
        "then wait, and may reach the load deadline and be retried.",
    )
    loader_max_mib_per_s: float = setting(
        100.0,
        "The most MiB/s the loader child fetches and hashes a bundle at (0: as fast as it "
        "can). SCHED_IDLE keeps a load off the cores, not out of the caches, memory "
        "bandwidth and page-cache work the workers share; on a small host under load, a "
        "bound spreads a version's bytes over a longer, quieter load. A load then takes at "
        "least the bundle's size over this rate: keep that well inside the load deadline.",
        validator=_non_negative,
    )
    swap_switch_interval_ms: float = setting(
        0.5,
        "The interpreter's GIL switch interval while a version comes in (load, smoke, drain, "
        "free): the longest the event loop waits for the GIL each time it wakes beside the "
        "load threads. 0 leaves the interpreter's own (5 ms).",
        validator=_non_negative,
    )
    loader_idle_exit_s: float = setting(
        600.0,
        "An idle loader child exits after this long and gives its memory back; 0 keeps "
        "it for the life of the worker.",
        validator=_non_negative,
    )
    smoke_latency_budget_ms: float = setting(
        250.0, "Slowest smoke-set text a version may take.", validator=_positive
    )
    smoke_min_golden_accuracy: float = setting(
        0.6, "Share of the golden set a version must answer right.", validator=_fraction
    )
    retain_previous: bool = setting(
        False, "Keep the previous version warm in the idle slot for an instant rollback."
    )
    drain_timeout_s: float = setting(
        30.0,
        "Longest wait for a retired version's in-flight requests, and for requests at shutdown.",
        validator=_positive,
    )


@attrs.frozen(kw_only=True)
class AdminSettings:
    """The control plane and the registry webhook."""

    ENV_PREFIX: ClassVar[str] = "ADMIN_"
    TITLE: ClassVar[str] = "Control plane"

    token: str | None = setting(
        None,
        "Bearer token for `/admin/*`; unset disables admin (403). Never logged.",
        secret=True,
        shown="unset",
    )
    auth_max_failures: int = setting(
        10,
        "Failed admin logins one peer may make within the window; then 429.",
        validator=_positive,
    )
    auth_window_s: float = setting(60.0, "Window of the failed-login count.", validator=_positive)
    reload_wait_s: float = setting(
        10.0,
        "Longest `POST /admin/reload` waits for its reconcile (a load it starts, or one in "
        "progress); then it answers 202 `in_progress` and the reconcile goes on.",
        validator=_positive,
    )
    webhook_secret: str | None = setting(
        None,
        "HMAC secret of MLflow registry webhooks; unset disables the webhook route.",
        env="WEBHOOK_SECRET",
        secret=True,
        shown="unset",
    )

    @property
    def enabled(self) -> bool:
        return bool(self.token)


@attrs.frozen(kw_only=True)
class LimitSettings:
    """Bounds on everything a client of the prediction routes controls."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "Limits"

    max_text_chars: int = setting(
        MODEL_MAX_TEXT_CHARS,
        "Longest accepted text, in characters (longer: 400); never above "
        "what the model reads whole, so nothing accepted is cut.",
        validator=[_positive, _model_reads_whole],
    )
    max_batch: int = setting(64, "Texts per batch (more: 400).", validator=_positive)
    max_batch_chars: int = setting(
        100_000,
        "Characters of all the texts of one batch together (more: 400 naming the "
        "limit); bounds one request's scoring time.",
        validator=[_positive, _holds_longest_text],
    )
    max_body_bytes: int = setting(
        1_048_576, "Largest request body (larger: 413).", validator=_positive, shown="1 MiB"
    )
    max_pending_requests: int = setting(
        512,
        "Predictions admitted at once per worker; beyond it, 503 and Retry-After.",
        validator=_positive,
    )
    request_timeout_s: float = setting(
        10.0, "A prediction that takes longer gets 504.", validator=_positive
    )
    body_timeout_s: float = setting(
        15.0,
        "Longest time to receive a whole request body; a slower client gets 408.",
        validator=_positive,
    )


@attrs.frozen(kw_only=True)
class EdgeSettings:
    """The HTTP protocol's own bounds (`bluegreen/edge/`)."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "HTTP edge"

    max_header_bytes: int = setting(
        32_768,
        "Request line plus headers; a larger head gets 431 and the connection closes.",
        validator=_positive,
        shown="32 KiB",
    )
    header_timeout_s: float = setting(
        5.0,
        "A connection must complete a request head this long after its accept, or after "
        "the first byte of a later request on it; else it is closed (408 if part of a head "
        "came).",
        validator=_positive,
    )
    max_connections: int = setting(
        4096,
        "Open connections per worker, lowered to fit the open-file limit. At the cap a "
        "new connection closes the least recently active one that has no request in flight.",
        validator=_positive,
    )
    trusted_proxies: tuple[str, ...] = setting(
        (),
        "Peers (IP addresses, CIDR networks) whose X-Forwarded-For/-Proto are believed. "
        "Empty: forwarded headers are ignored and the client is always the TCP peer.",
        validator=_networks,
        shown="none",
    )
    shutdown_delay_s: float = setting(
        0.0,
        "After SIGTERM, keep serving this long while /readyz answers 503 and responses say "
        "`Connection: close`, so a load balancer that health-checks /readyz moves traffic "
        "away before the listener closes; then drain. A second SIGTERM, or SIGINT, stops at "
        "once. 0: stop at once (Kubernetes drops a stopping pod from its endpoints itself).",
        validator=_non_negative,
    )


@attrs.frozen(kw_only=True)
class ServerSettings:
    """The process: address, workers, and where predictions run."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "Server"

    host: str = setting("127.0.0.1", "Address to listen on.")
    port: int = setting(8000, "Port to listen on.", validator=_non_negative)
    workers: int = setting(1, "uvicorn worker processes.", validator=_positive)
    url: str = setting(
        "",
        "Server address the `bluegreen` client commands (status, rollback...) call, e.g. "
        "`http://bluegreen:8000`; empty: `http://<host>:<port>` of a local `bluegreen serve`.",
        shown="local serve",
    )
    predict_threads: int = setting(
        2, "Threads of the prediction executor, per worker.", validator=_positive
    )
    inline_predict_max_chars: int = setting(
        300,
        "Single texts up to this length are scored on the event loop (a thread hop costs "
        "more than the model); longer texts and batches go to the prediction executor.",
        validator=_non_negative,
    )


@attrs.frozen(kw_only=True)
class BootstrapSettings:
    """The first start on an empty registry."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "Bootstrap"

    bootstrap: bool | None = setting(
        None,
        "Train and register a small default model when the registry is empty; unset "
        "(`auto`): only for the embedded default registry.",
        shown="auto",
    )
    data_dir: Path | None = setting(
        None,
        "Training data for the bootstrap (`train.tsv.gz`, `test.tsv.gz`); unset uses the "
        "sample shipped in the package.",
        converter=attrs.converters.optional(Path),
        shown="shipped sample",
    )


@attrs.frozen(kw_only=True)
class ObservabilitySettings:
    """Logs and traces."""

    ENV_PREFIX: ClassVar[str] = ""
    TITLE: ClassVar[str] = "Logs and traces"

    log_level: str = setting("INFO", "Level of the JSON-lines log on stdout.")
    request_log_sample: float = setting(
        0.0, "Share of requests logged at INFO (all of them at DEBUG).", validator=_fraction
    )
    tracing: bool = setting(
        False,
        "OpenTelemetry spans for requests and swaps, exported over OTLP/HTTP as the "
        "standard `OTEL_*` variables say.",
    )


SECTIONS: dict[str, type] = {
    "registry": RegistrySettings,
    "canary": CanarySettings,
    "lifecycle": LifecycleSettings,
    "admin": AdminSettings,
    "limits": LimitSettings,
    "edge": EdgeSettings,
    "server": ServerSettings,
    "bootstrap": BootstrapSettings,
    "observability": ObservabilitySettings,
}


@attrs.frozen(kw_only=True)
class Settings:
    """All configuration of one bluegreen process."""

    state_dir: Path = setting(
        Path(".bluegreen"),
        "Project-local directory for the embedded registry (sqlite), its "
        "artifacts, the prepared-model cache and the host's canary key.",
        converter=Path,
    )
    registry: RegistrySettings = attrs.field(factory=RegistrySettings)
    canary: CanarySettings = attrs.field(factory=CanarySettings)
    lifecycle: LifecycleSettings = attrs.field(factory=LifecycleSettings)
    admin: AdminSettings = attrs.field(factory=AdminSettings)
    limits: LimitSettings = attrs.field(factory=LimitSettings)
    edge: EdgeSettings = attrs.field(factory=EdgeSettings)
    server: ServerSettings = attrs.field(factory=ServerSettings)
    bootstrap: BootstrapSettings = attrs.field(factory=BootstrapSettings)
    observability: ObservabilitySettings = attrs.field(factory=ObservabilitySettings)

    @property
    def embedded(self) -> bool:
        return not self.registry.tracking_uri

    @property
    def effective_tracking_uri(self) -> str:
        if self.registry.tracking_uri:
            return self.registry.tracking_uri
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
        chosen = self.bootstrap.bootstrap
        return self.embedded if chosen is None else chosen

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build settings from `BLUEGREEN_*` variables; unknown `BLUEGREEN_*` names are errors,
        because a typo that silently falls back to a default is worse than a failed start."""
        env = os.environ if environ is None else environ
        by_env = {name: (section, attribute) for section, name, attribute in variables()}
        values: dict[str | None, dict[str, Any]] = {}
        for key, raw in env.items():
            if key == TRACKING_URI_ENV and not raw:
                continue
            if key != TRACKING_URI_ENV and not key.startswith(ENV_PREFIX):
                continue
            if key not in by_env:
                raise SettingsError(f"unknown setting {key}")
            section, attribute = by_env[key]
            hints = get_type_hints(SECTIONS[section] if section else cls)
            values.setdefault(section, {})[attribute.name] = _parse(key, raw, hints[attribute.name])
        return cls._build(values)

    @classmethod
    def of(cls, **values: Any) -> Settings:
        """Settings from typed values named as their variables are, without the prefix
        (`max_batch=8` for `BLUEGREEN_MAX_BATCH`, `tracking_uri` for `MLFLOW_TRACKING_URI`)."""
        by_name = {short_name(name): (section, a) for section, name, a in variables()}
        grouped: dict[str | None, dict[str, Any]] = {}
        for key, value in values.items():
            if key not in by_name:
                raise SettingsError(f"unknown setting {key}")
            section, attribute = by_name[key]
            grouped.setdefault(section, {})[attribute.name] = value
        return cls._build(grouped)

    @classmethod
    def _build(cls, values: dict[str | None, dict[str, Any]]) -> Settings:
        try:
            top = values.pop(None, {})
            sections = {name: SECTIONS[name](**fields) for name, fields in values.items() if name}
            return cls(**top, **sections)
        except (TypeError, ValueError) as exc:
            raise SettingsError(str(exc)) from exc


def short_name(variable: str) -> str:
    """`BLUEGREEN_MAX_BATCH` -> `max_batch`; `MLFLOW_TRACKING_URI` -> `tracking_uri`."""
    if variable == TRACKING_URI_ENV:
        return "tracking_uri"
    return variable.removeprefix(ENV_PREFIX).lower()


def variables() -> Iterator[tuple[str | None, str, attrs.Attribute[Any]]]:
    """(section name or None for top level, environment variable, field) for every setting."""
    for attribute in attrs.fields(Settings):
        if attribute.name not in SECTIONS:
            yield None, env_name(Settings, attribute), attribute
    for name, section in SECTIONS.items():
        for attribute in attrs.fields(section):
            yield name, env_name(section, attribute), attribute


def _parse(key: str, raw: str, annotation: Any) -> Any:
    text = raw.strip()
    kind = getattr(annotation, "__name__", str(annotation))
    try:
        if annotation in (bool | None, bool):
            if text.lower() in {"1", "true", "yes", "on"}:
                return True
            if text.lower() in {"0", "false", "no", "off"}:
                return False
            if annotation == bool | None and text.lower() in {"", "auto"}:
                return None
            raise ValueError(text)
        if annotation is int:
            return int(text)
        if annotation is float:
            return float(text)
        if annotation in (Path, Path | None):
            return Path(text) if text else None
        if annotation == tuple[str, ...]:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if annotation == str | None:
            return text or None
        return text
    except ValueError as exc:
        raise SettingsError(f"{key}={raw!r} is not a valid {kind}") from exc


def _shown(attribute: attrs.Attribute[Any]) -> str:
    if attribute.metadata.get("shown"):
        return str(attribute.metadata["shown"])
    default = attribute.default
    if isinstance(default, tuple):
        return f"`{','.join(default)}`" if default else "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, float) and default.is_integer():
        return f"`{int(default)}`"
    return f"`{default}`"


def markdown_table() -> str:
    """The README's settings reference, one table per section (checked by a test)."""
    lines: list[str] = []
    current: str | None = ""
    for section, name, attribute in variables():
        if section != current:
            current = section
            title = getattr(SECTIONS[section], "TITLE", section) if section else "General"
            lines += ["", f"#### {title}", "", "| variable | default | meaning |", "|---|---|---|"]
        doc = " ".join(str(attribute.metadata.get("doc", "")).split())
        lines.append(f"| `{name}` | {_shown(attribute)} | {doc} |")
    return "\n".join(lines[1:]) + "\n"
