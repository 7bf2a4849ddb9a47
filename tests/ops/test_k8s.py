"""Kubernetes manifests: schema-valid for a current Kubernetes (removed API versions fail) and
consistent with each other and with the app's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate.utils as kv
import pytest
import yaml

from bluegreen.settings import Settings
from tests.ops.conftest import REPO

K8S = REPO / "deploy/k8s"
# Newest version the installed kubernetes-validate knows (1.37 with kubernetes-validate 1.37).
KUBERNETES_VERSION = kv.major_minor(kv.latest_version())
MANIFESTS = sorted(K8S.glob("*.yaml"))


def documents() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in MANIFESTS
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def by_kind(kind: str) -> dict[str, Any]:
    (doc,) = [doc for _, doc in documents() if doc["kind"] == kind]
    return doc


def test_validator_is_current() -> None:
    assert kv.major_minor(KUBERNETES_VERSION) >= kv.major_minor("1.33")


@pytest.mark.parametrize(
    ("path", "doc"), documents(), ids=lambda v: v.name if isinstance(v, Path) else v["kind"]
)
def test_manifest_is_valid(path: Path, doc: dict[str, Any]) -> None:
    # strict: unknown fields fail; SchemaNotFoundError (e.g. policy/v1beta1) fails too
    try:
        kv.validate(doc, KUBERNETES_VERSION, strict=True)
    except kv.ValidationError as exc:
        pytest.fail(f"{path.name}: {'.'.join(map(str, exc.path))}: {exc.message}")
    except kv.SchemaNotFoundError as exc:
        pytest.fail(f"{path.name}: {exc.message}")


def test_expected_objects_exist() -> None:
    kinds = {(doc["apiVersion"], doc["kind"]) for _, doc in documents()}
    assert kinds >= {
        ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "Secret"),
        ("policy/v1", "PodDisruptionBudget"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
    }  # fmt: skip


def test_deployment_drains_safely_and_runs_unprivileged() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2
    config = by_kind("ConfigMap")["data"]
    drain = float(config["BLUEGREEN_DRAIN_TIMEOUT_S"])
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > drain + pre_stop
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # every writable path the app uses is an emptyDir mount
    env = {e["name"]: e["value"] for e in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    for path in (env["PROMETHEUS_MULTIPROC_DIR"], env["BLUEGREEN_STATE_DIR"], "/tmp"):
        mount = next((m for m in mounts if path == m or path.startswith(m + "/")), None)
        assert mount is not None, path
        assert mounts[mount] in empty_dirs, path
    # the multiprocess dir is wiped and recreated at start: it cannot be a mount point itself
    assert env["PROMETHEUS_MULTIPROC_DIR"] not in mounts
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])


def test_settings_are_accepted_by_the_app() -> None:
    deployment = by_kind("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = dict(by_kind("ConfigMap")["data"])
    env.update(by_kind("Secret")["stringData"])
    env.update({e["name"]: e["value"] for e in container["env"]})
    Settings.from_env(env)  # unknown BLUEGREEN_* names or bad values raise
    refs = {ref[k]["name"] for ref in container["envFrom"] for k in ref}
    assert refs == {by_kind("ConfigMap")["metadata"]["name"], by_kind("Secret")["metadata"]["name"]}


def test_selectors_match_the_pods() -> None:
    deployment = by_kind("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        by_kind("Service")["spec"]["selector"],
        by_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert selector.items() <= labels.items()
    target = by_kind("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert by_kind("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
