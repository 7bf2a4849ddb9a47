"""The canary verdict: a pure function of the candidate's and live slot's traffic windows."""

from __future__ import annotations

import enum

import attrs

from bluegreen.serving.slot import TrafficWindow

P95_SLACK_S = 0.001
"""Absolute slack so that a sub-millisecond live p95 does not reject a candidate over noise."""


class Decision(enum.StrEnum):
    WAIT = "wait"
    PROMOTE = "promote"
    REJECT = "reject"


@attrs.frozen
class CanaryPolicy:
    min_requests: int = 200
    min_seconds: float = 30.0
    max_seconds: float = 900.0
    max_error_rate_delta: float = 0.01
    max_p95_ratio: float = 2.0
    fast_fail_min_requests: int = 20
    fast_fail_error_rate: float = 0.5
    """Reject at once, without waiting for the window, when this many requests fail this much."""


@attrs.frozen
class Verdict:
    decision: Decision
    reason: str


def judge(
    candidate: TrafficWindow, live: TrafficWindow, policy: CanaryPolicy, now: float
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
    enough = candidate.requests >= policy.min_requests and elapsed >= policy.min_seconds
    if not enough and elapsed < policy.max_seconds:
        return Verdict(Decision.WAIT, f"{candidate.requests} requests after {elapsed:.0f}s")
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
    live_p95, candidate_p95 = live.p95(), candidate.p95()
    if live.latencies and candidate_p95 > live_p95 * policy.max_p95_ratio + P95_SLACK_S:
        return Verdict(
            Decision.REJECT,
            f"p95 {candidate_p95 * 1000:.2f} ms > {policy.max_p95_ratio}x live "
            f"{live_p95 * 1000:.2f} ms",
        )
    return Verdict(
        Decision.PROMOTE,
        f"{candidate.requests} requests, error rate {candidate.error_rate:.2%}, "
        f"p95 {candidate_p95 * 1000:.2f} ms (live {live_p95 * 1000:.2f} ms)",
    )
