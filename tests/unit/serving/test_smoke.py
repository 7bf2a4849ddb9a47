"""The smoke gate accepts a well-behaved model and rejects each kind of broken one clearly."""

from __future__ import annotations

import pytest

from bluegreen.serving.model_handle import LoadedModel, ModelRef
from bluegreen.serving.smoke import GOLDEN_SET, ODD_INPUTS, SmokeFailed, run_smoke
from tests.fakes import BrokenModel, KeywordModel, loaded

BUDGET_MS = 250.0
MIN_ACCURACY = 0.6


def smoke(model: LoadedModel, budget_ms: float = BUDGET_MS) -> object:
    return run_smoke(model, latency_budget_ms=budget_ms, min_golden_accuracy=MIN_ACCURACY)


def test_good_model_passes_with_a_report() -> None:
    report = smoke(loaded(1, KeywordModel()))
    assert report.golden_accuracy == 1.0  # type: ignore[attr-defined]
    assert report.checked_texts == len(GOLDEN_SET) + len(ODD_INPUTS)  # type: ignore[attr-defined]
    assert 0 <= report.median_single_ms < BUDGET_MS  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("raise", r"predict raised RuntimeError: model exploded"),
        ("nan", r"non-finite probability"),
        ("negative", r"outside \[0, 1\]"),
        ("unnormalised", r"outside \[0, 1\]|do not sum to 1"),
        ("wrong_shape", r"expected shape \(\d+, 3\), got \(\d+, 2\)"),
        ("swapped", r"golden accuracy 0\.00 below 0\.60 \(labels swapped\?\)"),
    ],
)
def test_broken_model_fails_with_a_clear_message(mode: str, message: str) -> None:
    with pytest.raises(SmokeFailed, match=message):
        smoke(loaded(2, BrokenModel(mode)))


def test_slow_model_over_latency_budget_fails() -> None:
    with pytest.raises(SmokeFailed, match=r"median latency .* over budget 5\.0 ms"):
        smoke(loaded(3, KeywordModel(delay_s=0.02)), budget_ms=5.0)


def test_slow_model_within_budget_passes() -> None:
    report = smoke(loaded(3, KeywordModel(delay_s=0.005)), budget_ms=1000.0)
    assert report.median_single_ms >= 5.0  # type: ignore[attr-defined]


def test_model_that_fails_only_on_odd_inputs_is_rejected() -> None:
    class EmojiHater(KeywordModel):
        def predict_texts(self, texts):  # type: ignore[no-untyped-def]
            if any("😀" in t for t in texts):
                raise ValueError("cannot tokenize emoji")
            return super().predict_texts(texts)

    with pytest.raises(SmokeFailed, match="cannot tokenize emoji"):
        smoke(loaded(4, EmojiHater()))


def _with_smoke_set(model: object, smoke_set: tuple[tuple[str, str], ...]) -> LoadedModel:
    ref = ModelRef("m", 9, "models:/m/9", smoke_set=smoke_set)
    return LoadedModel(ref, model.predict_texts, None, True, keepalive=model)  # type: ignore[attr-defined]


def test_a_version_smoke_set_runs_in_addition_to_the_golden_set() -> None:
    seen: list[list[str]] = []

    class Recording(KeywordModel):
        def predict_texts(self, texts):  # type: ignore[no-untyped-def]
            seen.append(list(texts))
            return super().predict_texts(texts)

    own = (("최고 명작", "긍정"), ("최악 노잼", "부정"), ("완전 꿀잼 추천", "긍정"))
    report = smoke(_with_smoke_set(Recording(), own))
    assert seen[0] == [text for text, _ in GOLDEN_SET] + [text for text, _ in own]
    assert report.golden_accuracy == 1.0  # type: ignore[attr-defined]
    assert report.version_set_accuracy == 1.0  # type: ignore[attr-defined]
    assert report.version_set_cases == len(own)  # type: ignore[attr-defined]
    assert report.checked_texts == len(GOLDEN_SET) + len(own) + len(ODD_INPUTS)  # type: ignore[attr-defined]


def test_without_a_version_smoke_set_only_the_golden_set_is_judged() -> None:
    report = smoke(loaded(1, KeywordModel()))
    assert report.version_set_accuracy is None  # type: ignore[attr-defined]
    assert report.version_set_cases == 0  # type: ignore[attr-defined]


def test_a_version_smoke_set_can_fail_a_model_the_golden_set_passes() -> None:
    # KeywordModel passes the built-in golden set but cannot read these labels right.
    own = (("최고", "부정"), ("최악", "긍정"), ("명작", "부정"))
    with pytest.raises(
        SmokeFailed, match=r"accuracy 0\.00 on the version's own smoke set \(3 cases\)"
    ):
        smoke(_with_smoke_set(KeywordModel(), own))


def test_an_easy_version_smoke_set_does_not_replace_the_golden_set() -> None:
    # Labels swapped: every golden case wrong. Its own set is written to match, so a set that
    # replaced the golden one would let it through.
    swapped = BrokenModel("swapped")
    own = (("최고 명작", "부정"), ("최악 노잼", "긍정"))
    assert swapped.predict_texts([t for t, _ in own]).argmax(axis=1).tolist() == [0, 2]
    with pytest.raises(SmokeFailed, match=r"golden accuracy 0\.00"):
        smoke(_with_smoke_set(swapped, own))


def test_each_set_is_logged_with_its_accuracy(caplog: pytest.LogCaptureFixture) -> None:
    own = (("최고 명작", "긍정"), ("최고", "부정"), ("최악 노잼", "부정"))
    with caplog.at_level("INFO", logger="bluegreen.smoke"):
        smoke(_with_smoke_set(KeywordModel(), own))
    sets = {
        r.fields["set"]: r.fields  # type: ignore[attr-defined]
        for r in caplog.records
        if r.getMessage() == "model.smoke.set"
    }
    assert sets["golden"]["cases"] == len(GOLDEN_SET)
    assert sets["golden"]["passed"] is True
    assert sets["version"] == {
        "version": 9, "set": "version", "cases": 3, "correct": 2, "accuracy": 0.6667,
        "min_accuracy": MIN_ACCURACY, "passed": True,
    }  # fmt: skip
