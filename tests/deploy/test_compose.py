"""deploy/compose.yaml: the whole system on one Docker host, checked without Docker."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest

from .helpers import (
    COMPOSE_FILE,
    DEPLOY,
    NGINX_CONF,
    PORT_FIELD,
    SERVICE_PROCESSES,
    SERVICES,
    interpolate_defaults,
    known_variables,
    processes,
    service_default,
    service_prefix,
    slug,
)

INFRASTRUCTURE = {"postgres", "redis", "migrate", "test-processor", "mail-sink", "router"}
APP_SERVICES = {f"{slug(s)}-{p}": (s, p) for s, p in SERVICE_PROCESSES}


def _env(service: dict) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment is a mapping (the x-common-env anchor)"
    return {k: interpolate_defaults(str(v)) for k, v in environment.items()}


def _configured(env: dict[str, str], service: str, field: str) -> str:
    return env.get(f"{service_prefix(service)}{field.upper()}", str(service_default(service, field)))


def test_every_service_and_process_type_is_there(compose_services):
    assert set(compose_services) == INFRASTRUCTURE | set(APP_SERVICES)
    for name, (service, process) in APP_SERVICES.items():
        spec = compose_services[name]
        assert spec["command"] == [f"services.{service}", process], name
        assert spec["build"]["dockerfile"] == "deploy/Dockerfile"
        assert spec["build"]["target"] == "runtime"
        assert (DEPLOY / spec["build"]["context"] / "pyproject.toml").exists(), "build context is the repo root"


@pytest.mark.parametrize("service", SERVICES)
def test_process_types_match_the_entrypoints(service):
    """A service whose ServiceSpec has a scheduler gets a scheduler process, and only then."""
    spec = importlib.import_module(f"services.{service}.__main__").SPEC
    assert ("scheduler" in processes(service)) == (spec.scheduler is not None), service


def test_environment_comes_from_the_common_anchor(compose):
    common = compose["x-common-env"]
    for name in [*APP_SERVICES, "migrate"]:
        environment = compose["services"][name]["environment"]
        assert common.items() <= environment.items(), name
    text = COMPOSE_FILE.read_text()
    assert re.search(r"^x-common-env: &common-env$", text, re.MULTILINE)


def test_every_variable_is_a_known_setting(compose_services):
    known = known_variables()
    for name in [*APP_SERVICES, "migrate"]:
        unknown = set(compose_services[name]["environment"]) - known
        assert not unknown, f"{name}: unknown variables {sorted(unknown)} (typo? see .env.example)"


def test_workers_and_relays_scale(compose_services):
    """`docker compose up --scale billing-worker=4`: no fixed names, no fixed host ports
    (schedulers too: any number of them is safe)."""
    for name, (_, process) in APP_SERVICES.items():
        spec = compose_services[name]
        assert "container_name" not in spec, name
        if process != "serve":
            assert "ports" not in spec, f"{name} publishes a host port: it could not scale"
        else:
            assert "ports" not in spec, f"{name}: the router is the only way in"
    assert not any("container_name" in spec for spec in compose_services.values())


def test_processes_start_after_the_migration(compose_services):
    for name in APP_SERVICES:
        depends = compose_services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
        assert depends["redis"]["condition"] == "service_healthy", name


def test_migrate_bootstraps_then_migrates_once(compose_services):
    migrate = compose_services["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    script = " ".join([*migrate["entrypoint"], *migrate["command"]])
    assert re.search(r"commerce db bootstrap\s*&&\s*commerce db migrate", script), script
    env = _env(migrate)
    admin = urlsplit(env["COMMERCE_BOOTSTRAP_DATABASE_URL"])
    assert admin.hostname == "postgres"
    postgres_env = _env(compose_services["postgres"])
    assert (admin.username, admin.password) == (postgres_env["POSTGRES_USER"], postgres_env["POSTGRES_PASSWORD"])
    password = env["COMMERCE_DB_ROLE_PASSWORD"]
    for service in SERVICES:
        prefix = service_prefix(service)
        for field, role in (("DATABASE_URL", f"commerce_{service}_app"), ("DATABASE_OWNER_URL", f"commerce_{service}")):
            url = urlsplit(env[prefix + field])
            assert (url.username, url.password, url.hostname) == (role, password, "postgres"), prefix + field
            assert url.path == "/" + env.get("COMMERCE_DATABASE_NAME", "commerce")


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_healthchecks_probe_the_process_ops_port(compose_services, name):
    service, process = APP_SERVICES[name]
    spec = compose_services[name]
    env = _env(spec)
    port = _configured(env, service, PORT_FIELD[process])
    assert port != "0", f"{name}: no ops server"
    assert _configured(env, service, "http_host") == "0.0.0.0", f"{name}: listens on loopback only"
    test = " ".join(spec["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in test, test


def test_every_service_has_a_healthcheck(compose_services):
    for name, spec in compose_services.items():
        if name == "migrate":
            continue
        assert spec.get("healthcheck", {}).get("test"), name


def test_infrastructure(compose_services):
    postgres, redis = compose_services["postgres"], compose_services["redis"]
    assert postgres["image"].split(":")[1].split(".")[0].split("-")[0] == "16"
    assert redis["image"].split(":")[1].split(".")[0].split("-")[0] == "7"
    command = redis["command"]
    assert command[command.index("--save") + 1] == "", "no RDB snapshots"
    assert command[command.index("--appendonly") + 1] == "no", "no AOF"
    assert "volumes" not in redis


def test_router_serves_the_generated_nginx_conf_on_port_8000(compose_services):
    router = compose_services["router"]
    assert router["image"].startswith("nginx:")
    assert router["ports"] == ["8000:8000"]
    mounts = [v.split(":") for v in router["volumes"]]
    assert [m for m in mounts if m[1] == "/etc/nginx/nginx.conf"], "the generated file replaces nginx.conf"
    (source, *_) = next(m for m in mounts if m[1] == "/etc/nginx/nginx.conf")
    assert (DEPLOY / source).resolve() == NGINX_CONF.resolve()
    assert "listen 8000;" in NGINX_CONF.read_text()
    for service in SERVICES:
        assert router["depends_on"][f"{slug(service)}-serve"]["condition"] == "service_healthy"


def test_the_test_processor_and_mail_sink_are_the_defaults(compose, compose_services):
    env = {k: interpolate_defaults(str(v)) for k, v in compose["x-common-env"].items()}
    for name in ("test-processor", "mail-sink"):
        assert compose_services[name]["build"]["target"] == "dev", f"{name} needs the dev extras"
    processor = urlsplit(env["COMMERCE_TEST_PROCESSOR_URL"])
    command = compose_services[processor.hostname]["command"]
    assert command[0] == "devtools.test_processor"
    assert command[command.index("--port") + 1] == str(processor.port)
    assert command[command.index("--host") + 1] == "0.0.0.0"
    public = urlsplit(env["COMMERCE_TEST_PROCESSOR_PUBLIC_URL"])
    assert f"{public.port}:{processor.port}" in compose_services[processor.hostname]["ports"]
    sink = compose_services[env["NOTIFICATIONS_SMTP_HOST"]]
    command = sink["command"]
    assert command[0] == "devtools.mail_sink"
    assert command[command.index("--port") + 1] == env["NOTIFICATIONS_SMTP_PORT"]
    assert command[command.index("--host") + 1] == "0.0.0.0"


def test_secrets_are_variables_with_documented_local_defaults(compose):
    text = COMPOSE_FILE.read_text()
    secret = compose["x-common-env"]["COMMERCE_SECRET_KEY"]
    assert secret.startswith("${COMMERCE_SECRET_KEY:-"), "overridable from the environment / env file"
    for name in ("COMMERCE_SECRET_KEY", "COMMERCE_DB_ROLE_PASSWORD", "POSTGRES_PASSWORD"):
        assert re.search(rf"^#\s+{name}\s", text, re.MULTILINE), f"{name} is documented in the header"


def test_compose_config_when_docker_compose_is_installed():
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("docker compose is not installed")
    result = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
