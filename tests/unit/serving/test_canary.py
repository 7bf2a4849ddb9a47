"""The canary verdict as a pure function of two traffic windows and a clock: errors judged on
real traffic, latency only on paired latencies (the same inputs timed on both versions)."""

from __future__ import annotations

import pytest

from bluegreen.serving.canary import P95_SLACK_S, Decision, judge
from bluegreen.serving.slot import TrafficWindow
from bluegreen.settings import CanarySettings

T0 = 1000.0
POLICY = CanarySettings(
    min_requests=100,
    min_seconds=30.0,
    max_seconds=300.0,
    max_error_rate_delta=0.01,
    max_p95_ratio=2.0,
    min_pairs=50,
    fast_fail_min_requests=20,
    fast_fail_error_rate=0.5,
)


def window(
    requests: int,
    errors: int = 0,
    latency_s: float = 0.001,
    *,
    pairs: int = 0,
    live_pair_s: float = 0.001,
    candidate_pair_s: float = 0.001,
) -> TrafficWindow:
    w = TrafficWindow(started_at=T0)
    for i in range(requests):
        w.record(latency_s, ok=i >= errors)
    for _ in range(pairs):
        w.pairs.record(live_pair_s, candidate_pair_s)
    return w


def test_waits_until_min_requests_even_after_min_seconds() -> None:
    verdict = judge(window(99, pairs=100), window(1000), POLICY, now=T0 + 60)
    assert verdict.decision is Decision.WAIT
    assert "99 requests" in verdict.reason


def test_waits_until_min_seconds_even_with_enough_requests() -> None:
    verdict = judge(window(5000, pairs=100), window(1000), POLICY, now=T0 + 29.9)
    assert verdict.decision is Decision.WAIT


def test_waits_for_min_pairs_once_requests_and_seconds_are_met() -> None:
    verdict = judge(window(500, pairs=49), window(1000), POLICY, now=T0 + 60)
    assert verdict.decision is Decision.WAIT
    assert "49 latency pairs" in verdict.reason
    assert judge(window(500, pairs=50), window(1000), POLICY, now=T0 + 60).decision is (
        Decision.PROMOTE
    )


def test_promotes_once_all_thresholds_are_met_and_within_bounds() -> None:
    verdict = judge(window(100, pairs=50), window(1000), POLICY, now=T0 + 30)
    assert verdict.decision is Decision.PROMOTE
    assert "100 requests" in verdict.reason
    assert "50 pairs" in verdict.reason


def test_promotes_with_small_error_rate_within_delta() -> None:
    live = window(1000, errors=10)  # 1 %
    cand = window(200, errors=4, pairs=50)  # 2 % = live + delta exactly
    assert judge(cand, live, POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_rejects_on_error_rate_delta_of_real_traffic_even_with_equal_pairs() -> None:
    live = window(1000, errors=10)  # 1 %
    cand = window(200, errors=5, pairs=200)  # 2.5 %
    verdict = judge(cand, live, POLICY, now=T0 + 31)
    assert verdict.decision is Decision.REJECT
    assert "error rate 2.50% > live 1.00%" in verdict.reason


def test_per_slot_traffic_latency_is_not_judged() -> None:
    """The measured gap: a client sent slow batches to the candidate and cached short texts to
    live, and a version with identical artifacts was rejected on "p95 13.69 ms > 2.0x live
    0.05 ms". On the same inputs both versions take the same time: it is promoted."""
    live = window(1000, latency_s=0.00005)
    cand = window(200, latency_s=0.01369, pairs=200, live_pair_s=0.0004, candidate_pair_s=0.0004)
    verdict = judge(cand, live, POLICY, now=T0 + 31)
    assert verdict.decision is Decision.PROMOTE, verdict.reason
    assert "same inputs" in verdict.reason


def test_fast_real_traffic_does_not_hide_slow_pairs() -> None:
    """The reverse game: cached texts to the candidate cannot make a slow version pass."""
    live = window(1000, latency_s=0.010)
    cand = window(200, latency_s=0.00005, pairs=60, live_pair_s=0.010, candidate_pair_s=0.030)
    verdict = judge(cand, live, POLICY, now=T0 + 31)
    assert verdict.decision is Decision.REJECT
    assert "p95 30.00 ms > 2.0x live 10.00 ms on the same inputs (60 pairs)" in verdict.reason


def test_p95_just_inside_ratio_plus_slack_promotes() -> None:
    cand = window(200, pairs=60, live_pair_s=0.010, candidate_pair_s=0.020 + P95_SLACK_S * 0.9)
    assert judge(cand, window(1000), POLICY, now=T0 + 31).decision is Decision.PROMOTE
    cand = window(200, pairs=60, live_pair_s=0.010, candidate_pair_s=0.020 + P95_SLACK_S * 1.1)
    assert judge(cand, window(1000), POLICY, now=T0 + 31).decision is Decision.REJECT


def test_sub_millisecond_noise_is_absorbed_by_slack() -> None:
    cand = window(200, pairs=60, live_pair_s=0.0001, candidate_pair_s=0.0009)  # 9x, < 1 ms
    assert judge(cand, window(1000), POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_p95_of_pairs_catches_a_tail_and_ignores_a_stray_stall() -> None:
    def mixed(slow_pairs: int) -> TrafficWindow:
        cand = window(200, pairs=100 - slow_pairs, live_pair_s=0.002, candidate_pair_s=0.002)
        for _ in range(slow_pairs):
            cand.pairs.record(0.002, 0.050)
        return cand

    assert judge(mixed(10), window(1000), POLICY, now=T0 + 31).decision is Decision.REJECT
    assert judge(mixed(1), window(1000), POLICY, now=T0 + 31).decision is Decision.PROMOTE


def test_pairs_needed_never_exceed_min_requests() -> None:
    policy = CanarySettings(min_requests=10, min_seconds=1, min_pairs=50)
    assert policy.pairs_needed == 10
    assert judge(window(10, pairs=9), window(100), policy, T0 + 2).decision is Decision.WAIT
    slow = window(10, pairs=10, live_pair_s=0.001, candidate_pair_s=0.1)
    assert judge(slow, window(100), policy, T0 + 2).decision is Decision.REJECT


def test_min_pairs_zero_does_not_judge_latency() -> None:
    policy = CanarySettings(min_requests=100, min_seconds=30, min_pairs=0)
    slow = window(100, pairs=100, live_pair_s=0.001, candidate_pair_s=1.0)
    verdict = judge(slow, window(100), policy, now=T0 + 30)
    assert verdict.decision is Decision.PROMOTE
    assert "latency not judged" in verdict.reason


def test_max_seconds_with_too_few_pairs_decides_on_errors_only() -> None:
    slow_few = window(200, pairs=10, live_pair_s=0.001, candidate_pair_s=1.0)
    verdict = judge(slow_few, window(1000), POLICY, now=T0 + 300)
    assert verdict.decision is Decision.PROMOTE
    assert "latency not judged (10 pairs)" in verdict.reason
    failing = window(200, errors=10, pairs=10)
    assert judge(failing, window(1000), POLICY, now=T0 + 300).decision is Decision.REJECT


def test_p95_not_compared_without_pairs() -> None:
    cand = window(200, latency_s=5.0)
    policy = CanarySettings(min_requests=100, min_seconds=30, min_pairs=0)
    assert judge(cand, window(0), policy, now=T0 + 31).decision is Decision.PROMOTE


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
    ("requests", "pairs", "elapsed", "expected"),
    [
        (0, 0, 0, Decision.WAIT),
        (100, 50, 29, Decision.WAIT),
        (100, 49, 30, Decision.WAIT),
        (100, 50, 30, Decision.PROMOTE),
    ],
)
def test_defaults_are_respected(
    requests: int, pairs: int, elapsed: float, expected: Decision
) -> None:
    policy = CanarySettings(min_requests=100, min_seconds=30)
    cand = window(requests, pairs=pairs)
    assert judge(cand, window(100), policy, now=T0 + elapsed).decision is expected
