"""deploy/k8s: schema-valid manifests that run every service and process type correctly.

Every manifest is validated against the Kubernetes OpenAPI schemas that the
`kubernetes-validate` package ships (strict: unknown fields fail). KEDA's ScaledObject is
not in them; it is checked structurally here.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from urllib.parse import urlsplit

import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from .helpers import (
    K8S,
    KEDA_VARIABLES,
    PORT_FIELD,
    SERVICE_PROCESSES,
    SERVICES,
    k8s_manifests,
    known_variables,
    processes,
    service_default,
    service_prefix,
    slug,
)

#: A recent Kubernetes release whose schemas kubernetes-validate ships.
KUBERNETES_VERSION = "1.34"
KEDA_API = "keda.sh/v1alpha1"
ALL_MANIFESTS = k8s_manifests(K8S, recursive=True)


@pytest.fixture(scope="module", autouse=True)
def _cached_schemas():
    """kubernetes-validate re-reads a 1.5 MB definitions file per resource; read it once."""
    original = kubernetes_validate.utils.schema_contents
    kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(original)
    yield
    kubernetes_validate.utils.schema_contents = original


@pytest.mark.parametrize(
    "manifest", [m for m in ALL_MANIFESTS if m.doc["apiVersion"] != KEDA_API], ids=lambda m: m.label
)
def test_manifest_is_valid_kubernetes(manifest):
    try:
        kubernetes_validate.validate(manifest.doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{manifest.label}: {path}: {exc.message}")


def test_manifests_are_namespace_agnostic():
    for manifest in ALL_MANIFESTS:
        assert "namespace" not in manifest.doc["metadata"], manifest.label


def test_kustomization_lists_every_base_manifest():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    on_disk = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk
    assert "namespace" not in kustomization, "the manifests stay namespace-agnostic"


def test_kustomize_builds_when_kubectl_is_installed():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and "unknown command" in result.stderr:
        pytest.skip("this kubectl has no kustomize")
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(built) == len(k8s_manifests(K8S, recursive=False))


# --- Deployments ------------------------------------------------------------------------------
def _container(deployment: dict) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _configured(configmap: dict[str, str], service: str, field: str) -> str:
    value = configmap.get(f"{service_prefix(service)}{field.upper()}")
    return str(value if value is not None else service_default(service, field))


@pytest.mark.parametrize(("service", "process"), SERVICE_PROCESSES, ids=lambda v: v)
def test_a_deployment_per_service_and_process(objects, configmap, service, process):
    name = f"{slug(service)}-{process}"
    deployment = objects.get(("Deployment", name))
    assert deployment is not None, f"no Deployment {name}"
    spec = deployment["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= pod_labels.items()
    assert {"commerce/service": service, "commerce/process": process}.items() <= pod_labels.items()
    container = _container(deployment)
    assert container["image"].split(":")[0] == "commerce"
    assert container.get("command") is None, "the image's ENTRYPOINT (python -m) runs the args"
    assert container["args"] == [f"services.{service}", process]

    resources = container["resources"]
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[bound].keys(), f"{name}: {bound}"

    # Probes hit the process's own ops port, which the environment really opens.
    port = int(_configured(configmap, service, PORT_FIELD[process]))
    assert port != 0, f"{name}: {PORT_FIELD[process]} is 0 (no ops server to probe)"
    assert _configured(configmap, service, "http_host") == "0.0.0.0", "probes come from outside the pod"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe_name, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = container[probe_name]["httpGet"]
        assert probe["path"] == path, f"{name}: {probe_name}"
        probe_port = ports[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
        assert probe_port == port, f"{name}: {probe_name} on {probe_port}, the process listens on {port}"
    annotations = spec["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true", f"{name}: not scraped"
    assert annotations.get("prometheus.io/port") == str(port), f"{name}: scraped on another port"
    assert annotations.get("prometheus.io/path") == "/metrics", name


def test_no_process_beyond_the_known_ones(objects):
    """A Deployment of the commerce image is one of SERVICE_PROCESSES (e.g. no checkout-scheduler)."""
    expected = {f"{slug(s)}-{p}" for s, p in SERVICE_PROCESSES}
    found = {
        name
        for (kind, name), doc in objects.items()
        if kind == "Deployment" and _container(doc)["image"].split(":")[0] == "commerce"
    }
    assert found == expected


def test_workers_leave_the_replica_count_to_keda(objects):
    for service in SERVICES:
        assert "replicas" not in objects[("Deployment", f"{slug(service)}-worker")]["spec"]


def test_pods_run_unprivileged(base_manifests, demo_manifests):
    for manifest in [*base_manifests, *demo_manifests]:
        if manifest.kind not in ("Deployment", "Job"):
            continue
        pod = manifest.doc["spec"]["template"]["spec"]
        image = pod["containers"][0]["image"]
        if not image.startswith("commerce"):
            continue  # the demo's postgres and redis images run as their own users
        assert pod["securityContext"]["runAsNonRoot"] is True, manifest.label
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, manifest.label


# --- Services -----------------------------------------------------------------------------------
@pytest.mark.parametrize("service", SERVICES)
def test_a_service_per_serve_deployment(objects, service):
    svc = objects.get(("Service", slug(service)))
    assert svc is not None, f"no Service {slug(service)}"
    selector = svc["spec"]["selector"]
    selected = [
        name
        for (kind, name), doc in objects.items()
        if kind == "Deployment" and selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert selected == [f"{slug(service)}-serve"]
    container = _container(objects[("Deployment", f"{slug(service)}-serve")])
    port_names = {p["name"] for p in container["ports"]}
    (port,) = svc["spec"]["ports"]
    assert port["name"] == "http"
    assert port["targetPort"] in port_names


# --- configuration ------------------------------------------------------------------------------
def _env_refs(manifests):
    """(manifest label, container name, kind, object name, key, optional) of every reference."""
    for manifest in manifests:
        if manifest.kind not in ("Deployment", "Job"):
            continue
        pod = manifest.doc["spec"]["template"]["spec"]
        for container in [*pod.get("initContainers", []), *pod["containers"]]:
            for source in container.get("envFrom", []):
                for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if field in source:
                        yield manifest.label, container, kind, source[field]["name"], None, False
            for env in container.get("env", []):
                for kind, field in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = env.get("valueFrom", {}).get(field)
                    if ref:
                        yield manifest.label, container, kind, ref["name"], ref["key"], ref.get("optional", False)


def _data(doc: dict) -> dict:
    return {**doc.get("data", {}), **doc.get("stringData", {})}


def test_every_configuration_reference_resolves(objects, base_manifests, demo_manifests):
    demo_objects = {(m.kind, m.name): m.doc for m in demo_manifests}
    for label, _container_, kind, name, key, optional in _env_refs([*base_manifests, *demo_manifests]):
        doc = objects.get((kind, name)) or demo_objects.get((kind, name))
        assert doc is not None, f"{label}: no {kind} {name}"
        if key is not None and not optional:
            assert key in _data(doc), f"{label}: {kind} {name} has no key {key}"


def test_every_variable_is_a_known_setting(objects, base_manifests):
    known = known_variables() | KEDA_VARIABLES
    for (kind, name), doc in objects.items():
        if kind in ("ConfigMap", "Secret"):
            unknown = set(_data(doc)) - known
            assert not unknown, f"{kind} {name}: unknown variables {sorted(unknown)} (typo? see .env.example)"
    for manifest in base_manifests:
        if manifest.kind in ("Deployment", "Job"):
            pod = manifest.doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                unknown = {e["name"] for e in container.get("env", [])} - known
                assert not unknown, f"{manifest.label}: unknown variables {sorted(unknown)}"


@pytest.mark.parametrize("service", SERVICES)
def test_each_process_gets_its_own_credentials(objects, service):
    prefix = service_prefix(service)
    for process in processes(service):
        container = _container(objects[("Deployment", f"{slug(service)}-{process}")])
        names = {e["name"] for e in container["env"]}
        assert {"COMMERCE_SECRET_KEY", f"{prefix}DATABASE_URL", f"{prefix}DATABASE_OWNER_URL"} <= names
        others = {f"{service_prefix(s)}DATABASE_OWNER_URL" for s in SERVICES if s != service}
        assert not names & others, "a service never gets another service's credentials"
        sources = {ref["name"] for e in container["env"] if (ref := e.get("valueFrom", {}).get("secretKeyRef"))}
        assert "commerce-bootstrap" not in sources, "only the migration Job gets the admin URL"


def test_database_urls_use_the_bootstrapped_roles_and_password(objects):
    secrets = _data(objects[("Secret", "commerce-secrets")])
    bootstrap = _data(objects[("Secret", "commerce-bootstrap")])
    config = objects[("ConfigMap", "commerce-config")]["data"]
    password = bootstrap["COMMERCE_DB_ROLE_PASSWORD"]
    for service in SERVICES:
        for field, role in (("DATABASE_URL", f"commerce_{service}_app"), ("DATABASE_OWNER_URL", f"commerce_{service}")):
            url = urlsplit(secrets[f"{service_prefix(service)}{field}"])
            assert (url.username, url.password) == (role, password), f"{service} {field}"
            assert url.path == "/" + config["COMMERCE_DATABASE_NAME"]


def test_example_secrets_are_marked(objects):
    text = (K8S / "secret.yaml").read_text()
    assert "EXAMPLE VALUES" in text
    for name in ("commerce-secrets", "commerce-bootstrap"):
        assert objects[("Secret", name)]["type"] == "Opaque"


# --- the migration Job --------------------------------------------------------------------------
def test_migration_job_bootstraps_then_migrates(objects):
    jobs = [doc for (kind, _), doc in objects.items() if kind == "Job"]
    assert len(jobs) == 1
    pod = jobs[0]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    (bootstrap,) = pod["initContainers"]
    (migrate,) = pod["containers"]
    assert bootstrap["args"] == ["commerce_cli.main", "db", "bootstrap"]
    assert migrate["args"] == ["commerce_cli.main", "db", "migrate"]
    assert {"COMMERCE_BOOTSTRAP_DATABASE_URL", "COMMERCE_DB_ROLE_PASSWORD"} <= {e["name"] for e in bootstrap["env"]}
    owners = {f"{service_prefix(s)}DATABASE_OWNER_URL" for s in SERVICES}
    assert owners <= {e["name"] for e in migrate["env"]}


# --- KEDA -----------------------------------------------------------------------------------------
def _scaled_objects(base_manifests):
    return [m for m in base_manifests if m.doc.get("apiVersion") == KEDA_API]


def test_scaled_objects_scale_every_worker_on_its_queue(objects, configmap, base_manifests):
    scaled = _scaled_objects(base_manifests)
    namespace = configmap.get("COMMERCE_BROKER_NAMESPACE", "commerce")
    targets = {}
    for manifest in scaled:
        doc = manifest.doc
        assert doc["kind"] == "ScaledObject", manifest.label
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, manifest.label
        spec = doc["spec"]
        ref = spec["scaleTargetRef"]
        assert ref.get("kind", "Deployment") == "Deployment"
        assert ref.get("apiVersion", "apps/v1") == "apps/v1"
        deployment = objects.get(("Deployment", ref["name"]))
        assert deployment is not None, f"{manifest.label}: no Deployment {ref['name']}"
        assert deployment["metadata"]["labels"]["commerce/process"] == "worker", f"{manifest.label}: not a worker"
        service = deployment["metadata"]["labels"]["commerce/service"]
        assert ref["name"] not in targets, f"{ref['name']} is scaled twice"
        targets[ref["name"]] = service

        lowest, highest = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        assert isinstance(lowest, int) and isinstance(highest, int) and 0 <= lowest <= highest
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "redis"
        meta = trigger["metadata"]
        assert all(isinstance(v, str) for v in meta.values()), "KEDA trigger metadata values are strings"
        assert meta["listName"] == f"{namespace}:{service}"
        assert meta["listLength"].isdigit() and int(meta["listLength"]) > 0
        assert "address" in meta or "addressFromEnv" in meta or {"host", "port"} <= meta.keys()
        if "addressFromEnv" in meta:
            container = _container(deployment)
            available = {e["name"] for e in container.get("env", [])}
            if any(s.get("configMapRef", {}).get("name") == "commerce-config" for s in container.get("envFrom", [])):
                available |= set(configmap)
            assert meta["addressFromEnv"] in available, f"{manifest.label}: the worker has no {meta['addressFromEnv']}"
            host, _, port = configmap[meta["addressFromEnv"]].rpartition(":")
            assert host and port.isdigit(), "KEDA wants host:port"
        if "databaseIndex" in meta:
            assert urlsplit(configmap["COMMERCE_REDIS_URL"]).path.strip("/") == meta["databaseIndex"]
    assert sorted(targets) == sorted(f"{slug(s)}-worker" for s in SERVICES)


# --- demo ---------------------------------------------------------------------------------------
def test_demo_namespace_has_what_the_example_configuration_points_at(objects, configmap, demo_manifests):
    demo = {(m.kind, m.name): m.doc for m in demo_manifests}

    def service_port(name: str) -> int:
        svc = demo.get(("Service", name))
        assert svc is not None, f"the demo has no Service {name}"
        return svc["spec"]["ports"][0]["port"]

    processor = urlsplit(configmap["COMMERCE_TEST_PROCESSOR_URL"])
    assert service_port(processor.hostname) == processor.port
    assert service_port(configmap["NOTIFICATIONS_SMTP_HOST"]) == int(configmap["NOTIFICATIONS_SMTP_PORT"])
    redis = urlsplit(configmap["COMMERCE_REDIS_URL"])
    assert service_port(redis.hostname) == (redis.port or 6379)
    admin = urlsplit(_data(objects[("Secret", "commerce-bootstrap")])["COMMERCE_BOOTSTRAP_DATABASE_URL"])
    assert service_port(admin.hostname) == (admin.port or 5432)
    assert _data(demo[("Secret", "demo-postgres")])["POSTGRES_PASSWORD"] == admin.password

    for name, module in (("test-processor", "devtools.test_processor"), ("mail-sink", "devtools.mail_sink")):
        container = _container(demo[("Deployment", name)])
        assert container["image"].split(":")[0] == "commerce-dev"
        assert container["args"][0] == module
        assert container["args"][container["args"].index("--host") + 1] == "0.0.0.0"
