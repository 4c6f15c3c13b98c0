"""The acceptance test of issue 2: ``make run``, then a purchase in a browser, then Ctrl-C.

Runs exactly what ``make run`` runs after its set-up (``python -m devtools.stack run``)
as a subprocess on a shifted block of ports (``COMMERCE_RUN_PORT_OFFSET``) with its own
run directory, database and broker namespace; reads the banner; buys the printed demo
link in headless Chromium with the test card; finds the receipt in the mail sink and in
``GET /v1/emails``, the payment and the contact through the API; then sends SIGINT to
its process group (what Ctrl-C at a terminal does) and checks that it exits promptly
and leaves nothing running. Once against the PostgreSQL and Redis that are running,
once with nothing listening where it looks for them, so that it must start (and stop)
private ones.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import psutil
import pytest

from devtools import infra
from devtools.stack import DEMO_LINK, ROOT, Ports
from tests.support.browser import launch_chromium, open_link, pay_on_page, watched_page
from tests.support.client import Api, read_mail
from tests.support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(900)]

BANNER_TIMEOUT = 300.0  # a private PostgreSQL is initialised first; the machine may be busy
PROMPT_EXIT = 30.0  # seconds from SIGINT to exit
BUYER = "make.run.buyer@example.com"


# -- ports ------------------------------------------------------------------------------------
def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return not infra.port_open("127.0.0.1", port, timeout=0.2)


def stack_ports(offset: int) -> list[int]:
    """Every port ``make run`` listens on with that offset (workers' and relays' metrics too)."""
    base = Ports()
    ports = [base.gateway, base.checkout, base.billing, base.notifications, base.crm_sync]
    ports += [base.test_processor, base.smtp]
    ports += [base.ops_base + 1 + index + 10 * role for index in range(4) for role in (0, 1)]
    return [port + offset for port in ports]


def free_offset(avoid: set[int] = frozenset()) -> int:
    """An offset that puts every port below the ephemeral range and on a free port."""
    rng = random.Random()
    for _ in range(500):
        offset = rng.randrange(2000, 23000)
        ports = stack_ports(offset)
        if not avoid.intersection(ports) and all(_bindable(p) for p in ports):
            return offset
    raise RuntimeError("no free block of ports found")


def free_ports(count: int, avoid: set[int]) -> list[int]:
    rng = random.Random()
    found: list[int] = []
    while len(found) < count:
        port = rng.randrange(24000, 32000)
        if port not in avoid and port not in found and _bindable(port):
            found.append(port)
    return found


# -- the subprocess ---------------------------------------------------------------------------
@dataclass
class Banner:
    base_url: str
    api_key: str
    link_url: str
    mail_dir: Path
    processor_url: str


@dataclass
class MakeRun:
    """``python -m devtools.stack run`` in its own process group, its output collected."""

    env: dict[str, str]
    popen: subprocess.Popen | None = None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "devtools.stack", "run"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, like a shell job at a terminal
            text=True,
            errors="replace",
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_banner(self, timeout: float = BANNER_TIMEOUT) -> Banner:
        deadline = time.monotonic() + timeout
        while True:
            text = self.output
            if re.search(r"^ Ctrl-C stops everything this run started\.\n={78}$", text, re.MULTILINE):
                return parse_banner(text)
            if self.popen.poll() is not None:
                self._reader.join(5)
                raise StartFailed(f"exited with {self.popen.returncode} before the banner:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no banner within {timeout:.0f}s:\n{self.output}")
            time.sleep(0.2)

    def interrupt(self) -> tuple[int, float]:
        """Ctrl-C: SIGINT to its process group; returns (exit code, seconds to exit)."""
        began = time.monotonic()
        os.killpg(self.pid, signal.SIGINT)
        try:
            code = self.popen.wait(120)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.monotonic() - began
        self._reader.join(10)
        return code, elapsed

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.popen.wait(30)


class StartFailed(AssertionError):
    pass


def parse_banner(text: str) -> Banner:
    def row(label: str, pattern: str = r"(\S+)") -> str:
        match = re.search(rf"^ +{label} +{pattern}\s*$", text, re.MULTILINE)
        assert match, f"no {label!r} in the banner:\n{text}"
        return match.group(1)

    processor = row("Test processor", r"(\S+)(?: .*)?")
    return Banner(
        base_url=row("Base URL"),
        api_key=row("Demo API key"),
        link_url=row("Demo payment link"),
        mail_dir=Path(row("Mail sink", r"every message as a file in (.+?)")),
        processor_url=processor,
    )


def run_env(run_dir: Path, offset: int, database: str, namespace: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMERCE_")}
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "COMMERCE_RUN_PORT_OFFSET": str(offset),
            "COMMERCE_RUN_DIR": str(run_dir),
            "COMMERCE_DATABASE_NAME": database,
            "COMMERCE_BROKER_NAMESPACE": namespace,
            **extra,
        }
    )
    return env


@dataclass
class Attempt:
    """One ``make run`` of a test: its names, and every process and directory it used."""

    label: str
    database: str = ""
    namespace: str = ""
    runs: list[MakeRun] = field(default_factory=list)
    run_dirs: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        suffix = f"{self.label}_{os.getpid()}_{random.randrange(16**6):06x}"
        self.database, self.namespace = f"commerce_makerun_{suffix}", f"commerce-makerun-{suffix}"

    def start(self, tmp_path: Path, avoid: set[int] = frozenset(), **extra: str) -> tuple[MakeRun, Banner, int, Path]:
        """Start it (on another block of ports if one was taken meanwhile)."""
        for attempt in range(3):
            offset = free_offset(avoid)
            run_dir = tmp_path / f"run-{attempt}"
            self.run_dirs.append(run_dir)
            run = MakeRun(run_env(run_dir, offset, self.database, self.namespace, **extra))
            self.runs.append(run)
            run.start()
            try:
                return run, run.wait_for_banner(), offset, run_dir
            except StartFailed:
                if "ports already in use" not in run.output or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def kill(self) -> None:
        for run in self.runs:
            run.kill()


def descendants(pid: int) -> list[tuple[int, float, str]]:
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        try:
            found.append((child.pid, child.create_time(), " ".join(child.cmdline()[:4])))
        except psutil.NoSuchProcess:
            continue
    return found


def survivors(recorded: list[tuple[int, float, str]]) -> list[str]:
    """Recorded processes still running, and anything else in their process groups."""
    left = []
    for pid, created, cmd in recorded:
        try:
            process = psutil.Process(pid)
            if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{pid} {cmd}")
        except psutil.NoSuchProcess:
            continue
    groups = {pid for pid, _, _ in recorded}
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.pid not in groups and os.getpgid(process.pid) in groups:
                left.append(f"{process.pid} {' '.join(process.info['cmdline'] or [])[:80]} (in a stack's group)")
        except (ProcessLookupError, psutil.Error):
            continue
    return left


# -- the purchase and the checks ---------------------------------------------------------------
async def buy_and_check(browser, banner: Banner, run_dir: Path) -> None:
    assert banner.base_url.startswith("http://127.0.0.1:")
    assert banner.link_url.startswith(banner.base_url + "/pay/")
    assert banner.mail_dir.resolve() == (run_dir / "mail").resolve()

    async with watched_page(browser, {banner.base_url, banner.processor_url}) as (page, watch):
        await open_link(page, banner.link_url)
        assert await page.get_by_role("button", name="Pay $24.90").is_visible()
        await pay_on_page(page, BUYER, firstname="Make", lastname="Run")
        watch.assert_clean()

    async with aiohttp.ClientSession() as http:
        api = Api(http, banner.base_url, banner.api_key)

        async def payments():
            listed = await api.get("/v1/payments")
            assert listed.status == 200, listed.body
            return [p for p in listed.body["data"] if p["status"] == "succeeded"]

        (payment,) = await eventually(payments, timeout=60)
        assert payment["amount"] == DEMO_LINK["line_items"][0]["unit_amount"]
        assert payment["currency"] == "USD"

        async def receipts():
            listed = await api.get("/v1/emails?kind=receipt")
            assert listed.status == 200, listed.body
            return [e for e in listed.body["data"] if e["status"] == "sent"]

        (email,) = await eventually(receipts, timeout=90)
        assert email["to"] == BUYER and email["payment_id"] == payment["id"]

        async def in_sink():
            return [m for m in read_mail(banner.mail_dir) if m["Message-ID"] == email["message_id"]]

        (message,) = await eventually(in_sink, timeout=30)
        assert message["To"] == BUYER
        assert "$24.90" in message["Subject"]

        async def contacts():
            listed = await api.get(f"/v1/contacts?email={BUYER}")
            assert listed.status == 200, listed.body
            return listed.body["data"]

        (contact,) = await eventually(contacts, timeout=60)
        assert (contact["firstname"], contact["lastname"]) == ("Make", "Run")


def interrupt_and_check(run: MakeRun, offset: int) -> list[tuple[int, float, str]]:
    children = descendants(run.pid)
    assert len(children) >= 15, children  # 4 × (serve, relay, worker), gateway, processor, sink
    code, elapsed = run.interrupt()
    assert code is not None, f"still running {elapsed:.0f}s after SIGINT:\n{run.output[-3000:]}"
    assert elapsed < PROMPT_EXIT, f"took {elapsed:.1f}s to exit after SIGINT"
    assert code == 0, run.output[-3000:]
    tail = run.output.split("Ctrl-C: stopping", 1)
    assert len(tail) == 2, f"Ctrl-C was not acknowledged:\n{run.output[-3000:]}"
    for name in ("gateway", "checkout-serve", "notifications-worker-0", "test-processor", "mail-sink"):
        assert re.search(rf"^  stopped +{re.escape(name)}$", tail[1], re.MULTILINE), tail[1]
    assert "Stopped everything this run started." in tail[1]
    assert survivors(children) == []
    listening = [p for p in stack_ports(offset) if infra.port_open("127.0.0.1", p, timeout=0.2)]
    assert listening == [], f"still listening after the stop: {listening}"
    return children


# -- the tests -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
async def browser():
    async with launch_chromium() as running:
        yield running


async def test_make_run_sells_through_the_printed_link_and_stops_on_ctrl_c(browser, tmp_path, infrastructure):
    """PostgreSQL and Redis already running: they are used, and left running."""
    from commerce_cli.database import drop_database

    pg, redis = infrastructure
    guard = free_ports(2, set())  # if they were missed, private servers would go there, not on defaults
    attempt = Attempt("shared")
    try:
        run, banner, offset, run_dir = await asyncio.to_thread(
            attempt.start,
            tmp_path,
            COMMERCE_BOOTSTRAP_DATABASE_URL=pg.admin_url(),
            COMMERCE_REDIS_URL=redis.url,
            COMMERCE_PRIVATE_PG_PORT=str(guard[0]),
            COMMERCE_PRIVATE_REDIS_PORT=str(guard[1]),
        )
        assert f"{pg.host}:{pg.port}, database {attempt.database} (already running)" in run.output
        await buy_and_check(browser, banner, run_dir)
        await asyncio.to_thread(interrupt_and_check, run, offset)
        assert "already running before and still are." in run.output
        assert await asyncio.to_thread(infra.postgres_reachable, pg.admin_url())
        assert infra.redis_reachable(redis.url)
    finally:
        attempt.kill()
        await drop_database(pg.admin_url(), attempt.database)
        _delete_namespace(redis.url, attempt.namespace)


async def test_make_run_starts_private_postgres_and_redis_when_none_is_running(browser, tmp_path):
    """Nothing listens at COMMERCE_BOOTSTRAP_DATABASE_URL / COMMERCE_REDIS_URL: make run
    starts a private PostgreSQL (the distribution's binaries) and Redis, and stops them."""
    closed_pg, closed_redis, pg_port, redis_port = free_ports(4, set())
    avoid = {closed_pg, closed_redis, pg_port, redis_port}
    attempt = Attempt("private")
    try:
        run, banner, offset, run_dir = await asyncio.to_thread(
            attempt.start,
            tmp_path,
            avoid,
            COMMERCE_BOOTSTRAP_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed_pg}/postgres",
            COMMERCE_REDIS_URL=f"redis://127.0.0.1:{closed_redis}/0",
            COMMERCE_PRIVATE_PG_PORT=str(pg_port),
            COMMERCE_PRIVATE_REDIS_PORT=str(redis_port),
        )
        pgdata = run_dir / "postgres" / "pgdata"
        assert f"127.0.0.1:{pg_port}, database " in run.output
        assert "(private, started by this run; data in" in run.output
        assert f"redis://127.0.0.1:{redis_port}/0" in run.output
        assert infra.port_open("127.0.0.1", pg_port) and infra.port_open("127.0.0.1", redis_port)
        assert not infra.port_open("127.0.0.1", closed_pg) and not infra.port_open("127.0.0.1", closed_redis)
        postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        assert psutil.Process(postmaster).username() == "postgres" or os.geteuid() != 0

        await buy_and_check(browser, banner, run_dir)
        children = await asyncio.to_thread(interrupt_and_check, run, offset)
        assert any("redis-server" in cmd for _, _, cmd in children), children
        assert re.search(rf"^  stopped +private Redis on 127\.0\.0\.1:{redis_port}$", run.output, re.MULTILINE)
        assert re.search(rf"^  stopped +private PostgreSQL on 127\.0\.0\.1:{pg_port} ", run.output, re.MULTILINE)
        assert not infra.port_open("127.0.0.1", pg_port), "the private PostgreSQL still listens"
        assert not infra.port_open("127.0.0.1", redis_port), "the private Redis still listens"
        assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        attempt.kill()
        for used in attempt.run_dirs:  # if the test failed half-way, leave nothing running
            data = used / "postgres" / "pgdata"
            if (data / "postmaster.pid").exists():
                pg = infra.Postgres("127.0.0.1", pg_port, "postgres", data, infra._unprivileged_user())
                pg.bin_dir = infra._find_pg_bin()
                infra.stop_private_postgres(pg, "immediate")
            shutil.rmtree(used / "postgres", ignore_errors=True)
        for stray in psutil.process_iter(["name", "cmdline"]):
            if stray.info["name"] == "redis-server" and f":{redis_port}" in " ".join(stray.info["cmdline"] or []):
                stray.kill()


def _delete_namespace(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()
