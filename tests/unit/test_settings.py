"""Settings: defaults, env parsing per type, validation, and secrets kept out of repr."""

from __future__ import annotations

from pathlib import Path

import pytest

from bluegreen.settings import Settings, SettingsError


def from_env(**env: str) -> Settings:
    return Settings.from_env({f"BLUEGREEN_{k.upper()}": v for k, v in env.items()})


def test_defaults_match_the_documented_contract() -> None:
    s = Settings.from_env({})
    assert s.registry.model_name == "ensemble-sentiment-model"
    assert s.registry.model_alias == "production"
    assert s.registry.fallback_stages == ("Production", "Staging")
    assert s.registry.poll_interval_s == 300.0
    assert s.canary.percent == 0.0
    assert s.lifecycle.retain_previous is False
    assert s.admin.token is None
    assert s.admin.enabled is False
    assert s.observability.log_level == "INFO"
    assert s.limits.max_text_chars > 0
    assert s.limits.max_batch > 0
    assert s.registry.tracking_uri == ""
    assert s.embedded is True
    assert s.should_bootstrap is True
    assert s.bootstrap.data_dir is None


def test_embedded_tracking_uri_lives_under_state_dir(tmp_path: Path) -> None:
    s = Settings.of(state_dir=tmp_path)
    assert s.effective_tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert s.artifact_root == (tmp_path / "artifacts").resolve()


def test_mlflow_tracking_uri_is_read_without_prefix() -> None:
    s = Settings.from_env({"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert s.registry.tracking_uri == "http://mlflow:5000"
    assert s.effective_tracking_uri == "http://mlflow:5000"
    assert s.embedded is False
    assert s.should_bootstrap is False


def test_unrelated_variables_are_ignored() -> None:
    s = Settings.from_env({"PATH": "/bin", "HOME": "/root", "BLUEGREENISH": "x"})
    assert s == Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True), (" on ", True),
        ("false", False), ("0", False), ("no", False), ("off", False), ("Off", False),
    ],
)  # fmt: skip
def test_bool(raw: str, expected: bool) -> None:
    assert from_env(retain_previous=raw).lifecycle.retain_previous is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "", "tru"])
def test_bool_rejects_garbage(raw: str) -> None:
    with pytest.raises(SettingsError, match="BLUEGREEN_RETAIN_PREVIOUS"):
        from_env(retain_previous=raw)


@pytest.mark.parametrize(
    ("raw", "expected"), [("true", True), ("false", False), ("", None), ("auto", None)]
)
def test_optional_bool(raw: str, expected: bool | None) -> None:
    assert from_env(bootstrap=raw).bootstrap.bootstrap is expected


def test_int() -> None:
    s = from_env(max_text_chars="1234", max_batch=" 8 ", port="0")
    assert (s.limits.max_text_chars, s.limits.max_batch, s.server.port) == (1234, 8, 0)
    assert isinstance(s.limits.max_batch, int)


@pytest.mark.parametrize("raw", ["1.5", "ten", "", "1e3"])
def test_int_rejects_non_integers(raw: str) -> None:
    with pytest.raises(SettingsError, match="BLUEGREEN_MAX_BATCH"):
        from_env(max_batch=raw)


def test_float() -> None:
    s = from_env(poll_interval_s="2.5", canary_percent="12", drain_timeout_s="1e1")
    assert (s.registry.poll_interval_s, s.canary.percent, s.lifecycle.drain_timeout_s) == (
        2.5,
        12.0,
        10.0,
    )


def test_float_rejects_garbage() -> None:
    with pytest.raises(SettingsError, match="BLUEGREEN_POLL_INTERVAL_S"):
        from_env(poll_interval_s="soon")


def test_path_and_optional_path(tmp_path: Path) -> None:
    s = from_env(state_dir=str(tmp_path / "state"), data_dir=str(tmp_path / "data"))
    assert s.state_dir == tmp_path / "state"
    assert isinstance(s.state_dir, Path)
    assert s.bootstrap.data_dir == tmp_path / "data"
    assert from_env(data_dir="").bootstrap.data_dir is None


def test_empty_state_dir_is_an_error() -> None:
    with pytest.raises(SettingsError):
        from_env(state_dir="")


def test_tuple_of_strings() -> None:
    assert from_env(fallback_stages="Production, Staging ,QA").registry.fallback_stages == (
        "Production",
        "Staging",
        "QA",
    )
    assert from_env(fallback_stages="").registry.fallback_stages == ()
    assert from_env(fallback_stages="Staging").registry.fallback_stages == ("Staging",)


def test_optional_str() -> None:
    assert from_env(admin_token="s3cret").admin.token == "s3cret"
    assert from_env(admin_token="s3cret").admin.enabled is True
    assert from_env(admin_token="").admin.token is None
    assert from_env(admin_token="").admin.enabled is False


def test_plain_str() -> None:
    s = from_env(model_name="other-model", model_alias="champion", log_level="DEBUG")
    assert (s.registry.model_name, s.registry.model_alias, s.observability.log_level) == (
        "other-model",
        "champion",
        "DEBUG",
    )


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("canary_percent", "101"),
        ("canary_percent", "-1"),
        ("poll_interval_s", "0"),
        ("poll_interval_s", "-5"),
        ("max_text_chars", "0"),
        ("max_batch", "-1"),
        ("canary_min_requests", "-1"),
        ("canary_max_error_rate_delta", "1.5"),
        ("request_log_sample", "-0.1"),
        ("port", "-1"),
        ("workers", "0"),
        ("drain_timeout_s", "0"),
    ],
)
def test_out_of_range_values_raise(name: str, raw: str) -> None:
    with pytest.raises(SettingsError, match=f"BLUEGREEN_{name.upper()}"):
        from_env(**{name: raw})


@pytest.mark.parametrize("name", ["poll_interval_s", "canary_percent", "drain_timeout_s"])
def test_nan_is_out_of_range(name: str) -> None:
    with pytest.raises(SettingsError, match=f"BLUEGREEN_{name.upper()}"):
        from_env(**{name: "nan"})


def test_direct_construction_validates_too() -> None:
    with pytest.raises(SettingsError, match="BLUEGREEN_CANARY_PERCENT"):
        Settings.of(canary_percent=150)


@pytest.mark.parametrize(
    "key", ["BLUEGREEN_POLL_INTERVAL", "BLUEGREEN_ADMIN_TOKN", "BLUEGREEN_TRACKING_URI"]
)
def test_unknown_bluegreen_names_raise(key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        Settings.from_env({key: "1"})


def test_admin_token_and_webhook_secret_are_not_in_repr() -> None:
    s = Settings.of(admin_token="very-secret-token", webhook_secret="hmac-secret-value")
    text = repr(s) + str(s)
    assert "very-secret-token" not in text
    assert "hmac-secret-value" not in text
    assert "model_name" in text  # repr is still useful


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.admin.token = "x"  # type: ignore[misc]


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLUEGREEN_MAX_BATCH", "7")
    assert Settings.from_env().limits.max_batch == 7


def test_text_limits_never_exceed_what_the_model_reads() -> None:
    from bluegreen.model.labels import MAX_TEXT_CHARS

    s = Settings.from_env({})
    assert s.limits.max_text_chars == MAX_TEXT_CHARS
    assert s.limits.max_batch_chars >= s.limits.max_text_chars
    with pytest.raises(SettingsError, match=f"BLUEGREEN_MAX_TEXT_CHARS.*{MAX_TEXT_CHARS}"):
        from_env(max_text_chars=str(MAX_TEXT_CHARS + 1))
    assert from_env(max_text_chars="1000", max_batch_chars="1000").limits.max_batch_chars == 1000
    with pytest.raises(SettingsError, match="BLUEGREEN_MAX_BATCH_CHARS"):
        from_env(max_text_chars="1000", max_batch_chars="999")
    with pytest.raises(SettingsError, match="BLUEGREEN_MAX_BATCH_CHARS"):
        from_env(max_batch_chars="0")


def test_canary_pairing_defaults_and_bounds() -> None:
    s = Settings.from_env({})
    assert (s.canary.min_pairs, s.canary.pair_cpu_share, s.canary.pair_max_texts) == (50, 0.1, 16)
    assert s.canary.key is None
    assert from_env(canary_pair_cpu_share="0").canary.pair_cpu_share == 0.0
    for name, raw in [
        ("canary_pair_cpu_share", "1.5"), ("canary_pair_cpu_share", "nan"),
        ("canary_pair_max_texts", "0"), ("canary_min_pairs", "-1"),
    ]:  # fmt: skip
        with pytest.raises(SettingsError, match=f"BLUEGREEN_{name.upper()}"):
            from_env(**{name: raw})


def test_canary_key_is_a_secret() -> None:
    s = from_env(canary_key="fleet-wide-canary-secret")
    assert s.canary.key == "fleet-wide-canary-secret"
    assert "fleet-wide-canary-secret" not in repr(s) + str(s)
    with pytest.raises(SettingsError, match="BLUEGREEN_CANARY_KEY") as raised:
        from_env(canary_key="short-secret")
    assert "short-secret" not in str(raised.value)
    assert from_env(canary_key="").canary.key is None


def test_edge_defaults_bound_the_head_and_trust_no_proxy() -> None:
    s = Settings.from_env({})
    assert s.edge.max_header_bytes == 32_768
    assert 0 < s.edge.header_timeout_s <= 10
    assert s.edge.max_connections >= 1000
    assert s.edge.trusted_proxies == ()


def test_trusted_proxies_take_addresses_and_networks() -> None:
    s = from_env(trusted_proxies="10.0.0.0/8, 192.0.2.7,2001:db8::/32")
    assert s.edge.trusted_proxies == ("10.0.0.0/8", "192.0.2.7", "2001:db8::/32")


@pytest.mark.parametrize("raw", ["*", "proxy.local", "10.0.0.1/8", "300.1.1.1", "10.0.0.0/33"])
def test_trusted_proxies_reject_what_uvicorn_would_not_match(raw: str) -> None:
    with pytest.raises(SettingsError, match="BLUEGREEN_TRUSTED_PROXIES"):
        from_env(trusted_proxies=raw)


@pytest.mark.parametrize("name", ["max_header_bytes", "header_timeout_s", "max_connections"])
def test_edge_limits_must_be_positive(name: str) -> None:
    with pytest.raises(SettingsError, match=f"BLUEGREEN_{name.upper()}"):
        from_env(**{name: "0"})


def test_of_takes_typed_values_by_their_variable_names() -> None:
    s = Settings.of(max_batch=8, canary_percent=5.0, tracking_uri="http://mlflow:5000")
    assert (s.limits.max_batch, s.canary.percent) == (8, 5.0)
    assert s.registry.tracking_uri == "http://mlflow:5000"
    with pytest.raises(SettingsError, match="unknown setting max_batchez"):
        Settings.of(max_batchez=8)
    with pytest.raises(SettingsError, match=r"BLUEGREEN_CANARY_PERCENT must be in 0\.\.100"):
        Settings.of(canary_percent=101.0)


def test_sections_are_the_only_defaults() -> None:
    # The slot manager and the canary judge take the settings' own sections: nothing else
    # declares a default that could drift from the documented one.
    from bluegreen.serving.lifecycle import LifecycleConfig

    config = LifecycleConfig()
    s = Settings()
    assert config.canary == s.canary
    assert config.lifecycle == s.lifecycle
    assert config.model_name == s.registry.model_name
