""".env.example documents every setting: each field of CommonSettings and of every service's
settings class (name, default, meaning, under its prefix's section), plus the variables
read outside the settings classes. Adding a settings field without documenting it fails
here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from .helpers import ENV_EXAMPLE, ROOT, STACK_VARIABLES, all_settings

VARIABLE = re.compile(r"^(?:#\s)?([A-Z][A-Z0-9_]*)=(.*)$")
SECTION = re.compile(r"^## (\S+)")


@dataclass(frozen=True)
class Entry:
    name: str
    default: str
    meaning: str
    section: str
    line: int


@pytest.fixture(scope="module")
def entries() -> dict[str, Entry]:
    found: dict[str, Entry] = {}
    section = ""
    previous = ""
    for number, line in enumerate(ENV_EXAMPLE.read_text().splitlines(), start=1):
        if heading := SECTION.match(line):
            section = heading.group(1)
        elif match := VARIABLE.match(line):
            name = match.group(1)
            assert name not in found, f".env.example:{number}: {name} is documented twice"
            meaning = previous.removeprefix("#").strip() if previous.startswith("# ") else ""
            found[name] = Entry(name, match.group(2), meaning, section, number)
        previous = line
    return found


def test_every_settings_field_is_documented_with_its_default(entries):
    missing, wrong = [], []
    for fields in all_settings().values():
        for name, default in fields.items():
            if name not in entries:
                missing.append(name)
            elif entries[name].default != default:
                wrong.append(f"{name}: documented {entries[name].default!r}, default {default!r}")
    assert not missing, f"settings missing from .env.example: {missing}"
    assert not wrong, f".env.example has stale defaults: {wrong}"


def test_settings_are_grouped_by_prefix(entries):
    for prefix, fields in all_settings().items():
        for name in fields.keys() & entries.keys():
            assert entries[name].section == f"{prefix}*", f"{name} is not in the `## {prefix}*` section"


def test_every_entry_says_what_it_means(entries):
    for entry in entries.values():
        assert len(entry.meaning) >= 10, f".env.example:{entry.line}: {entry.name} needs a one-line meaning above it"
        assert not VARIABLE.match(entry.meaning), f".env.example:{entry.line}: {entry.name} needs a meaning"


def test_stack_and_bootstrap_variables_are_documented(entries):
    missing = sorted(STACK_VARIABLES - entries.keys())
    assert not missing, f"missing from .env.example: {missing}"


def test_nothing_undocumented_is_read_from_the_environment(entries):
    """Literal names read with os.environ / os.getenv anywhere in the project's packages
    (names built at run time, like GATEWAY_<SERVICE>_URL, are in STACK_VARIABLES)."""
    patterns = (
        re.compile(r"""(?:environ\.get\(|getenv\(|environ\[)\s*["']([A-Z][A-Z0-9_]+)["']"""),
        re.compile(r"""["']([A-Z][A-Z0-9_]+)["']\s+(?:not\s+)?in\s+os\.environ"""),
        re.compile(r"""^ENV_VAR\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.MULTILINE),
    )
    read: set[str] = set()
    for package in ("shared", "services", "commerce_cli", "devtools", "gateway"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            for pattern in patterns:
                read |= set(pattern.findall(text))
    assert {"COMMERCE_DB_ROLE_PASSWORD", "PROMETHEUS_MULTIPROC_DIR"} <= read, "the scan patterns are stale"
    missing = sorted(read - entries.keys())
    assert not missing, f"read from the environment but missing from .env.example: {missing}"


def test_nothing_stale_is_documented(entries):
    known = {name for fields in all_settings().values() for name in fields} | STACK_VARIABLES
    stale = sorted(entries.keys() - known)
    assert not stale, f".env.example documents variables nothing reads: {stale}"


def test_no_secret_values(entries):
    for entry in entries.values():
        assert not re.search(r"sk_live_|sk_test_|whsec_|:[^/@]+@", entry.default), f"{entry.name}: a secret value"
    for name in ("COMMERCE_SECRET_KEY", "COMMERCE_DB_ROLE_PASSWORD", "NOTIFICATIONS_SMTP_PASSWORD"):
        assert entries[name].default == "", f"{name} has no default"
        assert "[secret]" in entries[name].meaning
