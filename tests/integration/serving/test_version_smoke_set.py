"""A version's own smoke set, shipped inside its bundle, runs beside the server's golden set on
a real server: the trainer's set is found and judged, and a version whose own set it fails is
rejected at the smoke stage although the golden set alone would have passed it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bluegreen.model import bundle
from tests.integration.conftest import AppFactory
from tests.support.faults import served_version, wait_until
from tests.support.models import WRONG_SMOKE_SET, EnsembleVersions, TestRegistry
from tests.support.servers import AppServer

pytestmark = pytest.mark.integration

REJECTED_TAG = "bluegreen.rejected"
TRAINER_SMOKE_SET = Path(bundle.__file__).with_name("golden.tsv")


def _smoke_sets(app: AppServer, version: int) -> dict[str, dict[str, object]]:
    return {
        str(e["set"]): e for e in app.log_events()
        if e.get("event") == "model.smoke.set" and e.get("version") == version
    }  # fmt: skip


def test_a_version_is_judged_on_the_golden_set_and_on_its_own_smoke_set(
    start_app: AppFactory, registry: TestRegistry, ensembles: EnsembleVersions, model_name: str
) -> None:
    first = ensembles.register()
    app = start_app(env={"BLUEGREEN_TRUST_MODEL_CODE": "false"})
    assert served_version(app.url) == first

    # The trainer's smoke set travelled inside the bundle and was judged beside the golden set.
    sets = _smoke_sets(app, first)
    assert sets.keys() == {"golden", "version"}
    assert sets["golden"]["passed"] is True
    assert sets["version"]["cases"] == len(bundle.read_smoke_set(TRAINER_SMOKE_SET))
    assert sets["version"]["passed"] is True

    source = str(registry.client.get_model_version(model_name, str(first)).source)
    wrong = registry.register_altered_bundle(source, "wrong_smoke")
    wait_until(lambda: REJECTED_TAG in registry.tags(wrong), timeout=90,
               what="the version its own smoke set fails is tagged rejected")  # fmt: skip
    reason = registry.tags(wrong)[REJECTED_TAG]
    assert reason.startswith("smoke:"), reason
    assert f"own smoke set ({len(WRONG_SMOKE_SET)} cases)" in reason
    sets = _smoke_sets(app, wrong)
    assert sets["golden"]["passed"] is True  # the golden set alone would have let it through
    assert sets["version"]["cases"] == len(WRONG_SMOKE_SET)
    assert sets["version"]["passed"] is False
    assert served_version(app.url) == first
