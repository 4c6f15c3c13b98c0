"""The fault suite's stacks: each test starts its own (own database, Redis namespace, free
ports — and, where the fault needs it, its own private PostgreSQL or Redis server) and
the fixture takes down everything it started, whatever happened in the test.

Blocking steps (starting processes, restarting servers) must run off the event loop
while buyers are active: call them through ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from devtools import infra
from devtools.stack import Ports, Stack, StackConfig
from tests.support.effects import EffectsLedger
from tests.support.load import Shoppers

NAMESPACE_PREFIX = "commerce-fault-"
LINK = {
    "name": "Fault suite link",
    "currency": "USD",
    "line_items": [{"name": "Coffee beans, 1 kg", "quantity": 1, "unit_amount": 2490}],
}


@dataclass
class FaultStack:
    label: str
    tmp: Path
    stack: Stack
    admin_url: str
    private_pg: infra.Postgres | None = None
    private_pg_dir: Path | None = None
    private_redis_port: int | None = None
    private_redis: infra.Redis | None = None
    account: dict = field(default_factory=dict)
    link: dict = field(default_factory=dict)

    @property
    def config(self) -> StackConfig:
        return self.stack.config

    @property
    def processor_url(self) -> str:
        return f"http://127.0.0.1:{self.config.ports.test_processor}"

    def ledger(self) -> EffectsLedger:
        return EffectsLedger(self.stack, self.label)

    def shoppers(self, ledger: EffectsLedger, **kw) -> Shoppers:
        return Shoppers(self.config.base_url, self.processor_url, self.link["url"], ledger, **kw)

    # -- set-up ---------------------------------------------------------------------------
    def start(self) -> None:
        self.stack.prepare()
        self.stack.start(timeout=120)
        self.account = self.stack.create_account(f"Fault shop {self.label}", "USD", True)
        status, link = self.stack.api("POST", "/v1/payment_links", self.account["api_key"], LINK)
        assert status == 201, (status, link)
        self.link = link

    async def sql(self, service: str, query: str, *args) -> list:
        """Run ``query`` as ``service``'s schema owner (not subject to row-level security)."""
        assert self.stack.postgres is not None
        conn = await asyncpg.connect(self.stack.postgres.url(f"commerce_{service}", self.config.database), timeout=10)
        try:
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    # -- processes ------------------------------------------------------------------------
    def pids(self) -> dict[str, int | None]:
        return {name: p.pid for name, p in self.stack.processes.items()}

    def dead(self) -> list[str]:
        return [name for name, p in self.stack.processes.items() if not p.alive()]

    def start_process(self, name: str, env: dict[str, str] | None = None) -> None:
        """(Re)start ``name``; ``env`` adds variables for this process only."""
        process = self.stack.processes[name]
        process.stop()
        process.env = {**self.stack.env, **(env or {})}
        process.start()

    def log_count(self, pattern: str, names: str = "") -> int:
        """How many lines of the logs of processes whose name starts with ``names`` match."""
        regex = re.compile(pattern)
        total = 0
        for path in (self.config.run_dir / "logs").glob(f"{names}*.log"):
            with open(path, errors="replace") as f:
                total += sum(1 for line in f if regex.search(line))
        return total

    # -- private servers --------------------------------------------------------------------
    def kill_redis(self) -> None:
        assert self.private_redis is not None and self.private_redis.process is not None
        self.private_redis.process.kill()
        self.private_redis.process.wait(10)

    def start_redis(self) -> None:
        assert self.private_redis_port is not None
        self.private_redis = infra.start_private_redis(self.tmp / "redis", self.private_redis_port)

    def stop_postgres(self, mode: str = "immediate") -> None:
        pg = self.private_pg
        assert pg is not None and pg.bin_dir is not None and pg.private_dir is not None
        argv = [str(pg.bin_dir / "pg_ctl"), "-D", str(pg.private_dir), "-m", mode, "-w", "-t", "60", "stop"]
        done = subprocess.run(infra._as(pg.run_as, argv), capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, f"pg_ctl stop: {done.returncode} {done.stdout} {done.stderr}"

    def start_postgres(self) -> None:
        assert self.private_pg is not None
        assert self.private_pg_dir is not None
        infra.start_private_postgres(self.private_pg_dir, self.private_pg.port)

    # -- tear-down ------------------------------------------------------------------------
    def close(self, keep: bool = False) -> None:
        """Take everything down; keep the files (logs, mail, data) only if ``keep``."""
        problems: list[str] = []
        processes = list(self.stack.processes.values())
        for process in processes:
            process.signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in processes:
            if process.popen is None:
                continue
            try:
                process.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
        still = [p.name for p in processes if p.alive()]
        if still:
            problems.append(f"still running: {still}")
        if self.private_redis_port is not None:
            if self.private_redis is not None and self.private_redis.process is not None:
                self.private_redis.process.kill()
                self.private_redis.process.wait(10)
        elif self.config.namespace.startswith(NAMESPACE_PREFIX):
            try:
                _delete_namespace(self.config.redis_url, self.config.namespace)
            except Exception as exc:
                problems.append(f"Redis clean-up: {exc!r}")
        if self.private_pg_dir is not None:
            pgdata = self.private_pg_dir / "pgdata"
            if (pgdata / "postmaster.pid").exists():
                pg = self.private_pg or infra.Postgres(
                    "127.0.0.1", 0, "postgres", pgdata, infra._unprivileged_user(), infra._find_pg_bin()
                )
                infra.stop_private_postgres(pg, "immediate")
        else:
            from commerce_cli.database import drop_database

            try:
                asyncio.run(drop_database(self.admin_url, self.config.database))
            except Exception as exc:
                problems.append(f"dropping {self.config.database}: {exc!r}")
        if keep:
            problems.append(f"logs and data kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            warnings.warn(f"fault stack {self.label}: {'; '.join(problems)}", stacklevel=1)


def _delete_namespace(url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def fault_stack(request, infrastructure):
    """``make(label, private_postgres=False, private_redis=False, workers=None, env=None)``
    starts a stack (blocking: call it through ``asyncio.to_thread``).

    Its files live in a directory of their own under the system temp dir — not pytest's
    tmp tree, which any starting pytest run resets to mode 0700, locking the ``postgres``
    user out of a private cluster's data — removed after a passing test and kept (the
    path is in a warning) after a failing one, or always with ``COMMERCE_FAULTS_KEEP=1``."""
    shared_pg, shared_redis = infrastructure
    made: list[FaultStack] = []

    def make(
        label: str,
        *,
        private_postgres: bool = False,
        private_redis: bool = False,
        workers: dict[str, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> FaultStack:
        suffix = uuid.uuid4().hex[:8]
        tmp = Path(tempfile.mkdtemp(prefix=f"commerce-fault-{label.lower()}-"))
        config = StackConfig(
            run_dir=tmp / "stack",
            database=f"commerce_fault_{label.lower()}_{suffix}",
            pg_admin_url=shared_pg.admin_url(),
            redis_url=shared_redis.url,
            namespace=f"{NAMESPACE_PREFIX}{label.lower()}-{suffix}",
            ports=Ports.free(),
            workers={"checkout": 1, "billing": 1, "notifications": 1, "crm_sync": 1, **(workers or {})},
            environment="test",
            extra_env=dict(env or {}),
        )
        fs = FaultStack(label, tmp, Stack(config), config.pg_admin_url)
        made.append(fs)  # registered before anything starts: close() takes down what did
        if private_postgres:
            fs.private_pg_dir = tmp / "postgres"
            fs.private_pg = infra.start_private_postgres(fs.private_pg_dir, infra.free_port())
            config.pg_admin_url = fs.admin_url = fs.private_pg.admin_url()
        if private_redis:
            fs.private_redis_port = infra.free_port()
            fs.start_redis()
            config.redis_url = fs.private_redis.url
        fs.start()
        return fs

    yield make
    report = getattr(request.node, "rep_call", None)
    passed = report is not None and report.passed and not os.environ.get("COMMERCE_FAULTS_KEEP")
    for fs in made:
        fs.close(keep=not passed)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
