"""Fleet convergence (issue 17): three replicas of two workers each behind a real HAProxy, one
`mlflow server` registry, constant load through the proxy. The alias moves, a canary runs, one
replica is SIGTERMed and the fleet rolls back while it is down, the replica restarts and a
second rollback goes through it (`tests.support.fleet.FleetScenario`, the scenario the
integration test asserts on).

Measured per worker process and action: seconds from the alias move until that process
answered with the new version (its own `model.promoted` / `canary.started` log line), against
the bound "control interval plus one load" (the process's own load, plus the registry round
trips it takes to notice the move). The figures are also written to
bench/results/fleet_convergence.json.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.fleet import (
    FleetScenario,
    running_fleet,
)
from tests.support.haproxy import haproxy_binary
from tests.support.models import TestRegistry

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = REPO / "bench" / "results" / "fleet_convergence.json"
REPLICAS = 3
WORKERS = 2
CONTROL_INTERVAL_S = 1.0


def run(
    out: Path, tracking_uri: str, source: tuple[str, str | None, str | None], *,
    trust_code: str, model: str, log: Callable[[str], None],
    users: int = 8, rate_per_user: float = 8.0,
) -> dict[str, Any]:  # fmt: skip
    """`source` (source, run_id, model_id): the benchmarked model; every version the fleet
    moves between is a new registry version of it."""
    if haproxy_binary() is None:
        log("  haproxy is not installed (`just setup-system`): fleet section skipped")
        return {"skipped": "haproxy is not installed"}
    name = f"bench-fleet-{int(time.time())}"
    registry = TestRegistry(tracking_uri, name)
    artifact, run_id, model_id = source
    registry._create(artifact, run_id, "production", model_id)

    def new_version() -> int:
        return registry._create(artifact, run_id, None, model_id)

    with running_fleet(
        out / "fleet", tracking_uri, name, replicas=REPLICAS, workers=WORKERS,
        control_interval_s=CONTROL_INTERVAL_S, env={"BLUEGREEN_TRUST_MODEL_CODE": trust_code},
    ) as fleet:  # fmt: skip
        scenario = FleetScenario(
            fleet, registry, new_version, users=users, rate_per_user=rate_per_user,
            log=lambda m: log(f"  {m}"),
        )  # fmt: skip
        result = scenario.run()
    summary = {
        "measured_by": "bench/fleet.py (just bench)",
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "replicas": REPLICAS,
        "workers_per_replica": WORKERS,
        "control_interval_s": CONTROL_INTERVAL_S,
        "model": model,
        **result.summary(),
    }
    (out / "fleet_convergence.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    PUBLISHED.parent.mkdir(parents=True, exist_ok=True)
    PUBLISHED.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    c = summary["convergence"]
    log(f"  convergence median {c['median_s']} s, max {c['max_s']} s over "
        f"{c['processes_measured']} process-actions; {summary['failed']} failed of "
        f"{summary['requests']} requests")  # fmt: skip
    return summary


# --- BENCHMARKS.md (bench/report.py) ---------------------------------------------------------
def _within(fleet: dict[str, Any]) -> bool:
    return bool(fleet["convergence"]["violations"] == 0 and fleet["failed"] == 0)


def summary_row(fleet: dict[str, Any]) -> str:
    if "skipped" in fleet:
        return f"| 10. fleet behind HAProxy | — | skipped: {fleet['skipped']} | — |"
    c = fleet["convergence"]
    return (
        f"| 10. fleet ({fleet['replicas']} replicas × {fleet['workers_per_replica']} workers "
        f"behind HAProxy, under load): alias move → each process answers with the version; "
        f"failed requests | every process within the control interval "
        f"({fleet['control_interval_s']:g} s) + its own load; 0 | median {c['median_s']} s, "
        f"max {c['max_s']} s over {c['processes_measured']} process-actions (longest load "
        f"{c['max_load_s']} s); {fleet['failed']} of {fleet['requests']} | "
        f"{'met' if _within(fleet) else '**missed**'} |"
    )


def section(fleet: dict[str, Any]) -> list[str]:
    if "skipped" in fleet:
        return []
    c, t, r, h = fleet["convergence"], fleet["terminated"], fleet["restart"], fleet["haproxy"]
    lines = [
        "## 10. A fleet behind HAProxy: how fast every process follows",
        "",
        f"`bench/fleet.py`: {fleet['replicas']} replicas (`bluegreen serve`, "
        f"{fleet['workers_per_replica']} workers each, own port and state directory) follow one "
        f"`mlflow server` behind HAProxy (configuration and its reasons: "
        "`tests/support/haproxy.py`), "
        f"`BLUEGREEN_CONTROL_INTERVAL_S={fleet['control_interval_s']:g}`, "
        f"model: {fleet['model']}. Constant load through the proxy the whole time: "
        f"{fleet['requests']} requests ({fleet['rps']} req/s), **{fleet['failed']} failed**. "
        "Each figure is one worker process: seconds from the alias move (read every 0.1 s from "
        "the registry, taken at the last read that still saw the old version, so never early) "
        "until the process's own log says it answers with the new version. Bound: "
        f"{fleet['bound']}. Rollbacks are admin calls; the process that took the call switches "
        "before it moves the alias and is not counted in the medians.",
        "",
        "| action | version | processes | median s | max s | max s from the call | within bound |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in fleet["actions"]:
        bound = (
            ("yes" if not a["violations"] else f"**{len(a['violations'])} over**")
            if a["bounded"]
            else "— (waits for the canary's verdict)"
        )
        lines.append(
            f"| {a['action']} | {a['version'] if a['version'] is not None else '—'} | "
            f"{a['processes']} | {a['median_s']} | {a['max_s']} | {a['max_from_action_s']} | "
            f"{bound} |"
        )
    lines += [
        "",
        f"- Over every bounded action: median **{c['median_s']} s**, max **{c['max_s']} s** "
        f"({c['processes_measured']} process-actions; the processes that took a rollback call "
        f"themselves excluded); the longest load took {c['max_load_s']} s; noticing a move "
        f"(alias move to the start of the load) took median {c['median_notice_s']} s, max "
        f"{c['max_notice_s']} s; the closest any process came to its bound: "
        + (
            f"{-c['max_over_bound_s']:.3f} s inside it."
            if c["max_over_bound_s"] <= 0
            else f"**{c['max_over_bound_s']:.3f} s past it**."
        ),
        f"- Replica {t['replica']} got SIGTERM with no drain in HAProxy first: it failed "
        f"`/readyz` and kept serving for its shutdown delay ({t['shutdown_delay_s']:g} s), "
        f"exited {t['exit_code']} after {t['exit_s']} s, and HAProxy showed it down "
        f"{t['marked_down_s']} s later. Restarted, it passed its `/readyz` checks "
        f"{r['marked_up_s']} s after the start "
        f"and every worker served v{r['fleet_version']} (the version the fleet had rolled back "
        f"to while it was down) {r['ready_s']} s after the start; the second rollback went "
        "through it.",
        f"- HAProxy retried {h['retries']} requests and redispatched {h['redispatches']} to "
        "another replica (connection failures to the stopped replica, and replays of "
        "predictions a replica could not answer); "
        f"{fleet['failed']} requests failed at the client"
        + (
            ": "
            + "; ".join(
                sorted(
                    {f["error"].split(',"request_id"')[0][:120] for f in fleet["failures_sample"]}
                )
            )
            + "."
            if fleet["failed"]
            else "."
        ),
        "",
    ]
    return lines
