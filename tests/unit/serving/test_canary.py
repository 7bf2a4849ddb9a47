"""The canary verdict as a pure function of two traffic windows and a clock."""

from __future__ import annotations

import pytest

from bluegreen.serving.canary import P95_SLACK_S, CanaryPolicy, Decision, judge
from bluegreen.serving.slot import TrafficWindow

T0 = 1000.0
POLICY = CanaryPolicy(
    min_requests=100,
    min_seconds=30.0,
    max_seconds=300.0,
    max_error_rate_delta=0.01,
    max_p95_ratio=2.0,
    fast_fail_min_requests=20,
    fast_fail_error_rate=0.5,
)


def window(requests: int, errors: int = 0, latency_s: float = 0.001) -> TrafficWindow:
    w = TrafficWindow(started_at=T0)
    for i in range(requests):
        w.record(latency_s, ok=i >= errors)
    return w


def test_waits_until_min_requests_even_after_min_seconds() -> None:
    verdict = judge(window(99), window(1000), POLICY, now=T0 + 60)
    assert verdict.decision is Decision.WAIT
    assert "99 requests" in verdict.reason


def test_waits_until_min_seconds_even_with_enough_requests() -> None:
    verdict = judge(window(5000), window(1000), POLICY, now=T0 + 29.9)
    assert verdict.decision is Decision.WAIT


def test_promotes_once_both_thresholds_are_met_and_within_bounds() -> None:
    verdict = judge(window(100), window(1000), POLICY, now=T0 + 30)
    assert verdict.decision is Decision.PROMOTE
    assert "100 requests" in verdict.reason


def test_promotes_with_small_error_rate_within_delta() -> None:
    live = window(1000, errors=10)  # 1 %
    cand = window(200, errors=4)  # 2 % = live + delta exactly
    assert judge(cand, live, POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_rejects_on_error_rate_delta() -> None:
    live = window(1000, errors=10)  # 1 %
    cand = window(200, errors=5)  # 2.5 %
    verdict = judge(cand, live, POLICY, now=T0 + 31)
    assert verdict.decision is Decision.REJECT
    assert "error rate 2.50% > live 1.00%" in verdict.reason


def test_rejects_on_p95_ratio() -> None:
    live = window(1000, latency_s=0.010)
    cand = window(200, latency_s=0.030)  # 3x > 2x + 1 ms
    verdict = judge(cand, live, POLICY, now=T0 + 31)
    assert verdict.decision is Decision.REJECT
    assert "p95" in verdict.reason
    assert "2.0x live" in verdict.reason


def test_p95_just_inside_ratio_plus_slack_promotes() -> None:
    live = window(1000, latency_s=0.010)
    cand = window(200, latency_s=0.020 + P95_SLACK_S * 0.9)
    assert judge(cand, live, POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_sub_millisecond_noise_is_absorbed_by_slack() -> None:
    live = window(1000, latency_s=0.0001)
    cand = window(200, latency_s=0.0009)  # 9x, but within 1 ms absolute slack
    assert judge(cand, live, POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_p95_not_compared_when_live_has_no_latencies() -> None:
    cand = window(200, latency_s=5.0)
    assert judge(cand, window(0), POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_fast_fail_rejects_before_the_window_is_complete() -> None:
    cand = window(20, errors=10)
    verdict = judge(cand, window(1000), POLICY, now=T0 + 1)
    assert verdict.decision is Decision.REJECT
    assert "50.0%" in verdict.reason


def test_no_fast_fail_below_its_minimum_requests() -> None:
    cand = window(19, errors=19)
    assert judge(cand, window(1000), POLICY, now=T0 + 1).decision is Decision.WAIT


def test_max_seconds_with_zero_requests_promotes() -> None:
    verdict = judge(window(0), window(1000), POLICY, now=T0 + 300)
    assert verdict.decision is Decision.PROMOTE
    assert "no canary traffic" in verdict.reason


def test_zero_requests_before_max_seconds_waits() -> None:
    assert judge(window(0), window(1000), POLICY, now=T0 + 299).decision is Decision.WAIT


def test_max_seconds_decides_with_the_traffic_it_got() -> None:
    few_good = window(10)
    assert judge(few_good, window(1000), POLICY, now=T0 + 300).decision is Decision.PROMOTE
    few_bad = window(10, errors=3)  # below fast-fail volume, but over the delta
    assert judge(few_bad, window(1000), POLICY, now=T0 + 300).decision is Decision.REJECT


@pytest.mark.parametrize(
    ("requests", "elapsed", "expected"),
    [(0, 0, Decision.WAIT), (100, 29, Decision.WAIT), (100, 30, Decision.PROMOTE)],
)
def test_defaults_are_respected(requests: int, elapsed: float, expected: Decision) -> None:
    policy = CanaryPolicy(min_requests=100, min_seconds=30)
    assert judge(window(requests), window(100), policy, now=T0 + elapsed).decision is expected
