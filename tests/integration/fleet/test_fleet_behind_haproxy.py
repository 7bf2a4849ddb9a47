"""A fleet behind a real load balancer (issue 17): three replicas of two workers each behind
HAProxy, under constant load, follow an alias move, a canary, two rollbacks and the SIGTERM
and restart of one replica (no drain in the proxy: it fails `/readyz` through its shutdown
delay first), without
failing a request, each worker process within the control interval plus one load."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fleet import (
    Fleet,
    FleetScenario,
    running_fleet,
)
from tests.support.haproxy import haproxy_binary
from tests.support.models import TestRegistry
from tests.support.servers import MlflowServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        haproxy_binary() is None,
        reason="haproxy is not installed (Debian package haproxy: `just setup-system`)",
    ),
]

CONTROL_INTERVAL_S = 1.0


@pytest.fixture
def fleet(tmp_path: Path, mlflow_server: MlflowServer, registry: TestRegistry) -> Iterator[Fleet]:
    registry.register("good")  # v1, named by the alias before the fleet starts
    with running_fleet(
        tmp_path / "fleet", mlflow_server.url, registry.model_name,
        replicas=3, workers=2, control_interval_s=CONTROL_INTERVAL_S,
    ) as started:  # fmt: skip
        yield started


@pytest.mark.timeout(600)
def test_fleet_follows_alias_canary_rollbacks_and_a_restart_without_failing_a_request(
    fleet: Fleet, registry: TestRegistry, tmp_path: Path
) -> None:
    scenario = FleetScenario(fleet, registry, lambda: registry.register("good", alias=None))
    result = scenario.run()
    summary = result.summary()
    (tmp_path / "fleet_convergence.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("requests", "failed", "rps", "served_by",
                                              "convergence", "restart", "terminated",
                                              "haproxy")}, indent=2))  # fmt: skip
    v1, v2, v3 = (result.versions[k] for k in ("v1", "v2", "v3"))

    # Zero failed requests, out of many, and every replica carried a share of them.
    assert summary["failed"] == 0, summary["failures_sample"]
    assert summary["requests"] > 1500, summary["requests"]
    served = summary["served_by"]
    assert all(served.get(r.name, 0) > 100 for r in fleet.replicas), served
    assert not summary["checks"]["unknown_versions"]

    # Every worker process of every replica followed each action, within the control interval
    # plus its own load (and the registry calls of a control check).
    expected = {
        "alias move": 6, "canary share 50%": 6, "canary start": 6, "canary promotion": 6,
        "canary share 0%": 6, "rollback 1 (one replica down)": 4,
        "rollback 2 (through the restarted replica)": 6,
    }  # fmt: skip
    assert {a.name: len(a.processes) for a in result.actions} == expected
    violations = [a.summary()["violations"] for a in result.actions if a.bounded]
    assert not any(violations), violations
    # From the outside too: once the logs say every worker switched, no request sent later
    # came back from another version, whichever replica answered it.
    assert summary["checks"]["stale_count"] == 0, summary["checks"]

    # The SIGTERMed replica finished what it had and exited cleanly.
    assert result.terminated["exit_code"] == 0, result.terminated
    # The restarted replica follows the same history: it came up serving what the fleet
    # served (v2, after the rollback made while it was down), and the next rollback, sent
    # through it, walked the fleet back to v1, it included.
    restart = result.restart
    assert restart["fleet_version"] == v2
    assert all(versions == [v2] for versions in restart["promoted_versions_by_pid"].values())
    second = result.actions[-1]
    assert second.response is not None
    assert second.response["version"] == v1
    assert {p.pid for p in second.processes if p.replica == restart["replica"]} == set(
        restart["pids"]
    )
    assert registry.alias_version() == v1
    assert {v1, v2, v3} <= {int(v) for v in summary["versions_seen"]}
