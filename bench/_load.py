"""Benchmark helpers of P2 beside ``bench/_common.py`` (whose bare baseline server and
``ensure_wrk`` are reused): a bench database with only the schemas a scenario needs, a
service process, and ``wrk`` driven by Lua scripts that send a different, pre-generated
request each time (`WRK_FILE_LUA`: one ``"<signature>\t<body>"`` per line, one file per
wrk thread) or one fixed body (`WRK_BODY_LUA`).

wrk runs a closed model (N connections, each sending its next request as soon as the
previous one is answered), which measures the saturating throughput; its latency
distribution gives the p99 at that load. `WRK_FILE_LUA` counts wrap-arounds, so a run
that ran out of unique requests says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PYTHON = sys.executable

WRK_FILE_LUA = r"""
-- Sends the requests of "<prefix>-<thread>.txt" in turn: one "<signature>\t<body>" per line.
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end
local requests, n, i = {}, 0, 0
wrapped = 0
function init(args)
  for line in io.lines(args[1] .. "-" .. id .. ".txt") do
    local sig, body = line:match("^([^\t]*)\t(.*)$")
    n = n + 1
    requests[n] = wrk.format("POST", nil, {["Content-Type"] = "application/json", ["Stripe-Signature"] = sig}, body)
  end
end
function request()
  i = i + 1
  if i > n then
    i = 1
    wrapped = wrapped + 1
  end
  return requests[i]
end
function done(summary, latency, requests)
  local wraps = 0
  for _, t in ipairs(threads) do wraps = wraps + (t:get("wrapped") or 0) end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "wrapped": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout, wraps))
end
"""

WRK_BODY_LUA = r"""
-- One fixed body (args[1] is its file) for every request.
function init(args)
  local f = io.open(args[1], "rb")
  wrk.body = f:read("*a")
  f:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function done(summary, latency, requests)
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "wrapped": 0}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write +
    summary.errors.timeout))
end
"""


def say(text: str = "") -> None:
    print(text, flush=True)


def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} / {five:.2f} on {os.cpu_count()} CPUs"


# -- wrk ------------------------------------------------------------------------------------------
def ensure_wrk() -> str:
    from bench import _common

    found = _common.ensure_wrk()
    if not found:
        raise SystemExit("wrk is missing: install Debian's 'wrk' package (apt-get install wrk)")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: int
    wrapped: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, lua: str, args: list[str], *, seconds: float, connections: int, threads: int = 2) -> WrkResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        command = [
            ensure_wrk(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            script.name,
            url,
            "--",
            *args,
        ]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    finally:
        os.unlink(script.name)
    match = re.search(r"WRK_JSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(match.group(1))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["non_2xx"],
        socket_errors=data["socket_errors"],
        wrapped=data["wrapped"],
    )


# -- database and processes -------------------------------------------------------------------------
@dataclass
class BenchDatabase:
    admin_url: str
    name: str
    pg: object

    def url(self, role: str) -> str:
        return self.pg.url(role, self.name)  # type: ignore[attr-defined]

    @property
    def admin_db_url(self) -> str:
        from commerce_cli.database import with_database

        return with_database(self.admin_url, self.name)


def bench_database(prefix: str, services: tuple[str, ...]) -> BenchDatabase:
    """A fresh database with the given services' schemas migrated (dropped by `drop`)."""
    from commerce_cli.database import bootstrap
    from devtools import infra
    from shared.migrations import upgrade

    admin = os.environ.get("COMMERCE_BOOTSTRAP_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    pg = infra.ensure_postgres(admin, ROOT / ".run" / "bench-infra" / "postgres")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    db = BenchDatabase(pg.admin_url(), name, pg)
    try:
        asyncio.run(bootstrap(pg.admin_url(), name))
        for service in services:
            upgrade(service, service, pg.url(f"commerce_{service}", name))
    except BaseException:
        drop(db)
        raise
    return db


@contextlib.contextmanager
def no_gc():
    """Python's cyclic GC paused while a timed phase runs (both sides of a ratio alike)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def checkpoint(admin_url: str) -> None:
    """A CHECKPOINT before a timed phase, so that neither side pays for the other's WAL."""
    import asyncpg

    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def run_with_database(prefix: str, services: tuple[str, ...], run, *, keep: bool = False) -> int:
    """``asyncio.run(run(db))`` on a fresh `bench_database`, dropped afterwards unless ``keep``."""
    db = bench_database(prefix, services)
    try:
        return asyncio.run(run(db))
    finally:
        if keep:
            say(f"kept: database {db.name}")
        else:
            drop(db)


def drop(db: BenchDatabase) -> None:
    from commerce_cli.database import drop_database

    asyncio.run(drop_database(db.admin_url, db.name))


def free_port() -> int:
    from devtools import infra

    return infra.free_port()


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
