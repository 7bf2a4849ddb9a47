"""The canary verdict: a pure function of the candidate's and live slot's traffic windows.

Errors are judged on real traffic. Latency is judged only on the candidate's paired latencies
(the same texts timed on both versions back to back), never on what each slot happened to
receive: a client that sees which slot answered can send slow batches to one and cached short
texts to the other, and would otherwise decide the verdict.

The bounds are the canary settings themselves (`bluegreen.settings.CanarySettings`), so the
policy has no defaults of its own to drift from the documented ones.
"""

from __future__ import annotations

import enum

import attrs

from bluegreen.serving.slot import TrafficWindow
from bluegreen.settings import CanarySettings

P95_SLACK_S = 0.001
"""Absolute slack so that a sub-millisecond live p95 does not reject a candidate over noise."""


class Decision(enum.StrEnum):
    WAIT = "wait"
    PROMOTE = "promote"
    REJECT = "reject"


@attrs.frozen
class Verdict:
    decision: Decision
    reason: str


def judge(
    candidate: TrafficWindow, live: TrafficWindow, policy: CanarySettings, now: float
) -> Verdict:
    """Decide whether the canary is done, and how. `now` is `time.monotonic()`."""
    elapsed = now - candidate.started_at
    if (
        candidate.requests >= policy.fast_fail_min_requests
        and candidate.error_rate >= policy.fast_fail_error_rate
    ):
        return Verdict(
            Decision.REJECT,
            f"error rate {candidate.error_rate:.1%} over {candidate.requests} requests",
        )
    pairs = len(candidate.pairs)
    enough = (
        candidate.requests >= policy.min_requests
        and elapsed >= policy.min_seconds
        and pairs >= policy.pairs_needed
    )
    if not enough and elapsed < policy.max_seconds:
        return Verdict(
            Decision.WAIT,
            f"{candidate.requests} requests, {pairs} latency pairs after {elapsed:.0f}s",
        )
    if candidate.requests == 0:
        # No traffic reached it in max_seconds: smoke passed and nothing speaks against it.
        return Verdict(Decision.PROMOTE, "no canary traffic within the maximum window")
    allowed_errors = live.error_rate + policy.max_error_rate_delta
    if candidate.error_rate > allowed_errors:
        return Verdict(
            Decision.REJECT,
            f"error rate {candidate.error_rate:.2%} > live {live.error_rate:.2%} + "
            f"{policy.max_error_rate_delta:.2%}",
        )
    summary = f"{candidate.requests} requests, error rate {candidate.error_rate:.2%}"
    if policy.min_pairs <= 0 or pairs == 0 or pairs < policy.pairs_needed:
        return Verdict(Decision.PROMOTE, f"{summary}, latency not judged ({pairs} pairs)")
    live_p95, candidate_p95 = candidate.pairs.p95s()
    if candidate_p95 > live_p95 * policy.max_p95_ratio + P95_SLACK_S:
        return Verdict(
            Decision.REJECT,
            f"p95 {candidate_p95 * 1000:.2f} ms > {policy.max_p95_ratio}x live "
            f"{live_p95 * 1000:.2f} ms on the same inputs ({pairs} pairs)",
        )
    return Verdict(
        Decision.PROMOTE,
        f"{summary}, p95 {candidate_p95 * 1000:.2f} ms (live {live_p95 * 1000:.2f} ms on the "
        f"same inputs, {pairs} pairs)",
    )
