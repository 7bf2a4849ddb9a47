"""The client commands: what they print, human and --json, and the exit codes they document
(0 ok, 1 refused, 2 usage, 3 unreachable/5xx/not ready)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from bluegreen.cli.admin import server_url
from tests.fakes import FakeLoader, FakeRegistry
from tests.support.servers import free_port
from tests.unit.api.conftest import start_app
from tests.unit.cli.conftest import Invoke, run
from tests.unit.client.test_calls import VERSIONS


def test_status_names_the_live_version(bg: Invoke) -> None:
    result = bg("status")
    assert result.exit_code == 0, result.output
    assert "live       version 1 (slot " in result.output
    assert "ready      yes" in result.output


def test_status_json_is_the_slots_view_with_the_live_version(bg: Invoke) -> None:
    result = bg("status", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["live_version"] == 1
    assert document["model"] == "ensemble-sentiment-model"
    assert {s["slot"] for s in document["slots"]} == {"blue", "green"}


def test_reload_serves_what_the_registry_names_then_rollback_goes_back(
    bg: Invoke, registry: FakeRegistry
) -> None:
    registry.add(2)
    reloaded = bg("reload")
    assert reloaded.exit_code == 0
    assert reloaded.output.startswith("reload: deployed, version 2")
    assert "(version 2, slot " in bg("predict", "최고의 영화").output
    back = bg("rollback", "--json")
    assert back.exit_code == 0
    assert json.loads(back.stdout)["version"] == 1
    assert "live       version 1" in bg("status").output


def test_two_rollbacks_go_two_steps_back_and_versions_shows_them(
    bg: Invoke, registry: FakeRegistry
) -> None:
    for version in (2, 3):
        registry.add(version)
        assert f"version {version}" in bg("reload").output
    assert bg("rollback").output.strip() == "rolled back: version 2 serves (was 3)"
    assert bg("rollback").output.strip() == "rolled back: version 1 serves (was 2)"
    assert "live       version 1" in bg("status").output
    view = bg("versions")
    assert view.exit_code == 0, view.output
    assert "alias      production -> v1" in view.output
    assert "rollback  v2 -> v1" in view.output
    assert "rollback  v3 -> v2" in view.output
    assert bg("rollback").exit_code == 1  # nothing further back


def test_reject_then_unreject_against_the_app(bg: Invoke, registry: FakeRegistry) -> None:
    registry.add(2, alias=False)
    assert bg("reject", "2", "--reason", "too slow").exit_code == 0
    assert "REJECTED: admin: too slow" in bg("versions").output
    assert bg("promote", "2").exit_code == 1  # 422: rejected
    assert bg("unreject", "2").output.startswith("version 2 is no longer rejected (was: ")
    assert bg("promote", "2").output.strip() == "pinned: version 2 serves"


def test_predict_several_texts_is_one_batch(bg: Invoke) -> None:
    result = bg("predict", "최고", "최악", "--json")
    assert result.exit_code == 0
    batch = json.loads(result.stdout)
    assert len(batch["results"]) == 2
    assert batch["model_version"] == 1


def test_a_refusal_exits_1_with_the_servers_reason(bg: Invoke) -> None:
    result = bg("rollback")
    assert result.exit_code == 1
    assert "409" in result.stderr
    assert "previous version" in result.stderr


def test_a_refusal_in_json_mode_prints_the_error_document(bg: Invoke) -> None:
    result = bg("promote", "--json")
    assert result.exit_code == 1
    error = json.loads(result.stdout)
    assert error["status_code"] == 409
    assert error["request_id"]


def test_unknown_version_exits_1(bg: Invoke) -> None:
    result = bg("promote", "9")
    assert result.exit_code == 1
    assert "404" in result.stderr


def test_a_wrong_token_exits_1_with_a_hint(bg: Invoke) -> None:
    result = bg("status", "--token", "wrong")
    assert result.exit_code == 1
    assert "401" in result.stderr
    assert "BLUEGREEN_ADMIN_TOKEN" in result.stderr


def test_the_token_comes_from_the_settings(app: TestClient[Any], monkeypatch: Any) -> None:
    monkeypatch.delenv("BLUEGREEN_ADMIN_TOKEN")
    assert run(["status"], app).exit_code == 1
    monkeypatch.setenv("BLUEGREEN_ADMIN_TOKEN", "wrong")
    assert "401" in run(["status"], app).stderr


def test_an_unreachable_server_exits_3() -> None:
    result = run(["status", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 3
    assert "no server answers" in result.stderr


def test_a_registry_outage_exits_3(bg: Invoke, registry: FakeRegistry) -> None:
    registry.down = True
    result = bg("reload")
    assert result.exit_code == 3
    assert "503" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["promote", "abc"], ["promote", "0"], ["canary", "lots"], ["reject", "3"],
     ["unreject"], ["status", "--actor", "two words"], ["nonsense"]],
)  # fmt: skip
def test_usage_errors_exit_2(bg: Invoke, args: list[str]) -> None:
    assert bg(*args).exit_code == 2


def test_invalid_settings_exit_2(bg: Invoke, monkeypatch: Any) -> None:
    monkeypatch.setenv("BLUEGREEN_PORT", "eighty")
    result = bg("status")
    assert result.exit_code == 2
    assert "BLUEGREEN_PORT" in result.stderr


def test_canary_percent_and_abort(bg: Invoke) -> None:
    result = bg("canary", "10")
    assert result.exit_code == 0
    assert "10% of traffic" in result.output
    assert "10% for new versions" in bg("status").output
    aborted = bg("canary", "abort")
    assert aborted.exit_code == 1  # no canary running
    assert "409" in aborted.stderr


def test_ready_exits_0_when_a_version_serves(bg: Invoke) -> None:
    result = bg("ready")
    assert result.exit_code == 0
    assert result.output.startswith("ready: version 1 serves")


def test_ready_exits_3_while_nothing_serves(tmp_path: Any, loader: FakeLoader) -> None:
    for app in start_app(tmp_path, FakeRegistry(), loader, ready=False):
        result = run(["ready", "--wait", "0.3"], app)
        assert result.exit_code == 3
        assert result.output.startswith("not ready: ")


def test_ready_waits_for_a_server_that_is_not_up_yet() -> None:
    result = run(["ready", "--wait", "1", "--url", f"http://127.0.0.1:{free_port()}"])
    assert result.exit_code == 3
    assert "no server answers" in result.stderr


def recorder(body: object, status: int = 200) -> tuple[list[httpx.Request], httpx.Client]:
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json=body)

    return seen, httpx.Client(base_url="http://bg.test", transport=httpx.MockTransport(handle))


def test_versions_shows_alias_history_and_rejections() -> None:
    _, http = recorder(VERSIONS)
    result = run(["versions"], http)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "alias      production -> v3" in out
    assert "promote   v2 -> v3" in out
    assert "bootstrap - -> v1" in out
    assert "v4     registered" in out
    assert "REJECTED: smoke: accuracy 0.2" in out
    assert json.loads(run(["versions", "--json"], http).stdout) == VERSIONS


def test_reject_sends_version_and_reason_and_the_actor() -> None:
    recorded = {"version": 4, "rejected": "admin: sarcasm (ops@example from 127.0.0.1)",
                "live_version": 3}  # fmt: skip
    seen, http = recorder(recorded)
    result = run(["reject", "4", "--reason", "sarcasm", "--actor", "ops@example"], http)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "version 4 rejected: admin: sarcasm (ops@example from 127.0.0.1); version 3 serves"
    )
    assert json.loads(seen[0].content) == {"version": 4, "reason": "sarcasm"}
    assert seen[0].headers["x-admin-actor"] == "ops@example"
    assert seen[0].url.path == "/admin/reject"


def test_unreject_of_a_version_that_is_not_rejected_exits_1() -> None:
    body = {"status_code": 409, "error": "conflict", "detail": "version 4 is not rejected"}
    _, http = recorder(body, status=409)
    result = run(["unreject", "4"], http)
    assert result.exit_code == 1
    assert "version 4 is not rejected" in result.stderr


@pytest.mark.parametrize(
    ("host", "url"),
    [("127.0.0.1", "http://127.0.0.1:8000"), ("0.0.0.0", "http://127.0.0.1:8000"),
     ("::", "http://[::1]:8000"), ("bluegreen.internal", "http://bluegreen.internal:8000")],
)  # fmt: skip
def test_the_default_address_is_where_serve_listens(host: str, url: str) -> None:
    assert server_url(host, 8000) == url


def test_bluegreen_url_overrides_host_and_port(monkeypatch: Any) -> None:
    port = free_port()
    monkeypatch.setenv("BLUEGREEN_URL", f"http://127.0.0.1:{port}")
    result = run(["status"])
    assert result.exit_code == 3
    assert f":{port}" in result.stderr
