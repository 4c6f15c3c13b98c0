"""The one base URL: the compose router and the Ingress route exactly as gateway/routes.py.

Both files are generated (`python -m gateway.render --write`); here they must equal what
render produces, contain every prefix and pattern with the right backend and nothing
else, and — simulating how nginx and ingress-nginx choose a location — send every sample
path where `gateway.routes.service_for` does.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from urllib.parse import urlsplit

import pytest
import yaml

from gateway import render
from gateway.routes import PATTERNS, PREFIXES, service_for

from .helpers import (
    INGRESS_FILE,
    NGINX_CONF,
    PATTERN_SAMPLES,
    SERVICES,
    ingress_nginx_order,
    ingress_select,
    interpolate_defaults,
    nginx_select,
    parse_nginx_locations,
    sample_paths,
    service_prefix,
    slug,
)

#: Locations of nginx.conf that are not routes: the router's own /healthz, the 404 for
#: unknown paths, and the named location of the 502 page.
ROUTER_OWN = {("=", "/healthz"), ("", "/"), ("@", "@unavailable")}


def test_generated_files_are_up_to_date():
    for path, text in render.rendered().items():
        assert path.exists(), f"{path} is missing: python -m gateway.render --write"
        assert path.read_text() == text, f"{path} is out of date: python -m gateway.render --write"


def test_render_check_command_agrees():
    assert render.main(["--check"]) == 0


def test_every_pattern_has_samples():
    for pattern in PATTERNS:
        assert any(re.match(pattern.regex, p) for p in PATTERN_SAMPLES), f"add samples of {pattern.regex}"


# --- compose router (nginx) -------------------------------------------------------------------
@pytest.fixture(scope="module")
def nginx():
    locations, variables = parse_nginx_locations(NGINX_CONF.read_text())
    return locations, variables


def _backend(variables: dict[str, str], location) -> str | None:
    target = location.proxy_pass
    if target is None:
        return None
    return variables.get(target, target)


def test_nginx_has_every_route_and_nothing_else(nginx, compose_services):
    locations, variables = nginx
    expected = {}
    for service in SERVICES:
        upstream = f"http://{slug(service)}-serve:{_serve_port(compose_services, service)}"
        for prefix in PREFIXES.get(service, ()):
            expected[("=", prefix)] = upstream
            expected[("", prefix + "/")] = upstream
    for pattern in PATTERNS:
        expected[("~", pattern.regex)] = (
            f"http://{slug(pattern.service)}-serve:{_serve_port(compose_services, pattern.service)}"
        )
    actual = {}
    for loc in locations:
        key = (loc.modifier, loc.path)
        assert key not in actual, f"location {key} twice"
        actual[key] = _backend(variables, loc)
    routes = {k: v for k, v in actual.items() if k not in ROUTER_OWN}
    assert routes == expected
    assert ROUTER_OWN <= actual.keys()
    assert actual[("", "/")] is None and actual[("=", "/healthz")] is None, "the router answers these itself"


def _serve_port(compose_services, service: str) -> str:
    env = compose_services[f"{slug(service)}-serve"]["environment"]
    return interpolate_defaults(str(env[f"{service_prefix(service)}HTTP_PORT"]))


def test_nginx_routes_like_the_route_table(nginx):
    locations, variables = nginx
    upstream_of = {f"http://{slug(s)}-serve:{render.http_port(s)}": s for s in SERVICES}  # backend URL -> service
    for path in sample_paths():
        location = nginx_select(locations, path)
        assert location is not None, path
        backend = _backend(variables, location)
        routed = upstream_of.get(backend) if backend else None
        assert routed == service_for(path), f"{path}: nginx -> {location.modifier} {location.path}"
        if routed is None and path != "/healthz":
            assert location.path == "/" and "return 404" in location.body, path


def test_nginx_accepts_the_file_when_nginx_is_installed(tmp_path):
    nginx = shutil.which("nginx")
    if nginx is None:
        pytest.skip("nginx is not installed")
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(NGINX_CONF)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


# --- Ingress (ingress-nginx) --------------------------------------------------------------------
@pytest.fixture(scope="module")
def ingress() -> dict:
    return yaml.safe_load(INGRESS_FILE.read_text())


def _paths(ingress: dict) -> list[dict]:
    (rule,) = ingress["spec"]["rules"]
    return rule["http"]["paths"]


def test_ingress_has_one_host_the_public_base_url(ingress, configmap):
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == urlsplit(configmap["COMMERCE_PUBLIC_BASE_URL"]).hostname
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/use-regex"] == "true"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    for tls in ingress["spec"].get("tls", []):
        assert tls["hosts"] == [rule["host"]]


def test_ingress_has_every_route_and_nothing_else(ingress, objects):
    expected = {}
    for service in SERVICES:
        for prefix in PREFIXES.get(service, ()):
            expected[prefix.replace(".", "[.]") + "(/.*)?$"] = slug(service)
    for pattern in PATTERNS:
        expected[pattern.regex.removeprefix("^")] = slug(pattern.service)
    actual = {}
    for item in _paths(ingress):
        assert item["path"] not in actual, f"{item['path']} twice"
        assert item["pathType"] == "ImplementationSpecific", "regex paths must not be Prefix/Exact"
        backend = item["backend"]["service"]
        actual[item["path"]] = backend["name"]
        svc = objects.get(("Service", backend["name"]))
        assert svc is not None, f"no Service {backend['name']}"
        assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    assert actual == expected


def test_ingress_paths_pass_ingress_nginx_validation(ingress):
    # Kubernetes: absolute; ingress-nginx: RE2 and its default path-additional-allowed-chars.
    allowed = re.compile(r"^[A-Za-z0-9\-._~/^%$\[\](){}*+?|]*$")
    for item in _paths(ingress):
        assert item["path"].startswith("/"), item["path"]
        assert allowed.match(item["path"]), f"{item['path']}: ingress-nginx rejects these characters"
        assert not re.search(r"\(\?[=!<]|\\[1-9]", item["path"]), "RE2 has no lookaround or backreferences"
        re.compile(item["path"])


def test_ingress_routes_like_the_route_table(ingress):
    backend = {item["path"]: item["backend"]["service"]["name"] for item in _paths(ingress)}
    by_slug = {slug(s): s for s in SERVICES}
    for path in sample_paths():
        if path == "/healthz":
            continue  # every serve Deployment has its own; the Ingress does not route it
        chosen = ingress_select(list(backend), path)
        routed = by_slug[backend[chosen]] if chosen else None
        assert routed == service_for(path), f"{path}: ingress-nginx -> {chosen}"


def test_ingress_lists_paths_in_ingress_nginx_order(ingress):
    paths = [item["path"] for item in _paths(ingress)]
    assert paths == ingress_nginx_order(paths), "written in the order ingress-nginx evaluates them"
