"""Fixtures of the deploy tests: the parsed compose file and Kubernetes manifests."""

from __future__ import annotations

import pytest
import yaml

from .helpers import COMPOSE_FILE, K8S, k8s_manifests


@pytest.fixture(scope="session")
def compose() -> dict:
    """deploy/compose.yaml as compose sees it (YAML anchors and merge keys resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def compose_services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="session")
def base_manifests():
    """deploy/k8s/*.yaml: what kustomization.yaml applies."""
    return k8s_manifests(K8S, recursive=False)


@pytest.fixture(scope="session")
def demo_manifests():
    """deploy/k8s/demo/*.yaml: the optional demo infrastructure."""
    return k8s_manifests(K8S / "demo", recursive=False)


@pytest.fixture(scope="session")
def objects(base_manifests) -> dict[tuple[str, str], dict]:
    """(kind, name) -> document, for the base manifests."""
    found: dict[tuple[str, str], dict] = {}
    for manifest in base_manifests:
        key = (manifest.kind, manifest.name)
        assert key not in found, f"{manifest.label} is defined twice"
        found[key] = manifest.doc
    return found


@pytest.fixture(scope="session")
def configmap(objects) -> dict[str, str]:
    return objects[("ConfigMap", "commerce-config")]["data"]
