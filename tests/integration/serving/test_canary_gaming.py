"""A client that games the canary cannot get a good version rejected.

It learns which request ids land on the candidate from the response headers (the assignment is
sticky, so probing works however it is computed), then sends slow batches with those ids and
cached short texts with the ids that land on live. The per-slot latencies it produces would
fail the candidate (the measured gap: "p95 13.69 ms > 2.0x live 0.05 ms" for identical
artifacts); the verdict, judged on paired latencies of the same texts, promotes it.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import httpx
import pytest

from tests.integration.conftest import AppFactory
from tests.support.faults import metric, wait_until
from tests.support.models import EnsembleVersions, TestRegistry
from tests.support.servers import AppServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]
REJECTED_TAG = "bluegreen.rejected"
CLOSE = {"Connection": "close"}  # each request to whichever worker accepts it
SHORT = "최고"
REVIEW = "관람 후기: 배우들의 연기가 정말 훌륭했고 이야기도 감동적이었지만 결말은 조금 아쉬웠다. "
BATCH = [f"{i}번째 {REVIEW * 20}" for i in range(64)]  # long texts, uncached: slow to score


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def events(app: AppServer, name: str, version: int) -> list[dict[str, object]]:
    return [e for e in app.log_events() if e["event"] == name and e.get("version") == version]


def probe(app: AppServer, keys: list[str]) -> dict[str, set[tuple[str, str]]]:
    """(version, slot) each key was answered from, over fresh connections (both workers)."""
    seen: dict[str, set[tuple[str, str]]] = defaultdict(set)
    with httpx.Client(base_url=app.url, timeout=30) as client:
        for _ in range(2):
            for key in keys:
                r = client.post("/predict", json={"text": SHORT},
                                headers={**CLOSE, "X-Request-ID": key})  # fmt: skip
                assert r.status_code == 200, r.text
                seen[key].add((r.headers["x-model-version"], r.headers["x-model-slot"]))
    return seen


class Exploit:
    """Slow batches under the candidate's ids, one cached short text under live's."""

    def __init__(self, app: AppServer, to_candidate: list[str], to_live: list[str]) -> None:
        self.app = app
        self.stop = threading.Event()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.failures: list[str] = []
        senders = [(to_candidate, True)] * 2 + [(to_live, False)] * 2
        self.threads = [
            threading.Thread(target=self._send, args=sender, daemon=True) for sender in senders
        ]

    def _send(self, keys: list[str], batch: bool) -> None:
        with httpx.Client(base_url=self.app.url, timeout=60) as client:
            i = 0
            while not self.stop.is_set():
                headers = {**CLOSE, "X-Request-ID": keys[i % len(keys)]}
                i += 1
                started = time.perf_counter()
                try:
                    if batch:
                        r = client.post("/predict/batch", json={"texts": BATCH}, headers=headers)
                    else:
                        r = client.post("/predict", json={"text": SHORT}, headers=headers)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                self.latencies[r.headers["x-model-version"]].append(time.perf_counter() - started)

    def __enter__(self) -> Exploit:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(90)


@pytest.mark.timeout(600)
def test_a_client_that_steers_slow_work_to_the_candidate_cannot_get_it_rejected(
    registry: TestRegistry, ensembles: EnsembleVersions, start_app: AppFactory
) -> None:
    live_version = ensembles.register()
    app = start_app(
        workers=2,
        env={
            "BLUEGREEN_TRUST_MODEL_CODE": "false",  # the real ensemble: a data-only bundle
            "BLUEGREEN_CANARY_PERCENT": "50",
            "BLUEGREEN_CANARY_MIN_REQUESTS": "40",
            "BLUEGREEN_CANARY_MIN_PAIRS": "40",
            "BLUEGREEN_CANARY_MIN_SECONDS": "20",  # the exploit runs through the window
            "BLUEGREEN_CANARY_MAX_SECONDS": "400",  # decided on pairs, not on a timeout
            "BLUEGREEN_CONTROL_INTERVAL_S": "0.5",
        },
    )
    candidate = ensembles.register()  # the same fit: identical artifacts
    wait_until(lambda: len(events(app, "canary.started", candidate)) == 2, timeout=120,
               what="both workers canary the new version")  # fmt: skip

    # Probe: which ids does the candidate answer? Every id sticks to one version on both
    # workers, so the per-host key is shared by the workers.
    seen = probe(app, [f"gamer-{i}" for i in range(120)])
    assert all(len(answers) == 1 for answers in seen.values()), seen
    to_candidate = [k for k, answers in seen.items() if next(iter(answers))[0] == str(candidate)]
    to_live = [k for k, answers in seen.items() if next(iter(answers))[0] == str(live_version)]
    assert len(to_candidate) >= 20, len(to_candidate)
    assert len(to_live) >= 20, len(to_live)

    with Exploit(app, to_candidate, to_live) as exploit:
        decided = wait_until(
            lambda: events(app, "model.promoted", candidate)
            or REJECTED_TAG in registry.tags(candidate),
            timeout=400, interval=1, what="the canary decided",
        )  # fmt: skip
    assert not exploit.failures, exploit.failures[:5]

    # The exploit worked on what each slot received: per-slot latency would have failed it.
    by_version = {v: p95(lat) for v, lat in exploit.latencies.items()}
    print(f"client-side p95 by version during the exploit: {by_version}")
    assert by_version[str(candidate)] > 2 * by_version[str(live_version)] + 0.001

    assert REJECTED_TAG not in registry.tags(candidate), registry.tags(candidate)
    assert not events(app, "model.rejected", candidate)
    assert isinstance(decided, list)
    passed = [str(e["reason"]) for e in decided if "canary passed" in str(e["reason"])]
    assert passed, decided
    print(f"verdicts: {passed}")
    assert all("same inputs" in reason for reason in passed), passed
    assert registry.alias_version() == candidate
    assert metric(app.url, "bluegreen_canary_pairs_total", result="scored") >= 40
