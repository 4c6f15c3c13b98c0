"""deploy/Dockerfile and .dockerignore, read as text (no Docker here)."""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import dataclass, field

import pytest

from .helpers import DOCKERFILE, DOCKERIGNORE, ROOT, SERVICES, service_default

SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|PRIVATE|CREDENTIAL", re.IGNORECASE)
SECRET_VALUE = re.compile(r"sk_(live|test)_|rk_(live|test)_|whsec_|-----BEGIN|://[^/\s:@]+:[^/\s@]+@")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    found: dict[str, Stage] = {}
    args: dict[str, str] = {}
    current = None
    for keyword, rest in _instructions():
        if keyword == "ARG" and current is None:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), match.group(1))
            current = Stage(match.group(2) or str(len(found)), base)
            found[current.name] = current
        else:
            assert current is not None, f"{keyword} before FROM"
            current.instructions.append((keyword, rest))
    return found


def _ancestry(stages: dict[str, Stage], name: str) -> list[Stage]:
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name].base
    return chain


def _sources(stages: dict[str, Stage], name: str) -> set[str]:
    """Every stage whose files end up in `name` (its FROM chain and COPY --from, recursively)."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        current = pending.pop()
        for stage in _ancestry(stages, current):
            if stage.name in seen:
                continue
            seen.add(stage.name)
            for copy in stage.all("COPY"):
                match = re.search(r"--from=(\S+)", copy)
                if match:
                    pending.append(match.group(1))
    return seen


def test_based_on_python_311_slim(stages):
    roots = {stage.base for stage in stages.values() if stage.base not in stages}
    assert roots == {"python:3.11-slim"}


def test_runtime_is_the_default_target_and_has_no_dev_extras(stages):
    names = list(stages)
    assert names[-1] == "runtime", "the last stage is what `docker build` builds by default"
    assert "dev" in stages, "a `dev` target carries the test processor and the mail sink"
    installs = {name: " ".join(stages[name].all("RUN")) for name in stages}
    assert any(re.search(r"pip install \.(\s|$)", run) for run in installs.values()), "pip install ."
    runtime_sources = _sources(stages, "runtime")
    for name in runtime_sources:
        assert "[dev]" not in installs[name], f"the runtime image gets the dev extras through {name}"
        assert "[test]" not in installs[name]
    assert any("[dev]" in installs[name] for name in _sources(stages, "dev"))


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_runs_as_an_unprivileged_user(stages, target):
    users = [user for stage in reversed(_ancestry(stages, target)) for user in stage.all("USER")]
    assert users, f"{target}: no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{target} runs as root"
    assert user.isdigit(), "a numeric uid lets Kubernetes verify runAsNonRoot"


@pytest.mark.parametrize("target", ["runtime", "dev"])
def test_entrypoint_runs_python_modules(stages, target):
    (entrypoint,) = stages[target].all("ENTRYPOINT")
    assert json.loads(entrypoint) == ["python", "-m"], "docker run IMAGE services.billing worker"
    (cmd,) = stages[target].all("CMD")
    assert json.loads(cmd)


def test_runtime_exposes_the_service_ports(stages):
    exposed = {int(p) for line in stages["runtime"].all("EXPOSE") for p in line.split()}
    assert exposed >= {int(service_default(s, "http_port")) for s in SERVICES}


def test_no_secrets_are_baked_in(stages):
    for stage in stages.values():
        for keyword, args in stage.instructions:
            if keyword in ("ENV", "ARG", "LABEL"):
                names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", args) or [args.split()[0]]
                for name in names:
                    assert not SECRET_NAME.search(name), f"{stage.name}: {keyword} {name}"
            assert not SECRET_VALUE.search(args), f"{stage.name}: {keyword} {args}"
            if keyword in ("COPY", "ADD"):
                assert ".env" not in args and "secret" not in args.lower(), f"{stage.name}: {keyword} {args}"


def _ignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return patterns


def _ignored(path: str) -> bool:
    ignored = False
    for negated, pattern in _ignore_patterns():
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            ignored = not negated
    return ignored


def test_dockerignore_keeps_secrets_and_clutter_out_but_the_sources_in(stages):
    for path in (".git", ".venv", ".run", ".env", ".env.production", "tests", "services/x/__pycache__"):
        assert _ignored(path), f"{path} would be sent to the builder"
    copied = [
        args.split()[0] for stage in stages.values() for args in stage.all("COPY") if not args.startswith("--from")
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not _ignored(source.strip("./") or "."), f"COPY {source}: excluded by .dockerignore"
